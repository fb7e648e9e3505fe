"""One HTTP exchange on a reused, ready-configured curl handle.

curl_cffi's ``AsyncSession`` resets a handle after every request and sets it up
again from scratch for the next (impersonation, proxy, timeouts, cookie engine,
header normalisation ...): profiled under load, that set-up cost more than
libcurl's own work for chat2api's two calls per turn. Here a handle is set up
once for one kind of request (browser profile, proxy, method, streamed or not)
and only what changes per request is set: URL, headers, body, callbacks.

Handles share one ``AsyncCurl`` (one curl multi handle), so connections to the
backend are kept alive and reused across requests, as a browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from curl_cffi import Curl, CurlError
from curl_cffi.aio import AsyncCurl
from curl_cffi.const import CurlECode, CurlOpt
from curl_cffi.curl import CURL_WRITEFUNC_ERROR
from curl_cffi.requests.impersonate import resolve_latest_browser_type

from patches.curl import free_headers

log = logging.getLogger(__name__)

# Idle handles kept per kind of request; more are closed when they come back.
_MAX_IDLE = 64
# A streamed transfer below 1 byte/s for this long is ended by curl itself: a
# backstop behind chat2api's own idle timeouts.
_STALL_BACKSTOP = 3600


@dataclass(frozen=True)
class Kind:
    """What a handle is configured for, once."""

    method: str
    impersonate: str | None
    proxy: str | None
    stream: bool


class ImpersonationUnsupported(Exception):
    pass


class Transfer:
    """The state of one request: its head, its body, how it ended."""

    def __init__(self, *, limit: int | None) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = asyncio.Event()
        #: Set once curl is done with the transfer (ended, failed or aborted).
        self.finished = asyncio.Event()
        #: Set when body data arrives or the transfer ends; a reader clears it.
        self.arrived = asyncio.Event()
        self.body: deque[bytes] = deque()
        self.size = 0
        self.over_limit = False
        self.error: BaseException | None = None
        self._limit = limit
        self._stopped = False
        self._lines: list[bytes] = []

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def stop(self) -> None:
        """Refuse further data: curl ends the transfer at its next write."""
        self._stopped = True

    # curl callbacks (run inside curl's socket handling on the loop)

    def _header(self, line: bytes) -> int:
        if line in (b"\r\n", b"\n"):
            self._end_of_head()
        else:
            self._lines.append(line)
        return len(line)

    def _end_of_head(self) -> None:
        lines, self._lines = self._lines, []
        if not lines:
            return
        parts = lines[0].split(None, 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            status = 0
        if 100 <= status < 200:  # an interim answer; the real one follows
            return
        self.status = status
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        self.headers = headers
        self.head_done.set()

    def _write(self, chunk: bytes) -> int:
        if self._stopped:
            return CURL_WRITEFUNC_ERROR
        self.size += len(chunk)
        if self._limit is not None and self.size > self._limit:
            self.over_limit = True
            return CURL_WRITEFUNC_ERROR
        self.body.append(chunk)
        self.arrived.set()
        return len(chunk)

    def _finish(self, error: BaseException | None) -> None:
        self.error = error
        self.head_done.set()
        self.finished.set()
        self.arrived.set()


class _Sink:
    """A handle's callbacks, set once: they pass curl's data to the current transfer."""

    __slots__ = ("transfer", "timeout_ms")

    def __init__(self) -> None:
        self.transfer: Transfer | None = None
        self.timeout_ms = -1  # TIMEOUT_MS as last set on the handle

    def header(self, line: bytes) -> int:
        transfer = self.transfer
        return transfer._header(line) if transfer is not None else CURL_WRITEFUNC_ERROR

    def write(self, chunk: bytes) -> int:
        transfer = self.transfer
        return transfer._write(chunk) if transfer is not None else CURL_WRITEFUNC_ERROR


class CurlTransport:
    """Pooled curl handles on one curl multi handle, on the running loop."""

    def __init__(self, *, connect_timeout: float, max_transfers: int) -> None:
        self._connect_ms = max(1, int(connect_timeout * 1000))
        self._acurl: AsyncCurl | None = None
        self._idle: dict[Kind, list[Curl]] = {}
        self._running: dict[Curl, Transfer] = {}
        self._sinks: dict[Curl, _Sink] = {}
        self._slots = asyncio.Semaphore(max_transfers)
        self._closed = False

    @property
    def running(self) -> int:
        """Transfers still inside curl."""
        return len(self._running)

    def _multi(self) -> AsyncCurl:
        if self._acurl is None:
            # Created lazily on the running loop (mitmproxy's), never at import.
            self._acurl = AsyncCurl()
        return self._acurl

    async def start(
        self,
        kind: Kind,
        url: str,
        *,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        timeout: float | None,
        limit: int | None = None,
    ) -> tuple[Transfer, Curl]:
        """Start a transfer; it runs until it ends or :meth:`abort`."""
        if self._closed:
            raise CurlError("the backend client is closed")
        await self._slots.acquire()
        try:
            curl = self._handle(kind)
            transfer = Transfer(limit=limit)
            self._prepare(curl, kind, url, headers, body, timeout, transfer)
            future = self._multi().add_handle(curl)
        except BaseException:
            self._slots.release()
            raise
        self._running[curl] = transfer
        future.add_done_callback(lambda f: self._ended(kind, curl, transfer, f))
        return transfer, curl

    def abort(self, curl: Curl) -> None:
        """End a running transfer now (a no-op once it has ended)."""
        if curl in self._running and self._acurl is not None:
            with contextlib.suppress(Exception):
                self._acurl.remove_handle(curl)  # cancels its future: _ended runs

    async def close(self) -> None:
        self._closed = True
        for curl in list(self._running):
            self.abort(curl)
        if self._acurl is not None:
            acurl, self._acurl = self._acurl, None
            with contextlib.suppress(Exception):
                await acurl.close()  # type: ignore[no-untyped-call]
        for handles in self._idle.values():
            for curl in handles:
                curl.close()
        self._idle.clear()
        self._sinks.clear()

    def _ended(self, kind: Kind, curl: Curl, transfer: Transfer, future: Any) -> None:
        self._running.pop(curl, None)
        self._slots.release()
        error: BaseException | None
        if future.cancelled():
            error = CurlError("the transfer was aborted")
        else:
            error = future.exception()
        transfer._finish(error)
        # The handle keeps its set-up (callbacks included) for the next request
        # of the same kind; only its header list goes (patches/curl.py: without
        # that patch a handle serves one request).
        self._sinks[curl].transfer = None
        reusable = free_headers(curl)
        idle = self._idle.setdefault(kind, [])
        if self._closed or not reusable or len(idle) >= _MAX_IDLE:
            self._sinks.pop(curl, None)
            curl.close()
        else:
            idle.append(curl)

    def _handle(self, kind: Kind) -> Curl:
        idle = self._idle.get(kind)
        if idle:
            return idle.pop()
        curl = Curl()
        try:
            self._configure(curl, kind)
        except BaseException:
            curl.close()
            raise
        sink = self._sinks[curl] = _Sink()
        curl.setopt(CurlOpt.HEADERFUNCTION, sink.header)
        curl.setopt(CurlOpt.WRITEFUNCTION, sink.write)
        return curl

    def _configure(self, curl: Curl, kind: Kind) -> None:
        if kind.impersonate:
            target = resolve_latest_browser_type(kind.impersonate)  # type: ignore[no-untyped-call]
            if curl.impersonate(target, default_headers=True) != 0:
                raise ImpersonationUnsupported(kind.impersonate)
        # libcurl reads http(s)_proxy from the environment by itself; an empty
        # PROXY stops that (chat2api's own HTTPS_PROXY would loop back into it).
        curl.setopt(CurlOpt.PROXY, kind.proxy or "")
        curl.setopt(CurlOpt.NOPROXY, "")
        if kind.proxy:
            curl.setopt(CurlOpt.PROXY_CREDENTIAL_NO_REUSE, 1)
            # The proxy's own "200 Connection established" is not the answer's head.
            curl.setopt(CurlOpt.SUPPRESS_CONNECT_HEADERS, 1)
            if not kind.proxy.startswith("socks"):
                curl.setopt(CurlOpt.HTTPPROXYTUNNEL, 1)
        curl.setopt(CurlOpt.CONNECTTIMEOUT_MS, self._connect_ms)
        curl.setopt(CurlOpt.FOLLOWLOCATION, 0)
        curl.setopt(CurlOpt.ACCEPT_ENCODING, b"gzip, deflate, br")
        if kind.method == "GET":
            curl.setopt(CurlOpt.HTTPGET, 1)
        elif kind.method == "POST":
            curl.setopt(CurlOpt.POST, 1)
        else:
            curl.setopt(CurlOpt.CUSTOMREQUEST, kind.method.encode())
        if kind.stream:
            curl.setopt(CurlOpt.LOW_SPEED_LIMIT, 1)
            curl.setopt(CurlOpt.LOW_SPEED_TIME, _STALL_BACKSTOP)

    def _prepare(
        self,
        curl: Curl,
        kind: Kind,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        timeout: float | None,
        transfer: Transfer,
    ) -> None:
        curl.setopt(CurlOpt.URL, url.encode())
        if body is not None or kind.method in ("POST", "PUT", "PATCH"):
            data = body or b""
            curl.setopt(CurlOpt.POSTFIELDS, data)
            curl.setopt(CurlOpt.POSTFIELDSIZE, len(data))
        lines = []
        for name, value in headers:
            # "name;" sends an empty value; "name:" would remove the header.
            lines.append(f"{name}: {value}".encode() if value else f"{name};".encode())
        lines.append(b"Expect:")  # never wait for a 100-continue
        curl.setopt(CurlOpt.HTTPHEADER, lines)
        sink = self._sinks[curl]
        if not kind.stream:
            timeout_ms = max(1, int((timeout or 0) * 1000))
            if timeout_ms != sink.timeout_ms:
                curl.setopt(CurlOpt.TIMEOUT_MS, timeout_ms)
                sink.timeout_ms = timeout_ms
        sink.transfer = transfer


def is_timeout(error: BaseException) -> bool:
    return isinstance(error, CurlError) and error.code == CurlECode.OPERATION_TIMEDOUT
