"""TLS for the wire: the verifying SSLContext (ORCHAT_CA_FILE, SSL_CERT_FILE or the system store)."""

from __future__ import annotations

import errno
from pathlib import Path

from orchat.errors import UpstreamUnavailable
from orchat.fsutil import read_regular_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CA_FILE_MAX_BYTES = 16 * 1024 * 1024  # the system bundle is ~0.2 MB


def make_ssl_context(ca_file: str, environ: dict[str, str]) -> Any:
    """Return a verifying SSLContext (ORCHAT_CA_FILE, else SSL_CERT_FILE, else the system store).

    Raise UpstreamUnavailable when the CA file cannot be loaded.
    """
    import ssl  # lazy: plain-http endpoints (local llama.cpp, an ORCHAT gateway) never pay for it

    cafile = ca_file or environ.get("SSL_CERT_FILE") or None
    if cafile is None:
        return ssl.create_default_context()
    try:
        # Read here, bounded and without blocking: OpenSSL would wait on a FIFO forever.
        data = read_regular_file(Path(cafile), CA_FILE_MAX_BYTES)
        if not data.strip():
            raise OSError(errno.EINVAL, "the file is empty")
        return ssl.create_default_context(cadata=data.decode("ascii") if data.isascii() else data)  # PEM text or DER bytes
    except OSError as err:
        raise UpstreamUnavailable(f"cannot load CA file {cafile}: {err.strerror or err}", error_type="network") from err
    except ssl.SSLError as err:
        raise UpstreamUnavailable(f"cannot load CA file {cafile}: {err}", error_type="network") from err
