"""A loopback HTTP/1.1 server that lets mitmproxy stream answers we generate.

mitmproxy streams only responses that come from a real upstream connection; a
response an addon sets itself is sent in one piece (``mitmproxy-notes.md`` §1b).
So a streamed completion is re-targeted at this server, on mitmproxy's own
event loop, under a single-use random path; mitmproxy then streams what we
write here to the client chunk by chunk.

When mitmproxy drops the connection (the client went away), the job's body
iterator is cancelled at once, which closes the backend stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PATH_PREFIX = "/bridge/"
# A job not claimed within this time is dropped (its flow died before reaching us).
JOB_TTL = 30.0
MAX_HEAD = 64 * 1024


@dataclass(kw_only=True)
class BridgeJob:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    on_abort: Callable[[], None] | None = None
    created: float = field(default_factory=time.monotonic)


class Bridge:
    def __init__(self) -> None:
        self._jobs: dict[str, BridgeJob] = {}
        self._server: asyncio.AbstractServer | None = None
        self.port: int = 0

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for job in self._jobs.values():
            await _aclose(job.body)
        self._jobs.clear()

    def register(self, job: BridgeJob) -> str:
        """Keep ``job`` under a fresh random path; returns the URL to re-target to."""
        self._expire()
        token = secrets.token_urlsafe(18)
        self._jobs[token] = job
        return f"http://127.0.0.1:{self.port}{PATH_PREFIX}{token}"

    def _expire(self) -> None:
        now = time.monotonic()
        for token, job in list(self._jobs.items()):
            if now - job.created > JOB_TTL:
                del self._jobs[token]
                asyncio.ensure_future(_aclose(job.body))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                if len(head) > MAX_HEAD:
                    return
                token, body_length = _parse_head(head)
                if body_length:
                    await reader.readexactly(body_length)
                job = self._jobs.pop(token, None) if token else None
                if job is None:
                    writer.write(
                        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n"
                        b"content-length: 9\r\n\r\nnot found"
                    )
                    await writer.drain()
                    continue
                if not await self._relay(job, reader, writer):
                    return
        except Exception:  # noqa: BLE001 - one broken connection must not hurt others
            log.exception("bridge connection failed")
        finally:
            writer.close()

    async def _relay(
        self, job: BridgeJob, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Send one job's answer; False when the peer went away."""
        head = [f"HTTP/1.1 {job.status} OK\r\n"]
        for key, value in job.headers.items():
            head.append(f"{key}: {value}\r\n")
        head.append("transfer-encoding: chunked\r\n\r\n")
        writer.write("".join(head).encode("latin-1"))

        # A write to a half-closed loopback socket does not fail, so watch for
        # EOF from mitmproxy alongside the relay (mitmproxy-notes.md §1b).
        eof = asyncio.ensure_future(reader.read(1))
        pump = asyncio.ensure_future(_pump(job.body, writer))
        done, _ = await asyncio.wait({eof, pump}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            eof.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await eof
            return pump.exception() is None
        # The client (through mitmproxy) is gone: stop the job now.
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        await _aclose(job.body)
        if job.on_abort is not None:
            job.on_abort()
        return False


async def _pump(body: AsyncIterator[bytes], writer: asyncio.StreamWriter) -> None:
    try:
        async for chunk in body:
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    finally:
        await _aclose(body)


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _parse_head(head: bytes) -> tuple[str | None, int]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) >= 2 else ""
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            with contextlib.suppress(ValueError):
                length = int(value.strip())
    if not path.startswith(PATH_PREFIX):
        return None, length
    return path[len(PATH_PREFIX) :], length
