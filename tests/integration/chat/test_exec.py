"""`orchat -e` driven through a real pseudo-terminal: each menu choice, the `yes` gate, exit status,
signals, and no run without a terminal; plus --explain and -x."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from orchat.chat.roles import SHELL_ROLE, parse_role
from tests.conftest import REPO, run_orchat
from tests.fakes.openrouter import PROSE_ANSWER, FakeOpenRouter
from tests.ptyterm import PtyRun

MENU = b"[a]bort (default) "


def history_records(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / ".orchat_history").read_text().splitlines()]


def exec_record(home: Path) -> dict:
    records = [r for r in history_records(home) if r.get("kind") == "exec"]
    assert len(records) == 1, records
    return records[0]


def exec_metrics(home: Path) -> dict[str, float]:
    return json.loads((home / ".local" / "state" / "orchat" / "metrics.json").read_text())["exec"]


def marker_command(marker: Path, status: int = 0) -> str:
    return f"touch {shlex.quote(str(marker))}; exit {status}"


@pytest.fixture
def marker(fake_openrouter: FakeOpenRouter, tmp_path: Path) -> Path:
    """A file that exists only if the proposed command (the fake's answer) ran."""
    path = tmp_path / "ran"
    fake_openrouter.command = marker_command(path)
    return path


def test_run_executes_the_command_with_the_users_shell_and_passes_its_exit_status_through(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    fake_openrouter.command = f'touch {shlex.quote(str(marker))}; echo "shell=$0"; exit 3'
    env = dict(api_env, ORCHAT_AUDIT_LOG="1", SHELL="/bin/bash")
    term = PtyRun(env, "-m", "fake/cmd-fenced", "-e", "create the marker")
    shown = term.read_until(MENU)
    assert b"touch " in shown and not marker.exists()
    term.send("r")
    assert b"shell=/bin/bash" in term.read_until(b"shell=/bin/bash")
    assert term.wait() == 3
    assert marker.exists()
    record = exec_record(home)
    assert (record["command"], record["choices"], record["exit_status"]) == (fake_openrouter.command, ["run"], 3)
    audit = (home / ".local" / "state" / "orchat" / "audit.log").read_text().splitlines()
    assert [line.split(" | ")[2:5] for line in audit if " | exec | " in line] == [["exec", fake_openrouter.command, "exit=3"]]
    assert exec_metrics(home)["run"] == 1
    listed = run_orchat("history", "list").stdout.splitlines()
    assert listed[-1].split("  ")[3:] == ["exec", "fake/cmd-fenced", f"[run, exit 3] $ {fake_openrouter.command}"[:70]]
    logged = [json.loads(line) for line in (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text().splitlines()]
    assert [(r["message"], r["choice"], r["exit_status"]) for r in logged if r["logger"] == "orchat.chat.execflow"] == [("exec run", "run", 3)]
    assert [r["message"] for r in logged if r["logger"] == "orchat.chat.turn"] == ["chat ok"]  # and the turn, as every chat
    assert all("touch" not in json.dumps(r) for r in logged)  # the command is model text: never logged
    sent = fake_openrouter.chat_requests()[0].body["messages"]
    assert sent[0]["role"] == "system" and "exactly one shell command" in sent[0]["content"]
    facts = sent[1]["content"]
    assert "- shell: /bin/bash" in facts and f"- directory: {REPO}" in facts and "- kernel: Linux " in facts
    assert facts.endswith("request: create the marker")


@pytest.mark.parametrize("key", ["\r", "a", "q"])
def test_enter_a_or_any_other_key_aborts_and_nothing_runs(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, key: str, marker: Path
) -> None:
    term = PtyRun(dict(api_env, ORCHAT_AUDIT_LOG="1"), "-m", "fake/cmd-fenced", "-e", "x")
    term.read_until(MENU)
    term.send(key)
    assert b"not run" in term.read_until(b"not run")
    assert term.wait() == 0
    assert not marker.exists()
    assert exec_record(home)["choices"] == ["abort"]
    assert (home / ".local" / "state" / "orchat" / "audit.log").read_text().count("| exec |") == 1
    assert " | aborted | " in (home / ".local" / "state" / "orchat" / "audit.log").read_text()
    assert exec_metrics(home)["abort"] == 1


def test_edit_offers_the_command_prefilled_then_runs_the_edited_one(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    fake_openrouter.command = marker_command(first)
    piped = tmp_path / "piped"
    piped.write_text("context\n")  # stdin is a file, not the terminal: readline must still edit on it
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "x", stdin=piped)
    term.read_until(MENU)
    term.send("e")
    term.read_until(b"edit> ")
    assert fake_openrouter.command.encode() in term.read_until(fake_openrouter.command.encode())  # pre-filled
    term.send("\x01\x0b" + marker_command(second, 5) + "\r")  # Ctrl-A, Ctrl-K: replace the line
    again = term.read_until(MENU)
    assert marker_command(second, 5).encode() in again
    term.send("r")
    assert term.wait() == 5
    assert second.exists() and not first.exists()
    assert exec_record(home)["choices"] == ["edit", "run"]
    assert exec_metrics(home)["edit"] == exec_metrics(home)["run"] == 1


def test_explain_streams_the_explanation_to_the_terminal_escaped_then_shows_the_menu_again(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, marker: Path
) -> None:
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "x")
    term.read_until(MENU)
    term.send("x")
    explained = term.read_until(MENU)
    assert b"EXPLANATION of the command: \\x1b[2Jeach part" in explained
    assert b"\x1b[2J" not in explained
    term.send("a")
    assert term.wait() == 0
    assert not marker.exists()
    assert fake_openrouter.chat_requests()[-1].body["messages"][-1]["content"].startswith("Explain this command line")
    assert exec_record(home)["choices"] == ["explain", "abort"]


def test_copy_sends_the_command_with_osc_52_and_runs_nothing(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, marker: Path
) -> None:
    term = PtyRun(dict(api_env, TERM="screen"), "-m", "fake/cmd-fenced", "-e", "x")
    term.read_until(MENU)
    term.send("c")
    osc = b"\x1b]52;c;" + base64.b64encode(fake_openrouter.command.encode()) + b"\x07"
    assert osc in term.read_until(b"may ignore it")
    assert term.wait() == 0
    assert not marker.exists()
    assert exec_record(home)["choices"] == ["copy"]


def test_a_dangerous_command_is_named_in_red_and_runs_only_after_yes_typed_in_full(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, marker: Path
) -> None:
    for answer, ran in (("y", False), ("YES", False), ("yes", True)):
        colour_env = {k: v for k, v in api_env.items() if k != "NO_COLOR"}
        term = PtyRun(dict(colour_env, TERM="xterm"), "-m", "fake/cmd-dangerous", "-e", "install it")
        shown = term.read_until(MENU)
        assert b"\x1b[1;31mWARNING: dangerous command (download piped to a shell)" in shown
        term.send("r")
        term.read_until(b"type yes to run it")
        term.send(answer + "\r")
        assert term.wait() == 0
        assert marker.exists() == ran, answer
    choices = [r["choices"] for r in history_records(home) if r.get("kind") == "exec"]
    assert choices == [["run", "abort"], ["run", "abort"], ["run"]]
    assert (exec_metrics(home)["run"], exec_metrics(home)["abort"]) == (1, 2)


def test_a_multi_line_command_is_shown_whole_and_counts_as_dangerous(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    fake_openrouter.command = "echo first line"
    term = PtyRun(api_env, "-m", "fake/cmd-multiline", "-e", "x")
    shown = term.read_until(MENU)
    assert b"dangerous command (multi-line command)" in shown
    assert b"  echo first line\r\n  echo second line\r\n" in shown
    term.send("r")
    term.read_until(b"type yes")
    term.send("yes\r")
    out = term.read_until(b"second line\r\n")
    assert b"first line" in out
    assert term.wait() == 0


def test_ctrl_c_goes_to_the_running_command_and_orchat_exits_128_plus_the_signal(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path
) -> None:
    fake_openrouter.command = "echo started; sleep 60; echo not-reached"
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "x")
    term.read_until(MENU)
    term.send("r")
    term.read_until(b"started")
    term.send("\x03")  # through the terminal driver: SIGINT to the foreground group
    assert term.wait() == 130
    assert term.all.count(b"not-reached") == 1 and b"orchat: error" not in term.all  # once: where the command is shown
    assert exec_record(home)["exit_status"] == 130


def test_sigterm_to_orchat_stops_the_running_command_too_and_exits_143(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    fake_openrouter.command = f"echo $$ > {shlex.quote(str(pid_file))}; echo started; exec sleep 60"
    term = PtyRun(dict(api_env, ORCHAT_AUDIT_LOG="1"), "-m", "fake/cmd-fenced", "-e", "x")
    term.read_until(MENU)
    term.send("r")
    term.read_until(b"started")
    os.kill(term.pid, signal.SIGTERM)
    assert term.wait() == 143
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z", stat.read_text()  # the command did not outlive orchat
    assert exec_record(home)["choices"] == ["run"] and exec_record(home)["exit_status"] is None
    assert " | terminated | " in (home / ".local" / "state" / "orchat" / "audit.log").read_text()


def test_ctrl_c_at_the_menu_aborts_with_130_and_records_the_abort(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, marker: Path) -> None:
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "x")
    term.read_until(MENU)
    term.send("\x03")
    assert term.wait() == 130
    assert not marker.exists()
    assert exec_record(home)["choices"] == ["abort"]


def test_a_command_ended_by_a_signal_gives_128_plus_n(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    fake_openrouter.command = "kill -TERM $$"
    term = PtyRun(api_env, "-m", "fake/cmd-bare", "-e", "x")
    term.read_until(MENU)
    term.send("r")
    assert term.wait() == 128 + signal.SIGTERM
    assert exec_record(home)["exit_status"] == 143


def test_stdin_piped_in_goes_to_the_model_while_the_menu_reads_the_terminal(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, marker: Path
) -> None:
    piped = tmp_path / "piped"
    piped.write_text("Permission denied: /var/log/app.log\n")
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "fix this", stdin=piped)
    term.read_until(MENU)
    term.send("r")
    assert term.wait() == 0
    assert marker.exists()
    assert "input:\nPermission denied: /var/log/app.log\n\nrequest: fix this" in fake_openrouter.chat_requests()[0].body["messages"][1]["content"]


def test_a_pipe_never_executes_even_with_a_terminal_present(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, marker: Path
) -> None:
    out = tmp_path / "out"
    pipeline = f"{shlex.quote(sys.executable)} -m orchat -m fake/cmd-fenced -e 'make the marker' </dev/null | cat > {shlex.quote(str(out))}"
    term = PtyRun(api_env, argv=["/bin/sh", "-c", pipeline])
    term.send("r\ryes\r")  # keys waiting on the terminal must not be taken as a choice
    assert term.wait() == 0
    assert out.read_text() == fake_openrouter.command + "\n"
    assert MENU not in term.all
    assert not marker.exists()
    assert exec_record(home)["choices"] == ["print"]
    assert exec_metrics(home)["print"] == 1


def test_without_a_controlling_terminal_or_with_print_the_command_is_printed_and_nothing_runs(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path, marker: Path
) -> None:
    proc = run_orchat("-m", "fake/cmd-bare", "-e", "x")  # run_orchat: no controlling terminal at all
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, fake_openrouter.command + "\n", "")
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "--print", "x")
    term.send("r\r")
    assert term.wait() == 0
    assert fake_openrouter.command.encode() + b"\r\n" in term.all and MENU not in term.all
    assert not marker.exists()


def test_control_characters_in_a_proposed_command_are_shown_escaped(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.command = "echo \x1b]0;pwned\x07hi\x1b[2J"
    term = PtyRun(api_env, "-m", "fake/cmd-fenced", "-e", "x")
    shown = term.read_until(MENU)
    assert b"echo \\x1b]0;pwned\\x07hi\\x1b[2J" in shown
    assert b"\x1b]0;" not in shown and b"\x1b[2J" not in shown
    term.send("a")
    assert term.wait() == 0
    printed = run_orchat("-m", "fake/cmd-fenced", "-e", "x")
    assert printed.stdout == "echo \\x1b]0;pwned\\x07hi\\x1b[2J\n"


def test_prose_is_asked_again_once_then_refused_with_76_and_the_text_on_stderr(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fixed = run_orchat("-m", "fake/cmd-reask", "-e", "x")
    assert (fixed.returncode, fixed.stdout) == (0, fake_openrouter.command + "\n")
    assert fake_openrouter.chat_requests()[-1].body["messages"][-1]["content"].startswith("Answer again with exactly one")
    for scenario in ("cmd-prose", "cmd-two-blocks"):
        before = len(fake_openrouter.chat_requests())
        proc = run_orchat("-m", f"fake/{scenario}", "-e", "x")
        assert (proc.returncode, proc.stdout) == (76, ""), proc.stderr
        assert len(fake_openrouter.chat_requests()) - before == 2
        assert proc.stderr.splitlines()[-1] == "orchat: error: the model did not answer with one command, even when asked again (its answer is above)"
    assert PROSE_ANSWER.splitlines()[0] in run_orchat("-m", "fake/cmd-prose", "-e", "x").stderr


def test_explain_flag_explains_an_argument_or_a_piped_command_on_stdout_and_runs_nothing(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("-m", "fake/cmd-fenced", "--explain", "tar -xzf a.tgz")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("EXPLANATION of the command")
    assert "```sh\ntar -xzf a.tgz\n```" in fake_openrouter.chat_requests()[-1].body["messages"][-1]["content"]
    piped = run_orchat("-m", "fake/cmd-fenced", "--explain", input="  1042  find . -name '*.pyc' -delete\n")
    assert piped.returncode == 0
    assert "find . -name '*.pyc' -delete" in fake_openrouter.chat_requests()[-1].body["messages"][-1]["content"]
    assert run_orchat("--explain", "-e", "x").returncode == 2
    assert run_orchat("--print", "x").returncode == 2


def test_code_flag_prints_only_the_fenced_blocks_in_order_or_exits_65_with_the_text_on_stderr(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.answer = "Put this in site.conf:\n```nginx\nserver {\n  listen 80;\n}\n```\nand this:\n```\nlocation / { }\n```\nDone."
    proc = run_orchat("-x", "nginx block")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "server {\n  listen 80;\n}\nlocation / { }\n", "")
    fake_openrouter.answer = "No code needed, \x1b[31mjust restart it."
    none = run_orchat("--code", "q")
    assert (none.returncode, none.stdout) == (65, "")
    assert "No code needed, \\x1b[31mjust restart it." in none.stderr
    assert none.stderr.endswith("orchat: error: the answer has no fenced code block (its text is above)\n")
    assert run_orchat("-x", "--json", "q").returncode == 2


def test_repl_run_confirms_then_adds_the_capped_output_and_status_to_the_conversation(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    term = PtyRun(dict(api_env, ORCHAT_MAX_INPUT_BYTES="2000"), "-m", "fake/echo")
    term.read_until(b"orchat> ")
    term.send(f"/run {marker_command(marker)}\r")
    term.read_until(b"run it? [y/N] ")
    term.send("\r")
    term.read_until(b"not run")
    assert not marker.exists()
    term.send("/run echo hello; exit 4\r")
    term.read_until(b"run it? [y/N] ")
    term.send("y\r")
    assert b"hello" in term.read_until(b"[exit status 4;")
    term.send("/run yes | head -c 5000\r")
    term.read_until(b"run it? [y/N] ")
    term.send("y\r")
    term.read_until(b"[exit status 0;")
    term.send("/run kill -9 -1\r")
    term.read_until(b"type yes to run it")
    term.send("no\r")
    term.read_until(b"not run")
    term.send("what happened?\r")
    term.read_until(b"echo: what happened?")
    term.send("/exit\r")
    assert term.wait() == 0
    messages = fake_openrouter.chat_requests()[-1].body["messages"]
    assert messages[0]["content"] == "$ echo hello; exit 4\nhello\n[exit status 4]"
    capped = messages[1]["content"]
    assert capped.startswith("$ yes | head -c 5000\ny\ny\n") and capped.endswith("[output cut at 2000 bytes (ORCHAT_MAX_INPUT_BYTES)]\n[exit status 0]")
    assert len(capped) < 2200
    assert [r["choices"] for r in history_records(home) if r.get("kind") == "exec"] == [["abort"], ["run"], ["run"], ["abort"]]


def test_repl_exec_runs_the_whole_flow_inside_the_conversation(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path, marker: Path
) -> None:
    term = PtyRun(api_env, "-m", "fake/cmd-fenced")
    term.read_until(b"orchat> ")
    term.send("/exec make the marker\r")
    term.read_until(MENU)
    term.send("r")
    term.read_until(b"orchat> ")
    assert marker.exists()
    term.send("/exit\r")
    assert term.wait() == 0
    sent = fake_openrouter.chat_requests()[0].body["messages"]
    assert sent[0]["role"] == "user" and sent[0]["content"].startswith("You turn a request into exactly one shell command")
    assert exec_record(home)["choices"] == ["run"]


def test_the_role_file_replaces_the_built_in_shell_prompt(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path) -> None:
    system_roles = Path(os.environ["ORCHAT_SYSCONFDIR"]) / "roles"
    system_roles.mkdir(parents=True)
    (system_roles / "shell.md").write_text("system role\n")
    run_orchat("-m", "fake/cmd-bare", "-e", "x")
    assert fake_openrouter.chat_requests()[-1].body["messages"][0]["content"] == "system role"
    user_roles = home / ".config" / "orchat" / "roles"
    user_roles.mkdir(parents=True)
    (user_roles / "shell.md").write_text("user role\n")
    run_orchat("-m", "fake/cmd-bare", "-e", "x")
    assert fake_openrouter.chat_requests()[-1].body["messages"][0]["content"] == "user role"
    shipped = REPO / "etc" / "orchat" / "roles" / "shell.md"
    assert parse_role("shell", str(shipped), shipped.read_text()).prompt == SHELL_ROLE
