"""The Responses translation, sans I/O, on the real Codex/Responses captures:
decoding at any chunking, the client stream's order and numbering, the output rebuilt
from ``output_item.done``, usage, terminal rules, the Codex body rules, and the
web answer's events."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.fakechatgpt.harness import CODEX_FIXTURES
from translator.responses.encode import ResponseEncoder, normal_usage
from translator.responses.events import (
    ArgumentsDelta,
    Completed,
    Created,
    Decoder,
    Event,
    Failed,
    ItemDone,
    TextDelta,
    event_of,
)
from translator.responses.request import (
    DEFAULT_INSTRUCTIONS,
    chat_body,
    codex_body,
    parse_responses_request,
    web_refusal,
)
from translator.responses.web import WebEvents

FIXTURES = CODEX_FIXTURES
SSE_CAPTURES = [
    "01-codex-backend-gpt-5.5-reasoning-and-text.sse",
    "04-public-api-gpt-5-function-call-roundtrip.sse",
]
JSONL_CAPTURE = "03-public-api-gpt-5.1-codex-max-reasoning-summary-and-function-calls.chunks.jsonl"


def capture_events(name: str) -> list[Event]:
    raw = (FIXTURES / name).read_bytes()
    if name.endswith(".jsonl"):
        return [event_of(json.loads(line)) for line in raw.splitlines() if line.strip()]
    decoder = Decoder()
    return decoder.feed(raw) + decoder.finish()


def responses_of(events: list[Event]) -> list[list[Event]]:
    """A capture split into its responses (each starts with response.created)."""
    out: list[list[Event]] = []
    for event in events:
        if event.type == "response.created":
            out.append([])
        out[-1].append(event)
    return out


ALL_RESPONSES = [
    (name, i, r)
    for name in [*SSE_CAPTURES, JSONL_CAPTURE]
    for i, r in enumerate(responses_of(capture_events(name)))
]


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    decoder = Decoder()
    return [e.data for e in decoder.feed(raw) + decoder.finish()]


def encode_all(events: list[Event], **echo: Any) -> tuple[ResponseEncoder, bytes]:
    encoder = ResponseEncoder(response_id="resp_test0123456789", model="client-model", echo=echo)
    out = b"".join(encoder.event(e) for e in events)
    return encoder, out


# --- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SSE_CAPTURES)
def test_decoder_gives_the_same_events_at_any_chunking(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    whole = [e.data for e in capture_events(name)]
    assert whole and all(isinstance(d.get("type"), str) for d in whole)
    rng = random.Random(7)
    for sizes in ([1], [2, 3, 5], [rng.randint(1, 400) for _ in range(50)]):
        decoder, got, at, k = Decoder(), [], 0, 0
        while at < len(raw):
            size = sizes[k % len(sizes)]
            got += [e.data for e in decoder.feed(raw[at : at + size])]
            at, k = at + size, k + 1
        got += [e.data for e in decoder.finish()]
        assert got == whole


def test_decoder_types_and_crlf() -> None:
    raw = (
        b'event: response.output_text.delta\r\ndata: {"type":"response.output_text.delta",'
        b'"delta":"Hi","item_id":"m","output_index":0}\r\n\r\ndata: [DONE]\r\n\r\n'
    )
    (event,) = Decoder().feed(raw)
    assert isinstance(event, TextDelta) and event.delta == "Hi" and event.output_index == 0


# --- the client's stream --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "index", "events"), ALL_RESPONSES)
def test_client_stream_order_numbering_and_output(
    name: str, index: int, events: list[Event]
) -> None:
    encoder, raw = encode_all(events, instructions=None, store=False)
    sent = parse_sse(raw)
    assert sent[0]["type"] == "response.created"
    assert [e["sequence_number"] for e in sent] == list(range(len(sent)))
    assert sum(e["type"] in TERMINALS for e in sent) == 1 and sent[-1]["type"] in TERMINALS
    # output_index grows by one per added item: what the SDKs' accumulators need.
    added = [e["output_index"] for e in sent if e["type"] == "response.output_item.added"]
    assert added == list(range(len(added)))
    done_items = [e["item"] for e in sent if e["type"] == "response.output_item.done"]
    final = sent[-1]["response"]
    assert final["id"] == "resp_test0123456789" and final["model"] == "client-model"
    # Rebuilt from output_item.done when the backend sent output: [] (the Codex
    # backend); the public API's own full output is kept as it is.
    backend_output = next(e for e in events if isinstance(e, Completed)).response["output"]
    assert final["output"] == (backend_output or done_items)
    assert [i["id"] for i in final["output"]] == [i["id"] for i in done_items]
    usage = final["usage"]
    assert isinstance(usage["input_tokens_details"]["cached_tokens"], int)
    assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
    # Every item, argument and usage number the backend sent reaches the client.
    backend_done = [e.data["item"] for e in events if isinstance(e, ItemDone)]
    assert done_items == backend_done
    backend_usage = next(e for e in events if isinstance(e, Completed)).response["usage"]
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert usage[key] == backend_usage[key]
    assert encoder.completed and encoder.final()["output"] == final["output"]


TERMINALS = {"response.completed", "response.failed", "response.incomplete"}


def test_codex_capture_output_is_rebuilt_from_item_done() -> None:
    (events,) = responses_of(capture_events(SSE_CAPTURES[0]))
    completed = next(e for e in events if isinstance(e, Completed))
    assert completed.response["output"] == []  # what the Codex backend sends
    encoder, _ = encode_all(events)
    kinds = [item["type"] for item in encoder.final()["output"]]
    assert kinds == ["reasoning", "message"]
    assert encoder.final()["output"][0]["encrypted_content"]


def test_function_call_arguments_reach_the_client_whole() -> None:
    first = responses_of(capture_events(SSE_CAPTURES[1]))[0]
    deltas = "".join(e.delta for e in first if isinstance(e, ArgumentsDelta))
    encoder, raw = encode_all(first)
    (call,) = [i for i in encoder.final()["output"] if i["type"] == "function_call"]
    assert call["arguments"] == deltas and json.loads(deltas)
    added = [e for e in parse_sse(raw) if e["type"] == "response.output_item.added"]
    assert [e["item"]["arguments"] for e in added if e["item"]["type"] == "function_call"] == [""]


def test_nothing_after_the_terminal_event_and_error_becomes_failed() -> None:
    events = responses_of(capture_events(SSE_CAPTURES[0]))[0]
    encoder, _ = encode_all(events)
    assert encoder.event(events[0]) == b""
    encoder = ResponseEncoder(response_id="resp_x1234567890", model="m", echo={})
    encoder.event(events[0])
    err = event_of({"type": "error", "code": "server_is_overloaded", "message": "busy"})
    (failed,) = parse_sse(encoder.event(err))
    assert failed["type"] == "response.failed" and failed["sequence_number"] == 1
    assert failed["response"]["error"] == {"code": "server_is_overloaded", "message": "busy"}
    assert failed["response"]["status"] == "failed" and encoder.ended


def test_a_stream_cut_short_ends_failed() -> None:
    events = responses_of(capture_events(SSE_CAPTURES[0]))[0]
    cut = [e for e in events if not isinstance(e, Completed)]
    encoder, raw = encode_all(cut)
    tail = parse_sse(encoder.fail("server_error", "ended early"))
    assert tail[0]["type"] == "response.failed"
    assert tail[0]["sequence_number"] == len(parse_sse(raw))
    # The items finished before the cut are in the failed response.
    assert [i["type"] for i in tail[0]["response"]["output"]] == ["reasoning", "message"]
    assert isinstance(encoder.collector.terminal, Failed)


def test_normal_usage_fills_details() -> None:
    assert normal_usage({"input_tokens": 3, "output_tokens": 4}) == {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert normal_usage(None) is None


# --- requests ------------------------------------------------------------------------------


def parse(body: dict[str, Any]) -> Any:
    return parse_responses_request(json.dumps(body).encode(), max_body_bytes=1 << 20)


def test_codex_body_rules_on_a_codex_cli_shaped_request() -> None:
    shape = json.loads(
        (FIXTURES / "codex-cli-0.171.0-request-to-custom-provider.shape.json").read_text()
    )
    body = shape["body"]
    body["input"] = [i for i in body["input"] if isinstance(i, dict)]
    body["tools"] = [t for t in body["tools"] if t.get("name")]
    body.update(max_output_tokens=100, temperature=0.5)
    req = parse(body)
    out = codex_body(req, slug="gpt-5.5", history=[])
    assert out["stream"] is True and out["store"] is False
    assert out["instructions"].startswith("<text, 21299 chars>")  # developer text moved there
    assert [i["role"] for i in out["input"]] == ["user"]
    assert all("id" not in i for i in out["input"])
    assert "max_output_tokens" not in out and "temperature" not in out
    assert out["include"] == ["reasoning.encrypted_content"]
    assert out["tools"] == body["tools"] and out["prompt_cache_key"] == body["prompt_cache_key"]
    assert out["text"] == {"verbosity": "low"} and out["reasoning"] == {"effort": "medium"}


def test_codex_body_defaults_and_reasoning_strip() -> None:
    req = parse({"model": "m", "input": "hi", "reasoning": {"effort": "low"}})
    history: list[dict[str, Any]] = [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "f",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
    ]
    out = codex_body(req, slug="gpt-5.5", history=history)
    assert out["instructions"] == DEFAULT_INSTRUCTIONS
    assert [i["type"] for i in out["input"]] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert all("id" not in i for i in out["input"])
    stripped = codex_body(req, slug="gpt-5.5", history=history, keep_reasoning=False)
    assert [i["type"] for i in stripped["input"]][0] == "function_call"
    assert out["include"] == ["reasoning.encrypted_content"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": [{"type": "bogus"}]}, "input[0].type"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "x", "tool_choice": 3}, "tool_choice"),
        ({"model": "m", "input": "x", "metadata": {"a": 1}}, "metadata"),
        (
            {"model": "m", "input": "x", "previous_response_id": "r", "conversation": "c"},
            "previous_response_id",
        ),
    ],
)
def test_bad_requests_name_their_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(Exception) as info:
        parse(body)
    assert getattr(info.value, "status", None) == 400 and info.value.param == param  # type: ignore[attr-defined]


def test_chat_form_tools_are_flattened_and_web_emulates_them() -> None:
    req = parse(
        {
            "model": "m",
            "input": "x",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        }
    )
    assert req.tools == [{"type": "function", "name": "f", "parameters": {}}]
    # Function tools are emulated on the web conversation (translator/toolcalls/responses.py).
    assert web_refusal(req, []) is None
    assert chat_body(req, [])["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {}}}
    ]
    builtin = parse({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})
    refusal = web_refusal(builtin, [])
    assert refusal is not None and "web_search" in refusal.message


def test_chat_body_for_the_web_conversation() -> None:
    req = parse(
        {
            "model": "gpt-4o",
            "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "dev"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ],
                },
            ],
        }
    )
    body = chat_body(
        req,
        [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "before"}],
            }
        ],
    )
    assert [m["role"] for m in body["messages"]] == ["system", "assistant", "system", "user"]
    assert body["messages"][3]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }


# --- the web answer's events ---------------------------------------------------------------


def test_web_events_order() -> None:
    web = WebEvents()
    events = web.start() + web.reasoning("think") + web.text("Hel") + web.text("lo")
    events += web.finish({"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    encoder, raw = encode_all(events)
    sent = parse_sse(raw)
    kinds = [e["type"] for e in sent]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = sent[-1]["response"]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "think"}]
    assert isinstance(next(e for e in events if e.type == "response.created"), Created)
