"""A small HTTP/1.1 server on asyncio streams: keep-alive, chunked streaming, disconnect detection.

It knows nothing about ChatGPT: `serve(app, host, port)` calls `app(request)` for every request and
writes the `Response` it returns. A streaming response gets a `Sink` to write events through; the
sink notices a client that hangs up (even while the handler is sleeping) and raises `ClientGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024


class ClientGone(Exception):
    """The client closed the connection while a response was being streamed."""


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP/1.1 request we can parse."""


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    peer: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A streaming body: called with a Sink once the head has been sent.
    stream: Callable[[Sink], Awaitable[None]] | None = None


App = Callable[[Request], Awaitable[Response]]


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    # FastAPI's JSONResponse: compact separators, raw UTF-8.
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, "application/json", headers or [])


class Sink:
    """Writes one chunk per `send`; raises `ClientGone` once the peer has hung up."""

    def __init__(self, writer: asyncio.StreamWriter, hangup: asyncio.Future[None]) -> None:
        self._writer = writer
        self._hangup = hangup
        self.aborted = False
        self.bytes_sent = 0

    @property
    def gone(self) -> bool:
        return self._hangup.done() or self._writer.is_closing()

    async def send(self, data: bytes) -> None:
        if not data:
            return
        if self.gone:
            raise ClientGone
        try:
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone from exc
        self.bytes_sent += len(data)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up (raising ClientGone) as soon as the client disconnects."""
        if seconds <= 0:
            if self.gone:
                raise ClientGone
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._hangup), seconds)
        if self.gone:
            raise ClientGone

    async def abort(self) -> None:
        """Drop the connection mid-body: no terminating chunk, the client sees a truncated body."""
        self.aborted = True
        transport = self._writer.transport
        for _ in range(1000):  # let what was sent leave first: abort() discards the buffer
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.001)
        transport.abort()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("truncated request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"bad header line {line!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, version, headers


async def _read_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
) -> bytes:
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0") or "0")
    if length < 0 or length > MAX_BODY:
        raise BadRequest("bad content-length")
    return await reader.readexactly(length) if length else b""


def _head_bytes(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _watch_hangup(reader: asyncio.StreamReader, hangup: asyncio.Future[None]) -> None:
    # While streaming, the client sends nothing (no pipelining), so any read result means EOF
    # or a reset: that is a hang-up.
    with contextlib.suppress(ConnectionError):
        await reader.read(1)
    if not hangup.done():
        hangup.set_result(None)


async def _handle_connection(
    app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = writer.get_extra_info("peername")
    peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
    try:
        while True:
            try:
                head = await _read_head(reader)
                if head is None:
                    return
                method, target, version, headers = _parse_head(head)
                body = await _read_body(reader, writer, headers)
            except (BadRequest, ValueError, asyncio.IncompleteReadError) as exc:
                msg = json.dumps({"detail": f"Bad request: {exc}"}).encode()
                writer.write(
                    _head_bytes(
                        400,
                        [
                            ("content-type", "application/json"),
                            ("content-length", str(len(msg))),
                            ("connection", "close"),
                        ],
                    )
                    + msg
                )
                await writer.drain()
                return
            split = urlsplit(target)
            request = Request(
                method=method.upper(),
                target=target,
                path=unquote(split.path),
                query=dict(parse_qsl(split.query, keep_blank_values=True)),
                raw_query=split.query,
                headers=headers,
                body=body,
                peer=peer_s,
            )
            conn_hdr = headers.get("connection", "").lower()
            keep_alive = (version == "HTTP/1.1" and "close" not in conn_hdr) or (
                "keep-alive" in conn_hdr
            )
            response = await app(request)
            out_headers = list(response.headers)
            if response.content_type is not None:
                out_headers.insert(0, ("content-type", response.content_type))
            if not keep_alive:
                out_headers.append(("connection", "close"))
            if response.stream is None:
                out_headers.append(("content-length", str(len(response.body))))
                payload = response.body if method.upper() != "HEAD" else b""
                writer.write(_head_bytes(response.status, out_headers) + payload)
                await writer.drain()
            else:
                out_headers.append(("transfer-encoding", "chunked"))
                writer.write(_head_bytes(response.status, out_headers))
                hangup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                watcher = asyncio.create_task(_watch_hangup(reader, hangup))
                sink = Sink(writer, hangup)
                try:
                    await response.stream(sink)
                    if sink.aborted:
                        return
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                except ClientGone:
                    return
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                if hangup.done() and not hangup.cancelled():
                    return  # the watcher consumed the read side: do not reuse the connection
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(app: App, host: str, port: int) -> asyncio.Server:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle_connection(app, reader, writer)

    return await asyncio.start_server(handler, host, port, limit=MAX_HEAD, backlog=1024)
