"""Hostile and broken input: no exception escapes, memory stays bounded,
and a stream that cannot be a success never reports one."""

# Stream fixtures are written one frame per line (fmt: skip); some are long.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from translator.answer import Failure, Finish, Pending, Piece, Text
from translator.backend import BackendDecoder
from translator.sse import ServerSentEvent
from translator.stream import Translation

FIXTURES = Path("/work/shared/fixtures/chatgpt")
CAPTURES = sorted(p for p in FIXTURES.glob("*/*.sse") if p.stat().st_size < 100_000)
RAW = [p.read_bytes() for p in CAPTURES]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(raw: bytes, chunk: int = 0) -> list[Piece]:
    t = Translation()
    pieces: list[Piece] = []
    if chunk:
        for i in range(0, len(raw), chunk):
            pieces += t.feed(raw[i : i + chunk])
    else:
        pieces += t.feed(raw)
    pieces += t.finish()
    ends = [p for p in pieces if isinstance(p, (Finish, Failure, Pending))]
    assert len(ends) == 1, ends
    return pieces


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(RAW)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "delete", "truncate", "insert", "dup"]))
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del raw[i : i + draw(st.integers(1, 50))]
        elif kind == "truncate":
            del raw[i:]
        elif kind == "insert":
            raw[i:i] = draw(st.binary(max_size=40)) or b"\xff"
        else:
            raw[i:i] = raw[i : i + draw(st.integers(1, 200))]
    return bytes(raw)


@SETTINGS
@given(byte_mutations(), st.sampled_from([0, 1, 7, 64]))
def test_byte_mutations_never_raise(raw: bytes, chunk: int) -> None:
    pieces = run(raw, chunk)
    assert not any("\ue200" in p.text for p in pieces if isinstance(p, Text))


def text_of(pieces: list[Piece]) -> str:
    return "".join(p.text for p in pieces if isinstance(p, Text))


def test_truncated_captures_never_succeed() -> None:
    """A cut stream reports success only if the whole answer had already arrived."""
    for raw in RAW:
        full = run(raw)
        for cut in range(0, len(raw), max(1, len(raw) // 60)):
            pieces = run(raw[:cut])
            if any(isinstance(p, Finish) for p in pieces):
                assert any(isinstance(p, Finish) for p in full)
                assert text_of(pieces) == text_of(full)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
paths = st.sampled_from(
    ["", "/message", "/message/content/parts/0", "/message/content/parts/-", "/message/content",
     "/message/metadata", "/message/status", "/message/end_turn", "/message/author/role",
     "/message/content/thoughts/0/content", "/message/content/thoughts", "/error", "/x/y/z",
     "/message/content/parts/99", "bad", "/message/content/parts/0/x"]
)  # fmt: skip
ops = st.sampled_from(["add", "replace", "append", "remove", "truncate", "patch", "nope", 3, None])


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if draw(st.booleans()):
        f["p"] = draw(paths | st.integers())
    if draw(st.booleans()):
        f["o"] = draw(ops)
    if draw(st.booleans()):
        f["c"] = draw(st.integers(-1, 3) | st.text(max_size=2))
    if f.get("o") == "patch" and draw(st.booleans()):
        f["v"] = draw(st.lists(frames(), max_size=3))
    elif draw(st.integers(0, 9)):
        f["v"] = draw(json_values | st.text(max_size=30) | st.integers(-5, 50))
    return f


BASE = (
    b'event: delta_encoding\ndata: "v1"\n\nevent: delta\ndata: {"p": "", "o": "add", "v": {"message":'
    b' {"id": "a", "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": [""]},'
    b' "status": "in_progress", "recipient": "all", "channel": null, "metadata": {}},'
    b' "conversation_id": "c", "error": null}, "c": 0}\n\n'
)


@SETTINGS
@given(st.lists(frames(), max_size=25), st.booleans())
def test_json_level_garbage_never_raises(fs: list[dict[str, Any]], done: bool) -> None:
    raw = BASE + b"".join(b"event: delta\ndata: " + json.dumps(f).encode() + b"\n\n" for f in fs)
    if done:
        raw += b"data: [DONE]\n\n"
    run(raw)
    run(raw, 13)


def test_huge_strings_and_deep_nesting_become_failures() -> None:
    big = json.dumps(
        {"p": "/message/content/parts/0", "o": "append", "v": "x" * 1_000_000}
    ).encode()
    raw = BASE + b"event: delta\ndata: " + big + b"\n\n"
    pieces = run(raw * 1 + (b"event: delta\ndata: " + big + b"\n\n") * 9)
    assert isinstance(pieces[-1], Failure)
    deep = b'{"p": "/message/metadata/x", "o": "add", "v": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    pieces = run(BASE + b"event: delta\ndata: " + deep + b"\n\n" + b"data: [DONE]\n\n")
    assert isinstance(pieces[-1], Failure)


def test_document_size_is_bounded() -> None:
    dec = BackendDecoder()
    dec.feed(ServerSentEvent(event="delta", data=BASE.split(b"data: ")[-1].decode()))
    frame = json.dumps({"p": "/message/content/parts/0", "o": "append", "v": "y" * 100_000})
    for _ in range(200):
        dec.feed(ServerSentEvent(event="delta", data=frame))
    total = sum(len(json.dumps(d)) for d in dec.documents.values())
    assert total < 9 * 1024 * 1024


def test_many_small_garbage_events_end_in_failure() -> None:
    raw = BASE + b"data: {garbage\n\n" * 500
    pieces = run(raw)
    assert isinstance(pieces[-1], Failure)
