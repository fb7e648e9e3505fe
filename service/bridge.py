"""A loopback HTTP/1.1 server that lets stock mitmproxy stream answers we generate.

mitmproxy streams only responses that come from a real upstream connection; a
response an addon sets itself is sent in one piece (docs/mitmproxy-streaming.md).
chat2api's ``inline_stream`` patch (patches/inline_stream.py) lifts that; when
it is off (``MITM_PATCHES=off``) or does not fit the installed mitmproxy, a
streamed completion is re-targeted at this server instead, on mitmproxy's own
event loop, under a single-use random path; mitmproxy then streams what we
write here to the client chunk by chunk. It costs a second HTTP connection per
streamed request (README "Patches").

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
# Buffered bytes towards mitmproxy above which the relay waits for them to leave.
_HIGH_WATER = 256 * 1024
# Pieces of an answer that are ready together leave together (see _pump), within limits.
_COALESCE_BYTES = 32 * 1024
_COALESCE_SECONDS = 0.001
# How long the relay waits for mitmproxy to take an answer's head (see _pump).
_FORWARD_WAIT = 0.05


@dataclass(kw_only=True)
class BridgeJob:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    on_abort: Callable[[], None] | None = None
    created: float = field(default_factory=time.monotonic)
    #: Set (by the addon's ``responseheaders``) once mitmproxy has the answer's head.
    forwarded: asyncio.Event = field(default_factory=asyncio.Event)


#: The (host, port) of every running bridge: chat2api's own connections to them are
#: not a client's, so the HTTPS proxy's destination guard lets them through
#: (addons/shield.py). A bridge serves only answers registered under random paths.
LISTENING: set[tuple[str, int]] = set()


class Bridge:
    def __init__(self) -> None:
        self._jobs: dict[str, BridgeJob] = {}
        self._relaying: dict[str, BridgeJob] = {}
        self._server: asyncio.AbstractServer | None = None
        self.port: int = 0

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            LISTENING.add(("127.0.0.1", self.port))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            LISTENING.discard(("127.0.0.1", self.port))
        for job in self._jobs.values():
            await _aclose(job.body)
        self._jobs.clear()

    def register(self, job: BridgeJob) -> str:
        """Keep ``job`` under a fresh random path; returns the URL to re-target to."""
        self._expire()
        token = secrets.token_urlsafe(18)
        self._jobs[token] = job
        return f"http://127.0.0.1:{self.port}{PATH_PREFIX}{token}"

    def drop(self, token: str) -> None:
        """Stop the answer under ``token`` if nobody has claimed it (its client left)."""
        job = self._jobs.pop(token, None)
        if job is not None:
            asyncio.ensure_future(_aclose(job.body))

    def forwarded(self, token: str) -> None:
        """mitmproxy has read the head of the answer under ``token`` (see ``_pump``)."""
        job = self._relaying.get(token) or self._jobs.get(token)
        if job is not None:
            job.forwarded.set()

    def _expire(self) -> None:
        now = time.monotonic()
        # Oldest first (insertion order): stop at the first one still fresh.
        for token, job in list(self._jobs.items()):
            if now - job.created <= JOB_TTL:
                break
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
                assert token is not None
                self._relaying[token] = job
                try:
                    if not await self._relay(job, reader, writer):
                        return
                finally:
                    self._relaying.pop(token, None)
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

        # A write to a half-closed loopback socket does not fail, so watch for
        # EOF from mitmproxy alongside the relay (docs/mitmproxy-streaming.md).
        eof = asyncio.ensure_future(reader.read(1))
        pump = asyncio.ensure_future(
            _pump(job.body, writer, "".join(head).encode("latin-1"), job.forwarded)
        )
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


async def _pump(
    body: AsyncIterator[bytes],
    writer: asyncio.StreamWriter,
    head: bytes,
    forwarded: asyncio.Event | None = None,
) -> None:
    """Write ``head``, then ``body`` as HTTP chunks, then the last chunk.

    Every write is a system call here and a pass through mitmproxy's layers on
    the other side, so what the body yields in one go (the pieces of one backend
    read) leaves as one chunk: a piece is queued, and the queue is written once
    the body has to wait for the backend (a ``call_soon`` runs after the current
    step of the generator), or at once when its oldest piece has waited
    ``_COALESCE_SECONDS`` or it holds ``_COALESCE_BYTES``. Nothing ever waits
    for more data to arrive.

    mitmproxy runs on this same loop: when the backend has sent a burst, the
    rest of the answer would be translated before mitmproxy got round to the
    head. So once the head has left, the pump waits (up to ``_FORWARD_WAIT``)
    for ``forwarded``, set when mitmproxy has taken the head, before it asks
    the body for more: the first content reaches the client first.
    """
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    size = 0
    since = 0.0
    scheduled = False

    def frame() -> bytes:
        nonlocal size
        data = b"".join(pending)
        pending.clear()
        size = 0
        return b"%x\r\n%s\r\n" % (len(data), data) if data else b""

    def flush() -> None:
        nonlocal scheduled, head
        scheduled = False
        if writer.is_closing():
            pending.clear()
            return
        out = head + frame()
        head = b""
        if out:
            writer.write(out)

    try:
        scheduled = True
        loop.call_soon(flush)  # the head leaves even if the first piece takes a while
        async for chunk in body:
            if forwarded is not None and not head and not forwarded.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_FORWARD_WAIT):
                        await forwarded.wait()
                forwarded = None
            if not chunk:
                continue
            if not pending:
                since = loop.time()
            pending.append(chunk)
            size += len(chunk)
            if size >= _COALESCE_BYTES or loop.time() - since >= _COALESCE_SECONDS:
                flush()
                if writer.transport.get_write_buffer_size() > _HIGH_WATER:
                    await writer.drain()
            elif not scheduled:
                scheduled = True
                loop.call_soon(flush)
        writer.write(head + frame() + b"0\r\n\r\n")
        head = b""
        await writer.drain()
    finally:
        pending.clear()
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
