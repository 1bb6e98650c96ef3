"""The CLI against an upstream that sends numbers that are not ASCII digits: one line, never exit 1."""

from __future__ import annotations

import pytest

from tests.conftest import run_orchat
from tests.fakes.raw_upstream import RawUpstream


@pytest.mark.parametrize("length", [b"\xb2", b"\xc2\xb2\xc2\xb2", b"1" * 5000])
def test_an_upstream_content_length_that_is_not_ascii_digits_is_a_one_line_error(api_env: dict[str, str], length: bytes) -> None:
    upstream = RawUpstream([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + length + b"\r\n\r\n{}"])
    try:
        proc = run_orchat("--no-stream", "hi", env={**api_env, "ORCHAT_API_BASE": upstream.url, "ORCHAT_RETRY_ATTEMPTS": "0"})
    finally:
        upstream.close()
    assert proc.returncode == 69, proc.stderr
    assert proc.stderr.count("\n") == 1 and "bad Content-Length" in proc.stderr and "ValueError" not in proc.stderr
