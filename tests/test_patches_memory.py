"""patches/memory.py: malloc settings and TLS buffer release (issue 7). Behaviour
only; the figures are bench/proxy.py's."""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import pytest

from patches import memory
from tests.support.fresh import run_python

GLIBC = memory._glibc() is not None


_MAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
from patches import memory

if sys.argv[1] == "tuned":
    assert memory.tune_malloc() is True
    assert memory.tune_malloc() is True  # once per process; again is harmless
libc = ctypes.CDLL(None)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    ).split()]

libc.mallinfo2.restype = MallInfo2
big = bytearray(2_000_000)
del big  # untuned, glibc raises its mmap threshold past 2 MB here
mapped = libc.mallinfo2().hblks
block = bytearray(300_000)
print(libc.mallinfo2().hblks - mapped)
"""


@pytest.mark.skipif(
    not GLIBC or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33+ only"
)
def test_tuned_malloc_maps_large_buffers_of_its_own() -> None:
    def mapped(mode: str) -> int:
        return int(run_python(_MAPPED_AFTER_A_BIG_FREE, mode, timeout=60))

    assert mapped("default") == 0  # glibc's dynamic threshold: from the heap
    assert mapped("tuned") == 1  # fixed at 64 KiB: a mapping of its own


def test_without_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_looked_up", True)
    monkeypatch.setattr(memory, "_libc", None)
    assert memory.tune_malloc() is False


def test_tls_connections_release_their_buffers() -> None:
    from OpenSSL import SSL
    from OpenSSL._util import lib

    assert memory.tls_fits() is None

    def mode(conn: SSL.Connection) -> int:
        return int(lib.SSL_set_mode(conn._ssl, 0))  # adds nothing, returns the mode

    addon = memory.ReleaseTlsBuffers()
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
    assert not mode(conn) & SSL.MODE_RELEASE_BUFFERS
    addon.tls_start_client(SimpleNamespace(ssl_conn=conn))
    assert mode(conn) & SSL.MODE_RELEASE_BUFFERS
    addon.tls_established_server(SimpleNamespace(ssl_conn=conn))  # again: no harm
    assert mode(conn) & SSL.MODE_RELEASE_BUFFERS
    addon.tls_start_server(SimpleNamespace(ssl_conn=None))  # nothing to do
