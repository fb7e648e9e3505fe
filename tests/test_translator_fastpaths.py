"""The translator's fast paths give exactly what its general paths give.

``ChunkEncoder.content``/``reasoning`` escape only the text into a frame cut
once per stream; ``BackendDecoder`` decodes a ``{"v": "..."}`` text frame
without building a dict. Both must match the plain JSON route byte for byte,
whatever the text holds (control characters, quotes, lone surrogates, U+2028).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from translator.backend import BackendDecoder, MessageChanged
from translator.chunks import ChunkEncoder, json_bytes

# Everything a JSON string can carry, lone surrogates and controls included.
TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)


def _encoder(**extra: Any) -> ChunkEncoder:
    enc = ChunkEncoder("chatcmpl-x", 1700000000, "gpt-4o", include_usage=False, **extra)
    enc.start()
    return enc


@settings(max_examples=400, deadline=None)
@given(TEXT, st.booleans())
def test_text_chunks_match_plain_json(text: str, fingerprint: bool) -> None:
    enc = _encoder(system_fingerprint="fp_1") if fingerprint else _encoder()
    for key, fast in (("content", enc.content), ("reasoning_content", enc.reasoning)):
        if not text:
            assert fast(text) == b""
            continue
        assert fast(text) == enc._choice({key: text}, None)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_text_chunks_are_valid_json_with_the_text(text: str) -> None:
    enc = _encoder()
    if not text:
        return
    raw = enc.content(text)
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    body = json.loads(raw[6:-2])
    assert body["choices"][0]["delta"] == {"content": text}
    assert body["object"] == "chat.completion.chunk"
    # the text never breaks the SSE framing
    assert b"\n" not in raw[:-2]
    assert json_bytes(body)  # and survives a round trip


def _decode(frames: list[str]) -> tuple[list[list[str]], dict[str, Any]]:
    """Feed delta frames after a document with one text part; the texts seen, per event."""
    dec = BackendDecoder()
    start = {
        "v": {
            "message": {
                "id": "m1",
                "author": {"role": "assistant"},
                "content": {"content_type": "text", "parts": [""]},
                "status": "in_progress",
            }
        },
        "c": 0,
    }
    dec.feed_raw("delta", json.dumps(start))
    dec.feed_raw("delta", json.dumps({"p": "/message/content/parts/0", "o": "append", "v": ""}))
    seen: list[list[str]] = []
    for frame in frames:
        events = dec.feed_raw("delta", frame)
        seen.append(
            [
                e.message["content"]["parts"][0]
                for e in events
                if isinstance(e, MessageChanged) and "content" in e.message
            ]
        )
    return seen, dec.documents[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=6))
def test_text_frames_match_the_general_path(texts: list[str]) -> None:
    # The backend's spacing takes the fast path; the compact form the general one.
    spaced = [json.dumps({"v": t}) for t in texts]
    compact = [json.dumps({"v": t}, separators=(",", ":")) for t in texts]
    assert all(f.startswith('{"v": "') for f in spaced)
    fast_seen, fast_doc = _decode(spaced)
    slow_seen, slow_doc = _decode(compact)
    assert fast_seen == slow_seen
    assert fast_doc == slow_doc
    assert fast_doc["message"]["content"]["parts"][0] == "".join(texts)


def test_frames_that_only_look_like_text_frames_take_the_general_path() -> None:
    frames = [
        '{"v": "a", "p": "/message/status", "o": "replace"}',  # a key after the string
        '{"v": "b"} ',  # trailing space (stripped first)
        '{"v": "\\ud800x"}',  # an escaped lone surrogate
        '{"v": "c\\"}',  # the closing quote is escaped: not the end
        '{"v": "bad \\q escape"}',  # not JSON at all
    ]
    for frame in frames:
        try:
            same = json.dumps(json.loads(frame), separators=(",", ":"))
        except ValueError:
            same = None
        fast_seen, fast_doc = _decode(['{"v": "x"}', frame])
        if same is None:
            # Malformed: nothing changes, and the decoder goes on.
            assert fast_seen[1] == [] and fast_doc["message"]["content"]["parts"][0] == "x"
            continue
        slow_seen, slow_doc = _decode(['{"v":"x"}', same])
        assert (fast_seen, fast_doc) == (slow_seen, slow_doc), frame
