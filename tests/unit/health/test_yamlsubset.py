"""The strict YAML subset parser, with PyYAML (dev-only) as the oracle: inside the subset both agree."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchat.errors import ConfigError
from orchat.health.yamlsubset import load_yaml, parse_yaml
from tests.conftest import REPO

GUIDE_EXAMPLE = (  # verbatim from the operations guide, blank lines with their four trailing spaces
    "checks:\n"
    '  - name: "API Endpoint"\n'
    '    command: "curl -sSf https://api.openrouter.ai/v1/models"\n'
    "    timeout: 10\n"
    "    interval: 60\n"
    "    \n"
    '  - name: "Disk Space"\n'
    "    command: \"df / | awk 'NR==2 {print $5}' | tr -d '%'\"\n"
    '    warning: "> 80"\n'
    '    critical: "> 90"\n'
    "    \n"
    '  - name: "Service Status"\n'
    '    command: "systemctl is-active orchat"\n'
    '    expect: "active"\n'
)


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, "f.yaml")
    return str(caught.value)


def test_the_guides_example_parses_exactly_as_pyyaml_reads_it() -> None:
    assert "    \n" in GUIDE_EXAMPLE  # the guide's blank lines carry trailing spaces
    assert load_yaml(GUIDE_EXAMPLE) == yaml.safe_load(GUIDE_EXAMPLE)
    assert load_yaml(GUIDE_EXAMPLE)["checks"][1]["command"] == "df / | awk 'NR==2 {print $5}' | tr -d '%'"


def test_the_guides_example_here_is_the_one_in_the_operations_guide() -> None:
    guide = REPO.parent / "shared" / "reference" / "operations-guide.md"
    if not guide.is_file():
        pytest.skip("the operations guide is not beside this checkout")
    text = guide.read_text(encoding="utf-8")
    start = text.index("\nchecks:\n") + 1
    end = text.index('expect: "active"\n', start) + len('expect: "active"\n')
    assert text[start:end] == GUIDE_EXAMPLE


def test_the_shipped_checks_file_parses_exactly_as_pyyaml_reads_it() -> None:
    text = (REPO / "etc" / "orchat" / "health-checks.yaml").read_text()
    assert load_yaml(text) == yaml.safe_load(text)
    assert [c["name"] for c in load_yaml(text)["checks"]] == ["API Endpoint", "Disk Space", "Service Status"]


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: -2\nc: +3\nd: 0x1F\ne: 1.5\nf: .5\ng: 1.\nh: 1.0e+3\ni: -.inf\nj: .INF\n",
        "a: true\nb: False\nc: TRUE\nd: null\ne: ~\nf:\ng: Null\n",
        "s: hello world\nt: it's\nu: a#b\nv: x # comment\nw: http://host:80/path\nx: 50%\ny: b[1], c{2}\n",
        "q: 'it''s'\nr: \"tab\\there \\u00e9 \\x41 \\\\ \\\" \\/ \\N \\_ \\L \\P \\0 \\e\"\ns: ''\nt: \"\"\n",
        "- a\n- - b\n  - c\n- d: 1\n  e:\n  - f\n  - g: h\n-\n- \n  nested: yes_no\n",
        "key:\n- indentless\n- sequence\nother: 1\n",
        "---\n# a comment before the root\nroot:\n    deep:\n        deeper: value\n    sibling: 2\n",
        "  indented: root\n  second: key\n",
        "'quoted key': 1\n\"dq key\": 2\nplain key: 3\na:b: 4\n",
        "just a scalar\n",
        "\ufeffbom: ok\r\nwindows: lines\r\n",
        "empty_list_item:\n  -\n  - x\n",
        "a:\n  # comment at another indentation\n      b: 1\n",
        "x: 'a' # comment\ny: \"b\"   # comment\n",
        "big: 123456789012345678901234567890\nneg0: -0\nzero: 0\n",
        "- - - - deep\n",
        "a:\n  b\n",
        "-a: 1\n",
        "checks: []\nother: {}  # empty flow collections only\nlist:\n- []\n",
        "",
        "# only a comment\n",
    ],
)
def test_documents_inside_the_subset_match_pyyaml(text: str) -> None:
    assert load_yaml(text) == yaml.safe_load(text)


def test_nan_resolves_like_pyyaml() -> None:
    ours, theirs = load_yaml("a: .nan\nb: .NaN"), yaml.safe_load("a: .nan\nb: .NaN")
    assert math.isnan(ours["a"]) and math.isnan(theirs["a"]) and math.isnan(ours["b"])


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ("a: [1, 2]\n", "1:4", "flow sequences"),
        ("a: {b: 1}\n", "1:4", "flow mappings"),
        ("a: [ ]\n", "1:4", "flow sequences"),
        ("[]: a\n", "1:1", "flow sequences"),
        ("a: &x 1\n", "1:4", "anchors"),
        ("a: *x\n", "1:4", "aliases"),
        ("a: !!str 1\n", "1:4", "tags"),
        ("a: |\n  text\n", "1:4", "block scalars"),
        ("a: >\n  text\n", "1:4", "block scalars"),
        ("warning: > 80\n", "1:10", "quote the value"),
        ("%YAML 1.2\n---\na: 1\n", "1:1", "directives"),
        ("a: 1\n---\nb: 2\n", "2:1", "one document"),
        ("a: 1\n...\n", "2:1", "one document"),
        ("--- a\n", "1:1", "one document"),
        ("a:\n\tb: 1\n", "2:1", "tabs"),
        ("a:\tb\n", "1:3", "tabs"),
        ("a: 1\na: 2\n", "2:1", "duplicate key 'a'"),
        ("? a\n: b\n", "1:1", "explicit keys"),
        ("a: b: c\n", "1:5", "mapping values are not allowed"),
        ("a: b\n  c\n", "2:3", "multi-line plain"),
        ("a: 'open\n  close'\n", "1:4", "unterminated"),
        ('a: "x" y\n', "1:7", "unexpected text"),
        ("a: - b\n", "1:4", "sequence cannot start"),
        ("a: yes\n", "1:4", "ambiguous plain scalar 'yes'"),
        ("a: off\n", "1:4", "ambiguous"),
        ("a: 012\n", "1:4", "YAML 1.2 reads 12, YAML 1.1 10"),
        ("a: 0o12\n", "1:4", "ambiguous"),
        ("a: 1_000\n", "1:4", "ambiguous"),
        ("a: 1e3\n", "1:4", "ambiguous"),
        ("a: 1:30\n", "1:4", "ambiguous"),
        ("a: 2024-01-31\n", "1:4", "ambiguous"),
        ("<<: x\n", "1:1", "ambiguous"),
        ("a: =\n", "1:4", "ambiguous"),
        ("1: one\n", "1:1", "not a string"),
        ("null: x\n", "1:1", "not a string"),
        ('a: "\\q"\n', "1:5", "unknown escape"),
        ('a: "\\x4"\n', "1:5", "hex digits"),
        ('a: "\\ud800"\n', "1:5", "Unicode scalar"),
        ("a: 1\n  b: 2\n", "2:3", "multi-line plain"),
        ("a:\n    b: 1\n  c: 2\n", "3:3", "bad indentation of a mapping"),
        ("- a\nb: 1\n", "2:1", "unexpected content"),
        ("a: 1\n- b\n", "2:1", "unexpected content"),
        ("a:\n  b: 1\n   c: 2\n", "3:4", "multi-line plain"),
        ("- a\n - b\n", "2:2", "bad indentation of a sequence"),
        ("-   x: 1\n  y: 2\n", "2:3", "bad indentation of a sequence"),
        ("a:\n  - b\n  c\n", "3:3", "bad indentation of a mapping"),
        ("a: 1\x07\n", "1:5", "U+0007"),
        ("a: 1\rb: 2\n", "1:5", "carriage return"),
        ("a: x\u2028y\n", "1:5", "U+2028"),
        ("a: \ufeffx\n", "1:4", "byte order mark"),
        ("a: @x\n", "1:4", "reserved"),
        ("a: `x`\n", "1:4", "reserved"),
        ("a: ,x\n", "1:4", "cannot start with ','"),
        ("a: :x\n", "1:4", "cannot start with ':'"),
        ("a: -\n", "1:4", "sequence"),
        ("a: ]\n", "1:4", "cannot start with ']'"),
        ("a: 1\n  - b\n", "2:3", "multi-line"),
        ("k:\n  x\n  y: 1\n", "3:3", "bad indentation"),
        ('"k" : v\n', "1:4", "unexpected text"),
        (f"{'k' * 1001}: v\n", "1:1", "longer than"),
        ("a: " + "9" * 5000 + "\n", "1:4", "too many digits"),
        ("- " * 70 + "x\n", "1:", "nesting deeper"),
        ('a: "x"#c\n', "1:7", "unexpected text"),
    ],
)
def test_everything_outside_the_subset_is_refused_with_file_line_and_column(text: str, where: str, why: str) -> None:
    message = refusal(text)
    assert message.startswith(f"f.yaml:{where}"), message
    assert why in message


def test_documents_record_where_each_value_and_key_sits() -> None:
    doc = parse_yaml("checks:\n  - name: x\n    timeout: abc\n  -\n    name: y\n", "c.yaml")
    assert doc.where(("checks", 0, "timeout")) == "c.yaml:3:14"
    assert doc.where(("checks", 0, "timeout"), key=True) == "c.yaml:3:5"
    assert doc.where(("checks", 1)) == "c.yaml:5:5"  # the item's content, on the line after the bare "-"
    assert doc.where(("nothing",)) == "c.yaml"


# -- generated documents ------------------------------------------------------------------------
SAFE_WORDS = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ_/.-@%é日"), min_size=1, max_size=8)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF), max_size=12)
KEYS = st.one_of(SAFE_WORDS, ANY_TEXT)
FLOATS = st.floats(allow_nan=False, width=64)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), FLOATS, ANY_TEXT, SAFE_WORDS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=20)


def emit_float(value: float, draw: Any) -> str:
    if math.isinf(value):
        return draw(st.sampled_from([".inf", ".Inf", ".INF"])) if value > 0 else draw(st.sampled_from(["-.inf", "-.Inf"]))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        mantissa = mantissa if "." in mantissa else mantissa + ".0"
        text = f"{mantissa}e{'' if exponent[0] in '+-' else '+'}{exponent}"
    return text


def emit_string(value: str, draw: Any) -> str:
    style = draw(st.sampled_from(["plain", "single", "double"]))
    plain_ok = re.fullmatch(r"[a-zA-Z_/][a-zA-Z_/.@%é日 -]*[a-zA-Z_/.@%é日-]|[a-zA-Z_/]", value) is not None
    if style == "plain" and plain_ok and value not in ("y", "n", "Y", "N") and yaml.safe_load(value) == value:
        return value
    if style == "single" and all(ch.isprintable() for ch in value):
        return "'" + value.replace("'", "''") + "'"
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append(draw(st.sampled_from(["\\t", "\t"])))
        elif not ch.isprintable() or ch in "\x85\u2028\u2029\ufeff":
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def emit_scalar(value: Any, draw: Any) -> str:
    if value is None:
        return draw(st.sampled_from(["null", "~", "Null", "NULL"]))
    if isinstance(value, bool):
        return draw(st.sampled_from(["true", "True", "TRUE"] if value else ["false", "False", "FALSE"]))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return emit_float(value, draw)
    return emit_string(value, draw)


def emit(value: Any, indent: int, draw: Any, step: int) -> list[str]:
    """Return block-style lines for VALUE at INDENT (a collection) or one scalar line."""
    pad = " " * indent
    lines: list[str] = []
    comment = draw(st.sampled_from(["", "", "  # note"]))
    if isinstance(value, dict):
        if not value:
            return []
        for key, item in value.items():
            key_text = emit_string(key, draw)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key_text}:{comment}")
                inner = indent if isinstance(item, list) and draw(st.booleans()) else indent + step
                lines.extend(emit(item, inner, draw, step))
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{key_text}:")  # an empty collection reads back as null
            else:
                lines.append(f"{pad}{key_text}: {emit_scalar(item, draw)}{comment}")
        return lines
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}-")
                lines.extend(emit(item, indent + step, draw, step))
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}-")
            else:
                lines.append(f"{pad}- {emit_scalar(item, draw)}{comment}")
        return lines
    return [pad + emit_scalar(value, draw)]


def normalized(value: Any) -> Any:
    """Empty collections are written as `key:` (null): that is what the emitter can say in the subset."""
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()} or None
    if isinstance(value, list):
        return [normalized(v) for v in value] or None
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, data=st.data(), step=st.integers(1, 4))
def test_generated_documents_in_the_subset_read_the_same_as_pyyaml_reads_them(value: Any, data: st.DataObject, step: int) -> None:
    lines = emit(value, 0, data.draw, step)
    text = "\n".join(lines) + "\n"
    expected = normalized(value) if lines else None
    assume(not (isinstance(value, str) and value.strip() != value and not lines))
    assert yaml.safe_load(text) == expected, text
    assert load_yaml(text) == expected, text


YAMLISH = st.text(alphabet=st.sampled_from(list("ab1:-#'\" \n\t[]{}!&*|>?%@`,.~0xeyoN+_=<\\é\r")), max_size=40)


@settings(max_examples=1500, deadline=None)
@given(text=YAMLISH)
def test_any_text_is_either_refused_or_read_exactly_as_pyyaml_reads_it(text: str) -> None:
    try:
        ours = load_yaml(text)
    except ConfigError as err:
        assert re.match(r"<string>:\d+:\d+: ", str(err)), err
        return
    theirs = yaml.safe_load(text)
    assert ours == theirs or (ours != ours and theirs != theirs), (text, ours, theirs)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_mutated_guide_examples_are_either_refused_or_read_as_pyyaml_reads_them(data: st.DataObject) -> None:
    text = GUIDE_EXAMPLE
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete"]))
        if action == "insert":
            text = text[:position] + data.draw(st.sampled_from(list(" -:#'\"\n\t[{&*!|>?yes0"))) + text[position:]
        else:
            text = text[:position] + text[position + 1 :]
    try:
        ours = load_yaml(text)
    except ConfigError:
        return
    assert ours == yaml.safe_load(text), text


def test_error_messages_name_the_real_file(tmp_path: Path) -> None:
    path = tmp_path / "health-checks.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}:2:11: flow")):
        load_yaml("checks:\n  - name: [x]\n", str(path))
