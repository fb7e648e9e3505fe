"""Answering a request before its body is read, and cutting a body at a limit
(patch ``early_answer``).

mitmproxy reads a request's whole body into memory before the ``request`` hook,
even when an addon already answered in ``requestheaders``: that answer leaves
only after the last byte came in (``HttpStream.state_consume_request_body``).
A 200 MiB POST without a key was buffered whole before its 401.

:func:`apply` gives ``HttpStream`` two more cases:

* an answer set in ``requestheaders`` together with :func:`answer_now` leaves at
  once; the rest of the body is read and dropped, never kept;
* :func:`limit_body` bounds a body that comes without a ``Content-Length``
  (chunked): at the limit the buffered part is dropped and the answer given
  (a 413) leaves in the same way.

Either way an HTTP/1 connection is half-closed after the answer (the client
reads the answer, then the end; addons/shield.py closes it for good if the
client keeps sending); on HTTP/2 only that stream ends. Nothing else changes.
The mitmproxy behaviour this relies on: ``docs/api-security.md``.

Without the patch (it stood aside, or ``MITM_PATCHES=off``) the same calls still
give the same answers, after mitmproxy has read the body: correct, not early.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Generator
from typing import Any

from mitmproxy import http
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import SendHttp
from mitmproxy.proxy.layers.http._events import (
    RequestData,
    ResponseEndOfMessage,
)

import patches

EARLY = "chat2api.early"
LIMIT = "chat2api.body_limit"
OVER = "chat2api.body_over"


def answer_now(flow: http.HTTPFlow, response: http.Response) -> None:
    """From ``requestheaders``: send ``response`` without reading the body."""
    flow.response = response
    flow.metadata[EARLY] = True
    # No "100 Continue" for a body nobody will read.
    flow.request.headers.pop("expect", None)


def limit_body(flow: http.HTTPFlow, limit: int, over: http.Response) -> None:
    """From ``requestheaders``: answer ``over`` once the body passes ``limit`` bytes."""
    flow.metadata[LIMIT] = limit
    flow.metadata[OVER] = over


def fits() -> str | None:
    """None when ``HttpStream`` has the states and fields this patch relies on."""
    why = patches.mitmproxy_version_fits()
    if why is not None:
        return why
    cls: Any = getattr(http_layers, "HttpStream", None)
    if cls is None:
        return "mitmproxy.proxy.layers.http has no HttpStream"
    for name in (
        "state_wait_for_request_headers",
        "state_consume_request_body",
        "state_errored",
        "send_response",
    ):
        if not callable(getattr(cls, name, None)):
            return f"HttpStream has no {name}"
    params = list(inspect.signature(cls.state_consume_request_body).parameters)
    if params != ["self", "event"]:
        return f"HttpStream.state_consume_request_body takes {params}, not (self, event)"
    return None


def apply() -> None:
    """Patch ``HttpStream`` (idempotent)."""
    cls: Any = http_layers.HttpStream
    headers = cls.state_wait_for_request_headers
    if getattr(headers, "chat2api_early", False):
        return
    body = cls.state_consume_request_body

    def state_wait_for_request_headers(self: Any, event: Any) -> Generator[Any, Any, None]:
        yield from headers(self, event)
        flow = self.flow
        if (
            flow is not None
            and flow.metadata.get(EARLY)
            and flow.response is not None
            and self.client_state == self.state_consume_request_body
        ):
            yield from _answer(self)

    def state_consume_request_body(self: Any, event: Any) -> Generator[Any, Any, None]:
        flow = self.flow
        limit = flow.metadata.get(LIMIT) if flow is not None else None
        if (
            limit is not None
            and isinstance(event, RequestData)
            and len(self.request_body_buf) + len(event.data) > limit
        ):
            self.request_body_buf.clear()
            flow.response = flow.metadata[OVER]
            yield from _answer(self)
            return
        yield from body(self, event)

    state_wait_for_request_headers.chat2api_early = True  # type: ignore[attr-defined]
    cls.state_wait_for_request_headers = state_wait_for_request_headers
    cls.state_consume_request_body = state_consume_request_body


def _answer(stream: Any) -> Generator[Any, Any, None]:
    """Send the flow's response now; drop whatever of the request body still comes."""
    flow = stream.flow
    h1 = not (flow.request.is_http2 or flow.request.is_http3)
    if h1:
        flow.response.headers["connection"] = "close"
    stream.client_state = stream.state_errored  # later body data: silently dropped
    flow.response.timestamp_start = time.time()
    yield from stream.send_response()
    flow.live = False
    yield SendHttp(ResponseEndOfMessage(stream.stream_id), stream.context.client)
    if h1:
        yield commands.CloseTcpConnection(stream.context.client, half_close=True)
