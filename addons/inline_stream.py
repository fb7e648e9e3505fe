"""Streaming an answer the addon makes itself, straight from mitmproxy's HTTP layer.

mitmproxy 11 streams only responses it reads from a server; a response an addon
sets in ``request`` leaves in one piece (``docs/mitmproxy.md#answers-made-by-an-addon``). Going
through a loopback server instead costs a second HTTP connection per request
(parsing, chunk framing, socket calls and server hooks on both ends), which was
the largest part of chat2api's CPU per streamed request.

So :func:`install` gives ``HttpStream.send_response`` one more case: when the
flow's response was set by an addon together with an :class:`AnswerSource`
(:func:`attach`), the head goes out at once and the body follows piece by piece.
A sans-I/O layer cannot await, but it can wait for a hook: every piece is
fetched through :class:`NextPiecesHook`, which the addon answers with
:meth:`AnswerSource.next`. The hook blocks only this HTTP stream, like any
other hook; its argument is the source, not the flow, so mitmproxy does not
follow each piece with an ``update`` event.

The answer's generator runs in its own task (started by the first ``next``),
and each hook takes everything produced since the last one as one chunk: what
one backend read yields leaves in one write, and nothing waits for more data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Any

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import SendHttp
from mitmproxy.proxy.layers.http._events import (
    ResponseData,
    ResponseHeaders,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook

log = logging.getLogger(__name__)

# A burst from the backend is handed on in slices: the generator gives the
# loop a turn once the oldest untaken piece is this old or this much is ready,
# so the first content does not wait for the whole burst to be translated.
_SLICE_SECONDS = 0.001
_SLICE_BYTES = 32 * 1024
# Untaken bytes above which the generator waits for the client side to catch up.
_HIGH_WATER = 1024 * 1024


class AnswerSource:
    """An answer's body, produced in its own task and taken in batches.

    :meth:`start` runs the body at once, while mitmproxy still works through the
    response's hooks; its first piece then waits until it has been taken, so the
    first content leaves before the rest of a burst is translated.
    """

    def __init__(
        self,
        body: AsyncIterator[bytes],
        flow_id: str,
        client_id: str,
        on_end: Callable[[AnswerSource], None] | None = None,
    ) -> None:
        self.flow_id = flow_id
        self.client_id = client_id
        self._body = body
        self._on_end = on_end
        self._ready: list[bytes] = []
        self._size = 0
        self._since = 0.0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._taken_once = False
        self._ended = False
        self._closed = False
        #: Why the answer broke off, if it did (not set when it was stopped on purpose).
        self.failure: str | None = None

    @property
    def finished(self) -> bool:
        """Nothing more will come: the body ended and everything was taken."""
        return self._ended and not self._ready

    def start(self) -> None:
        if self._task is None and not self._ended:
            self._task = asyncio.ensure_future(self._produce())

    def take(self) -> bytes | None:
        """Everything produced since the last take, or None if nothing is ready."""
        if not self._ready:
            return None
        data = b"".join(self._ready)
        self._ready.clear()
        self._size = 0
        self._taken_once = True
        self._room.set()
        return data

    async def wait(self) -> None:
        """Until something can be taken or the answer is over."""
        self.start()
        while not self._ready and not self._ended:
            self._wake.clear()
            await self._wake.wait()

    async def close(self) -> None:
        """Stop the answer (its client went away): it ends at once."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        else:
            await _aclose(self._body)
        self._ready.clear()
        self._ended = True
        self._wake.set()
        self._room.set()

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for piece in self._body:
                if not piece:
                    continue
                if not self._ready:
                    self._since = loop.time()
                self._ready.append(piece)
                self._size += len(piece)
                self._wake.set()
                if not self._taken_once or self._size >= _HIGH_WATER:
                    self._room.clear()
                    await self._room.wait()
                elif self._size >= _SLICE_BYTES or loop.time() - self._since >= _SLICE_SECONDS:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            if not self._closed:
                self.failure = "the answer was cancelled"
            raise
        except Exception as e:  # noqa: BLE001 - the stream must end, and the client see it broke
            self.failure = f"the answer broke off ({type(e).__name__})"
            log.exception("streamed answer failed")
        finally:
            self._ended = True
            self._wake.set()
            await _aclose(self._body)
            if self._on_end is not None:
                self._on_end(self)


@dataclass
class NextPiecesHook(commands.StartHook):  # type: ignore[no-untyped-call]
    """Wait until ``source`` has something to take, or has ended."""

    source: AnswerSource
    name = "chat2api_next_pieces"


# Sources waiting for their flow's response to be sent, by flow id. (Not in
# flow.metadata: that is serialised when someone saves flows.)
_pending: dict[str, AnswerSource] = {}


def attach(flow: http.HTTPFlow, source: AnswerSource) -> None:
    """Stream ``source`` as the body of ``flow.response`` (set by the caller)."""
    assert flow.response is not None
    response = flow.response
    response.headers.pop("content-length", None)
    if flow.request.http_version == "HTTP/1.1" or flow.request.is_http2 or flow.request.is_http3:
        # (mitmproxy drops it again for HTTP/2 and 3 clients, which frame bodies themselves.)
        response.headers["transfer-encoding"] = "chunked"
    else:  # HTTP/1.0: the end of the body is the end of the connection.
        response.headers["connection"] = "close"
    _pending[flow.id] = source


def detach(flow_id: str) -> AnswerSource | None:
    return _pending.pop(flow_id, None)


_Commands = Generator[commands.Command, Any, None]


def _streaming_send_response(original: Any) -> Any:
    def send_response(self: Any, already_streamed: bool = False) -> _Commands:
        source = None if already_streamed else _pending.pop(self.flow.id, None)
        if source is None:
            yield from original(self, already_streamed)
            return
        client = self.context.client
        yield SendHttp(ResponseHeaders(self.stream_id, self.flow.response, False), client)
        while True:
            # What is ready goes out now; the hook is only for waiting.
            data = source.take()
            if data is not None:
                yield SendHttp(ResponseData(self.stream_id, data), client)
            elif source.finished:
                break
            else:
                yield NextPiecesHook(source)
        if source.failure is not None:
            # Not a clean end: the client must see the answer broke off.
            self.flow.error = mflow.Error(f"chat2api: {source.failure}")
            yield HttpErrorHook(self.flow)
            yield SendHttp(ResponseProtocolError(self.stream_id, source.failure), client)
            self.client_state = self.server_state = self.state_errored
            return
        yield from original(self, True)

    send_response.chat2api_streaming = True  # type: ignore[attr-defined]
    return send_response


def install() -> None:
    """Teach mitmproxy's HTTP layer to stream attached answers (idempotent)."""
    stream_cls: Any = http_layers.HttpStream
    current = stream_cls.send_response
    if not getattr(current, "chat2api_streaming", False):
        stream_cls.send_response = _streaming_send_response(current)


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
