"""Chat completions on the Codex backend, unit level: the request mapping and the event
translation (translator/codex_chat.py), on the stored captures."""

from __future__ import annotations

import json
from typing import Any

from tests.test_translator_responses import ALL_RESPONSES, JSONL_CAPTURE, capture_events
from translator.codex_chat import (
    CallArgs,
    CallStart,
    ChatEvents,
    End,
    chat_usage,
    responses_body,
)
from translator.request import parse_chat_request
from translator.responses.events import ItemDone
from translator.responses.request import codex_body, parse_responses_request


def _req(**body: Any) -> Any:
    return parse_chat_request(json.dumps(body).encode(), max_body_bytes=1 << 20)


def test_request_mapping() -> None:
    req = _req(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"c":"P"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        tool_choice="required",
        parallel_tool_calls=False,
        reasoning_effort="high",
        response_format={"type": "json_object"},
    )
    body = responses_body(req, model="gpt-5.5")
    assert body["instructions"] == "Be brief.\n\nUse metric units."
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Weather?"}],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking."}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": '{"c":"P"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "w",
            "description": "",
            "parameters": {"type": "object"},
            "strict": False,
        }
    ]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["text"] == {"format": {"type": "json_object"}}
    # The responses path accepts it and writes the backend body under its rules.
    rreq = parse_responses_request(json.dumps(body).encode(), max_body_bytes=1 << 20)
    backend = codex_body(rreq, slug="gpt-5.5", history=[])
    assert backend["store"] is False and backend["stream"] is True
    assert "reasoning.encrypted_content" in backend["include"]


def test_named_choice_maps_flat() -> None:
    req = _req(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        tools=[{"type": "function", "function": {"name": "w"}}],
        tool_choice={"type": "function", "function": {"name": "w"}},
    )
    assert responses_body(req, model="m")["tool_choice"] == {"type": "function", "name": "w"}


def test_capture_translation_indexes_calls_and_ends_once() -> None:
    events = capture_events(JSONL_CAPTURE)
    chat = ChatEvents()
    outs = [o for e in events for o in chat.feed(e)]
    starts = [o for o in outs if isinstance(o, CallStart)]
    assert [s.index for s in starts] == list(range(len(starts))) and starts
    for start in starts:
        args = "".join(o.delta for o in outs if isinstance(o, CallArgs) and o.index == start.index)
        assert isinstance(json.loads(args), dict)
        assert start.call_id.startswith("call_")
    ends = [o for o in outs if isinstance(o, End)]
    assert ends[-1].reason in ("tool_calls", "stop")


def test_every_capture_response_gives_one_end_and_whole_arguments() -> None:
    for _name, _i, response in ALL_RESPONSES:
        chat = ChatEvents()
        outs = [o for e in response for o in chat.feed(e)]
        ends = [o for o in outs if isinstance(o, End)]
        assert len(ends) <= 1
        done = {
            e.item["call_id"]: e.item["arguments"]
            for e in response
            if isinstance(e, ItemDone) and e.item.get("type") == "function_call"
        }
        starts = {o.index: o.call_id for o in outs if isinstance(o, CallStart)}
        for index, call_id in starts.items():
            args = "".join(o.delta for o in outs if isinstance(o, CallArgs) and o.index == index)
            assert args == done[call_id]
        if ends:
            assert ends[0].reason == ("tool_calls" if starts else "stop")


def test_call_without_added_or_deltas_comes_whole() -> None:
    chat = ChatEvents()
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_9",
        "name": "f",
        "arguments": "{}",
    }
    outs = chat.feed(ItemDone("response.output_item.done", {"item": item}))
    assert outs == [CallStart(0, "call_9", "f"), CallArgs(0, "{}")]


def test_usage_details() -> None:
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 17,
    }
    assert chat_usage(usage) == {
        "prompt_tokens": 10,
        "completion_tokens": 7,
        "cached_tokens": 4,
        "reasoning_tokens": 3,
    }
