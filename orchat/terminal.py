"""Text from a server (or a file it wrote) made safe to print: it never drives the terminal.

A model id, a usage field, a key label or an old answer may hold ESC, BEL, C1 controls or bidi
overrides; raw on a terminal they set the title, write the clipboard (OSC 52) or hide text.
Everything ORCHAT prints that it did not write itself passes through here first.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Given TEXT, return it with every non-printable character written as Python does (\\x1b, \\u202e).

    Tab stays; newlines stay only with KEEP_NEWLINES (multi-line text such as an old answer).
    A backslash stays as it is: this is for eyes, not for parsing back.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == "\t" or (keep_newlines and ch == "\n") else repr(ch)[1:-1] for ch in text)


def dumps_for_terminal(value: Any) -> str:
    """Return VALUE as JSON text (non-ASCII kept) with no raw control character in it.

    json.dumps escapes C0 controls but leaves C1 controls (U+009B is CSI), bidi overrides and
    line separators raw; inside a JSON string \\uNNNN is the same value, so the JSON stays equal.
    """
    text = json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else json.dumps(ch)[1:-1] for ch in text)
