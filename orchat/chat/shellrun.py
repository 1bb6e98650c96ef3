"""Running a command a person accepted: with their shell, in this directory, Ctrl-C to the command.

Only orchat/chat/execflow.py and the REPL's /run call this, and only after a keypress (a choice in
the menu, `y`, or `yes` for a dangerous command).
"""

from __future__ import annotations

import os
import signal
import subprocess

from orchat.chat.hostfacts import user_shell
from orchat.errors import Terminated

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

READ_CHUNK_BYTES = 65536
STOP_WAIT_SECONDS = 5


def exit_status(returncode: int) -> int:
    """Given a Popen returncode, return the shell's convention: the status, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


class _CommandOwnsSignals:
    """While a command runs, Ctrl-C (SIGINT to the foreground group) is the command's: orchat keeps
    going to report its status. A no-op handler, not SIG_IGN, because an ignored signal would stay
    ignored in the command after exec. SIGTERM/SIGHUP to orchat still end it (through the handler
    that was there, cli's Terminated), and the command is then sent SIGTERM too rather than left
    running unseen; one that arrives while the command is being started waits until start() has
    the process to stop."""

    def __enter__(self) -> _CommandOwnsSignals:
        self.process: subprocess.Popen | None = None
        self.pending: tuple[int, Any] | None = None
        self.saved = {signum: signal.signal(signum, self._handle) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)

    def start(self, argv: list[str], **popen: Any) -> subprocess.Popen:
        """Start ARGV; a SIGTERM/SIGHUP that came meanwhile stops it and is raised now."""
        self.process = subprocess.Popen(argv, **popen)
        if self.pending is not None:
            _stop(self.process)
            self._raise(*self.pending)
        return self.process

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            return
        if self.process is None:
            self.pending = (signum, frame)
            return
        # Signal it here, not only in the caller's except (the signal may land before its try), but
        # never wait here: the interrupted Popen.wait() holds the lock a wait needs.
        self.process.send_signal(signal.SIGTERM)
        self._raise(signum, frame)

    def _raise(self, signum: int, frame: Any) -> None:
        previous = self.saved[signum]
        if callable(previous):
            previous(signum, frame)
        raise Terminated(f"terminated by signal {signum}", exit_code=128 + signum)


def _finish(process: subprocess.Popen) -> int:
    try:
        return exit_status(process.wait())
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(STOP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_in_shell(command: str) -> int:
    """Run COMMAND with `$SHELL -c` (else /bin/sh), stdin/stdout/stderr inherited, in the current
    directory; return its exit status (128+N when signal N ended it)."""
    with _CommandOwnsSignals() as guard:
        return _finish(guard.start([user_shell(), "-c", command]))


def capture_in_shell(command: str, limit_bytes: int, show: Callable[[str], None]) -> tuple[str, bool, int]:
    """Run COMMAND like run_in_shell but with stdout+stderr captured (stdin is /dev/null).

    Each piece of output is passed to SHOW as it arrives; return (the first LIMIT_BYTES of output
    as text, whether more was cut off, the exit status). Output past the limit is read and dropped
    so the command never blocks on a full pipe.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    kept = bytearray()
    cut = False
    with _CommandOwnsSignals() as guard:
        process = guard.start([user_shell(), "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        try:
            for chunk in iter(lambda: os.read(process.stdout.fileno(), READ_CHUNK_BYTES), b""):
                show(decoder.decode(chunk))
                room = limit_bytes - len(kept)
                kept += chunk[: max(room, 0)]
                cut = cut or len(chunk) > room
        except BaseException:
            _stop(process)
            raise
        finally:
            process.stdout.close()
        status = _finish(process)
    show(decoder.decode(b"", final=True))
    return bytes(kept).decode("utf-8", errors="replace"), cut, status
