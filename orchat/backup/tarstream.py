"""A tarfile reader that refuses hostile headers before tarfile reads them.

tarfile reads a PAX or GNU long-name header's whole body with one read() (a 1.4 MB gzip of zeros
declaring a 1.25 GB header took 2.5 GB of memory), follows chains of them by recursion, keeps
global PAX headers for every later member, parses sparse maps of any length, and turns some of
their numbers into ValueError instead of TarError. ORCHAT's writer never needs any of that: at
most one PAX header (a long or non-ASCII path) before a member. So _GuardedTarInfo, the hook
tarfile documents for subclasses (_proc_member), refuses before reading:
  - an extended header (PAX `x`, Solaris `X`, GNU `L`/`K`) larger than MAX_HEADER_BYTES;
  - more than MAX_HEADER_CHAIN extended headers in front of one member;
  - global PAX headers (`g`) and GNU sparse members (`S`), and PAX sparse maps of every version.
A refusal is RefusedHeader, a TarError that tarfile passes through unchanged.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 64 * 1024  # a path of MAX_PATH_BYTES and a few numbers fit many times over
MAX_HEADER_CHAIN = 4
_EXTENDED = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_REFUSED = {tarfile.XGLTYPE: "a global PAX header", tarfile.GNUTYPE_SPARSE: "a sparse member"}


class RefusedHeader(tarfile.TarError):
    """A tar header ORCHAT never writes and will not parse (too large, chained, global or sparse)."""


class _GuardedTarInfo(tarfile.TarInfo):
    def _proc_member(self, tarfile: Any) -> Any:
        if self.type in _REFUSED:
            raise RefusedHeader(f"{_REFUSED[self.type]} ({self.name[:80]!r})")
        if self.type not in _EXTENDED:
            tarfile.header_chain = 0
            return super()._proc_member(tarfile)
        if not 0 <= self.size <= MAX_HEADER_BYTES:
            raise RefusedHeader(f"an extended header of {self.size} bytes (the limit is {MAX_HEADER_BYTES})")
        tarfile.header_chain += 1
        if tarfile.header_chain > MAX_HEADER_CHAIN:
            raise RefusedHeader(f"more than {MAX_HEADER_CHAIN} extended headers before one member")
        return super()._proc_member(tarfile)

    # tarfile calls these from _proc_pax() once a PAX header names a sparse map; version 1.0 reads
    # numbers from the stream until it has as many as the header claims.
    def _proc_gnusparse_00(self, *_: Any) -> None:
        raise RefusedHeader("a PAX sparse map")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00

    def _apply_pax_info(self, pax_headers: dict[str, str], encoding: str, errors: str) -> None:
        # GNU.sparse.size and .realsize go through a bare int(): ValueError, not TarError.
        if any(keyword.startswith("GNU.sparse.") for keyword in pax_headers):
            raise RefusedHeader("a PAX sparse map")
        super()._apply_pax_info(pax_headers, encoding, errors)


class _GuardedTarFile(tarfile.TarFile):
    tarinfo = _GuardedTarInfo
    header_chain = 0


def open_tar_stream(path: Path) -> tarfile.TarFile:
    """Open the gzip'd tar at PATH for one forward pass with guarded headers.

    Raise RefusedHeader (a TarError) if the first header is refused, other TarError, OSError,
    EOFError or zlib.error if it is unreadable.
    """
    return _GuardedTarFile.open(path, mode="r|gz")


def forget_members(tar: tarfile.TarFile) -> None:
    """Drop the TarInfo objects tarfile keeps for every member read (a one-pass reader needs none)."""
    del tar.members[:]
