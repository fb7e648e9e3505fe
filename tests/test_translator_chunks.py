"""translator.chunks: exact OpenAI shapes for streamed chunks and the completion."""

# Stream fixtures are written one frame per line (fmt: skip); some are long.
# ruff: noqa: E501

from __future__ import annotations

import json
from typing import Any

from errors import UpstreamError
from tests.support.clients import run_client
from translator.chunks import ChunkEncoder, CompletionAggregator, Usage


def events(raw: bytes) -> list[Any]:
    out: list[Any] = []
    assert raw.endswith(b"\n\n")
    for block in raw.decode().split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block
        body = block[len("data: ") :]
        out.append(body if body == "[DONE]" else json.loads(body))
    return out


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    d = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    d.update(extra)
    return d


def test_stream_with_usage() -> None:
    enc = ChunkEncoder("chatcmpl-1", 1700000000, "gpt-4o", include_usage=True)
    raw = (
        enc.start()
        + enc.start()  # idempotent
        + enc.reasoning("think")
        + enc.content("Hé 😀")
        + enc.content("")  # nothing for empty text
        + enc.finish("stop", Usage(prompt_tokens=3, completion_tokens=2))
    )
    got = events(raw)
    assert got == [
        chunk({"role": "assistant", "content": ""}, usage=None),
        chunk({"reasoning_content": "think"}, usage=None),
        chunk({"content": "Hé 😀"}, usage=None),
        chunk({}, "stop", usage=None),
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        "[DONE]",
    ]
    assert "Hé 😀".encode() in raw  # raw UTF-8, not \\u escapes
    assert enc.content("late") == b"" and enc.finish("stop") == b""


def test_stream_without_usage_and_key_order() -> None:
    enc = ChunkEncoder(
        "chatcmpl-1", 1700000000, "gpt-4o", include_usage=False, system_fingerprint="fp_x",
        extra_fields={"conversation_id": "c", "message_id": "m"},
    )  # fmt: skip
    raw = enc.content("a") + enc.finish("length")
    got = events(raw)
    assert got[0] == chunk(
        {"role": "assistant", "content": ""},
        system_fingerprint="fp_x",
        conversation_id="c",
        message_id="m",
    )
    assert got[2]["choices"][0]["finish_reason"] == "length" and got[2]["choices"][0]["delta"] == {}
    assert got[-1] == "[DONE]"
    assert list(got[0]) == [
        "id", "object", "created", "model", "system_fingerprint", "choices", "conversation_id", "message_id",
    ]  # fmt: skip
    assert "usage" not in got[0]
    assert len({c["id"] for c in got[:-1]}) == 1


def test_error_after_start_has_no_done() -> None:
    enc = ChunkEncoder("chatcmpl-1", 1, "m", include_usage=True)
    raw = enc.content("partial") + enc.error(UpstreamError("backend broke", code="x"))
    got = events(raw)
    assert got[-1] == {
        "error": {"message": "backend broke", "type": "server_error", "param": None, "code": "x"}
    }
    assert "[DONE]" not in got
    assert enc.finish("stop") == b""


def test_aggregator() -> None:
    agg = CompletionAggregator("chatcmpl-1", 1700000000, "gpt-4o", system_fingerprint="fp")
    agg.content("Hel")
    agg.content("lo")
    agg.finish("length")
    obj = agg.build(Usage(prompt_tokens=1, completion_tokens=2))
    assert obj == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "system_fingerprint": "fp",
    }
    agg.reasoning("why")
    obj = agg.build(Usage(prompt_tokens=1, completion_tokens=2, reasoning_tokens=1))
    assert obj["choices"][0]["message"]["reasoning_content"] == "why"
    assert obj["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}


SDK_PARSES = """
import os
from openai.types.chat import ChatCompletion, ChatCompletionChunk
given = json.loads(os.environ["C2A_OBJECTS"])
chunks = [ChatCompletionChunk.model_validate(c) for c in given["chunks"]]
completion = ChatCompletion.model_validate(given["completion"])
emit({
    "deltas": [[c.delta.content for c in chunk.choices] for chunk in chunks],
    "reasoning": [[(c.delta.model_extra or {}).get("reasoning_content") for c in chunk.choices]
                  for chunk in chunks],
    "finish": [[c.finish_reason for c in chunk.choices] for chunk in chunks],
    "usage": [chunk.usage.total_tokens if chunk.usage else None for chunk in chunks],
    "fingerprint": chunks[0].system_fingerprint,
    "message": completion.choices[0].message.content,
    "message_reasoning": (completion.choices[0].message.model_extra or {}).get("reasoning_content"),
    "completion_usage": completion.usage.completion_tokens_details.reasoning_tokens,
})
"""


def test_openai_sdk_parses_our_chunks() -> None:
    """The official SDK (from the clients' venv, where it lives) reads what we write."""
    enc = ChunkEncoder("chatcmpl-1", 1, "m", include_usage=True, system_fingerprint="fp_1")
    raw = (
        enc.reasoning("hmm")
        + enc.content("Hé 😀")
        + enc.finish("stop", Usage(prompt_tokens=1, completion_tokens=2, reasoning_tokens=1))
    )
    agg = CompletionAggregator("chatcmpl-1", 1, "m")
    agg.reasoning("hmm")
    agg.content("x")
    agg.finish("length")
    completion = agg.build(Usage(prompt_tokens=1, completion_tokens=2, reasoning_tokens=1))
    objects = {"chunks": events(raw)[:-1], "completion": completion}
    (parsed,) = run_client(SDK_PARSES, {"C2A_OBJECTS": json.dumps(objects)})
    assert parsed == {
        "deltas": [[""], [None], ["Hé 😀"], [None], []],
        "reasoning": [[None], ["hmm"], [None], [None], []],
        "finish": [[None], [None], [None], ["stop"], []],
        "usage": [None, None, None, None, 3],
        "fingerprint": "fp_1",
        "message": "x",
        "message_reasoning": "hmm",
        "completion_usage": 1,
    }
