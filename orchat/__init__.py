"""ORCHAT: a standard-library shell companion for OpenRouter and OpenAI-compatible servers."""

__version__ = "0.1.0"
