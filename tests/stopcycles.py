"""SIGTERM a long-running orchat while requests are in flight; report whether it stopped."""

from __future__ import annotations

import http.client
import signal
import subprocess
import threading
import time

CYCLES = 40
STOP_SECONDS = 15.0
HAMMER_REQUESTS = 200


def _hammer(port: int, path: str, done: threading.Event) -> None:
    for _ in range(HAMMER_REQUESTS):
        if done.is_set():
            return
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return
        finally:
            conn.close()


def stop_while_busy(proc: subprocess.Popen, port: int, path: str) -> int | None:
    """SIGTERM PROC while another thread keeps requesting PATH on PORT; return its exit code, None if it kept running."""
    done = threading.Event()
    thread = threading.Thread(target=_hammer, args=(port, path, done), daemon=True)
    thread.start()
    time.sleep(0.02)  # requests in flight when the signal lands
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        return None
    finally:
        done.set()
        thread.join(STOP_SECONDS)
