"""Every real capture, at every chunking, gives exactly its visible answer.

The expected answer is computed independently, by the deliberately naive reader of
``tests/support/captures.py``. Hard-coded spot checks pin the start and end of each
answer on top of that.
"""

from __future__ import annotations

import json
import random

import pytest

from tests.support.captures import COMPLETE, FIXTURES, ref_answer
from translator.answer import Failure, Finish, Pending, Piece, Progress, Reasoning, Text
from translator.stream import Translation

# (start, end, a piece of the middle) of each visible answer
SPOT = {
    "delta_v1/ctxrun_gpt-5-3_hi_2026-03.sse": ("Hi.", "What do you need help with?", " What do"),
    "delta_v1/fira_gpt-5-2_20-famous-people_2026-01.sse": (
        "Here\u2019s a list of 20 famous people from different fields:\n\n1. **Albert Einstein**",
        "Do any of these stand out to you?",
        "\n20. **Marie Curie** \u2013 Pioneering physicist",
    ),
    "delta_v1/fira_paste_gpt-5-2_famous-people_A_2026-01.sse": (
        "Here\u2019s a list of 10 famous people from different fields:",
        "Any particular field or person you're interested in learning more about?",
        "\n10. **Frida Kahlo** \u2013 Mexican artist",
    ),
    "delta_v1/fira_paste_gpt-5-2_famous-people_B_2026-01.sse": (
        "Sure! Here's a list of 10 famous people across various fields:",
        "Let me know if you\u2019d like more details about any of them!",
        "\n10. **Frida Kahlo**",
    ),
    "delta_v1/mldemo_gpt-4o-canmore_myfiles_browser_2024-10.sse": (
        "看来您上传的文件是一个包含大量代码片段的JS文件",
        "可能需要更多的上下文或者理解这个文件的整体结构。",
        "__vite__mapDeps",
    ),
    "delta_v1/mldemo_gpt-4o_2024-10_empty-data-line.sse": (
        "好的，我明白你的要求。",
        "我会根据结果进行进一步分析并提出后续的建议。",
        "```bash\n#!/bin/bash\n",
    ),
    "legacy/webchatgpt_text-davinci-002-render-sha_moderation_2023-12_A.sse": (
        "The code provided is a basic structure for handling `ValueError: jsondecode`",
        "the context in which it's being used.",
        "1. **Verify the JSON Data:**",
    ),
    "legacy/webchatgpt_text-davinci-002-render-sha_moderation_2023-12_B.sse": (
        "While the provided code is a commonly used structure",
        "enabling a more tailored and precise solution.",
        "### Steps Covered:",
    ),
}

# Text that must never reach the client (system, user, context, tool prompts, internals).
NEVER = [
    "\ue200",
    "\ue201",
    "\ue202",
    "skipped_mainline",
    "give me a list of",
    "The user provided the following information",
    "Please remember to search the user's documents",
    "Przetwarzanie obrazu",
    "__vite__mapDeps=(i,m=",
]


# ---------------------------------------------------------------- helpers


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def chunkings(data: bytes, runs: int, seed: int) -> list[list[bytes]]:
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    rng = random.Random(seed)
    for _ in range(runs):
        k = rng.choice([1, 2, 5, 20, 100, 1000])
        cuts = sorted(set(rng.randrange(1, len(data)) for _ in range(k)))
        out.append([data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)])
    return out


def translate(chunks: list[bytes], inline: bool = False) -> list[Piece]:
    t = Translation(inline_reasoning=inline)
    pieces: list[Piece] = []
    for c in chunks:
        pieces += t.feed(c)
    return pieces + t.finish()


def summary(pieces: list[Piece]) -> tuple[str, str, list[Piece]]:
    text = "".join(p.text for p in pieces if isinstance(p, Text))
    reasoning = "".join(p.text for p in pieces if isinstance(p, Reasoning))
    ends: list[Piece] = [p for p in pieces if isinstance(p, (Finish, Failure, Pending))]
    return text, reasoning, ends


# ---------------------------------------------------------------- tests


def test_fixtures_present() -> None:
    assert all((FIXTURES / n).is_file() for n in COMPLETE)


@pytest.mark.parametrize("name", COMPLETE)
def test_complete_capture_at_every_chunking(name: str) -> None:
    raw = read(name)
    expected = ref_answer(raw)
    start, end, middle = SPOT[name]
    assert expected.startswith(start) and expected.endswith(end) and middle in expected
    seen = set()
    for chunks in chunkings(raw, runs=50, seed=hash(name) & 0xFFFF):
        text, reasoning, ends = summary(translate(chunks))
        assert text == expected
        assert ends == [Finish(reason="stop")]
        seen.add(reasoning)
        for bad in NEVER:
            assert bad not in text
    assert len(seen) == 1  # reasoning is chunking-independent too


def test_famous_people_lists_have_all_entries() -> None:
    for name, n in [
        ("delta_v1/fira_gpt-5-2_20-famous-people_2026-01.sse", 20),
        ("delta_v1/fira_paste_gpt-5-2_famous-people_A_2026-01.sse", 10),
        ("delta_v1/fira_paste_gpt-5-2_famous-people_B_2026-01.sse", 10),
    ]:
        text, _, _ = summary(translate([read(name)]))
        numbers = [line.split(".")[0] for line in text.splitlines() if line[:1].isdigit()]
        assert numbers == [str(i) for i in range(1, n + 1)]


def test_ctxrun_is_exactly_hi() -> None:
    text, reasoning, ends = summary(translate([read("delta_v1/ctxrun_gpt-5-3_hi_2026-03.sse")]))
    assert text == "Hi. What do you need help with?"
    assert reasoning == "" and ends == [Finish(reason="stop")]


def test_ctxrun_resume_offset_and_token() -> None:
    t = Translation()
    t.feed(read("delta_v1/ctxrun_gpt-5-3_hi_2026-03.sse"))
    t.finish()
    # 24 SSE events with data; [DONE] is not counted
    assert t.events_consumed == 23
    assert t.resume_token is not None and t.resume_token.kind == "conduit"
    assert t.conversation_id == "69bff40c-1c94-8324-9056-51af4100b84a"
    assert t.title == "Greetings and Assistance"


def test_heygen_async_image_is_pending_not_text() -> None:
    raw = read("delta_v1/heygen_gpt-5-3_imagegen-async_2026-04.sse")
    for chunks in chunkings(raw, runs=20, seed=4):
        pieces = translate(chunks)
        text, _, ends = summary(pieces)
        assert text == ""
        assert len(ends) == 1 and isinstance(ends[0], Pending) and ends[0].kind == "async"
        assert ends[0].conversation_id == "69eb5a4b-282c-83ea-b4f6-91ba9510bc9f"
        progress = [p.text for p in pieces if isinstance(p, Progress)]
        assert any(p.startswith("Przetwarzanie obrazu") for p in progress)
        assert not any("skipped_mainline" in p for p in progress)


def test_truncated_capture_is_a_failure_not_a_success() -> None:
    raw = read("legacy/mldemo_gpt-4o-mini_2024-10_truncated.sse")
    for chunks in chunkings(raw, runs=20, seed=5):
        text, _, ends = summary(translate(chunks))
        assert len(ends) == 1 and isinstance(ends[0], Failure)
        assert text.startswith("明白了！我们可以从获取你的环境信息开始")
        assert "现在我发送要求给你" not in text  # the user's message


def test_in_stream_error_is_a_failure_with_the_backend_message() -> None:
    raw = read("legacy/chat2api_instream_error_unusual_activity_2024.sse")
    for chunks in chunkings(raw, runs=10, seed=6):
        text, _, ends = summary(translate(chunks))
        assert text == ""
        assert len(ends) == 1 and isinstance(ends[0], Failure)
        assert ends[0].error.message.startswith("Our systems have detected unusual activity")


def test_lone_moderation_event_is_handled() -> None:
    raw = read("legacy/chat2api_moderation_is_completion_event_2024.sse")
    text, _, ends = summary(translate([raw]))
    assert text == "" and len(ends) == 1 and isinstance(ends[0], Failure)
    # it is not blocked: with [DONE] and no answer it is still not a success
    text, _, ends = summary(translate([raw + b"data: [DONE]\n\n"]))
    assert isinstance(ends[0], Failure)


def test_entity_fragment_alone_does_not_raise() -> None:
    raw = read("delta_v1/fira_entity-content_references_FRAGMENT_2026-02.sse")
    for chunks in chunkings(raw, runs=10, seed=7):
        text, _, ends = summary(translate(chunks))
        assert "\ue200" not in text and len(ends) == 1 and isinstance(ends[0], Failure)


def test_entity_fragment_with_a_document_reads_cleanly() -> None:
    head = {
        "p": "",
        "o": "add",
        "c": 0,
        "v": {
            "message": {
                "id": "m1",
                "author": {"role": "assistant"},
                "content": {"content_type": "text", "parts": ["npm is for"]},
                "status": "in_progress",
                "recipient": "all",
                "channel": "final",
                "metadata": {"content_references": []},
            },
            "conversation_id": "c1",
            "error": None,
        },
    }
    raw = (
        b'event: delta_encoding\ndata: "v1"\n\nevent: delta\ndata: '
        + json.dumps(head).encode()
        + b'\n\nevent: delta\ndata: {"p": "/message/content/parts/0", "o": "append", "v": ""}\n\n'
        + read("delta_v1/fira_entity-content_references_FRAGMENT_2026-02.sse")
        + b'\n\nevent: delta\ndata: {"p": "", "o": "patch", "v": ['
        b'{"p": "/message/status", "o": "replace", "v": "finished_successfully"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    for chunks in chunkings(raw, runs=30, seed=8):
        text, _, ends = summary(translate(chunks))
        assert text == (
            "npm is for people who build things with JavaScript.\n\nnpm stands for *Node Package "
            "Manager*. It works with Node.js, which lets you run JavaScript outside the browser "
            "\u2014 on your computer or a server.\n\nWhen developers need something \u2014"
        )
        assert ends == [Finish(reason="stop")]


def test_canmore_capture_maps_the_file_quote_to_reasoning() -> None:
    raw = read("delta_v1/mldemo_gpt-4o-canmore_myfiles_browser_2024-10.sse")
    _, reasoning, _ = summary(translate([raw]))
    assert reasoning == "Read kovfiydeinrm6blw.js"
