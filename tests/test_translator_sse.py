"""translator.sse: bytes to lines to events, at every chunking."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from errors import UpstreamError
from translator.sse import EventStream, LineDecoder, ServerSentEvent, SSEDecoder


def chunkings(data: bytes, seed: int = 0, random_runs: int = 20) -> Iterator[list[bytes]]:
    """Whole, byte by byte, and at random split points (like h11's ``tr()``)."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    for _ in range(random_runs):
        cuts = sorted(
            rng.sample(range(1, max(2, len(data))), k=min(len(data) - 1, rng.randint(1, 8)))
        )
        prev = 0
        parts = []
        for c in cuts:
            parts.append(data[prev:c])
            prev = c
        parts.append(data[prev:])
        yield parts


def lines_of(chunks: list[bytes]) -> list[str]:
    dec = LineDecoder()
    out: list[str] = []
    for c in chunks:
        out += dec.feed(c)
    return out + dec.flush()


def events_of(chunks: list[bytes]) -> list[ServerSentEvent]:
    es = EventStream()
    out: list[ServerSentEvent] = []
    for c in chunks:
        out += es.feed(c)
    return out + es.flush()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"a\nb\n", ["a", "b"], id="lf"),
        pytest.param(b"a\r\nb\r\n", ["a", "b"], id="crlf"),
        pytest.param(b"a\rb\r", ["a", "b"], id="cr"),
        pytest.param(b"a\r\n\r\nb", ["a", "", "b"], id="crlf-blank-and-unterminated"),
        pytest.param(b"a\r\rb\n", ["a", "", "b"], id="two-cr-two-lines"),
        pytest.param("é€😀\n".encode(), ["é€😀"], id="multibyte"),
        pytest.param("x\u2028y\u0085z\n".encode(), ["x\u2028y\u0085z"], id="u2028-not-a-break"),
        pytest.param(b"bad\xff\xfe\n", ["bad\ufffd\ufffd"], id="invalid-utf8-replaced"),
        pytest.param(b"\n\n", ["", ""], id="blank-lines"),
    ],
)
def test_line_decoder(data: bytes, expected: list[str]) -> None:
    for chunks in chunkings(data):
        assert lines_of(chunks) == expected, chunks


def test_cr_at_chunk_end_then_lf_is_one_break() -> None:
    dec = LineDecoder()
    assert dec.feed(b"abc\r") == ["abc"]
    assert dec.feed(b"\ndef\n") == ["def"]
    assert dec.flush() == []


def test_multibyte_split_across_chunks() -> None:
    data = "data: 好的😀\n\n".encode()
    for i in range(1, len(data)):
        assert lines_of([data[:i], data[i:]]) == ["data: 好的😀", ""]


def test_line_too_long_raises_upstream_error() -> None:
    dec = LineDecoder(max_line_bytes=10)
    with pytest.raises(UpstreamError):
        dec.feed(b"x" * 11)
    dec = LineDecoder(max_line_bytes=10)
    assert dec.feed(b"12345") == []
    with pytest.raises(UpstreamError):
        dec.feed(b"678901")  # the partial line grows past the limit
    dec = LineDecoder(max_line_bytes=10)
    assert dec.feed(b"1234567890\n123") == ["1234567890"]


SSE_CASES = [
    pytest.param(
        b'event: delta\ndata: {"v": 1}\n\n',
        [ServerSentEvent(event="delta", data='{"v": 1}')],
        id="event-and-data",
    ),
    pytest.param(
        b"data: a\ndata: b\n\n",
        [ServerSentEvent(data="a\nb")],
        id="multi-line-data",
    ),
    pytest.param(
        b": ping - 2024-10-16 12:00:00\n\ndata: x\n\n",
        [ServerSentEvent(data="x")],
        id="comment-only-block-dispatches-nothing",
    ),
    pytest.param(
        b"data:no-space\ndata:  two spaces\n\n",
        [ServerSentEvent(data="no-space\n two spaces")],
        id="one-leading-space-stripped",
    ),
    pytest.param(b"data: {}   \n\n", [ServerSentEvent(data="{}   ")], id="trailing-spaces-kept"),
    pytest.param(b"data: \n\n", [ServerSentEvent(data="")], id="empty-data-line"),
    pytest.param(b"data\n\n", [ServerSentEvent(data="")], id="field-without-colon"),
    pytest.param(b"event: x\n\n", [], id="no-data-no-event"),
    pytest.param(
        b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\n",
        [ServerSentEvent(data="a", id="7", retry=1500), ServerSentEvent(data="b", id="7")],
        id="id-persists-retry-does-not",
    ),
    pytest.param(b"foo: bar\ndata: z\n\n", [ServerSentEvent(data="z")], id="unknown-field"),
    pytest.param(
        "data: a\u2028b\n\n".encode(), [ServerSentEvent(data="a\u2028b")], id="u2028-in-data"
    ),
    pytest.param(b"data: [DONE]", [ServerSentEvent(data="[DONE]")], id="no-trailing-blank-line"),
    pytest.param(
        b"data: x\r\n\r\ndata: y\r\r",
        [ServerSentEvent(data="x"), ServerSentEvent(data="y")],
        id="crlf",
    ),
    pytest.param("\ufeffdata: x\n\n".encode(), [ServerSentEvent(data="x")], id="bom"),
]


@pytest.mark.parametrize(("data", "expected"), SSE_CASES)
def test_event_stream(data: bytes, expected: list[ServerSentEvent]) -> None:
    for chunks in chunkings(data):
        assert events_of(chunks) == expected, chunks


@pytest.mark.parametrize(("data", "expected"), SSE_CASES)
def test_feed_pairs_fast_path_agrees(data: bytes, expected: list[ServerSentEvent]) -> None:
    for chunks in chunkings(data):
        es = EventStream()
        pairs: list[tuple[str, str]] = []
        for c in chunks:
            pairs += es.feed_pairs(c)
        pairs += [(e.event, e.data) for e in es.flush()]
        assert pairs == [(e.event, e.data) for e in expected]


def test_sse_decoder_line_by_line() -> None:
    dec = SSEDecoder()
    assert dec.feed("event: delta_encoding") is None
    assert dec.feed('data: "v1"') is None
    assert dec.feed("") == ServerSentEvent(event="delta_encoding", data='"v1"')
    assert dec.feed("") is None
    assert dec.flush() is None
