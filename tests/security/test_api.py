"""Attacks on the API side and the HTTPS-proxy listener of a running chat2api.

Each test performs one finding of the security review (issue 14, README "Security")
against a real mitmdump with the backend emulator, using loopback servers and
clients it starts itself: a media server that answers a gzip bomb, a probe that
counts connections, a local TCP service the proxy must not reach, clients that
send half a request head or a 200 MiB body. Where memory was the problem, the
mitmdump process's peak resident size (``VmHWM``) is measured around the attack.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    mint_access_token,
    received,
)
from tests.support.mitm import Mitm, MitmFactory

CODE = "sec-code-" + "k" * 24
PREFIX = "hidden-prefix-" + "q" * 16
HEADER_TIMEOUT = 2.0
PER_ADDRESS = 40
MiB = 1024 * 1024


# --------------------------------------------------------------------------- servers


@dataclass
class Probe:
    """A loopback TCP service that counts the connections it gets."""

    port: int
    connections: list[float] = field(default_factory=list)
    sock: socket.socket | None = None

    def count(self) -> int:
        return len(self.connections)


@pytest.fixture(scope="module")
def probe() -> Iterator[Probe]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    found = Probe(port=sock.getsockname()[1], sock=sock)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            found.connections.append(time.time())
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(1024)
                    conn.sendall(b"+PONG\r\n")
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield found
    sock.close()


def gzip_bomb(total: int = 1024 * MiB, unit: int = 16 * MiB) -> bytes:
    """A valid gzip of ``total`` zero bytes in about 1 MiB: one deflate block of
    ``unit`` zeros, repeated (identical after a full flush), and the real trailer."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(unit)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush()[:-8]
    crc, mib = 0, bytes(MiB)
    for _ in range(total // MiB):
        crc = zlib.crc32(mib, crc)
    return first + repeat * (total // unit - 1) + end + struct.pack("<II", crc, total & 0xFFFFFFFF)


@dataclass
class MediaServer:
    port: int
    hits: list[str]
    bomb_size: int


@pytest.fixture(scope="module")
def media_server() -> Iterator[MediaServer]:
    bomb = gzip_bomb()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(bomb)))
            self.end_headers()
            try:
                self.wfile.write(bomb)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield MediaServer(port=server.server_address[1], hits=hits, bomb_size=len(bomb))
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def chat2api_options(media_server: MediaServer, probe: Probe) -> dict[str, Any]:
    env = {
        "AUTHORIZATION": CODE,
        "API_PREFIX": PREFIX,
        "MEDIA_ALLOW_HOSTS": f"127.0.0.1:{media_server.port}",
        "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
    }
    return {"env": env, "mirror": True, "flow_detail": 1}


def api(path: str) -> str:
    return f"/{PREFIX}/v1{path}"


# --------------------------------------------------------------------------- raw HTTP


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(sock: socket.socket, timeout: float = 30.0) -> Answer:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Answer(status, headers, rest[:length])


def exchange(port: int, raw: bytes, timeout: float = 30.0) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock, timeout)


def request(
    port: int,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Answer:
    head = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"content-length: {len(body)}")
    return exchange(port, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def chat_body(url: str) -> bytes:
    return json.dumps(
        {
            "model": "gpt-4o",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        }
    ).encode()


def chat(mitm: Mitm, body: bytes, key: str | None) -> Answer:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return request(mitm.reverse_port, "POST", api("/chat/completions"), body=body, headers=headers)


def peak_rss(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of ``pid`` in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) * 1024
    return values["VmHWM"], values["VmRSS"]


def no_traceback(mitm: Mitm) -> None:
    log = mitm.log()
    assert "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------- 1: media bomb


def test_gzip_bomb_in_a_media_fetch_keeps_memory_flat(
    mitm: Mitm, media_server: MediaServer
) -> None:
    """Finding 1: a 1 MiB gzip that inflates to 1 GiB is cut at media_max_bytes
    (20 MiB) while it inflates; chat2api's peak memory stays roughly where it was."""
    key = mint_access_token(exp_in=3600)
    # Warm up (first request's imports and buffers), then measure the attack alone.
    assert request(mitm.reverse_port, "GET", api("/models")).status == 200
    before, _ = peak_rss(mitm.proc.pid)
    started = time.monotonic()
    answer = chat(mitm, chat_body(f"http://127.0.0.1:{media_server.port}/bomb.png"), key)
    elapsed = time.monotonic() - started
    after, _ = peak_rss(mitm.proc.pid)
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert error["param"] == "messages[0].content[1]"
    assert "media_max_bytes" in error["message"]
    assert media_server.hits, "the bomb was never fetched"
    assert after - before < 100 * MiB, f"peak RSS grew by {(after - before) / MiB:.0f} MiB"
    assert elapsed < 20, elapsed
    no_traceback(mitm)


# --------------------------------------------------------------------------- 2: key first


@pytest.mark.parametrize(
    "key",
    [
        None,
        "wrong",
        "sk-proj-" + "a" * 40,
        "__expired__",
    ],
    ids=["no-key", "wrong-key", "openai-key", "expired-jwt"],
)
def test_media_is_not_fetched_before_the_key_is_checked(
    mitm: Mitm, probe: Probe, key: str | None
) -> None:
    """Finding 2: a request without a usable key is a 401 before any URL in it is
    resolved or fetched: the probe sees no connection, and a name that cannot
    resolve gives the 401 too (a fetch first would have been a 400)."""
    if key == "__expired__":
        key = mint_access_token(exp_in=-60)
    before = probe.count()
    for url in (
        f"http://127.0.0.1:{probe.port}/x.png",
        f"http://localhost:{probe.port}/x.png",
        "http://no-such-host.invalid/x.png",
    ):
        answer = chat(mitm, chat_body(url), key)
        assert answer.status == 401, (url, answer.body)
    time.sleep(0.2)
    assert probe.count() == before


# --------------------------------------------------------------------------- 3: bodies


def test_a_huge_body_with_content_length_is_refused_before_it_is_read(mitm: Mitm) -> None:
    """Finding 3: ``Content-Length: 200 MiB`` is answered at once (413), without
    the client sending a byte of the body; memory does not move."""
    before, _ = peak_rss(mitm.proc.pid)
    for key in (None, CODE):
        with socket.create_connection(("127.0.0.1", mitm.reverse_port), timeout=10) as sock:
            head = [
                f"POST {api('/chat/completions')} HTTP/1.1",
                "host: 127.0.0.1",
                "content-type: application/json",
                f"content-length: {200 * MiB}",
            ]
            if key:
                head.append(f"authorization: Bearer {key}")
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            started = time.monotonic()
            answer = read_answer(sock, timeout=5)
            assert time.monotonic() - started < 3
            assert answer.status == 413, answer.body
            assert answer.json()["error"]["code"] == "request_too_large"
    after, _ = peak_rss(mitm.proc.pid)
    assert after - before < 20 * MiB


def send_chunked(port: int, key: str | None, total: int) -> tuple[Answer | None, int]:
    """POST ``total`` bytes chunked; the answer (if any) and how much was sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = [
            f"POST {api('/chat/completions')} HTTP/1.1",
            "host: 127.0.0.1",
            "content-type: application/json",
            "transfer-encoding: chunked",
        ]
        if key:
            head.append(f"authorization: Bearer {key}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        piece = b"x" * (1 * MiB)
        frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
        sent = 0
        try:
            while sent < total:
                sock.sendall(frame)
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading: the answer tells why
        try:
            return read_answer(sock, timeout=10), sent
        except (ConnectionError, OSError):
            return None, sent


def test_a_huge_chunked_body_is_cut_at_the_limit(mitm: Mitm) -> None:
    """Finding 3: a chunked 200 MiB body without a key is a 401 before the body
    (the client is told at once); with a key it is cut at max_body_bytes (413).
    Peak memory grows by about the limit (25 MiB), never by the body."""
    before, _ = peak_rss(mitm.proc.pid)
    answer, _ = send_chunked(mitm.reverse_port, None, 200 * MiB)
    assert answer is not None and answer.status == 401, answer
    answer, sent = send_chunked(mitm.reverse_port, CODE, 200 * MiB)
    assert answer is not None and answer.status == 413, answer
    after, _ = peak_rss(mitm.proc.pid)
    assert after - before < 100 * MiB, f"peak RSS grew by {(after - before) / MiB:.0f} MiB"
    no_traceback(mitm)


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_early_refusals_through_the_https_proxy(mitm: Mitm, tmp_path: Path, http: str) -> None:
    """Finding 3 through the HTTPS proxy (TLS, HTTP/1.1 and HTTP/2): 5 MiB without a
    key is a 401 and 30 MiB (over the limit) a 413, both before the body is read."""
    import subprocess

    for key, size, status in ((None, 5, 401), (CODE, 30, 413)):
        big = tmp_path / f"big-{size}.json"
        big.write_bytes(b"x" * (size * MiB))
        args = [
            "curl", "-sS", http, "--proxy", mitm.proxy_url, "--cacert", str(mitm.ca_path),
            "-o", "-", "-w", "\n%{http_code}", "-H", "content-type: application/json",
            "--data-binary", f"@{big}",
            f"https://api.openai.com/{PREFIX}/v1/chat/completions",
        ]  # fmt: skip
        if key:
            args[1:1] = ["-H", f"authorization: Bearer {key}"]
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.stdout.rsplit("\n", 1)[-1] == str(status), (proc.stdout[-300:], proc.stderr)
        assert time.monotonic() - started < 15
    no_traceback(mitm)


# --------------------------------------------------------------------------- 8: the proxy


def proxy_exchange(mitm: Mitm, raw: bytes, timeout: float = 10) -> Answer:
    return exchange(mitm.proxy_port, raw, timeout)


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "0.0.0.0",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "2130706433",
    "0x7f000001",
    "127.1",
    "0177.0.0.1",
    "localhost.",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_the_proxy_does_not_tunnel_to_loopback(mitm: Mitm, probe: Probe, host: str) -> None:
    """Finding 8: ``CONNECT <loopback>:<port>`` in any spelling is a 403 and the
    local service sees no connection."""
    before = probe.count()
    answer = proxy_exchange(
        mitm, f"CONNECT {host}:{probe.port} HTTP/1.1\r\nhost: {host}:{probe.port}\r\n\r\n".encode()
    )
    assert answer.status == 403, answer
    time.sleep(0.1)
    assert probe.count() == before


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_the_proxy_does_not_forward_absolute_form_to_loopback(
    mitm: Mitm, probe: Probe, host: str
) -> None:
    """Finding 8: ``GET http://<loopback>:<port>/`` through the proxy: a 403, no connection;
    the same for the reverse listener's own ``/tokens`` (a self-request)."""
    before = probe.count()
    for port in (probe.port, mitm.reverse_port):
        answer = proxy_exchange(
            mitm,
            f"GET http://{host}:{port}/tokens HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode(),
        )
        assert answer.status == 403, (port, answer)
        assert answer.json()["error"]["code"] == "destination_refused"
    time.sleep(0.1)
    assert probe.count() == before


def test_the_proxy_still_intercepts_the_api_host(mitm: Mitm) -> None:
    """The intercepted API host is answered by chat2api itself: CONNECT succeeds."""
    with socket.create_connection(("127.0.0.1", mitm.proxy_port), timeout=10) as sock:
        sock.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nhost: api.openai.com:443\r\n\r\n")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head


@pytest.fixture(scope="module")
def sink() -> Iterator[int]:
    """A local HTTP server that reads and drops request bodies, answering their size."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            left, size = int(self.headers.get("content-length", "0")), 0
            while left:
                got = len(self.rfile.read(min(left, MiB)))
                if not got:
                    break
                left, size = left - got, size + got
            body = str(size).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def guarded(emulator: Emulator, probe: Probe, sink: int, module_mitm_factory: MitmFactory) -> Mitm:
    """A chat2api with proxy_auth and two local services allowed."""
    env = {
        "PROXY_AUTH": "alice:s3cret-pass",
        "PROXY_ALLOW_HOSTS": f"127.0.0.1:{probe.port},127.0.0.1:{sink}",
    }
    return module_mitm_factory(env, emulator_url=emulator.url)


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


def test_proxy_auth_and_allow_hosts(guarded: Mitm, probe: Probe) -> None:
    """``proxy_auth``: no or wrong credentials are a 407 with Proxy-Authenticate;
    the right ones pass; ``proxy_allow_hosts`` lets exactly the listed local
    service through (and nothing else local)."""
    target = f"127.0.0.1:{probe.port}"
    for auth in (None, basic("alice:wrong"), basic("mallory:s3cret-pass"), "Bearer x"):
        extra = f"proxy-authorization: {auth}\r\n" if auth else ""
        answer = proxy_exchange(
            guarded, f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n{extra}\r\n".encode()
        )
        assert answer.status == 407, (auth, answer)
        assert answer.headers.get("proxy-authenticate", "").startswith("Basic")
    before = probe.count()
    good = basic("alice:s3cret-pass")
    with socket.create_connection(("127.0.0.1", guarded.proxy_port), timeout=10) as sock:
        sock.sendall(
            f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n"
            f"proxy-authorization: {good}\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
    assert probe.count() == before + 1
    # Listed is that host:port only: the reverse listener stays out of reach.
    other = f"127.0.0.1:{guarded.reverse_port}"
    raw = f"CONNECT {other} HTTP/1.1\r\nhost: {other}\r\nproxy-authorization: {good}\r\n\r\n"
    answer = proxy_exchange(guarded, raw.encode())
    assert answer.status == 403
    # The reverse listener itself does not ask for proxy credentials.
    assert request(guarded.reverse_port, "GET", "/v1/models").status == 200


def test_bodies_passing_through_the_proxy_are_not_kept(guarded: Mitm, sink: int) -> None:
    """A 200 MiB POST through the proxy to an allowed host is streamed on, not buffered."""
    before, _ = peak_rss(guarded.proc.pid)
    size = 200 * MiB
    with socket.create_connection(("127.0.0.1", guarded.proxy_port), timeout=60) as sock:
        sock.sendall(
            f"POST http://127.0.0.1:{sink}/up HTTP/1.1\r\nhost: 127.0.0.1:{sink}\r\n"
            f"proxy-authorization: {basic('alice:s3cret-pass')}\r\n"
            f"content-length: {size}\r\n\r\n".encode()
        )
        piece = bytes(MiB)
        for _ in range(size // MiB):
            sock.sendall(piece)
        answer = read_answer(sock, timeout=60)
    assert answer.status == 200 and answer.body == str(size).encode()
    after, _ = peak_rss(guarded.proc.pid)
    assert after - before < 100 * MiB, f"peak RSS grew by {(after - before) / MiB:.0f} MiB"


# --------------------------------------------------------------------------- 10, 12: URLs


@pytest.mark.parametrize("port", ["+18520", "18520:80", "99999", "-1", "8o"])
def test_bad_ports_in_media_urls_are_a_clean_400(mitm: Mitm, port: str) -> None:
    """Finding 10: a port urlsplit cannot read is a 400 naming the part, never a 500."""
    key = mint_access_token(exp_in=3600)
    answer = chat(mitm, chat_body(f"http://example.com:{port}/a.png"), key)
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["param"] == "messages[0].content[1]"
    no_traceback(mitm)


def test_raw_bytes_in_a_request_line_are_a_clean_400(mitm: Mitm, emulator: Emulator) -> None:
    """Finding 10: raw ``\\xff\\xfe`` in a path (the mirror's or the API's) is a 400."""
    for path in (
        b"/backend-api/\xff\xfe",
        b"/\xff\xfe/v1/models",
        api("/models").encode() + b"\xff",
    ):
        raw = b"GET " + path + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        answer = exchange(mitm.reverse_port, raw)
        assert answer.status == 400, (path, answer)
    assert received(emulator.url) == []
    no_traceback(mitm)


@pytest.mark.parametrize(
    "host", ["[::127.0.0.1]", "[::ffff:0:127.0.0.1]", "[::ffff:127.0.0.1]", "[64:ff9b:1::7f00:1]"]
)
def test_ipv6_spellings_of_loopback_fail_the_url_guard(mitm: Mitm, probe: Probe, host: str) -> None:
    """Finding 12: IPv4-compatible and SIIT IPv6 forms of 127.0.0.1 are refused up front."""
    key = mint_access_token(exp_in=3600)
    answer = chat(mitm, chat_body(f"http://{host}:{probe.port}/x.png"), key)
    assert answer.status == 400, answer.body
    assert "local or private address" in answer.json()["error"]["message"]


# --------------------------------------------------------------------------- 11: slow clients


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed ``sock``, or None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - started
    except TimeoutError:
        return None
    except OSError:
        return time.monotonic() - started


@pytest.mark.parametrize("listener", ["reverse", "proxy"])
def test_half_sent_heads_are_closed_after_the_header_timeout(mitm: Mitm, listener: str) -> None:
    """Finding 11: a connection that sends part of a request head is closed after
    ``header_timeout``, on both listeners; so is one that goes quiet between requests."""
    port = mitm.reverse_port if listener == "reverse" else mitm.proxy_port
    target = api("/models") if listener == "reverse" else "http://api.openai.com/v1/models"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nhost: api.openai.com\r\nx-slow: ".encode())
        took = closed_within(sock, HEADER_TIMEOUT + 4)
    assert took is not None and took < HEADER_TIMEOUT + 3, took
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nhost: api.openai.com\r\n\r\n".encode())
        assert read_answer(sock).status in (200, 401, 404)
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")  # ...and the rest never comes
        took = closed_within(sock, HEADER_TIMEOUT + 4)
    assert took is not None and took < HEADER_TIMEOUT + 3, took


def test_connections_per_address_are_capped(mitm: Mitm) -> None:
    """Finding 11: beyond ``connections_per_address`` open connections, more are closed at once."""
    time.sleep(HEADER_TIMEOUT + 1.5)  # earlier tests' connections are gone
    held = [socket.create_connection(("127.0.0.1", mitm.reverse_port)) for _ in range(PER_ADDRESS)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", mitm.reverse_port))
        with extra:
            took = closed_within(extra, 2)
        assert took is not None and took < 1.5, took
        assert closed_within(held[0], 0.2) is None  # the first ones are still open
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert request(mitm.reverse_port, "GET", api("/models")).status == 200


# --------------------------------------------------------------------------- 13, 14, 15


def test_near_misses_under_the_api_prefix_stay_here(mitm: Mitm, emulator: Emulator) -> None:
    """Finding 13: paths under the secret prefix that are not API routes are a 404
    here, never the mirror's (which would send them upstream with a pool token and
    make a seed of the code); the prefix appears in no log line."""
    headers = {"authorization": f"Bearer {CODE}"}
    assert request(mitm.reverse_port, "GET", api("/models"), headers=headers).status == 200
    for path in (
        f"/{PREFIX}//v1/models",
        f"//{PREFIX}/v1/models",
        f"/{PREFIX}/backend-api/me",
        f"/{PREFIX}",
        "/%68" + PREFIX[1:] + "/v1x",
    ):
        answer = request(mitm.reverse_port, "GET", path, headers=headers)
        assert answer.status == 404, (path, answer)
    assert received(emulator.url) == []
    assert PREFIX not in mitm.log()


@pytest.mark.parametrize("value", [b"a\rb", b"a\x00b", b"a\x1bb", b"a\x7fb"])
@pytest.mark.parametrize("listener", ["api", "mirror"])
def test_control_characters_in_header_values_are_refused(
    mitm: Mitm, emulator: Emulator, value: bytes, listener: str
) -> None:
    """Finding 14: a header value with a bare CR, NUL or other control character is
    a 400; nothing reaches the backend."""
    path = api("/models").encode() if listener == "api" else b"/backend-api/models"
    raw = b"GET " + path + b" HTTP/1.1\r\nhost: 127.0.0.1\r\nx-evil: " + value + b"\r\n\r\n"
    try:
        answer = exchange(mitm.reverse_port, raw)
    except ConnectionError:
        return  # refused by the HTTP parser itself: fine too
    assert answer.status == 400, answer
    assert received(emulator.url) == []


def test_data_dir_is_private(mitm: Mitm) -> None:
    """Finding 15: DATA_DIR is created 0700 (its files are 0600)."""
    deadline = time.monotonic() + 10
    while not mitm.data_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mitm.data_dir.exists()
    assert os.stat(mitm.data_dir).st_mode & 0o777 == 0o700


def test_no_tracebacks_in_the_log(mitm: Mitm) -> None:
    no_traceback(mitm)


def test_the_launcher_applies_the_same_shield(
    mitm_factory: MitmFactory, emulator: Emulator, probe: Probe, tmp_path: Path
) -> None:
    """run.sh starts the lean master (``python -m patches.launcher``): the same refusals."""

    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "AUTHORIZATION": CODE,
        "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    with mitm_factory.run(tmp=tmp_path, env=env, launcher=True) as lean:
        target = f"127.0.0.1:{probe.port}"
        raw = f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n".encode()
        assert exchange(lean.proxy_port, raw).status == 403
        big = f"content-length: {200 * MiB}\r\n"
        raw = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{big}\r\n".encode()
        assert exchange(lean.reverse_port, raw, timeout=5).status == 413
        raw = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
        assert exchange(lean.reverse_port, raw, timeout=5).status == 401
        raw = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-evil: a\x00b\r\n\r\n"
        assert exchange(lean.reverse_port, raw).status == 400
        with socket.create_connection(("127.0.0.1", lean.reverse_port)) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n")
            took = closed_within(sock, HEADER_TIMEOUT + 4)
        assert took is not None and took < HEADER_TIMEOUT + 3, took
        assert "Traceback" not in lean.log()
