"""Pass-through: TLS to hosts that are not intercepted goes through the
HTTPS-proxy listener neither decrypted nor altered.

A TLS server with its own CA speaks a binary, non-HTTP protocol. Through the
proxy (``CONNECT``) the client sees the server's own certificate, byte for
byte, and both ends see exactly the bytes the other sent, with or without SNI.
An intercepted host, by contrast, gets mitmproxy's certificate.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.mitm import NOWHERE, Mitm, MitmFactory
from tests.support.tlsserver import _make_ca_and_cert


@pytest.fixture(scope="module")
def mitm(module_mitm_factory: MitmFactory) -> Mitm:
    """chat2api with no backend: these flows are not its own and never reach one."""
    # The TLS servers here are local: the proxy reaches them only when listed.
    return module_mitm_factory(
        {"CHATGPT_BASE_URL": NOWHERE, "PROXY_ALLOW_HOSTS": "localhost,127.0.0.1"}
    )


def _read_exact(sock: ssl.SSLSocket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise ConnectionError("closed early")
        buf += part
    return bytes(buf)


@contextmanager
def binary_tls_server(tmp: Path) -> Iterator[tuple[int, Path, bytes, list[bytes], bytes]]:
    """A TLS server: reads one length-prefixed message, answers with ``reply``.
    Yields (port, its CA file, its certificate in DER, messages received, reply)."""
    ca_path, cert_path, key_path = _make_ca_and_cert(tmp, "localhost")
    cert_der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    received: list[bytes] = []
    # Not HTTP at all, with every byte value: any parsing or re-encoding would show.
    reply = b"\x00\xffNOT HTTP/1.1 200\r\n\r\n" + bytes(range(256)) * 64 + os.urandom(4096)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(10)
                    (size,) = struct.unpack("!I", _read_exact(conn, 4))
                    received.append(_read_exact(conn, size))
                    conn.sendall(struct.pack("!I", len(reply)) + reply)
            except (OSError, ssl.SSLError, ConnectionError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], ca_path, cert_der, received, reply
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def tunnel(mitm: Mitm, target: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", mitm.proxy_port), timeout=10)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        part = sock.recv(1)
        if not part:
            raise ConnectionError(head)
        head += part
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


@pytest.mark.parametrize("sni", [True, False], ids=["sni", "no-sni"])
def test_tls_to_other_hosts_is_neither_decrypted_nor_altered(
    mitm: Mitm, tmp_path: Path, sni: bool
) -> None:
    with binary_tls_server(tmp_path) as (port, ca_path, cert_der, received, reply):
        context = ssl.create_default_context(cafile=str(ca_path))
        if not sni:
            context.check_hostname = False  # the chain is still verified
        host = "localhost" if sni else "127.0.0.1"
        raw = tunnel(mitm, f"{host}:{port}")
        message = b"\x16\x03\x01 raw bytes \r\n\r\nGET / HTTP/1.1\r\n" + os.urandom(70_000)
        with context.wrap_socket(raw, server_hostname="localhost" if sni else None) as conn:
            # The very certificate the server holds, not one made up by the proxy.
            assert conn.getpeercert(binary_form=True) == cert_der
            conn.sendall(struct.pack("!I", len(message)) + message)
            (size,) = struct.unpack("!I", _read_exact(conn, 4))
            got = _read_exact(conn, size)
        assert got == reply
        assert received == [message]
    assert "Traceback" not in mitm.log()


def test_intercepted_host_gets_the_proxy_certificate(mitm: Mitm) -> None:
    """The contrast: api.openai.com is decrypted, with a certificate from mitmproxy's CA."""
    context = ssl.create_default_context(cafile=str(mitm.ca_path))
    raw = tunnel(mitm, "api.openai.com:443")
    with context.wrap_socket(raw, server_hostname="api.openai.com") as conn:
        der = conn.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        ca = x509.load_pem_x509_certificate(mitm.ca_path.read_bytes())
        assert cert.issuer == ca.subject
        conn.sendall(b"GET /v1/nope HTTP/1.1\r\nHost: api.openai.com\r\nConnection: close\r\n\r\n")
        answer = b""
        while part := conn.recv(65536):
            answer += part
    assert answer.startswith(b"HTTP/1.1 404")
