"""Which failures move on to the next model, and which to the next profile."""

from __future__ import annotations

import pytest

from orchat.chat.fallback import is_worth_another
from orchat.errors import PermissionFailure, RequestRejected, TemporaryFailure, UpstreamUnavailable

CASES = [
    # error, next model on the same endpoint, next profile
    (UpstreamUnavailable("connect refused", error_type="network"), True, True),
    (UpstreamUnavailable("HTTP 503", status=503, error_type="upstream"), True, True),
    (TemporaryFailure("HTTP 429", status=429, error_type="rate_limit"), True, True),
    (RequestRejected("HTTP 404", status=404, error_type="client"), True, False),
    (PermissionFailure("HTTP 402", status=402, error_type="auth"), False, True),
    (TemporaryFailure("idle", error_type="timeout"), False, True),
    (RequestRejected("HTTP 400", status=400, error_type="client"), False, False),
    (PermissionFailure("HTTP 401", status=401, error_type="auth"), False, False),
    (PermissionFailure("HTTP 403", status=403, error_type="auth"), False, False),
]


@pytest.mark.parametrize(("err", "next_model", "next_profile"), CASES)
def test_is_worth_another_follows_the_documented_table(err: Exception, next_model: bool, next_profile: bool) -> None:
    assert is_worth_another(err, next_is_other_profile=False) is next_model  # type: ignore[arg-type]
    assert is_worth_another(err, next_is_other_profile=True) is next_profile  # type: ignore[arg-type]
