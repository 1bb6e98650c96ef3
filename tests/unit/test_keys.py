"""orchat.keys: reading the key, rewriting the config, remembering age and the previous key."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from orchat import keys
from orchat.config import load_settings, parse_config_file
from orchat.errors import ConfigError, StorageError
from tests.fakes.openrouter import TEST_KEY

NEW_KEY = "sk-or-v1-" + "b" * 64


def no_prompt(text: str) -> str:
    raise AssertionError("must not prompt when stdin is not a terminal")


def test_read_key_takes_the_first_line_of_stdin_when_it_is_not_a_terminal():
    assert keys.read_key(io.StringIO(f"  {TEST_KEY}\nignored\n"), False, no_prompt) == TEST_KEY


def test_read_key_prompts_without_echo_at_a_terminal():
    prompts = []
    assert keys.read_key(io.StringIO(""), True, lambda text: prompts.append(text) or NEW_KEY) == NEW_KEY
    assert prompts == ["API key (input hidden): "]


@pytest.mark.parametrize(("given", "message"), [("\n", "no key given"), ("sk-or one\n", "whitespace")])
def test_read_key_refuses_empty_or_spaced_keys(given, message):
    with pytest.raises(ConfigError, match=message):
        keys.read_key(io.StringIO(given), False, no_prompt)


def test_with_key_copies_settings_with_another_key():
    settings = load_settings(environ={"OPENROUTER_API_KEY": TEST_KEY})
    changed = keys.with_key(settings, NEW_KEY)
    assert changed.api_key == NEW_KEY and settings.api_key == TEST_KEY and changed.values is settings.values


def test_fingerprint_is_short_stable_and_not_the_key():
    assert keys.fingerprint(TEST_KEY) == keys.fingerprint(TEST_KEY)
    assert len(keys.fingerprint(TEST_KEY)) == 16 and keys.fingerprint(TEST_KEY) not in TEST_KEY
    assert keys.fingerprint(TEST_KEY) != keys.fingerprint(NEW_KEY)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", f"{NEW_KEY}\n"),
        (f"{TEST_KEY}\n", f"{NEW_KEY}\n"),
        (f"# mine\nORCHAT_MODEL=x\n{TEST_KEY}\nORCHAT_TITLE=t", f"# mine\nORCHAT_MODEL=x\n{NEW_KEY}\nORCHAT_TITLE=t\n"),
        (f"export OPENROUTER_API_KEY={TEST_KEY}\nORCHAT_MODEL=x\n", f"{NEW_KEY}\nORCHAT_MODEL=x\n"),
        (f"ORCHAT_API_KEY='{TEST_KEY}'\n{TEST_KEY}\n", f"{NEW_KEY}\n"),
        ("ORCHAT_MODEL=x\n\n", f"ORCHAT_MODEL=x\n\n{NEW_KEY}\n"),
    ],
)
def test_replace_key_line_swaps_only_the_key_and_keeps_everything_else(before, after):
    assert keys.replace_key_line(before, NEW_KEY) == after


def test_write_key_writes_the_user_config_atomically_at_0600_and_config_reads_it_back(home):
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(f"ORCHAT_MODEL=openai/gpt-4o-mini\n{TEST_KEY}\n")
    config.chmod(0o644)
    assert keys.write_key(NEW_KEY) == config
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    pairs, key, warnings = parse_config_file(config)
    assert key == NEW_KEY and pairs == {"ORCHAT_MODEL": "openai/gpt-4o-mini"} and warnings == []


def test_write_key_reports_an_unreadable_config(tmp_path: Path):
    target = tmp_path / "config"
    target.write_bytes(b"\xff\xfe")
    with pytest.raises(StorageError, match="cannot read"):
        keys.write_key(NEW_KEY, target)


def test_key_age_is_known_only_for_the_key_that_was_recorded(home):
    assert keys.key_age_days(TEST_KEY, 1000.0) is None
    keys.save_key_state(TEST_KEY, 1000.0)
    state = home / ".local" / "state" / "orchat" / keys.STATE_FILE
    assert TEST_KEY not in state.read_text() and oct(state.stat().st_mode & 0o777) == "0o600"
    assert keys.key_age_days(TEST_KEY, 1000.0 + 45 * 86400) == 45
    assert keys.key_age_days(TEST_KEY, 0.0) == 0
    assert keys.key_age_days(NEW_KEY, 1000.0) is None


def test_a_damaged_state_file_is_a_storage_error_and_a_wrong_shape_is_ignored(home):
    state = home / ".local" / "state" / "orchat" / keys.STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    with pytest.raises(StorageError):
        keys.key_age_days(TEST_KEY, 0.0)
    state.write_text("[1, 2]")
    assert keys.key_age_days(TEST_KEY, 0.0) is None


def test_previous_key_is_kept_0600_then_forgotten(home):
    assert keys.load_previous() is None
    assert keys.forget_previous() is False
    keys.keep_previous(TEST_KEY, 500.0)
    kept = home / ".local" / "state" / "orchat" / keys.PREVIOUS_FILE
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    assert keys.load_previous() == {"key": TEST_KEY, "replaced_at": 500.0}
    assert keys.forget_previous() is True
    assert not kept.exists()


def test_a_previous_key_file_of_the_wrong_shape_is_ignored(home):
    kept = home / ".local" / "state" / "orchat" / keys.PREVIOUS_FILE
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"key": 5}))
    assert keys.load_previous() is None


def test_forget_previous_reports_a_file_it_cannot_delete(home, monkeypatch):
    keys.keep_previous(TEST_KEY, 1.0)

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(StorageError, match="cannot delete"):
        keys.forget_previous()
