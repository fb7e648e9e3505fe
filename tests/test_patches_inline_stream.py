"""AnswerSource: how a streamed answer is handed to mitmproxy's HTTP layer.

The end-to-end behaviour (incremental delivery, hang-ups, faults) is covered by
the e2e modules; these pin the batching and ending rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mitmproxy.proxy.layers.http import HttpStream

from patches import inline_stream
from patches.inline_stream import AnswerSource


async def _take_all(source: AnswerSource) -> list[bytes]:
    """What mitmproxy's HTTP layer does: take what is ready, else wait."""
    batches: list[bytes] = []
    while True:
        data = source.take()
        if data is not None:
            batches.append(data)
        elif source.finished:
            return batches
        else:
            await source.wait()


def test_pieces_made_in_one_go_leave_as_one_batch_after_the_first() -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(5):  # one backend read's worth, no waiting in between
            yield b"piece%d;" % i
        await asyncio.sleep(0.01)  # the backend is slow with the next read
        yield b"last"

    async def main() -> None:
        source = AnswerSource(body(), "flow", "client")
        assert await _take_all(source) == [b"piece0;", b"piece1;piece2;piece3;piece4;", b"last"]
        assert source.failure is None and source.finished

    asyncio.run(main())


def test_nothing_runs_before_start_and_the_first_piece_waits_to_be_taken() -> None:
    made = []

    async def body() -> AsyncIterator[bytes]:
        for piece in (b"first", b"second", b"third"):
            made.append(piece)
            yield piece

    async def main() -> None:
        ended: list[AnswerSource] = []
        source = AnswerSource(body(), "flow", "client", on_end=ended.append)
        await asyncio.sleep(0.01)
        assert not made
        source.start()
        await asyncio.sleep(0.01)
        # The first content leaves before the rest of a burst is translated.
        assert made == [b"first"]
        assert source.take() == b"first"
        assert source.take() is None
        await source.wait()
        await asyncio.sleep(0.01)
        assert source.take() == b"secondthird"
        assert source.finished and ended == [source]

    asyncio.run(main())


def test_a_long_burst_is_handed_on_in_slices() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"y" * 1024  # 200 KiB without a pause: more than one slice

    async def main() -> None:
        source = AnswerSource(body(), "flow", "client")
        batches = await _take_all(source)
        assert b"".join(batches) == b"y" * 200 * 1024
        assert len(batches) > 1

    asyncio.run(main())


def test_close_stops_the_body_and_ends_the_stream() -> None:
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.sleep(3600)  # a stalled backend
            yield b"never"
        finally:
            closed.set()

    async def main() -> None:
        source = AnswerSource(body(), "flow", "client")
        await source.wait()
        assert source.take() == b"first"
        waiter = asyncio.ensure_future(source.wait())
        await asyncio.sleep(0.01)
        await source.close()
        await asyncio.wait_for(waiter, 1)
        assert source.take() is None and source.finished
        assert closed.is_set()
        assert source.failure is None  # stopped on purpose, not broken

    asyncio.run(main())


def test_close_before_the_first_take_closes_the_body() -> None:
    closed = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"x"
        finally:
            closed.append(True)

    async def main() -> None:
        gen = body()
        await gen.__anext__()  # started, as a primed answer is
        source = AnswerSource(gen, "flow", "client")
        await source.close()
        await source.wait()
        assert source.take() is None and source.finished and closed

    asyncio.run(main())


def test_a_body_that_raises_is_a_failure_not_a_clean_end() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part"
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    async def main() -> None:
        source = AnswerSource(body(), "flow", "client")
        assert await _take_all(source) == [b"part"]
        assert source.failure is not None and "RuntimeError" in source.failure

    asyncio.run(main())


def test_the_shapes_it_replaces_are_there_and_apply_is_idempotent() -> None:
    assert inline_stream.fits() is None
    inline_stream.apply()
    patched = HttpStream.send_response
    inline_stream.apply()
    assert HttpStream.send_response is patched
    assert getattr(patched, "chat2api_streaming", False)
    # Checked again once patched: the original's signature is what counts.
    assert inline_stream.fits() is None


def test_the_error_event_fits_this_mitmproxy() -> None:
    """mitmproxy 12's ResponseProtocolError requires an ErrorCode, 11's takes an
    optional status: the patch builds the one the installed version wants."""
    from mitmproxy.proxy.layers.http import _events

    shapes = inline_stream._find_shapes()
    assert not isinstance(shapes, str)
    event = shapes.protocol_error(1, "the answer broke off")
    assert isinstance(event, _events.ResponseProtocolError)
    assert event.message == "the answer broke off" and event.stream_id == 1
    if hasattr(_events, "ErrorCode"):
        assert event.code == _events.ErrorCode.GENERIC_SERVER_ERROR


def test_an_unknown_send_response_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def send_response(self: Any, already_streamed: bool, extra: int) -> None:
        pass

    monkeypatch.setattr(HttpStream, "send_response", send_response)
    why = inline_stream.fits()
    assert why is not None and "send_response" in why and "extra" in why


def test_an_unknown_error_event_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy.proxy.layers.http import _events

    class NeedsAKind:
        def __init__(self, stream_id: int, message: str, code: str) -> None:
            pass

    monkeypatch.setattr(_events, "ResponseProtocolError", NeedsAKind)
    monkeypatch.delattr(_events, "ErrorCode", raising=False)
    why = inline_stream.fits()
    assert why is not None and "error code" in why


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0"])
def test_attach_frames_the_body_for_the_client(version: str) -> None:
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request.http_version = version
    source = AnswerSource(_empty(), flow.id, "client")
    inline_stream.attach(flow, source)
    assert flow.response is not None
    assert "content-length" not in flow.response.headers
    if version == "HTTP/1.0":
        assert flow.response.headers["connection"] == "close"
        assert "transfer-encoding" not in flow.response.headers
    else:
        assert flow.response.headers["transfer-encoding"] == "chunked"
    assert inline_stream.detach(flow.id) is source
    assert inline_stream.detach(flow.id) is None


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""


def test_a_broken_answer_ends_in_this_mitmproxy_s_protocol_error() -> None:
    """The patched send_response, driven as mitmproxy's HTTP layer drives it, ends a
    broken answer with the error event of the installed mitmproxy (11: a status,
    12: an ErrorCode): never a TypeError mid-request."""
    from types import SimpleNamespace

    from mitmproxy.proxy.layers.http import _events
    from mitmproxy.test import tflow

    shapes = inline_stream._find_shapes()
    assert not isinstance(shapes, str)

    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        await asyncio.sleep(0)
        raise RuntimeError("backend gone")

    def original(self: Any, already_streamed: bool = False) -> Any:
        raise AssertionError("a broken answer must not end cleanly")
        yield  # a generator, like mitmproxy's

    async def main() -> list[Any]:
        flow = tflow.tflow(resp=True)
        stream = SimpleNamespace(
            flow=flow,
            stream_id=1,
            context=SimpleNamespace(client=object()),
            client_state=None,
            server_state=None,
            state_errored=lambda: None,
        )
        source = AnswerSource(body(), flow.id, "client")
        inline_stream.attach(flow, source)
        send = inline_stream._streaming_send_response(original, shapes)
        sent: list[Any] = []
        for command in send(stream):
            if isinstance(command, inline_stream.NextPiecesHook):
                await command.source.wait()
            else:
                sent.append(command)
        assert stream.client_state is stream.state_errored
        assert flow.error is not None and "RuntimeError" in flow.error.msg
        return sent

    sent = asyncio.run(main())
    events = [getattr(c, "event", c) for c in sent]
    assert isinstance(events[0], _events.ResponseHeaders)
    assert isinstance(events[1], _events.ResponseData) and events[1].data == b"data: 1\n\n"
    error = events[-1]
    assert isinstance(error, _events.ResponseProtocolError)
    assert "RuntimeError" in error.message
