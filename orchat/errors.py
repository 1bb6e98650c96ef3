"""The exception family: library code raises these; only orchat.cli turns them into exit codes."""

from __future__ import annotations

EX_OK = 0
EX_UNEXPECTED = 1
EX_USAGE = 2
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78
EX_SIGHUP = 129
EX_SIGINT = 130
EX_SIGTERM = 143


class OrchatError(Exception):
    """Root of every error ORCHAT reports as one line on stderr."""

    exit_code = EX_UNEXPECTED

    def __init__(self, message: str, *, hint: str = "", status: int = 0, error_type: str = "", exit_code: int = 0) -> None:
        super().__init__(message)
        if exit_code:
            self.exit_code = exit_code
        self.message = message
        self.hint = hint
        self.status = status  # HTTP status when the error came from a server, else 0
        self.error_type = error_type  # metrics label: auth, rate_limit, timeout, upstream, ...

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(OrchatError):
    exit_code = EX_USAGE


class InputError(OrchatError):
    """Input refused before anything was sent (too large, not text)."""

    exit_code = EX_DATAERR


class NoInputError(OrchatError):
    """An input file named on the command line is missing or unreadable (-f PATH)."""

    exit_code = EX_NOINPUT


class ConfigError(OrchatError):
    exit_code = EX_CONFIG


class StorageError(OrchatError):
    """A local file could not be read or written (history, logs, backups; disk full)."""

    exit_code = EX_IOERR


class UpstreamUnavailable(OrchatError):
    """DNS, connect or TLS failure, or a 5xx that outlived the retries."""

    exit_code = EX_UNAVAILABLE


class SharedStateError(UpstreamUnavailable):
    """The shared-state store (ORCHAT_SHARED_STATE, Redis) is unreachable, refused us, or answered garbage."""


class TemporaryFailure(OrchatError):
    """429, 408 or an idle timeout: trying again later may work."""

    exit_code = EX_TEMPFAIL


class ProtocolError(OrchatError):
    """A malformed or truncated response, or an error event inside a 200 stream."""

    exit_code = EX_PROTOCOL


class PermissionFailure(OrchatError):
    """401/402/403 from the server, or a local file with unsafe permissions."""

    exit_code = EX_NOPERM


class RequestRejected(OrchatError):
    """400/404/413/422: the server refused this request as such; retrying will not help."""

    exit_code = EX_DATAERR


class Interrupted(OrchatError):
    exit_code = EX_SIGINT


class Terminated(OrchatError):
    exit_code = EX_SIGTERM


def api_error_for_status(status: int, message: str, *, hint: str = "") -> OrchatError:
    """Given an HTTP status and the server's message, return the matching OrchatError."""
    if status in (401, 402, 403):
        cls: type[OrchatError] = PermissionFailure
        kind = "auth"
    elif status == 429:
        cls, kind = TemporaryFailure, "rate_limit"
    elif status == 408:
        cls, kind = TemporaryFailure, "timeout"
    elif status >= 500:
        cls, kind = UpstreamUnavailable, "upstream"
    else:
        cls, kind = RequestRejected, "client"
    return cls(f"HTTP {status}: {message}", hint=hint, status=status, error_type=kind)
