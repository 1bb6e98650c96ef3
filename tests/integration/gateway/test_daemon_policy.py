"""Per-token policy through a daemon process: each refusal as the real openai SDK (sync and async) sees it,
the tokens-file grammar at start and at SIGHUP, logs and the audit log."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, request, wait_for, write_tokens

TOKENS = {name: f"{name}-token-" + "x" * 20 for name in ("fast", "rich", "picky", "wordy", "free")}
LINES = [
    f"fast:{TOKENS['fast']} rpm=1",
    f"rich:{TOKENS['rich']} budget=0.000001/day",  # the fake's first answer costs more than this
    f"picky:{TOKENS['picky']} models=openai/*",
    f"wordy:{TOKENS['wordy']} tpm=5",  # the first answer uses more than 5 tokens
    f"free:{TOKENS['free']}",
]
MESSAGES = [{"role": "user", "content": "hi"}]
MODEL = "openai/gpt-4o-mini"


def start_with_policies(daemons: list[DaemonProc], env: dict[str, str], tmp_path: Path, **extra: str) -> DaemonProc:
    tokens = write_tokens(tmp_path / "tokens", LINES)
    daemon = DaemonProc({**env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens), **extra})
    daemons.append(daemon)
    return daemon


def refusal_of(err: Any) -> tuple[int, str, str, str]:
    return err.status_code, err.code, err.type, err.body["message"]


def sync_refusals(openai: Any, port: int) -> dict[str, Any]:
    def client(name: str) -> Any:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKENS[name], max_retries=0)

    seen: dict[str, Any] = {}
    for name in ("fast", "rich", "wordy"):
        client(name).chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as err:
            client(name).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        seen[name] = err.value
    with pytest.raises(openai.PermissionDeniedError) as err:
        client("picky").chat.completions.create(model="anthropic/claude-sonnet-4", messages=MESSAGES)
    seen["picky"] = err.value
    seen["picky_models"] = [m.id for m in client("picky").models.list()]
    with pytest.raises(openai.NotFoundError) as missing:
        client("picky").models.retrieve("anthropic/claude-sonnet-4")
    seen["picky_retrieve"] = missing.value.code
    seen["picky_allowed"] = client("picky").models.retrieve(MODEL).id
    seen["free_models"] = [m.id for m in client("free").models.list()]
    return seen


async def async_refusals(openai: Any, port: int) -> dict[str, Any]:
    def client(name: str) -> Any:
        return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKENS[name], max_retries=0)

    seen: dict[str, Any] = {}
    for name in ("fast", "rich", "wordy"):
        await client(name).chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as err:
            stream = await client(name).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            async for _ in stream:
                pass
        seen[name] = err.value
    with pytest.raises(openai.PermissionDeniedError) as err:
        await client("picky").chat.completions.create(model="anthropic/claude-sonnet-4", messages=MESSAGES)
    seen["picky"] = err.value
    seen["picky_models"] = [m.id async for m in client("picky").models.list()]
    with pytest.raises(openai.NotFoundError) as missing:
        await client("picky").models.retrieve("anthropic/claude-sonnet-4")
    seen["picky_retrieve"] = missing.value.code
    seen["picky_allowed"] = (await client("picky").models.retrieve(MODEL)).id
    seen["free_models"] = [m.id async for m in client("free").models.list()]
    return seen


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_openai_sdk_surfaces_each_refusal_with_its_status_code_type_and_reason(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, flavour: str
) -> None:
    openai = pytest.importorskip("openai")
    audit_file = tmp_path / "audit.log"
    daemon = start_with_policies(daemons, api_env, tmp_path, ORCHAT_AUDIT_LOG="1", ORCHAT_AUDIT_FILE=str(audit_file))
    seen = sync_refusals(openai, daemon.port) if flavour == "sync" else asyncio.run(async_refusals(openai, daemon.port))

    status, code, kind, message = refusal_of(seen["fast"])
    assert (status, code, kind) == (429, "rate_limit_exceeded", "requests") and "1 requests per minute" in message
    assert 1 <= int(seen["fast"].response.headers["retry-after"]) <= 60
    status, code, kind, message = refusal_of(seen["wordy"])
    assert (status, code, kind) == (429, "rate_limit_exceeded", "tokens") and "of its 5 tokens per minute" in message
    assert int(seen["wordy"].response.headers["retry-after"]) >= 1
    status, code, kind, message = refusal_of(seen["rich"])
    assert (status, code, kind) == (402, "budget_exceeded", "insufficient_quota")
    assert "token rich spent $0.0000" in message and "of its $1e-06/day budget; it resets at " in message and message.endswith("T00:00:00Z")
    status, code, kind, message = refusal_of(seen["picky"])
    assert (status, code, kind) == (403, "model_not_allowed", "invalid_request_error") and "anthropic/claude-sonnet-4" in message
    assert seen["picky_models"] == [MODEL] and seen["picky_retrieve"] == "model_not_found" and seen["picky_allowed"] == MODEL
    assert "anthropic/claude-sonnet-4" in seen["free_models"]

    metrics = request(daemon.port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKENS['free']}"})[2].decode()
    for reason in ("rpm", "tpm", "budget", "models"):
        assert f'orchat_daemon_rejected_total{{reason="{reason}"}} 1' in metrics
    assert daemon.stop() == 0
    records = [line.split(" | ")[1:5] for line in audit_file.read_text().splitlines()]
    assert ["fast", "daemon:/v1/chat/completions", MODEL, "REFUSED:rate_limit_exceeded"] in records
    assert ["rich", "daemon:/v1/chat/completions", MODEL, "REFUSED:budget_exceeded"] in records
    assert ["picky", "daemon:/v1/chat/completions", "anthropic/claude-sonnet-4", "REFUSED:model_not_allowed"] in records
    assert not any(token in audit_file.read_text() for token in TOKENS.values())


def test_each_decision_is_logged_with_the_token_name_limit_and_values_never_the_token(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path
) -> None:
    log_file = tmp_path / "daemon.log"
    daemon = start_with_policies(daemons, api_env, tmp_path, ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="VERBOSE")
    auth = {"Authorization": f"Bearer {TOKENS['fast']}"}
    assert request(daemon.port, "POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}, headers=auth)[0] == 200
    assert request(daemon.port, "POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}, headers=auth)[0] == 429
    assert daemon.stop() == 0
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    charged = next(line for line in lines if line["message"] == "token fast charged")
    assert charged["token"] == "fast" and charged["tokens"] > 0 and charged["cost"] > 0 and charged["estimated"] is False
    refused = next(line for line in lines if line["message"] == "token fast refused: rpm")
    assert (refused["token"], refused["limit"], refused["status"], refused["requests"], refused["rpm"]) == ("fast", "rpm", 429, 1, 1)
    assert not any(token in log_file.read_text() for token in TOKENS.values())


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("rpm=fast", "rpm=fast: expected a whole number"),
        ("rpm=\u00b2", "rpm=\u00b2: expected a whole number"),  # str.isdigit() says yes, int() raises
        ("budget=\uff15/day", "budget=\uff15/day: expected AMOUNT/day"),  # fullwidth: float() reads it as 5
    ],
)
def test_a_malformed_policy_field_stops_the_start_with_78_naming_file_and_line(api_env: dict[str, str], tmp_path: Path, field: str, says: str) -> None:
    tokens = write_tokens(tmp_path / "tokens", ["# team", f"alice:{TOKENS['fast']} {field}"])
    proc = run_orchat("--daemon", "--port", "0", env={**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens)}, timeout=30)
    assert proc.returncode == 78 and f"{tokens}:2: {says}" in proc.stderr
    assert TOKENS["fast"] not in proc.stderr and "Traceback" not in proc.stderr


def test_sighup_with_a_malformed_line_keeps_the_old_policy_logs_and_counts_the_failure(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path
) -> None:
    daemon = start_with_policies(daemons, api_env, tmp_path)
    auth = {"Authorization": f"Bearer {TOKENS['picky']}"}
    other = {"model": "anthropic/claude-sonnet-4", "messages": MESSAGES}
    assert request(daemon.port, "POST", "/v1/chat/completions", other, headers=auth)[0] == 403
    write_tokens(tmp_path / "tokens", [f"picky:{TOKENS['picky']} models=anthropic/*", f"bad:{TOKENS['fast']} budget=lots"])
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reload failed")
    assert f"{tmp_path / 'tokens'}:2: budget=lots" in daemon.stderr
    assert request(daemon.port, "POST", "/v1/chat/completions", other, headers=auth)[0] == 403  # the old allow-list stays
    metrics = request(daemon.port, "GET", "/metrics", headers=auth)[2].decode()
    assert "orchat_daemon_reload_failures_total 1" in metrics
    write_tokens(tmp_path / "tokens", [f"picky:{TOKENS['picky']} models=anthropic/*"])
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reloaded")
    wait_for(lambda: request(daemon.port, "POST", "/v1/chat/completions", other, headers=auth)[0] == 200)


def chat(port: int, name: str, **extra: Any) -> int:
    return request(port, "POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, **extra}, headers={"Authorization": f"Bearer {TOKENS[name]}"})[
        0
    ]


def test_spend_survives_sighup_and_restart_and_daemon_tokens_lists_it_without_tokens(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**api_env, "ORCHAT_INSTANCE_NAME": "gw-a"}
    daemon = start_with_policies(daemons, env, tmp_path)
    assert chat(daemon.port, "rich") == 200 and chat(daemon.port, "rich") == 402
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reloaded")
    assert chat(daemon.port, "rich") == 402
    assert daemon.stop() == 0
    again = start_with_policies(daemons, env, tmp_path)
    assert chat(again.port, "rich", stream=True) == 402 and chat(again.port, "fast") == 200
    assert again.stop() == 0

    listed = run_orchat("daemon", "tokens", "--json", env={**env, "ORCHAT_DAEMON_TOKENS_FILE": str(tmp_path / "tokens")})
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert list(rows) == ["fast", "rich", "picky", "wordy", "free"]
    assert rows["rich"]["spend"] > 0.000001 and rows["rich"]["remaining"] == 0 and rows["rich"]["limits"] == "budget=1e-06/day"
    assert rows["rich"]["last_used"].endswith("Z") and rows["rich"]["resets"].endswith("T00:00:00Z")
    assert rows["fast"]["requests_last_minute"] == 1 and rows["free"]["spend"] is None
    table = run_orchat("daemon", "tokens", env={**env, "ORCHAT_DAEMON_TOKENS_FILE": str(tmp_path / "tokens")})
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:4] == ["NAME", "LIMITS", "SPEND", "REMAINING"]
    assert not any(token in listed.stdout + table.stdout for token in TOKENS.values())
    other = run_orchat("daemon", "tokens", "--json", "--instance-name", "gw-b", env={**env, "ORCHAT_DAEMON_TOKENS_FILE": str(tmp_path / "tokens")})
    assert json.loads(other.stdout)[1]["spend"] == 0  # another instance, another ledger


def test_a_stream_whose_client_hangs_up_is_charged_an_estimate(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, fake_openrouter: Any
) -> None:
    log_file = tmp_path / "daemon.log"
    lines = [f"metered:{TOKENS['rich']} budget=5/month"]
    daemon = DaemonProc(
        {**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(write_tokens(tmp_path / "tokens", lines)), "ORCHAT_LOG_FILE": str(log_file), "ORCHAT_LOG_LEVEL": "VERBOSE"}
    )
    daemons.append(daemon)
    assert chat(daemon.port, "rich") == 200  # learns the price per token
    fake_openrouter.chunk_delay = 0.3
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['rich']}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    received = b""
    while b'"content"' not in received:
        piece = sock.recv(4096)
        assert piece, received
        received += piece
    sock.close()

    def charged() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_file.read_text().splitlines() if '"token metered charged"' in line]

    wait_for(lambda: len(charged()) == 2)
    cut = charged()[1]
    assert cut["estimated"] is True and cut["tokens"] > 0 and cut["cost"] > 0


def test_metrics_count_requests_by_code_tokens_cost_and_remaining_budget_per_token_name(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path
) -> None:
    daemon = start_with_policies(daemons, api_env, tmp_path)
    assert chat(daemon.port, "fast") == 200 and chat(daemon.port, "fast") == 429
    assert chat(daemon.port, "picky", model="anthropic/claude-sonnet-4") == 403
    assert chat(daemon.port, "free") == 200
    text = request(daemon.port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKENS['free']}"})[2].decode()
    series = dict(re.findall(r"^(orchat_daemon_token_\w+\{[^}]*\}) (\S+)$", text, re.MULTILINE))
    assert series['orchat_daemon_token_requests_total{code="200",token="fast"}'] == "1.0"
    assert series['orchat_daemon_token_requests_total{code="429",token="fast"}'] == "1.0"
    assert series['orchat_daemon_token_requests_total{code="403",token="picky"}'] == "1.0"
    assert series['orchat_daemon_token_requests_total{code="200",token="free"}'] == "1.0"
    assert float(series['orchat_daemon_token_tokens_total{kind="prompt",token="fast"}']) > 0
    assert float(series['orchat_daemon_token_tokens_total{kind="completion",token="fast"}']) > 0
    assert float(series['orchat_daemon_token_cost_total{token="fast"}']) > 0
    assert series['orchat_daemon_token_budget_remaining{token="rich"}'] == "1e-06"
    assert not any(token in text for token in TOKENS.values())


def hang_up_after_the_first_words(port: int, token: str) -> int:
    """Stream a chat as TOKEN, close the connection once its first content arrived; return the status."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    received = b""
    while b'"content"' not in received and b"\r\n\r\n{" not in received:  # first words, or a refusal
        piece = sock.recv(4096)
        assert piece, received
        received += piece
    sock.close()
    return int(received.split(b" ", 2)[1])


@pytest.mark.parametrize("workers", ["1", "2"])  # the in-memory ledger, and the workers' shared ledger.slots
def test_a_name_that_hangs_up_on_every_stream_before_its_usage_still_spends_its_budget(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, fake_openrouter: Any, workers: str
) -> None:
    # A hung-up stream is estimated at the name's last known price: a name that never let a stream
    # reach its usage had none, so every answer it read in full was free, beyond any budget.
    log_file = tmp_path / "daemon.log"
    lines = [f"cutter:{TOKENS['rich']} budget=0.000001/day"]  # the fake's one answer costs more than this
    env = {
        **api_env,
        "ORCHAT_DAEMON_TOKENS_FILE": str(write_tokens(tmp_path / "tokens", lines)),
        "ORCHAT_LOG_FILE": str(log_file),
        "ORCHAT_LOG_LEVEL": "VERBOSE",
    }
    daemon = DaemonProc({**env, "ORCHAT_WORKERS": workers})
    daemons.append(daemon)
    fake_openrouter.chunk_delay = 0.05
    assert hang_up_after_the_first_words(daemon.port, TOKENS["rich"]) == 200

    def charged() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_file.read_text().splitlines() if '"token cutter charged"' in line]

    wait_for(lambda: len(charged()) == 1)
    assert charged()[0]["estimated"] is False and charged()[0]["cost"] > 0.000001  # read on to its usage
    assert hang_up_after_the_first_words(daemon.port, TOKENS["rich"]) == 402
