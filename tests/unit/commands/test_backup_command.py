"""`orchat backup ...` in process: output contract, exit codes, audit records, broken config."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from orchat.cli import main
from orchat.errors import StorageError

KEY = "sk-or-v1-" + "c" * 40


@pytest.fixture
def user(home: Path) -> Path:
    config = home / ".config" / "orchat"
    config.mkdir(parents=True)
    (config / "config").write_text(f"{KEY}\n")
    (config / "config").chmod(0o600)
    (home / ".orchat_history").write_text('{"id":"1"}\n')
    return home


@pytest.fixture
def audit_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    calls: list[tuple[str, str, str]] = []
    fake = types.ModuleType("orchat.telemetry.audit")
    fake.record_event = lambda settings, command, resource, status: calls.append((command, resource, status))  # type: ignore[attr-defined]
    fake.audit_path = lambda settings: Path("/nonexistent/audit.log")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "orchat.telemetry.audit", fake)
    return calls


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["backup", *args])
    out, err = capsys.readouterr()
    assert KEY not in out and KEY not in err
    return code, out, err


def test_create_prints_the_archive_path_on_stdout_and_a_summary_on_stderr(user: Path, capsys: pytest.CaptureFixture[str], audit_calls: list) -> None:
    code, out, err = run(capsys, "create")
    assert code == 0
    path = Path(out.strip())
    assert path.is_file() and path.parent == user / "backup" / "orchat"
    assert "2 files" in err and "(config, history)" in err
    assert audit_calls == [("backup-create", path.name[len("orchat-") : -len(".tar.gz")], "OK")]


def test_create_output_puts_the_archive_in_another_directory(user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "create", "--full", "--output", str(tmp_path / "usb"))
    assert code == 0 and Path(out.strip()).parent == tmp_path / "usb"
    assert (tmp_path / "usb" / "config-latest" / "config").is_file()


def test_list_shows_id_time_size_kind_and_files_and_marks_unreadable_archives_then_exits_65(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "create")
    run(capsys, "create", "--full")
    code, out, _ = run(capsys, "list")
    assert code == 0 and len(out.splitlines()) == 2
    (user / "backup" / "orchat" / "orchat-20990101T000000Z.tar.gz").write_bytes(b"junk")
    code, out, err = run(capsys, "list")
    lines = out.splitlines()
    assert code == 65 and len(lines) == 3
    assert lines[0].split()[3:] == ["basic", "2", "files"] and lines[1].split()[3] == "full"
    assert lines[2].startswith("20990101T000000Z") and "unreadable" in lines[2]
    assert err.count("\n") == 1 and "1 archive unreadable" in err and "orchat-20990101T000000Z.tar.gz" in err


def test_verify_latest_checks_the_archive_and_the_plain_copies(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, first, _ = run(capsys, "create")
    run(capsys, "create")
    code, out, _ = run(capsys, "verify")
    assert code == 0 and " OK: 2 files, sha256 " in out and "config-latest and history-latest match it" in out
    code, out, _ = run(capsys, "verify", Path(first.strip()).name)
    assert code == 0 and "config-latest" not in out


def test_verify_exits_65_with_one_line_for_a_corrupt_archive(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "create")
    path = Path(out.strip())
    path.write_bytes(path.read_bytes()[:-10])
    code, out, err = run(capsys, "verify", "latest")
    assert code == 65 and out == ""
    assert err.count("\n") == 1 and err.startswith("orchat: error: ") and "sha256 mismatch" in err


def test_verify_and_restore_of_an_unknown_id_exit_65(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "verify", "latest")[0] == 65
    assert run(capsys, "restore", "20990101T000000Z")[0] == 65


def test_prune_prints_what_it_removed(user: Path, capsys: pytest.CaptureFixture[str], audit_calls: list) -> None:
    import os
    import time

    _, old, _ = run(capsys, "create")
    run(capsys, "create")
    past = time.time() - 45 * 86400
    os.utime(old.strip(), (past, past))
    code, out, err = run(capsys, "prune", "--keep-days", "30")
    assert code == 0 and out.strip() == old.strip()
    assert "pruned 1 archives older than 30 days; 1 kept" in err
    assert audit_calls[-1] == ("backup-prune", str(user / "backup" / "orchat"), "OK")


def test_restore_dry_run_restore_and_undo_report_each_component(user: Path, capsys: pytest.CaptureFixture[str], audit_calls: list) -> None:
    run(capsys, "create")
    config = user / ".config" / "orchat" / "config"
    config.write_text("broken line with spaces\n")
    code, out, err = run(capsys, "restore", "latest", "--dry-run")
    assert code == 0 and "would replace config" in out and "dry run, nothing changed" in err
    assert "warning:" in err and "using defaults and the environment" in err
    assert config.read_text() == "broken line with spaces\n"
    code, out, err = run(capsys, "restore", "latest")
    assert code == 0 and f"replace config {config.parent} (1 file)" in out and "restore --undo" in err
    assert config.read_text() == f"{KEY}\n"
    code, out, err = run(capsys, "restore", "--undo")
    assert code == 0 and config.read_text() == "broken line with spaces\n"
    assert [c[0] for c in audit_calls[-2:]] == ["backup-restore", "backup-restore"]
    assert audit_calls[-1][1].startswith("undo:") and audit_calls[-1][2] == "OK"


@pytest.mark.parametrize("args", [["restore"], ["restore", "latest", "--undo"], ["prune", "--keep-days", "-1"], []])
def test_usage_errors_exit_2(user: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert run(capsys, *args)[0] == 2


def test_a_failed_create_is_audited_with_its_failure_type(
    user: Path, capsys: pytest.CaptureFixture[str], audit_calls: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchat.backup import snapshot as backup

    def fail(*args: Any, **kwargs: Any) -> None:
        raise StorageError("cannot write backup: disk full")

    monkeypatch.setattr(backup, "create_backup", fail)
    code, _, err = run(capsys, "create")
    assert code == 74 and "disk full" in err
    assert audit_calls == [("backup-create", str(user / "backup" / "orchat"), "FAILED:io")]


def test_an_audit_failure_is_a_warning_not_a_failed_backup(user: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("orchat.telemetry.audit")

    def broken(*args: Any) -> None:
        raise StorageError("cannot write the audit log /x: read-only")

    fake.record_event = broken  # type: ignore[attr-defined]
    fake.audit_path = lambda settings: Path("/x")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "orchat.telemetry.audit", fake)
    code, _, err = run(capsys, "create")
    assert code == 0 and "warning: audit record not written" in err


def test_backups_work_without_an_audit_module(user: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orchat.telemetry.audit", None)
    assert run(capsys, "create")[0] == 0
    monkeypatch.setitem(sys.modules, "orchat.telemetry.audit", types.ModuleType("orchat.telemetry.audit"))
    assert run(capsys, "create")[0] == 0


def test_an_invalid_environment_value_falls_back_to_the_default(user: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_MAX_HISTORY", "lots")
    code, _, err = run(capsys, "create")
    assert code == 0 and "invalid ORCHAT_MAX_HISTORY" in err


def test_help_documents_files_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "config-latest/" in out and "65 corrupt" in out and "74 I/O" in out and "create" in out and "restore" in out
