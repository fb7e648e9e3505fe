"""A recording HTTP proxy for tests: CONNECT tunnels (curl's way through a proxy),
with what passes through them read, since the emulator speaks plain HTTP.

Each tunnel records the ``Proxy-Authorization`` user and the request lines that
went through it, so a test can tell which proxy carried which backend call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_REQUEST_LINE = re.compile(rb"(GET|POST|PUT|DELETE|PATCH) (/\S*) HTTP/1\.1\r\n")


@dataclass
class Tunnel:
    user: str | None
    target: str
    paths: list[str] = field(default_factory=list)


@dataclass
class RecordingProxy:
    port: int = 0
    tunnels: list[Tunnel] = field(default_factory=list)

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [p for t in self.tunnels for p in t.paths]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target = lines[0].split(" ")[:2]
        user = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "proxy-authorization" and value.strip().startswith("Basic "):
                decoded = base64.b64decode(value.strip()[6:]).decode()
                user = decoded.split(":", 1)[0]
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        tunnel = Tunnel(user=user, target=target)
        self.tunnels.append(tunnel)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if record:
                        tunnel.paths += [m.group(2).decode() for m in _REQUEST_LINE.finditer(data)]
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@contextlib.contextmanager
def recording_proxy() -> Iterator[RecordingProxy]:
    """A :class:`RecordingProxy` on a free loopback port, served from a thread."""
    proxy = RecordingProxy()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server: asyncio.AbstractServer | None = None

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        proxy.port = server.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(10)
    try:
        yield proxy
    finally:

        async def stop() -> None:
            assert server is not None
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
