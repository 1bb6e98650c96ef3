"""scripts/llama_server.py without a model: config shape, pid-file safety, clear errors."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.demo_support import llama_server


def test_server_config_queues_requests_on_loopback_with_a_small_context() -> None:
    config = llama_server.server_config(Path("/m.gguf"), 8123)
    assert (config["host"], config["port"], config["interrupt_requests"]) == ("127.0.0.1", 8123, False)
    (model,) = config["models"]
    assert model["model"] == "/m.gguf"
    assert model["model_alias"] == "smollm2-135m"
    assert (model["n_ctx"], model["n_threads"], model["n_threads_batch"]) == (2048, 2, 2)


def test_free_port_returns_a_port_that_can_be_bound_on_loopback() -> None:
    port = llama_server.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


def test_find_model_names_make_demo_venv_when_the_venv_is_missing(tmp_path: Path) -> None:
    with pytest.raises(llama_server.ServerError, match="make demo-venv"):
        llama_server.find_model(tmp_path / "no-venv")


def test_stop_leaves_a_pid_that_is_not_a_llama_server_alone(tmp_path: Path) -> None:
    # A stale pid file whose pid now belongs to another process (here: this test) must not kill it.
    (tmp_path / llama_server.PID_FILE).write_text(f"{os.getpid()}\n")
    assert llama_server.stop_from_pid_file(tmp_path) is False
    assert not (tmp_path / llama_server.PID_FILE).exists()


def test_stop_without_a_pid_file_does_nothing(tmp_path: Path) -> None:
    assert llama_server.stop_from_pid_file(tmp_path) is False


def test_command_line_reports_a_missing_venv_in_one_line_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert llama_server.main(["--venv", str(tmp_path / "none"), "start", "--dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llama_server: error: ") and err.count("\n") == 1
