"""Streaming an answer the addon makes itself, straight from mitmproxy's HTTP layer
(patch ``inline_stream``).

mitmproxy (11 and 12) streams only responses it reads from a server; a response
an addon sets in ``request`` leaves in one piece
(``docs/mitmproxy.md#answers-made-by-an-addon``). Going through a loopback
server instead (service/bridge.py, what chat2api does without this patch) costs
a second HTTP connection per request (parsing, chunk framing, socket calls and
server hooks on both ends), which was the largest part of chat2api's CPU per
streamed request.

So :func:`apply` gives ``HttpStream.send_response`` one more case: when the
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

import patches

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


def is_attached(flow_id: str) -> bool:
    """Whether ``flow_id``'s response is an attached answer not yet sent (addons/ops.py)."""
    return flow_id in _pending


def detach(flow_id: str) -> AnswerSource | None:
    return _pending.pop(flow_id, None)


_Commands = Generator[commands.Command, Any, None]


@dataclass(frozen=True)
class _Shapes:
    """The private parts of mitmproxy's HTTP layer the patch uses, as found."""

    stream_cls: Any
    send_http: Any
    headers: Any
    data: Any
    error_hook: Any
    #: ``ResponseProtocolError(stream_id, message)`` for this mitmproxy: 11 takes an
    #: optional int status, 12 requires an ``ErrorCode``.
    protocol_error: Callable[[int, str], Any]


_shapes: _Shapes | None = None


def _find_shapes() -> _Shapes | str:
    """The shapes, or why they are not what the patch replaces."""
    import inspect

    from mitmproxy.proxy.layers import http as http_layers
    from mitmproxy.proxy.layers.http import _events, _hooks

    stream_cls = getattr(http_layers, "HttpStream", None)
    send = getattr(stream_cls, "send_response", None)
    if send is None:
        return "mitmproxy's HttpStream has no send_response"
    params = list(inspect.signature(getattr(send, "chat2api_original", send)).parameters)
    if params != ["self", "already_streamed"]:
        return f"HttpStream.send_response takes {params}, not (self, already_streamed)"
    if not callable(getattr(stream_cls, "state_errored", None)):
        return "HttpStream has no state_errored"
    source = inspect.getsource(stream_cls) if isinstance(stream_cls, type) else ""
    for name in ("client_state", "server_state", "stream_id", "flow", "context"):
        if f"self.{name}" not in source:
            return f"HttpStream keeps no self.{name}"
    needed = ("ResponseHeaders", "ResponseData", "ResponseProtocolError")
    missing = [n for n in needed if not hasattr(_events, n)]
    if missing or not hasattr(_hooks, "HttpErrorHook") or not hasattr(http_layers, "SendHttp"):
        return f"mitmproxy's HTTP layer lacks {', '.join(missing) or 'HttpErrorHook/SendHttp'}"
    error_cls = _events.ResponseProtocolError
    error_params = inspect.signature(error_cls.__init__).parameters
    if list(error_params)[:3] != ["self", "stream_id", "message"]:
        return f"ResponseProtocolError takes {list(error_params)}"
    code = error_params.get("code")
    error_code = getattr(_events, "ErrorCode", None)
    protocol_error: Callable[[int, str], Any]
    if error_code is not None and hasattr(error_code, "GENERIC_SERVER_ERROR"):  # mitmproxy 12
        generic = error_code.GENERIC_SERVER_ERROR
        protocol_error = lambda sid, msg: error_cls(sid, msg, generic)  # noqa: E731
    elif code is None or code.default is not inspect.Parameter.empty:  # mitmproxy 11
        protocol_error = lambda sid, msg: error_cls(sid, msg)  # noqa: E731
    else:
        return "ResponseProtocolError needs an error code of a kind the patch does not know"
    return _Shapes(
        stream_cls=stream_cls,
        send_http=http_layers.SendHttp,
        headers=_events.ResponseHeaders,
        data=_events.ResponseData,
        error_hook=_hooks.HttpErrorHook,
        protocol_error=protocol_error,
    )


def fits() -> str | None:
    global _shapes
    why = patches.mitmproxy_version_fits()
    if why is not None:
        return why
    found = _find_shapes()
    if isinstance(found, str):
        return found
    _shapes = found
    return None


def _streaming_send_response(original: Any, shapes: _Shapes) -> Any:
    send_http, headers, data = shapes.send_http, shapes.headers, shapes.data

    def send_response(self: Any, already_streamed: bool = False) -> _Commands:
        source = None if already_streamed else _pending.pop(self.flow.id, None)
        if source is None:
            yield from original(self, already_streamed)
            return
        client = self.context.client
        yield send_http(headers(self.stream_id, self.flow.response, False), client)
        while True:
            # What is ready goes out now; the hook is only for waiting.
            piece = source.take()
            if piece is not None:
                yield send_http(data(self.stream_id, piece), client)
            elif source.finished:
                break
            else:
                yield NextPiecesHook(source)
        if source.failure is not None:
            # Not a clean end: the client must see the answer broke off.
            self.flow.error = mflow.Error(f"chat2api: {source.failure}")
            yield shapes.error_hook(self.flow)
            yield send_http(shapes.protocol_error(self.stream_id, source.failure), client)
            self.client_state = self.server_state = self.state_errored
            return
        yield from original(self, True)

    send_response.chat2api_streaming = True  # type: ignore[attr-defined]
    send_response.chat2api_original = original  # type: ignore[attr-defined]
    return send_response


def apply() -> None:
    """Teach mitmproxy's HTTP layer to stream attached answers (idempotent)."""
    assert _shapes is not None, "fits() first"
    stream_cls = _shapes.stream_cls
    current = stream_cls.send_response
    if not getattr(current, "chat2api_streaming", False):
        stream_cls.send_response = _streaming_send_response(current, _shapes)


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
