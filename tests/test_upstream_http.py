"""The backend HTTP client's limits: every way a backend can fail to answer ends
in one of our errors within its timeout, and the connection is closed then, not
left running inside curl."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from upstream.http import BackendHttp


class Backend:
    """A loopback server whose behaviour each test sets; it records closes."""

    def __init__(self, answer: bytes | None, *, after_head: bytes = b"") -> None:
        self.answer = answer  # None: never answer
        self.after_head = after_head
        self.closed = asyncio.Event()
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.answer is not None:
                writer.write(self.answer)
                await writer.drain()
                if self.after_head:
                    writer.write(self.after_head)
                    await writer.drain()
            while await reader.read(4096):  # until the client closes
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()
            writer.close()


@asynccontextmanager
async def serve(backend: Backend) -> AsyncIterator[str]:
    server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/backend-api/conversation"
    finally:
        server.close()


async def open_stream(http: BackendHttp, url: str, first_byte: float = 0.5) -> object:
    return await http.open_stream(
        url, headers={}, json_body={"a": 1}, impersonate=None, first_byte_timeout=first_byte
    )


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" b"transfer-encoding: chunked\r\n\r\n"
)


def test_no_headers_within_first_byte_timeout_closes_the_connection() -> None:
    async def main() -> None:
        backend = Backend(None)
        http = BackendHttp()
        async with serve(backend) as url:
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await open_stream(http, url, first_byte=0.4)
            assert time.monotonic() - started < 1.5
            # The transfer is aborted, not left running inside curl.
            await asyncio.wait_for(backend.closed.wait(), 1.0)
            # The handle went back to the pool and still works.
            ok = Backend(SSE_HEAD, after_head=b"5\r\ndata:\r\n0\r\n\r\n")
            async with serve(ok) as url2:
                stream = await open_stream(http, url2)
                assert getattr(stream, "status", None) == 200
                await stream.close()  # type: ignore[attr-defined]
        await http.close()

    asyncio.run(main())


def test_many_timeouts_alongside_good_streams_leave_no_transfer_behind() -> None:
    """Aborting a timed-out request never touches a handle another request holds."""

    async def main() -> None:
        silent = Backend(None)
        good = Backend(SSE_HEAD, after_head=b"7\r\ndata: x\r\n")
        http = BackendHttp(max_clients=8)
        async with serve(silent) as bad_url, serve(good) as good_url:

            async def bad() -> None:
                with pytest.raises(UpstreamTimeout):
                    await open_stream(http, bad_url, first_byte=0.2)

            async def fine() -> None:
                stream = await open_stream(http, good_url, first_byte=5)
                chunks = [c async for c in _first(stream)]
                assert chunks == [b"data: x"]
                await stream.close()  # type: ignore[attr-defined]

            await asyncio.gather(*(bad() if i % 2 else fine() for i in range(24)))
            assert http.transport.running == 0  # no transfer still running
        await http.close()

    asyncio.run(main())


async def _first(stream: object) -> AsyncIterator[bytes]:
    async for chunk in stream.chunks(idle_timeout=2):  # type: ignore[attr-defined]
        yield chunk
        return


def test_connection_refused_is_unavailable_at_once() -> None:
    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        http = BackendHttp()
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            await open_stream(http, f"http://127.0.0.1:{port}/x", first_byte=5)
        assert time.monotonic() - started < 2
        await http.close()

    asyncio.run(main())


def test_idle_gap_raises_and_close_ends_a_stalled_stream_at_once() -> None:
    async def main() -> None:
        backend = Backend(SSE_HEAD, after_head=b"7\r\ndata: x\r\n")
        http = BackendHttp()
        async with serve(backend) as url:
            stream = await open_stream(http, url)
            seen: list[bytes] = []
            with pytest.raises(UpstreamTimeout):
                async for chunk in stream.chunks(idle_timeout=0.3):  # type: ignore[attr-defined]
                    seen.append(chunk)
            assert seen == [b"data: x"]
            started = time.monotonic()
            await stream.close()  # type: ignore[attr-defined]
            await asyncio.wait_for(backend.closed.wait(), 1.0)
            assert time.monotonic() - started < 1.0
        await http.close()

    asyncio.run(main())


def test_a_dropped_stream_is_an_error_not_an_end() -> None:
    async def main() -> None:
        class Dropper(Backend):
            async def handle(
                self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(SSE_HEAD + b"7\r\ndata: x\r\n")
                await writer.drain()
                writer.transport.abort()  # no terminating chunk

        http = BackendHttp()
        async with serve(Dropper(None)) as url:
            stream = await open_stream(http, url)
            with pytest.raises(UpstreamError):
                async for _ in stream.chunks(idle_timeout=2):  # type: ignore[attr-defined]
                    pass
            await stream.close()  # type: ignore[attr-defined]
        await http.close()

    asyncio.run(main())


def test_connect_timeout_applies_to_streams_and_requests() -> None:
    """A backend whose accept queue is full never completes the TCP handshake."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue; later SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)

    async def main() -> None:
        http = BackendHttp(connect_timeout=0.4)
        url = f"http://127.0.0.1:{port}/backend-api/conversation"
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="connect"):
            await open_stream(http, url, first_byte=10)
        assert time.monotonic() - started < 2
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await http.request("GET", url, headers={}, impersonate=None, timeout=10)
        assert time.monotonic() - started < 2
        await http.close()

    try:
        asyncio.run(main())
    finally:
        for s in fillers:
            s.close()
        server.close()


class KeepAliveBackend:
    """Answers every request on a connection with ``answer``; records what came."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head, body))
                writer.write(self.answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _answer(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nX-Trace: a\r\n"
        b"content-length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


def test_requests_reuse_one_connection_and_one_handle() -> None:
    async def main() -> None:
        backend = KeepAliveBackend(_answer(b'{"ok":true}'))
        server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/backend-api/x"
        http = BackendHttp()
        for i in range(5):
            answer = await http.request(
                "POST",
                url,
                headers={"Authorization": "Bearer t", "X-Empty": ""},
                json_body={"n": i},
                impersonate=None,
                timeout=5,
            )
            assert answer.status == 200 and answer.json() == {"ok": True}
            assert answer.headers["x-trace"] == "a"  # names in lower case
        assert backend.connections == 1  # kept alive, as a browser does
        head, body = backend.requests[-1]
        assert body == b'{"n":4}'
        lines = head.lower().split(b"\r\n")
        assert b"content-type: application/json" in lines
        assert b"x-empty:" in lines  # an empty value is sent, not dropped
        assert not any(line.startswith(b"expect") for line in lines)
        assert http.transport.running == 0
        await http.close()
        server.close()

    asyncio.run(main())


def test_an_oversized_answer_is_refused_and_the_client_recovers() -> None:
    async def main() -> None:
        big = KeepAliveBackend(_answer(b"x" * 200_000))
        small = KeepAliveBackend(_answer(b"{}"))
        server_big = await asyncio.start_server(big.handle, "127.0.0.1", 0)
        server_small = await asyncio.start_server(small.handle, "127.0.0.1", 0)
        http = BackendHttp()
        with pytest.raises(UpstreamError, match="oversized"):
            await http.request(
                "GET",
                f"http://127.0.0.1:{server_big.sockets[0].getsockname()[1]}/a",
                headers={},
                impersonate=None,
                timeout=5,
                limit=1000,
            )
        answer = await http.request(
            "GET",
            f"http://127.0.0.1:{server_small.sockets[0].getsockname()[1]}/b",
            headers={},
            impersonate=None,
            timeout=5,
        )
        assert answer.body == b"{}"
        assert small.requests[0][0].startswith(b"GET /b ")
        await http.close()
        server_big.close()
        server_small.close()

    asyncio.run(main())


def test_interim_answers_are_skipped_and_environment_proxies_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # chat2api's own HTTPS_PROXY must never send backend calls back into itself.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")

    async def main() -> None:
        backend = KeepAliveBackend(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + _answer(b"[]")
        )
        server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
        http = BackendHttp()
        answer = await http.request(
            "GET",
            f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/c",
            headers={},
            impersonate=None,
            timeout=5,
        )
        assert answer.status == 200 and answer.body == b"[]"
        assert "link" not in answer.headers
        await http.close()
        server.close()

    asyncio.run(main())


def test_through_a_proxy_the_answer_head_is_the_backends() -> None:
    """The proxy's "200 Connection established" must not pass for the answer."""

    async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\nX-Proxy: yes\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        backend = KeepAliveBackend(_answer(b'{"created":1}', status=b"201 Created"))
        server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
        proxy = await asyncio.start_server(tunnel, "127.0.0.1", 0)
        proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
        http = BackendHttp(proxies=(proxy_url,))
        answer = await http.request(
            "POST",
            f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/d",
            headers={},
            json_body={},
            impersonate=None,
            timeout=5,
            proxy=http.pick_proxy(),
        )
        assert answer.status == 201
        assert "x-proxy" not in answer.headers
        assert backend.requests  # it went through the tunnel
        await http.close()
        await asyncio.sleep(0.1)  # let the tunnel see curl hang up
        server.close()
        proxy.close()

    asyncio.run(main())


def test_an_unknown_browser_profile_is_a_clear_error() -> None:
    async def main() -> None:
        http = BackendHttp()
        with pytest.raises(UpstreamUnavailable):
            await http.request(
                "GET", "http://127.0.0.1:9/", headers={}, impersonate="netscape4", timeout=1
            )
        assert http.transport.running == 0
        await http.close()

    asyncio.run(main())
