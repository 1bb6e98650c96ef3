"""ORCHAT_INSTANCE_NAME goes into every answer's head: a control character in it must not split it."""

from __future__ import annotations

from orchat.config import load_settings
from orchat.gateway.state import Gateway


def test_an_instance_name_with_cr_lf_cannot_inject_a_header(api_env: dict[str, str]) -> None:
    settings = load_settings(environ={**api_env, "ORCHAT_INSTANCE_NAME": "gw\r\nSet-Cookie: a=b\x00"})
    header = Gateway(settings).common_headers
    assert header == b"X-Orchat-Instance: gw??Set-Cookie: a=b?\r\n"
