"""translator.backend: delta-v1 ops, legacy documents, typed events, errors."""

# Stream fixtures are written one frame per line (fmt: skip); some are long.
# ruff: noqa: E501

from __future__ import annotations

import json
from typing import Any

import pytest

from translator.backend import (
    AsyncStatus,
    BackendDecoder,
    BackendEvent,
    ConversationId,
    Done,
    EncodingAnnounced,
    Handoff,
    Info,
    Malformed,
    MessageChanged,
    MessageMarker,
    Moderation,
    ResumeToken,
    StreamComplete,
    StreamError,
    Title,
)
from translator.sse import ServerSentEvent


def ev(obj: Any, event: str = "message") -> ServerSentEvent:
    return ServerSentEvent(event=event, data=obj if isinstance(obj, str) else json.dumps(obj))


def delta(obj: Any) -> ServerSentEvent:
    return ev(obj, "delta")


def doc(**message: Any) -> dict[str, Any]:
    m = {
        "id": "m1",
        "author": {"role": "assistant"},
        "content": {"content_type": "text", "parts": [""]},
        "status": "in_progress",
        "metadata": {"a": 1},
        "recipient": "all",
    }
    m.update(message)
    return {"message": m, "conversation_id": "conv", "error": None}


def start(dec: BackendDecoder, **message: Any) -> dict[str, Any]:
    out = dec.feed(delta({"p": "", "o": "add", "v": doc(**message), "c": 0}))
    changed = [e for e in out if isinstance(e, MessageChanged)]
    assert changed
    return changed[-1].message


def run(dec: BackendDecoder, *frames: Any) -> list[BackendEvent]:
    out: list[BackendEvent] = []
    for f in frames:
        out += dec.feed(delta(f))
    return out


def test_announcement_is_json_parsed() -> None:
    dec = BackendDecoder()
    assert dec.feed(ev('"v1"', "delta_encoding")) == [EncodingAnnounced(encoding="v1")]
    assert dec.encoding == "v1"
    assert isinstance(dec.feed(ev("v1", "delta_encoding"))[0], Malformed)  # not JSON


def test_append_short_form_carries_p_and_o() -> None:
    dec = BackendDecoder()
    msg = start(dec)
    run(dec, {"p": "/message/content/parts/0", "o": "append", "v": "Hel"}, {"v": "lo"}, {"v": "!"})
    assert msg["content"]["parts"] == ["Hello!"]


def test_new_document_by_c_without_p() -> None:
    dec = BackendDecoder()
    start(dec)
    run(dec, {"p": "/message/content/parts/0", "o": "append", "v": "x"})
    out = run(dec, {"v": doc(id="m2"), "c": 1})
    changed = [e for e in out if isinstance(e, MessageChanged)]
    assert changed[0].slot == 1 and changed[0].message["id"] == "m2"
    # the carried path now refers to slot 1
    run(dec, {"p": "/message/content/parts/0", "o": "append", "v": "y"})
    assert dec.documents[0]["message"]["content"]["parts"] == ["x"]
    assert dec.documents[1]["message"]["content"]["parts"] == ["y"]


def test_patch_and_bare_list_continuation() -> None:
    dec = BackendDecoder()
    msg = start(dec)
    run(
        dec,
        {"o": "patch", "v": [{"p": "/message/content/parts/0", "o": "append", "v": "Hi."}]},
        {"v": [{"p": "/message/content/parts/0", "o": "append", "v": " Yes"}]},
        {
            "v": [
                {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                {"p": "/message/end_turn", "o": "replace", "v": True},
                {"p": "/message/metadata", "o": "append", "v": {"is_complete": True}},
            ]
        },
    )
    assert msg["content"]["parts"] == ["Hi. Yes"]
    assert msg["status"] == "finished_successfully" and msg["end_turn"] is True
    assert msg["metadata"] == {"a": 1, "is_complete": True}  # shallow merge keeps "a"


def test_list_append_extends_or_pushes() -> None:
    dec = BackendDecoder()
    msg = start(dec, content={"content_type": "thoughts", "thoughts": []})
    run(
        dec,
        {"p": "/message/content/thoughts", "o": "append", "v": [{"summary": "S", "content": "a"}]},
    )
    run(dec, {"p": "/message/content/thoughts/0/content", "o": "append", "v": "b"}, {"v": "c"})
    run(
        dec, {"p": "/message/content/thoughts", "o": "append", "v": {"summary": "T", "content": ""}}
    )
    assert msg["content"]["thoughts"] == [
        {"summary": "S", "content": "abc"},
        {"summary": "T", "content": ""},
    ]


def test_truncate_string_and_list_and_cuts() -> None:
    dec = BackendDecoder()
    msg = start(dec, content={"content_type": "text", "parts": ["Hello world", "x", "y"]})
    out = run(dec, {"p": "/message/content/parts/0", "o": "truncate", "v": 5})
    assert msg["content"]["parts"][0] == "Hello"
    assert out[-1] == MessageChanged(slot=0, message=msg, cuts=(("/message/content/parts/0", 5),))
    run(dec, {"p": "/message/content/parts", "o": "truncate", "v": 1})
    assert msg["content"]["parts"] == ["Hello"]
    assert isinstance(run(dec, {"p": "/message/status", "o": "truncate", "v": -1})[0], Malformed)


def test_replace_string_reports_common_prefix() -> None:
    dec = BackendDecoder()
    start(dec, content={"content_type": "text", "parts": ["abcdef"]})
    out = run(dec, {"p": "/message/content/parts/0", "o": "replace", "v": "abXY"})
    last = out[-1]
    assert isinstance(last, MessageChanged) and last.cuts == (("/message/content/parts/0", 2),)


def test_remove_without_v_and_pointer_escapes_and_dash() -> None:
    dec = BackendDecoder()
    msg = start(dec, metadata={"a/b": 1, "c~d": 2, "refs": [{"invalid": True, "x": 1}]})
    run(
        dec,
        {"p": "/message/metadata/a~1b", "o": "remove"},
        {"p": "/message/metadata/c~0d", "o": "replace", "v": 3},
        {"p": "/message/metadata/refs/0/invalid", "o": "remove"},
        {"p": "/message/metadata/refs/-", "o": "add", "v": {"y": 2}},
        {"p": "/message/metadata/refs/0", "o": "append", "v": {"name": "N"}},
    )
    assert msg["metadata"] == {"c~d": 3, "refs": [{"x": 1, "name": "N"}, {"y": 2}]}


def test_add_inserts_into_list_and_root_replace() -> None:
    dec = BackendDecoder()
    msg = start(dec, content={"content_type": "text", "parts": ["a", "c"]})
    run(dec, {"p": "/message/content/parts/1", "o": "add", "v": "b"})
    assert msg["content"]["parts"] == ["a", "b", "c"]
    out = run(dec, {"p": "", "o": "replace", "v": doc(id="m9")})
    last = out[-1]
    assert isinstance(last, MessageChanged) and last.message["id"] == "m9"


@pytest.mark.parametrize(
    "frame",
    [
        {"p": "/message/nope/x", "o": "replace", "v": 1},
        {"p": "/message/content/parts/7", "o": "replace", "v": "x"},
        {"p": "/message/content/parts/01", "o": "replace", "v": "x"},
        {"p": "message", "o": "add", "v": 1},
        {"p": "/message/status", "o": "frobnicate", "v": 1},
        {"p": "/message/content/parts/0", "o": "append", "v": {"a": 1}},
        {"p": "/message/content", "o": "patch", "v": "not a list"},
        {"p": 5, "o": "add", "v": 1},
        {"c": "zero", "v": 1},
        {"p": "/message/content/parts/0", "o": "append"},
    ],
)
def test_bad_ops_become_malformed_and_decoding_goes_on(frame: dict[str, Any]) -> None:
    dec = BackendDecoder()
    msg = start(dec)
    out = run(dec, frame)
    assert any(isinstance(e, Malformed) for e in out)
    run(dec, {"p": "/message/content/parts/0", "o": "append", "v": "ok"})
    assert msg["content"]["parts"] == ["ok"]


def test_patch_keeps_good_sub_ops_when_one_fails() -> None:
    dec = BackendDecoder()
    msg = start(dec)
    out = run(
        dec,
        {
            "p": "",
            "o": "patch",
            "v": [
                {"p": "/message/content/parts/0", "o": "append", "v": "text"},
                {"p": "/missing/x", "o": "replace", "v": 1},
                {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
            ],
        },
    )
    assert msg["content"]["parts"] == ["text"] and msg["status"] == "finished_successfully"
    assert any(isinstance(e, Malformed) for e in out)


def test_typed_events() -> None:
    dec = BackendDecoder()
    feed: list[dict[str, Any]] = [
        {"type": "resume_conversation_token", "kind": "conduit", "token": "T", "conversation_id": "c"},
        {"type": "title_generation", "title": "Hi", "conversation_id": "c"},
        {"type": "conversation_async_status", "conversation_id": "c", "async_status": 7},
        {"type": "message_marker", "message_id": "m", "marker": "last_token", "event": "last"},
        {"type": "message_stream_complete", "conversation_id": "c"},
        {"type": "moderation", "moderation_response": {"blocked": True, "flagged": True}},
        {"conversation_id": "c", "message_id": "m", "is_completion": True,
         "moderation_response": {"flagged": False, "blocked": False}},
        {"type": "stream_handoff", "conversation_id": "c", "turn_exchange_id": "t",
         "options": [{"type": "subscribe_ws_topic", "topic_id": "x"}]},
        {"type": "server_ste_metadata", "metadata": {}},
        {"type": "input_message", "input_message": {"author": {"role": "user"}}},
    ]  # fmt: skip
    out: list[BackendEvent] = []
    for f in feed:
        out += dec.feed(ev(f))
    assert out == [
        ConversationId(conversation_id="c"),
        ResumeToken(token="T", conversation_id="c", kind="conduit"),
        Title(title="Hi", conversation_id="c"),
        AsyncStatus(status=7, conversation_id="c"),
        MessageMarker(message_id="m", marker="last_token", event="last"),
        StreamComplete(conversation_id="c"),
        Moderation(blocked=True, flagged=True),
        Moderation(blocked=False, message_id="m", is_completion=True, conversation_id="c"),
        Handoff(
            conversation_id="c",
            turn_exchange_id="t",
            options=({"type": "subscribe_ws_topic", "topic_id": "x"},),
        ),
        Info(type="server_ste_metadata", data=feed[8]),
        Info(type="input_message", data=feed[9]),
    ]


def test_done_empty_data_and_counting() -> None:
    dec = BackendDecoder()
    assert dec.feed(ev('"v1"', "delta_encoding")) == [EncodingAnnounced(encoding="v1")]
    assert dec.feed(ev("")) == []
    assert dec.feed(ev("   ")) == []
    assert isinstance(dec.feed(ev("{not json"))[0], Malformed)
    assert dec.feed(ev("[DONE]")) == [Done()]
    assert dec.events_consumed == 2  # the announcement and the malformed one
    assert dec.done


def test_errors() -> None:
    dec = BackendDecoder()
    out = dec.feed(ev({"message": None, "conversation_id": "c", "error": "Unusual activity"}))
    assert StreamError(message="Unusual activity") in out
    dec = BackendDecoder()
    d = doc()
    d["error"] = {"message": "boom", "code": "x"}
    out = dec.feed(delta({"p": "", "o": "add", "v": d, "c": 0}))
    assert StreamError(message="boom", code="x") in out
    dec = BackendDecoder()
    start(dec)
    out = run(dec, {"p": "/error", "o": "replace", "v": "late failure"})
    assert StreamError(message="late failure") in out


def test_legacy_full_state_slots_by_message_id() -> None:
    dec = BackendDecoder()
    a = dec.feed(ev(doc(id="a")))
    b = dec.feed(ev(doc(id="b")))
    a2 = dec.feed(ev(doc(id="a", status="finished_successfully")))
    slots = [e.slot for e in a + b + a2 if isinstance(e, MessageChanged)]
    assert slots == [0, 1, 0]


def test_size_and_depth_limits_are_fatal() -> None:
    dec = BackendDecoder(max_document_bytes=1000)
    start(dec)
    out = run(dec, {"p": "/message/content/parts/0", "o": "append", "v": "x" * 2000})
    assert out == [Malformed(reason="message document over the size limit", fatal=True)]
    dec = BackendDecoder()
    start(dec)
    deep: Any = "x"
    for _ in range(100):
        deep = [deep]
    out = run(dec, {"p": "/message/metadata/deep", "o": "add", "v": deep})
    assert any(isinstance(e, Malformed) for e in out)
    very_deep = "[" * 100000 + "]" * 100000
    assert isinstance(dec.feed(ServerSentEvent(data=very_deep))[0], Malformed)


def test_fast_append_path_follows_structural_changes() -> None:
    dec = BackendDecoder()
    msg = start(dec, content={"content_type": "text", "parts": ["", ""]})
    out = run(dec, {"p": "/message/content/parts/0", "o": "append", "v": "a"}, {"v": "b"})
    assert [e.text_only for e in out if isinstance(e, MessageChanged)] == [True, True]
    run(dec, {"p": "/message/content/parts/0", "o": "truncate", "v": 1}, {"v": 0})  # truncate again
    run(dec, {"p": "/message/content/parts/1", "o": "append", "v": "x"}, {"v": "y"})
    run(
        dec,
        {"p": "", "o": "add", "v": doc(id="n"), "c": 1},
        {"p": "/message/content/parts/0", "o": "append", "v": "z"},
    )
    run(dec, {"v": "w"})
    assert msg["content"]["parts"] == ["", "xy"]
    assert dec.documents[1]["message"]["content"]["parts"] == ["zw"]
