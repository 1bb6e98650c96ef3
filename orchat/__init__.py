"""ORCHAT: a standard-library shell companion for OpenRouter and OpenAI-compatible servers.

The package is one wing per capability (wire, telemetry, docgen, chat, backup, health, gateway,
commands), each described in its own __init__.py, over a foundation kept here at the top:
errors, paths, fsutil, settingstable, config, keys and args. orchat.cli is the entry point. Imports point down
only (tests/static/test_imports.py holds the order).
"""

__version__ = "0.1.0"
