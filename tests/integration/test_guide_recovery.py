"""The operations guide's disaster recovery, its four steps as written, on an empty HOME (issue 13 item 1).

Step 1's URL is served from 127.0.0.1 (install.sh and the release tarball of this checkout); the
rest runs verbatim as an unprivileged user, whose install lands in ~/.local.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool, run_orchat
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.integration.test_install import QuietHandler, dist, world_readable_dir  # noqa: F401 - fixtures: `make dist`, a dir nobody can enter

NOBODY = 65534
GUIDE_STEPS = [
    "curl -fsSL {server}/install.sh | bash",
    "cp -r ~/backup/orchat/config-latest/* ~/.config/orchat/",
    "cp ~/backup/orchat/history-latest ~/.orchat_history",
    "orchat health-check --full",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_backup(old_home: Path, new_home: Path, fake: FakeOpenRouter) -> None:
    """Back up an old host's config and history the guide's way, into NEW_HOME/backup/orchat/*-latest."""
    config = old_home / ".config" / "orchat"
    config.mkdir(parents=True, mode=0o700)
    (config / "config").write_text(f"{TEST_KEY}\nORCHAT_API_BASE={fake.url}\nORCHAT_MODEL=fake/echo\n")
    (config / "config").chmod(0o600)
    env = dict(os.environ, HOME=str(old_home), XDG_CONFIG_HOME=str(old_home / ".config"))
    assert run_orchat("before the disaster", env=env).returncode == 0
    backup = new_home / "backup" / "orchat"
    backup.mkdir(parents=True)
    shutil.copytree(config, backup / "config-latest")
    shutil.copy(old_home / ".orchat_history", backup / "history-latest")


def test_the_guides_four_recovery_steps_work_as_written_on_an_empty_home(
    dist: Path,  # noqa: F811 - the fixture imported above
    world_readable_dir: Path,  # noqa: F811
    fake_openrouter: FakeOpenRouter,
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    require_tool("curl")
    setpriv = require_tool("setpriv")
    www = world_readable_dir / "www"
    www.mkdir()
    for name in (dist.name, dist.name + ".sha256"):
        shutil.copy(dist.parent / name, www / name)
    shutil.copy(REPO / "install.sh", www / "install.sh")
    home = world_readable_dir / "home"
    home.mkdir()
    make_backup(tmp_path / "old-home", home, fake_openrouter)
    etc = world_readable_dir / "etc-orchat"  # no system-wide checks file: this is a user's recovery
    etc.mkdir()
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True)
    server = serve(www)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        "HOME": str(home),
        "PATH": f"{home}/.local/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "ORCHAT_RELEASE_URL": f"{url}/{dist.name}",  # what the published install.sh fetches
        "ORCHAT_SYSCONFDIR": str(etc),
        "ORCHAT_METRICS_PORT": str(free_port()),  # no daemon here: the Daemon check says "Not running (optional)"
        **{name: "100" for name in ("ORCHAT_MEMORY_WARN", "ORCHAT_MEMORY_CRIT", "ORCHAT_DISK_WARN", "ORCHAT_DISK_CRIT")},  # this host's load is not under test
    }
    try:
        outputs = []
        for step in GUIDE_STEPS:
            proc = subprocess.run(
                [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "bash", "-c", step.format(server=url)],
                cwd=str(home),
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            outputs.append(proc)
            assert proc.returncode == 0, f"{step}: {proc.stdout}{proc.stderr}"
            if step.startswith("curl"):
                assert oct((home / ".config" / "orchat").stat().st_mode & 0o777) == "0o700"
    finally:
        server.shutdown()
        server.server_close()
    health = outputs[-1].stdout.splitlines()
    assert health and all(line.startswith("[OK] ") for line in health), outputs[-1].stdout
    assert "[OK] Key: Valid" in outputs[-1].stdout and "[OK] History: Readable (1 records" in outputs[-1].stdout
    # The restored history is the one `orchat -c` continues.
    again = subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "orchat", "-c", "after it"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (again.returncode, again.stdout) == (0, "echo: after it\n"), again.stderr
    assert [m["content"] for m in fake_openrouter.chat_requests()[-1].body["messages"]] == ["before the disaster", "echo: before the disaster", "after it"]


def test_the_first_run_of_orchat_creates_the_config_directory_private(home: Path) -> None:
    assert not (home / ".config").exists()
    proc = run_orchat("--help")
    assert proc.returncode == 0, proc.stderr
    assert oct((home / ".config" / "orchat").stat().st_mode & 0o777) == "0o700"


def test_a_system_mode_run_leaves_home_alone(home: Path) -> None:
    proc = run_orchat("--help", env=dict(os.environ, ORCHAT_SYSTEM="1"))
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".config").exists()
