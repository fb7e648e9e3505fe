"""Keeping the proxy's resident memory down (issue 7; README "Performance").

Two patches of :mod:`patches` (installed by :func:`patches.install`):
``malloc`` (:func:`tune_malloc`) and ``tls_buffers`` (:class:`ReleaseTlsBuffers`,
added by the lean launcher).

**glibc's malloc.** Under ``bench/proxy.py``'s 200 concurrent streams, much of
what the process grew by was not live data but where glibc put short-lived
buffers of 64 KiB and more: asyncio's 256 KiB ``recv`` buffers (one per read),
pyOpenSSL's 64 KiB read buffers (one per TLS read), libcurl's 64 KiB upload
buffers (one per handle). glibc serves those from the heap once its *dynamic*
mmap threshold has risen past them (it does when the first such buffer is
freed); long-lived small objects then settle between them, and the heap keeps
the pages. :func:`tune_malloc` fixes the threshold at 64 KiB, so such buffers
get mappings of their own (only the pages written become resident, and all go
back on ``free``): 17 to 19 MB less at the peak of that load. It also keeps a
single arena (chat2api's threads run Python under the GIL), so the tokenizer,
when built on a worker thread (``Runtime.start``), lives in the main heap rather
than in a 64 MiB per-thread one: about 2 MB less at idle. Only glibc has these; elsewhere (musl,
macOS) :func:`tune_malloc` does nothing.

**TLS buffers.** :class:`ReleaseTlsBuffers` (a mitmproxy addon) sets OpenSSL's
``SSL_MODE_RELEASE_BUFFERS``: a connection frees its 16 KiB read and write
buffers while it has nothing buffered, which a client's connection waiting for
the next piece of a streamed answer mostly has: about 6 MB less with 200 clients
on the HTTPS-proxy listener.

``malloc_trim`` after start-up or every so often was measured too and returns
almost nothing with these settings (under 1 MB after a burst): what stays after
a burst is mostly libcurl's idle handles and kept-alive connections
(upstream/transfer.py), still in use.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Allocations of at least this size get their own mapping.
MMAP_THRESHOLD = 64 * 1024

_libc: ctypes.CDLL | None = None
_looked_up = False
_tuned = False


def _glibc() -> ctypes.CDLL | None:
    global _libc, _looked_up
    if not _looked_up:
        _looked_up = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)  # the C library the interpreter runs on
                # glibc only: musl has a mallopt that does nothing.
                if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt"):
                    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
                    _libc = libc
            except (OSError, AttributeError):
                _libc = None
    return _libc


def tune_malloc() -> bool:
    """Set glibc's malloc up as described above (once per process); False without glibc."""
    global _tuned
    libc = _glibc()
    if libc is None:
        return False
    if not _tuned:
        ok = (
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and libc.mallopt(M_ARENA_MAX, 1) == 1
        )
        if not ok:
            log.debug("mallopt refused a setting")
        _tuned = True
    return True


def malloc_fits() -> str | None:
    if _glibc() is None:
        return "not glibc (no mallopt to tune)"
    return None


def tune_malloc_now() -> None:
    tune_malloc()


def tls_fits() -> str | None:
    """``SSL_set_mode`` through pyOpenSSL's private binding, on its private ``_ssl``."""
    from OpenSSL import SSL, _util

    if not hasattr(_util.lib, "SSL_set_mode") or not hasattr(SSL, "MODE_RELEASE_BUFFERS"):
        return "pyOpenSSL's binding has no SSL_set_mode or MODE_RELEASE_BUFFERS"
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
    if not hasattr(conn, "_ssl"):
        return "pyOpenSSL's Connection has no _ssl"
    return None


class ReleaseTlsBuffers:
    """Sets ``SSL_MODE_RELEASE_BUFFERS`` on every TLS connection mitmproxy makes.

    Placed after mitmproxy's ``tlsconfig`` addon (as run.sh's launcher does), it
    does so before the handshake; anywhere else (a script's addons run before
    ``tlsconfig``), once the handshake is done.
    """

    def __init__(self) -> None:
        from OpenSSL import SSL, _util

        self._connection = SSL.Connection
        self._set_mode = _util.lib.SSL_set_mode
        self._mode = SSL.MODE_RELEASE_BUFFERS

    def _release(self, data: Any) -> None:
        conn = getattr(data, "ssl_conn", None)
        if isinstance(conn, self._connection):
            self._set_mode(conn._ssl, self._mode)

    tls_start_client = _release
    tls_start_server = _release
    tls_established_client = _release
    tls_established_server = _release
