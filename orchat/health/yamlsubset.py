"""A strict YAML subset parser: enough YAML for ORCHAT's own files, nothing that surprises.

Accepted: block mappings and block sequences (including `- key: value` and indentless sequences
under a key), the empty flow collections `[]` and `{}` as values, plain scalars, single- and double-quoted scalars on one line (YAML 1.2 escapes),
`#` comments, one optional leading `---`. Scalars resolve as YAML 1.2's core schema does (null,
bool, int, float, str); mapping keys must be strings.

Refused with a ConfigError naming FILE:LINE:COLUMN: flow collections (`[` `{`), anchors, aliases,
tags, directives, several documents, block scalars (`|` `>`), multi-line scalars, tabs outside
quotes and comments, duplicate keys, and every plain scalar that YAML 1.1 (PyYAML, Ruby, older Go
libraries) reads differently from YAML 1.2: `yes`/`no`/`on`/`off`, `012`, `0o12`, `1_000`, `1e3`,
`1:30`, dates, `<<`, `=`. Inside the subset every YAML loader agrees on the value, so a file that
passes here means the same thing to any other tool an operator points at it; outside it, the
operator is told to quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orchat.errors import ConfigError
from orchat.health.yamlscalar import AmbiguousScalar, resolve_plain

MAX_DEPTH = 64
MAX_KEY_CHARS = 1000  # PyYAML stops looking for a simple key's ':' after 1024 characters

_NON_PRINTABLE = re.compile("[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_FORBIDDEN_START = {
    "[": "flow sequences ([...]) are not supported; use a block sequence (- item) or quote the value",
    "{": "flow mappings ({...}) are not supported; use a block mapping or quote the value",
    "]": "a plain scalar cannot start with ']'; quote the value",
    "}": "a plain scalar cannot start with '}'; quote the value",
    "&": "anchors (&) are not supported",
    "*": "aliases (*) are not supported",
    "!": "tags (!) are not supported",
    "|": "block scalars (|) are not supported; use a quoted string",
    ">": 'block scalars (>) are not supported; quote the value (e.g. "> 80")',
    "%": "directives (%) are not supported",
    "@": "'@' is reserved in YAML; quote the value",
    "`": "'`' is reserved in YAML; quote the value",
    ",": "a plain scalar cannot start with ','; quote the value",
    "?": "explicit keys (?) are not supported",
    ":": "a plain scalar cannot start with ':'; quote the value",
    "#": "a plain scalar cannot start with '#'",
}
_EMPTY_FLOW = re.compile(r"(?:\[\]|\{\})(?: +#.*)?\Z")
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "e": "\x1b",
    " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


@dataclass
class Document:
    """A parsed file: its value, plus where each value and key sits (for schema error messages)."""

    value: Any
    filename: str
    marks: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)

    def where(self, path: tuple[Any, ...], *, key: bool = False) -> str:
        """Return "FILE:LINE:COLUMN" of the value (or with KEY, the key) at PATH, or FILE alone."""
        table = self.key_marks if key else self.marks
        mark = table.get(path) or self.marks.get(path)
        return f"{self.filename}:{mark[0]}:{mark[1]}" if mark else self.filename


def load_yaml(text: str, filename: str = "<string>") -> Any:
    """Given YAML TEXT in the subset, return its value (dict, list, str, int, float, bool or None).

    Raise ConfigError "FILENAME:LINE:COLUMN: why" for anything outside the subset.
    """
    return parse_yaml(text, filename).value


def parse_yaml(text: str, filename: str = "<string>") -> Document:
    """Like load_yaml, but return a Document that also knows where each value came from."""
    return _Parser(text, filename).parse()


@dataclass
class _Line:
    number: int
    col: int  # 0-based column where text starts
    text: str  # content from col to end of line (no newline)


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.doc = Document(None, filename)
        self.lines = self._split(text)
        self.pos = 0

    def fail(self, line: int, col: int, message: str) -> ConfigError:
        return ConfigError(f"{self.filename}:{line}:{col + 1}: {message}")

    # -- reading -----------------------------------------------------------------------------
    def _split(self, text: str) -> list[_Line]:
        if text.startswith("\ufeff"):
            text = text[1:]
        text = text.replace("\r\n", "\n")
        lines: list[_Line] = []
        seen_start = False
        for number, raw in enumerate(text.split("\n"), 1):
            bad = _NON_PRINTABLE.search(raw)
            if bad:
                what = {"\r": "a carriage return without a line feed", "\ufeff": "a byte order mark"}.get(bad.group(), f"character U+{ord(bad.group()):04X}")
                raise self.fail(number, bad.start(), f"{what} is not allowed")
            stripped = raw.lstrip(" ")
            col = len(raw) - len(stripped)
            if stripped.startswith("\t"):
                raise self.fail(number, col, "tabs cannot indent YAML; use spaces")
            if not stripped or stripped.startswith("#"):
                continue
            if col == 0 and raw.startswith("%"):
                raise self.fail(number, 0, _FORBIDDEN_START["%"])
            if col == 0 and (raw in ("---", "...") or raw.startswith(("--- ", "... "))):
                rest = raw[3:].strip()
                if raw.startswith("---") and not lines and not seen_start and (not rest or rest.startswith("#")):
                    seen_start = True
                    continue
                raise self.fail(number, 0, "only one document is supported (no '...' and no second '---'; nothing after '---')")
            lines.append(_Line(number, col, stripped.rstrip(" ")))
        return lines

    def parse(self) -> Document:
        if not self.lines:
            return self.doc
        first = self.lines[0]
        self.doc.value = self.parse_node(first.col, (), depth=0)
        if self.pos < len(self.lines):
            line = self.lines[self.pos]
            raise self.fail(line.number, line.col, "unexpected content: bad indentation, or a second root node")
        return self.doc

    # -- blocks ------------------------------------------------------------------------------
    def parse_node(self, indent: int, path: tuple[Any, ...], depth: int) -> Any:
        """Parse the block node whose first line is the current line, sitting at column INDENT."""
        if depth > MAX_DEPTH:
            line = self.lines[self.pos]
            raise self.fail(line.number, line.col, f"nesting deeper than {MAX_DEPTH} levels")
        line = self.lines[self.pos]
        self.doc.marks[path] = (line.number, line.col + 1)
        if _is_entry(line.text):
            return self.parse_sequence(indent, path, depth)
        if self.split_key(line) is not None:
            return self.parse_mapping(indent, path, depth)
        self.pos += 1
        value = self.parse_scalar(line.text, line.number, line.col, "value")
        if self.pos < len(self.lines) and self.lines[self.pos].col > indent:
            nxt = self.lines[self.pos]
            raise self.fail(nxt.number, nxt.col, "multi-line plain scalars are not supported; quote the value on one line")
        return value

    def parse_sequence(self, indent: int, path: tuple[Any, ...], depth: int) -> list[Any]:
        items: list[Any] = []
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            if line.col < indent:
                break
            if line.col > indent:
                raise self.fail(line.number, line.col, "bad indentation of a sequence entry")
            if not _is_entry(line.text):
                break
            item_path = (*path, len(items))
            rest = line.text[1:].lstrip(" ")
            if rest and not rest.startswith("#"):
                # `- value` / `- key: v` / `- - x`: reparse the rest of the line as a node at its own column.
                self.lines[self.pos] = _Line(line.number, line.col + len(line.text) - len(rest), rest)
                items.append(self.parse_node(self.lines[self.pos].col, item_path, depth + 1))
            else:
                self.pos += 1
                self.doc.marks[item_path] = (line.number, line.col + 1)
                items.append(self.parse_block_value(indent, item_path, depth, allow_indentless=False))
        return items

    def parse_mapping(self, indent: int, path: tuple[Any, ...], depth: int) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            if line.col < indent:
                break
            if line.col > indent:
                raise self.fail(line.number, line.col, "bad indentation of a mapping entry")
            if _is_entry(line.text):
                break  # the enclosing indentless sequence goes on, or the caller reports it
            split = self.split_key(line)
            if split is None:
                raise self.fail(line.number, line.col, "expected 'key: value' at this indentation")
            key, value_col = split
            if key in mapping:
                raise self.fail(line.number, line.col, f"duplicate key {key!r}")
            key_path = (*path, key)
            self.doc.key_marks[key_path] = (line.number, line.col + 1)
            rest = line.text[value_col - line.col :]
            self.pos += 1
            if rest and not rest.startswith("#"):
                self.doc.marks[key_path] = (line.number, value_col + 1)
                if _is_entry(rest):
                    raise self.fail(line.number, value_col, "a sequence cannot start on the key's line; put '- item' on the next lines")
                mapping[key] = self.parse_scalar(rest, line.number, value_col, "value")
                if self.pos < len(self.lines) and self.lines[self.pos].col > indent:
                    nxt = self.lines[self.pos]
                    raise self.fail(nxt.number, nxt.col, "multi-line plain scalars are not supported; quote the value on one line")
            else:
                self.doc.marks[key_path] = (line.number, line.col + len(line.text) + 1)
                mapping[key] = self.parse_block_value(indent, key_path, depth, allow_indentless=True)
        return mapping

    def parse_block_value(self, indent: int, path: tuple[Any, ...], depth: int, *, allow_indentless: bool) -> Any:
        """The value after `key:` or `-` with nothing else on the line: the next, deeper lines, or null."""
        if self.pos >= len(self.lines):
            return None
        nxt = self.lines[self.pos]
        if nxt.col > indent:
            return self.parse_node(nxt.col, path, depth + 1)
        if allow_indentless and nxt.col == indent and _is_entry(nxt.text):
            return self.parse_sequence(indent, path, depth + 1)
        return None

    # -- keys and scalars --------------------------------------------------------------------
    def split_key(self, line: _Line) -> tuple[str, int] | None:
        """Return (key, column where the value starts) when LINE is `key: ...`, else None."""
        text = line.text
        if text[0] in "\"'":
            end = _quoted_end(text)
            if end is None or text[end : end + 1] != ":" or text[end + 1 : end + 2] not in ("", " "):
                return None
            key_text, colon = text[:end], end
        else:
            colon = -1
            for i, ch in enumerate(text):
                if ch == "#" and i > 0 and text[i - 1] == " ":
                    return None
                if ch == ":" and text[i + 1 : i + 2] in ("", " "):
                    colon = i
                    break
            if colon < 0:
                return None
            key_text = text[:colon].rstrip(" ")
        if len(key_text) > MAX_KEY_CHARS:
            raise self.fail(line.number, line.col, f"keys longer than {MAX_KEY_CHARS} characters are not supported")
        key = self.parse_scalar(key_text, line.number, line.col, "key")
        if not isinstance(key, str):
            raise self.fail(line.number, line.col, f"key {key_text!r} is not a string; quote it")
        rest = text[colon + 1 :]
        return key, line.col + colon + 1 + (len(rest) - len(rest.lstrip(" ")))

    def parse_scalar(self, text: str, number: int, col: int, role: str) -> Any:
        """Parse one scalar filling TEXT (a trailing ` # comment` allowed); return its value."""
        if not text:
            raise self.fail(number, col, f"empty {role}")
        if text[0] in "\"'":
            end = _quoted_end(text)
            if end is None:
                raise self.fail(number, col, "unterminated quoted scalar (quoted scalars must end on the same line)")
            value = self._unquote(text[:end], number, col)
            tail = text[end:]
            if tail.strip(" ") and not (tail.startswith(" ") and tail.lstrip(" ").startswith("#")):
                raise self.fail(number, col + end, f"unexpected text after the quoted {role}")
            return value
        if role == "value" and _EMPTY_FLOW.match(text):
            return [] if text[0] == "[" else {}  # `checks: []` is too common to refuse
        if text[0] in _FORBIDDEN_START:
            raise self.fail(number, col, _FORBIDDEN_START[text[0]])
        if text[0] == "-" and text[1:2] in ("", " "):
            raise self.fail(number, col, "a sequence entry is not allowed here")
        plain = text
        for i, ch in enumerate(text):
            if ch == "#" and i > 0 and text[i - 1] == " ":
                plain = text[:i].rstrip(" ")
                break
            if ch == ":" and text[i + 1 : i + 2] in ("", " ") and role == "value":
                raise self.fail(number, col + i, "mapping values are not allowed here; quote the value if ': ' belongs to it")
            if ch == "\t":
                raise self.fail(number, col + i, "tabs are only allowed inside quotes and comments")
        return self._resolve(plain, number, col)

    def _unquote(self, quoted: str, number: int, col: int) -> str:
        body = quoted[1:-1]
        if quoted[0] == "'":
            return body.replace("''", "'")
        out: list[str] = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            code = body[i + 1 : i + 2]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                i += 2
            elif code in _HEX_ESCAPES:
                width = _HEX_ESCAPES[code]
                digits = body[i + 2 : i + 2 + width]
                if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise self.fail(number, col + 1 + i, f"\\{code} needs {width} hex digits")
                point = int(digits, 16)
                if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
                    raise self.fail(number, col + 1 + i, f"\\{code}{digits} is not a Unicode scalar value")
                out.append(chr(point))
                i += 2 + width
            else:
                raise self.fail(number, col + 1 + i, f"unknown escape \\{code}")
        return "".join(out)

    def _resolve(self, plain: str, number: int, col: int) -> Any:
        try:
            return resolve_plain(plain)
        except AmbiguousScalar as err:
            raise self.fail(number, col, str(err)) from None


def _is_entry(text: str) -> bool:
    return text[0] == "-" and text[1:2] in ("", " ")


def _quoted_end(text: str) -> int | None:
    """Return the index just past the closing quote of the quoted scalar TEXT starts with, or None."""
    quote = text[0]
    i = 1
    while i < len(text):
        ch = text[i]
        if quote == '"' and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return None
