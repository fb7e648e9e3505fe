"""translator.answer (through Translation): what becomes text, reasoning, images, the end."""

# Stream fixtures are written one frame per line (fmt: skip); some are long.
# ruff: noqa: E501

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from errors import RateLimited, UpstreamError
from translator.answer import (
    Failure,
    Finish,
    Image,
    Meta,
    Pending,
    Piece,
    Progress,
    Reasoning,
    SandboxLink,
    Text,
)
from translator.stream import Translation, translate_all

CID = "conv-1"


def msg(mid: str, role: str = "assistant", **kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": mid,
        "author": {"role": role, "name": kw.pop("name", None), "metadata": {}},
        "content": kw.pop("content", {"content_type": "text", "parts": [""]}),
        "status": kw.pop("status", "in_progress"),
        "end_turn": kw.pop("end_turn", None),
        "weight": kw.pop("weight", 1.0),
        "metadata": kw.pop("metadata", {}),
        "recipient": kw.pop("recipient", "all"),
        "channel": kw.pop("channel", None),
    }
    m.update(kw)
    return m


def new(c: int, m: dict[str, Any]) -> dict[str, Any]:
    return {"p": "", "o": "add", "v": {"message": m, "conversation_id": CID, "error": None}, "c": c}


def app(text: str, path: str = "/message/content/parts/0") -> dict[str, Any]:
    return {"p": path, "o": "append", "v": text}


def end(finish: str = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "p": "",
        "o": "patch",
        "v": [
            {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
            {"p": "/message/end_turn", "o": "replace", "v": True},
            {
                "p": "/message/metadata",
                "o": "append",
                "v": {"is_complete": True, "finish_details": {"type": finish}, **extra},
            },
        ],
    }


FINISHED = {"p": "/message/status", "o": "replace", "v": "finished_successfully"}


def stream(*frames: Any, done: bool = True) -> bytes:
    out = [b'event: delta_encoding\ndata: "v1"\n\n']
    for f in frames:
        if isinstance(f, bytes):
            out.append(f)
        elif isinstance(f, dict) and ("type" in f or "message" in f or "error" in f):
            out.append(b"data: " + json.dumps(f).encode() + b"\n\n")
        else:
            out.append(b"event: delta\ndata: " + json.dumps(f).encode() + b"\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def run(raw: bytes, *, inline: bool = False, seed: int | None = None) -> list[Piece]:
    t = Translation(inline_reasoning=inline)
    if seed is None:
        return t.feed(raw) + t.finish()
    rng = random.Random(seed)
    pieces: list[Piece] = []
    i = 0
    while i < len(raw):
        n = rng.randint(1, 40)
        pieces += t.feed(raw[i : i + n])
        i += n
    return pieces + t.finish()


def texts(pieces: list[Piece]) -> str:
    return "".join(p.text for p in pieces if isinstance(p, Text))


def reasoning(pieces: list[Piece]) -> str:
    return "".join(p.text for p in pieces if isinstance(p, Reasoning))


def terminal(pieces: list[Piece]) -> list[Piece]:
    return [p for p in pieces if isinstance(p, (Finish, Failure, Pending))]


def same_at_any_chunking(raw: bytes, inline: bool = False) -> list[Piece]:
    whole = run(raw, inline=inline)
    for seed in range(5):
        split = run(raw, inline=inline, seed=seed)
        assert texts(split) == texts(whole)
        assert reasoning(split) == reasoning(whole)
        assert terminal(split) == terminal(whole)
    return whole


# ---------------------------------------------------------------- the answer


def test_simple_answer_and_meta() -> None:
    raw = stream(new(0, msg("a1")), app("Hel"), {"v": "lo"}, end())
    pieces = same_at_any_chunking(raw)
    assert texts(pieces) == "Hello"
    assert terminal(pieces) == [Finish(reason="stop")]
    metas = [p for p in pieces if isinstance(p, Meta)]
    assert metas[-1] == Meta(conversation_id=CID, message_id="a1")


@pytest.mark.parametrize(
    ("finish", "expected"), [("stop", "stop"), ("max_tokens", "length"), ("weird", "stop")]
)
def test_finish_reason_from_finish_details(finish: str, expected: str) -> None:
    pieces = run(stream(new(0, msg("a1")), app("x"), end(finish)))
    assert terminal(pieces) == [Finish(reason=expected)]


def test_finish_details_after_end_turn_is_read_at_done() -> None:
    raw = stream(
        new(0, msg("a1")),
        app("x"),
        {
            "p": "",
            "o": "patch",
            "v": [FINISHED, {"p": "/message/end_turn", "o": "replace", "v": True}],
        },
        {"p": "/message/metadata", "o": "append", "v": {"finish_details": {"type": "max_tokens"}}},
    )
    assert terminal(run(raw)) == [Finish(reason="length")]


def test_interrupted_is_not_a_success() -> None:
    pieces = run(stream(new(0, msg("a1")), app("x"), end("interrupted")))
    assert isinstance(terminal(pieces)[0], Failure)


def test_moderation_block_is_content_filter() -> None:
    raw = stream(
        new(0, msg("a1")),
        app("some"),
        {"type": "moderation", "moderation_response": {"blocked": True, "flagged": True}},
    )
    assert terminal(run(raw)) == [Finish(reason="content_filter")]


def test_hidden_messages_never_shown() -> None:
    raw = stream(
        new(0, msg("s", "system", content={"content_type": "text", "parts": ["SYSTEM SECRET"]})),
        new(1, msg("u", "user", content={"content_type": "text", "parts": ["USER TEXT"]})),
        new(2, msg("h", metadata={"is_visually_hidden_from_conversation": True},
                   content={"content_type": "text", "parts": ["HIDDEN"]})),
        new(3, msg("ctx", content={"content_type": "model_editable_context", "model_set_context": "CTX"})),
        new(4, msg("w", weight=0.0, content={"content_type": "text", "parts": ["WEIGHTLESS"]})),
        new(5, msg("t", "tool", name="browser", content={"content_type": "text", "parts": ["TOOL PROMPT"]})),
        new(6, msg("a")),
        app("visible"),
        end(),
    )  # fmt: skip
    pieces = run(raw)
    assert texts(pieces) == "visible" and reasoning(pieces) == ""


def test_commentary_channel_is_not_the_answer_and_final_channel_is() -> None:
    raw = stream(
        new(0, msg("pre", channel="commentary", metadata={"is_thinking_preamble_message": True})),
        app("I'm going to check."),
        {"p": "", "o": "patch", "v": [FINISHED]},
        new(1, msg("ans", channel="final")),
        app("Answer."),
        {"p": "", "o": "patch", "v": [FINISHED]},  # final channel: no end_turn needed
    )
    pieces = same_at_any_chunking(raw)
    assert texts(pieces) == "Answer."
    assert reasoning(pieces) == "I'm going to check."
    assert terminal(pieces) == [Finish(reason="stop")]


def test_two_visible_messages_are_separated() -> None:
    raw = stream(
        new(0, msg("a")), app("First."), {"p": "", "o": "patch", "v": [FINISHED]},
        new(1, msg("b")), app("Second."), end(),
    )  # fmt: skip
    assert texts(run(raw)) == "First.\n\nSecond."


def test_truncated_text_is_not_re_emitted() -> None:
    raw = stream(
        new(0, msg("a")),
        app("Hello wrong"),
        {"p": "", "o": "patch", "v": [
            {"p": "/message/content/parts/0", "o": "truncate", "v": 6},
            {"p": "/message/content/parts/0", "o": "append", "v": "world"},
        ]},
        app(" and more"),
        end(),
    )  # fmt: skip
    # the client already has "Hello wrong"; after the cut it gets only the new text
    assert texts(run(raw)) == "Hello wrongworld and more"


def test_legacy_shrinking_text_continues() -> None:
    def legacy(text: str, status: str = "in_progress", end_turn: Any = None) -> bytes:
        m = msg(
            "a", status=status, end_turn=end_turn, content={"content_type": "text", "parts": [text]}
        )
        return (
            b"data: "
            + json.dumps({"message": m, "conversation_id": CID, "error": None}).encode()
            + b"\n\n"
        )

    raw = (
        legacy("abc")
        + legacy("ab")
        + legacy("abXY", "finished_successfully", True)
        + b"data: [DONE]\n\n"
    )
    pieces = run(raw)
    assert texts(pieces) == "abcXY" and terminal(pieces) == [Finish(reason="stop")]


# ---------------------------------------------------------------- reasoning


def test_thoughts_with_initial_values_and_appends() -> None:
    raw = stream(
        new(0, msg("th", content={"content_type": "thoughts", "thoughts": []})),
        {"p": "/message/content/thoughts", "o": "append",
         "v": [{"summary": "Planning", "content": "First ", "chunks": [], "finished": False}]},
        app("step.", "/message/content/thoughts/0/content"),
        {"v": " Done."},
        {"p": "/message/content/thoughts", "o": "append",
         "v": [{"summary": "Check", "content": "", "chunks": [], "finished": False}]},
        app("Sum", "/message/content/thoughts/1/summary"),
        app("Looks right.", "/message/content/thoughts/1/content"),
        {"p": "", "o": "patch", "v": [FINISHED]},
        new(1, msg("rc", content={"content_type": "reasoning_recap", "content": "Thought for 3s"},
                   status="finished_successfully")),
        new(2, msg("ans", channel="final")),
        app("42"),
        end(),
    )  # fmt: skip
    pieces = same_at_any_chunking(raw)
    assert texts(pieces) == "42"
    assert reasoning(pieces) == (
        "**Planning**\n\nFirst step. Done.\n\n**CheckSum**\n\nLooks right.\n\nThought for 3s"
    )
    assert terminal(pieces) == [Finish(reason="stop")]


def test_finished_thoughts_do_not_end_the_turn() -> None:
    raw = stream(
        new(0, msg("th", content={"content_type": "thoughts", "thoughts": [
            {"summary": "S", "content": "c", "finished": True}]})),
        {"p": "", "o": "patch", "v": [FINISHED, {"p": "/message/end_turn", "o": "replace", "v": True}]},
    )  # fmt: skip
    pieces = run(raw)
    assert isinstance(terminal(pieces)[0], Failure)  # no answer came


def test_a8km123_tool_reasoning() -> None:
    raw = stream(
        new(0, msg("r", "tool", name="a8km123", weight=0.0,
                   metadata={"initial_text": "Reasoning", "finished_text": "Reasoned"})),
        app("**Considering**"), {"v": " gold"},
        {"p": "", "o": "patch", "v": [FINISHED,
            {"p": "/message/metadata/finished_text", "o": "replace", "v": "Thought for 2 seconds"}]},
        {"o": "add", "v": {"message": msg("a"), "conversation_id": CID, "error": None}, "c": 1},
        app("Gold."),
        end(),
    )  # fmt: skip
    pieces = same_at_any_chunking(raw)
    assert reasoning(pieces) == "**Considering** gold\n\nThought for 2 seconds"
    assert texts(pieces) == "Gold."


def test_inline_reasoning_is_quoted_then_blank_line() -> None:
    raw = stream(
        new(0, msg("th", content={"content_type": "thoughts", "thoughts": [
            {"summary": "", "content": "line one\n", "finished": False}]})),
        app("line two\n\nline three", "/message/content/thoughts/0/content"),
        {"p": "", "o": "patch", "v": [FINISHED]},
        new(1, msg("a", channel="final")),
        app("Answer"),
        end(),
    )  # fmt: skip
    pieces = same_at_any_chunking(raw, inline=True)
    assert texts(pieces) == "> line one\n> line two\n>\n> line three\n\nAnswer"
    assert reasoning(pieces) == "line one\nline two\n\nline three"


# ---------------------------------------------------------------- tools, images, links


def test_code_and_execution_output_are_fenced() -> None:
    raw = stream(
        new(0, msg("a")), app("Let me compute."), {"p": "", "o": "patch", "v": [FINISHED]},
        new(1, msg("code", recipient="python",
                   content={"content_type": "code", "language": "unknown", "text": ""})),
        app("print(1", "/message/content/text"), {"v": "+1)"},
        {"p": "", "o": "patch", "v": [FINISHED]},
        new(2, msg("out", "tool", name="python",
                   content={"content_type": "execution_output", "text": "2"},
                   status="finished_successfully")),
        new(3, msg("b")), app("It is 2."), end(),
    )  # fmt: skip
    pieces = same_at_any_chunking(raw)
    assert texts(pieces) == (
        "Let me compute.\n\n```python\nprint(1+1)\n```\n\n```Output\n2\n```\n\nIt is 2."
    )


def test_quiet_tools_make_sandbox_traffic_reasoning() -> None:
    """With a client's tools emulated, the web model's own Python is not the answer."""
    raw = stream(
        new(0, msg("a")), app("Let me look."), {"p": "", "o": "patch", "v": [FINISHED]},
        new(1, msg("code", recipient="python",
                   content={"content_type": "code", "language": "unknown", "text": ""})),
        app("import os; os.listdir('/mnt/data')", "/message/content/text"),
        {"p": "", "o": "patch", "v": [FINISHED]},
        new(2, msg("out", "tool", name="python",
                   content={"content_type": "execution_output", "text": "[]"},
                   status="finished_successfully")),
        new(3, msg("b")), app("Empty."), end(),
    )  # fmt: skip
    translation = Translation(quiet_tools=True)
    pieces = translation.feed(raw) + translation.finish()
    assert texts(pieces) == "Let me look.\n\nEmpty."
    thought = reasoning(pieces)
    assert "import os; os.listdir('/mnt/data')" in thought and "[]" in thought
    assert "```" not in texts(pieces)


def test_image_tool_internals_hidden_and_every_image_in_order() -> None:
    image = {"content_type": "image_asset_pointer", "width": 1, "height": 1}
    raw = stream(
        new(0, msg("call", recipient="t2uay3k.sj1i4kz",
                   content={"content_type": "code", "language": "json",
                            "text": '{"skipped_mainline":true}'})),
        {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
        new(1, msg("img", "tool", name="t2uay3k.sj1i4kz", content={
            "content_type": "multimodal_text",
            "parts": [dict(image, asset_pointer="sediment://file_1")]})),
        {"p": "/message/content/parts", "o": "append",
         "v": dict(image, asset_pointer="file-service://file-2")},
        {"p": "", "o": "patch", "v": [FINISHED]},
        new(2, msg("a")), app("Here they are."), end(),
    )  # fmt: skip
    pieces = same_at_any_chunking(raw)
    images = [p for p in pieces if isinstance(p, Image)]
    assert [i.pointer for i in images] == ["sediment://file_1", "file-service://file-2"]
    assert all(i.message_id == "img" and i.conversation_id == CID for i in images)
    assert "skipped_mainline" not in texts(pieces) + reasoning(pieces)
    assert any(isinstance(p, Progress) for p in pieces)
    assert texts(pieces) == "Here they are."


def test_sandbox_links_are_split_out_in_place() -> None:
    raw = stream(
        new(0, msg("a")),
        app("Download [the file](sand"), {"v": "box:/mnt/data/out"}, {"v": ".csv) now."}, end(),
    )  # fmt: skip
    for seed in (None, 1, 2, 3):
        pieces = run(raw, seed=seed)
        links = [p for p in pieces if isinstance(p, SandboxLink)]
        assert links == [SandboxLink(path="/mnt/data/out.csv", message_id="a", conversation_id=CID)]
        assert texts(pieces) == "Download [the file]() now."
        i = pieces.index(links[0])
        assert texts(pieces[:i]).endswith("(") and texts(pieces[i:]).startswith(")")


def test_citation_markers_become_links_or_vanish() -> None:
    ref = {
        "matched_text": "\ue200cite\ue202turn0search0\ue201",
        "type": "grouped_webpages",
        "items": [{"title": "Example", "url": "https://example.com/a"}],
        "alt": None,
    }
    raw = stream(
        new(0, msg("a", metadata={"content_references": [ref]})),
        app("Fact \ue200cite\ue202turn0"), {"v": "search0\ue201. Other \ue200cite\ue202turn9x\ue201end"},
        {"v": " \ue203kept\ue204\ue206 text"},
        end(),
    )  # fmt: skip
    pieces = same_at_any_chunking(raw)
    assert texts(pieces) == "Fact  ([Example](https://example.com/a)). Other end kept text"


def test_entity_without_reference_keeps_the_name() -> None:
    raw = stream(
        new(0, msg("a")),
        app('Use \ue200entity\ue202["software","Node.js","runtime"]\ue201 now.'),
        end(),
    )
    assert texts(run(raw)) == "Use Node.js now."


def test_unclosed_marker_span_is_dropped_at_the_end() -> None:
    raw = stream(new(0, msg("a")), app("Text \ue200cite\ue202turn0"), end())
    assert texts(run(raw)) == "Text "


def test_old_bracket_citations() -> None:
    cite = {
        "metadata": {"title": "T", "url": "https://t.example/", "extra": {"cited_message_idx": 11}}
    }
    raw = stream(
        new(0, msg("a", metadata={"citations": [cite]})),
        app("It is so【11†source】 and 【3†x】 but 【not a citation】."),
        end(),
    )
    assert texts(run(raw)) == "It is so ([T](https://t.example/)) and  but 【not a citation】."


# ---------------------------------------------------------------- the end of the stream


def test_in_stream_error_document() -> None:
    raw = stream(new(0, msg("a")), app("partial"), {"message": None, "error": "Too many requests"})
    pieces = run(raw)
    (end_piece,) = terminal(pieces)
    assert isinstance(end_piece, Failure) and isinstance(end_piece.error, RateLimited)


def test_eof_without_done_and_without_a_finished_answer_fails() -> None:
    raw = stream(new(0, msg("a")), app("partial"), done=False)
    pieces = run(raw)
    (end_piece,) = terminal(pieces)
    assert isinstance(end_piece, Failure) and isinstance(end_piece.error, UpstreamError)
    assert "ended early" in end_piece.error.message


def test_eof_without_done_after_a_finished_answer_succeeds() -> None:
    raw = stream(new(0, msg("a")), app("whole"), end(), done=False)
    assert terminal(run(raw)) == [Finish(reason="stop")]


def test_empty_answer_is_a_failure() -> None:
    assert translate_all(stream(new(0, msg("a")))) == ("", "", None)


def test_handoff_is_pending() -> None:
    raw = stream(
        {"type": "stream_handoff", "conversation_id": CID, "turn_exchange_id": "t",
         "options": [{"type": "resume_sse_endpoint"}]},
    )  # fmt: skip
    (end_piece,) = terminal(run(raw))
    assert isinstance(end_piece, Pending) and end_piece.kind == "handoff"


HANDOFF = {
    "type": "stream_handoff",
    "conversation_id": CID,
    "turn_exchange_id": "t",
    "options": [{"type": "resume_sse_endpoint", "topic_id": "conversation-turn-t"}],
}


@pytest.mark.parametrize("replay", [False, True], ids=["rest", "replay"])
def test_a_followed_handoff_goes_on_without_repeating(replay: bool) -> None:
    """docs/stream-handoff.md: the followed stream may go on where the first stopped
    or repeat the turn from its start; either way each piece is given once."""
    thought = msg("th", content={"content_type": "thoughts", "thoughts": []})
    first = [
        new(0, thought),
        {"p": "/message/content/thoughts", "o": "append", "v": [{"summary": "S", "content": ""}]},
        {"p": "/message/content/thoughts/0/content", "o": "append", "v": "pondering"},
        new(1, msg("a")),
        app("Hello"),
    ]
    rest = [app(", world"), {"v": "!"}, end()]
    t = Translation()
    pieces = t.feed(stream(*first, HANDOFF))
    assert isinstance(pieces[-1], Pending) and pieces[-1].kind == "handoff"
    assert t.handoff is not None and t.saw_done and t.events_consumed == len(first) + 2
    t.follow_handoff()
    assert t.handoff is None and not t.saw_done and not t.finished and t.events_consumed == 0
    pieces = pieces[:-1] + t.feed(stream(*(first if replay else []), *rest)) + t.finish()
    assert texts(pieces) == "Hello, world!"
    assert reasoning(pieces).count("pondering") == 1
    assert terminal(pieces) == [Finish(reason="stop")]
    # Counted from the followed stream's start (its delta_encoding included).
    assert t.events_consumed == 1 + len(rest) + (len(first) if replay else 0)


def test_a_handoff_before_a_finished_answer_is_not_pending() -> None:
    t = Translation()
    pieces = t.feed(stream(new(0, msg("a")), HANDOFF, app("done"), end()))
    assert terminal(pieces) == [Finish(reason="stop")] and t.handoff is None


def test_nothing_after_the_terminal_piece() -> None:
    t = Translation()
    pieces = t.feed(stream(new(0, msg("a")), app("x"), end()))
    assert terminal(pieces) == [Finish(reason="stop")]
    assert t.feed(stream(new(0, msg("b")), app("y"), end())) == []
    assert t.finish() == []
