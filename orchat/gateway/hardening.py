"""Keep the gateway's key out of core dumps and away from same-user debuggers (Linux, stdlib only).

A core of a running daemon holds the upstream key and the client tokens. RLIMIT_CORE 0 stops
the kernel writing one (LimitCORE=0 in the units says the same to systemd-coredump), and
prctl(PR_SET_DUMPABLE, 0) also refuses ptrace attach and /proc/PID/mem to other processes of the
same user. Both are cheap, once at start.
"""

from __future__ import annotations

import resource
import sys

PR_SET_DUMPABLE = 4


def forbid_core_dumps() -> bool:
    """Set RLIMIT_CORE to 0 and, on Linux, mark the process not dumpable; return True if both held.

    Never raises: an exotic libc or a seccomp filter that refuses prctl leaves the rlimit alone
    in force.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


PR_SET_PDEATHSIG = 1


def stop_with_parent(signum: int) -> bool:
    """Ask Linux to send SIGNUM to this process when its parent dies; return True if it will.

    A supervisor's worker must not serve on, unsupervised, after a kill -9 of the supervisor
    outside systemd (under systemd the unit's cgroup is stopped anyway).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
