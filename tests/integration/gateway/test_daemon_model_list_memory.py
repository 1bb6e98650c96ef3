"""A huge upstream model list must not take the daemon's memory far past ORCHAT_CACHE_SIZE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.daemonproc import DaemonProc, request
from tests.fakes.raw_upstream import RawUpstream

CACHE_SIZE_MB = 200
MODELS = 60000  # about 19 MB, the review's reproduction


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def model(index: int) -> dict[str, object]:
    return {
        "id": f"vendor{index % 50}/model-{index}",
        "name": f"Model {index}",
        "context_length": 131072,
        "pricing": {"prompt": "0.000001", "completion": "0.000002", "request": "0", "image": "0"},
        "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
        "supported_parameters": ["temperature", "top_p", "max_tokens", "stop", "tools"],
    }


@pytest.fixture(name="huge_list_upstream")
def huge_list_upstream_fixture() -> Iterator[tuple[RawUpstream, int]]:
    body = json.dumps({"data": [model(i) for i in range(MODELS)]}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    upstream = RawUpstream([head + body])
    yield upstream, len(body)
    upstream.close()


def test_a_19_mb_model_list_keeps_the_daemons_memory_within_the_cache_size(api_env: dict[str, str], huge_list_upstream: tuple[RawUpstream, int]) -> None:
    upstream, size = huge_list_upstream
    assert size > 18 * 1024 * 1024
    daemon = DaemonProc({**api_env, "ORCHAT_API_BASE": upstream.url, "ORCHAT_CACHE_SIZE": str(CACHE_SIZE_MB)})
    try:
        before = peak_rss_mb(daemon.pid)
        status, _, body = request(daemon.port, "GET", "/v1/models", timeout=60)
        assert status == 200
        listed = json.loads(body)
        assert listed["object"] == "list" and len(listed["data"]) == MODELS and listed["data"][7]["owned_by"] == "vendor7"
        grown = peak_rss_mb(daemon.pid) - before
        assert grown < CACHE_SIZE_MB, f"peak RSS grew by {grown:.0f} MB for a {size / 1048576:.0f} MB list"
    finally:
        assert daemon.stop() == 0
