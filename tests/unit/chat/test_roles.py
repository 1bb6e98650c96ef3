"""Role files: lookup order, header lines, flags over headers, and malformed files (exit 78)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchat.chat import roles
from orchat.errors import ConfigError, UsageError


@pytest.fixture
def role_dirs(home: Path) -> tuple[Path, Path]:
    user = home / ".config" / "orchat" / "roles"
    system = Path(os.environ["ORCHAT_SYSCONFDIR"]) / "roles"
    user.mkdir(parents=True)
    system.mkdir(parents=True)
    return user, system


def test_the_users_role_file_wins_over_the_systems_then_the_built_in(role_dirs: tuple[Path, Path]) -> None:
    user, system = role_dirs
    assert roles.load_role_prompt("shell") == roles.SHELL_ROLE
    (system / "shell.md").write_text("system\n")
    assert roles.load_role_prompt("shell") == "system"
    (user / "shell.md").write_text("  \n")  # blank: counts as absent
    assert roles.load_role_prompt("shell") == "system"
    (user / "shell.md").write_text("user\n")
    assert roles.load_role_prompt("shell") == "user"


def test_header_lines_end_at_the_first_blank_line() -> None:
    role = roles.parse_role(
        "logs", "logs.md", "description: find the cause\nmodel: a/b\ntemperature: 0.2\nmax_tokens: 500\n\nRead logs.\nmodel: not a header\n"
    )
    assert role.prompt == "Read logs.\nmodel: not a header"
    assert role.description == "find the cause"
    assert role.settings() == {"ORCHAT_MODEL": "a/b", "ORCHAT_TEMPERATURE": 0.2, "ORCHAT_MAX_TOKENS": 500}


def test_a_file_without_a_header_is_all_prompt() -> None:
    assert roles.parse_role("x", "x.md", "You review configs.\nBe brief: really.\n").prompt == "You review configs.\nBe brief: really."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: a/b\ntemprature: 1\n\nprompt", r"x.md:2: unknown header key 'temprature'"),
        ("temperature: hot\n\nprompt", r"x.md:1: temperature must be a number from 0 to 2, not 'hot'"),
        ("temperature: 3\n\nprompt", r"x.md:1: temperature must be a number from 0 to 2"),
        ("max_tokens: 0\n\nprompt", r"x.md:1: max_tokens must be a whole number of at least 1"),
        ("model: a\nno colon here\n\nprompt", r"x.md:2: not a `key: value` header line"),
        ("model: a\nmodel: b\n\nprompt", r"x.md:2: model is set twice"),
        ("model: a\n\n  \n", r"x.md:2: the role has no system prompt"),
    ],
)
def test_a_malformed_role_file_is_a_config_error_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        roles.parse_role("x", "x.md", text)
    assert err.value.exit_code == 78


def test_invalid_utf8_in_a_role_file_names_the_line(role_dirs: tuple[Path, Path]) -> None:
    (role_dirs[0] / "bad.md").write_bytes(b"one\ntwo \xff\n")
    with pytest.raises(ConfigError, match=r"bad.md:2: not valid UTF-8"):
        roles.find_role("bad")


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b", "x" * 65, ""])
def test_a_role_name_that_is_not_a_plain_file_name_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="bad role name"):
        roles.find_role(name)


def test_a_missing_role_says_where_it_looked(role_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError, match=r"no role 'nope': there is no .*/roles/nope.md or .*/roles/nope.md"):
        roles.require_role("nope")


def test_list_roles_merges_directories_user_first_and_keeps_built_ins(role_dirs: tuple[Path, Path]) -> None:
    user, system = role_dirs
    (system / "logs.md").write_text("description: system logs\n\nA")
    (user / "logs.md").write_text("description: my logs\n\nB")
    (system / "review.md").write_text("description: review\n\nC")
    (system / "notes.txt").write_text("not a role")
    listed = {role.name: (role.description, role.source) for role in roles.list_roles()}
    assert listed == {
        "explain": ("", "built-in"),
        "logs": ("my logs", str(user / "logs.md")),
        "review": ("review", str(system / "review.md")),
        "shell": ("", "built-in"),
    }


def test_the_shipped_roles_parse_and_describe_themselves() -> None:
    shipped = Path(__file__).resolve().parents[3] / "etc" / "orchat" / "roles"
    names = sorted(path.stem for path in shipped.glob("*.md"))
    assert names == ["explain", "logs", "review", "shell"]
    for name in names:
        role = roles.parse_role(name, name, (shipped / f"{name}.md").read_text())
        assert role.description and role.prompt
    assert roles.parse_role("shell", "", (shipped / "shell.md").read_text()).prompt == roles.SHELL_ROLE
    assert roles.parse_role("explain", "", (shipped / "explain.md").read_text()).prompt == roles.EXPLAIN_ROLE
