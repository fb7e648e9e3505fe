"""The emulator's Codex backend refuses what the real one refuses and streams what it streams
(docs/codex-backend.md). Replays, fault plans and the catalog: test_fakechatgpt_codex_faults.py.
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    CODEX_FIXTURES,
    Emulator,
    advance_clock,
    codex_body,
    codex_headers,
    codex_plan,
    expected_codex_answer,
    expected_codex_json,
    expected_codex_summary,
    expected_codex_tool_answer,
    mint_access_token,
    received,
)
from tests.fakechatgpt.state import FAKE_PNG

PATH = "/backend-api/codex/responses"
CAPTURE_01 = CODEX_FIXTURES / "01-codex-backend-gpt-5.5-reasoning-and-text.sse"
CAPTURE_03 = (
    CODEX_FIXTURES
    / "03-public-api-gpt-5.1-codex-max-reasoning-summary-and-function-calls.chunks.jsonl"
)
CAPTURE_04 = CODEX_FIXTURES / "04-public-api-gpt-5-function-call-roundtrip.sse"
CLI_SHAPE = CODEX_FIXTURES / "codex-cli-0.171.0-request-to-custom-provider.shape.json"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": False,
}
CLOCK = {
    "type": "function",
    "name": "clock",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    "strict": False,
}


# ---------------------------------------------------------------- helpers


def call(
    emulator: Emulator,
    body: Any,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    path: str = PATH,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    h = codex_headers(token or mint_access_token())
    for name in drop:
        h.pop(name, None)
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """Parse a blank-line framed SSE body; check each `event:` names its JSON's type."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        event = json.loads(lines[1][6:])
        assert event["type"] == lines[0][7:]
        out.append(event)
    return out


def check_stream(events: list[dict[str, Any]]) -> None:
    """The invariants clients rely on: order, sequence numbers, output indexes, no [DONE]."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert all(next(iter(e)) == "type" for e in events)
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == list(range(len(added)))


def items_done(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# ---------------------------------------------------------------- generated answers


def test_text_answer(emulator: Emulator) -> None:
    status, headers, raw = call(emulator, codex_body("Hello, Codex!"))
    assert status == 200, raw
    assert "content-type" not in headers  # the real stream has none
    assert float(headers["x-codex-primary-used-percent"]) >= 0
    assert int(headers["x-codex-primary-reset-at"]) > 0
    events = events_of(raw)
    check_stream(events)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == expected_codex_answer("Hello, Codex!", "gpt-5.5")
    kinds = [e["type"] for e in events]
    assert kinds.index("response.content_part.added") < kinds.index("response.output_text.delta")
    (message,) = items_done(events)
    assert message["phase"] == "final_answer" and message["content"][0]["text"] == text
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["output"] == []
    usage = completed["response"]["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    logged = received(emulator.url)[-1]
    assert logged["codex"]["kind"] == "text" and logged["codex"]["usage"] == usage
    assert logged["codex"]["output"] == [message]


def test_reasoning_summary_and_encrypted_content(emulator: Emulator) -> None:
    body = codex_body(
        "Think first.",
        reasoning={"effort": "high", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    status, _, raw = call(emulator, body)
    assert status == 200, raw
    events = events_of(raw)
    check_stream(events)
    added = events[2]["item"]
    assert added["type"] == "reasoning" and added["summary"] == []
    reasoning, message = items_done(events)
    assert reasoning["encrypted_content"].startswith("gAAAAA")
    assert reasoning["encrypted_content"] != added["encrypted_content"]
    sections = expected_codex_summary("Think first.", "gpt-5.5")
    assert [s["text"] for s in reasoning["summary"]] == sections
    for i, section in enumerate(sections):
        deltas = [
            e["delta"]
            for e in events
            if e["type"] == "response.reasoning_summary_text.delta" and e["summary_index"] == i
        ]
        assert "".join(deltas) == section
    parts = [e["summary_index"] for e in events if e["type"].startswith("response.reasoning_summ")]
    assert parts == sorted(parts)
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    # No include: no blob; effort none: no reasoning item at all.
    _, _, raw = call(emulator, codex_body("x", reasoning={"effort": "low"}))
    reasoning = items_done(events_of(raw))[0]
    assert "encrypted_content" not in reasoning and reasoning["summary"] == []
    _, _, raw = call(emulator, codex_body("x", reasoning={"effort": "none"}))
    assert [i["type"] for i in items_done(events_of(raw))] == ["message"]


def test_function_calls_asked_in_the_prompt(emulator: Emulator) -> None:
    prompt = 'call get_weather({"city": "Zürich", "unit": "c"}) and call clock()'
    status, _, raw = call(emulator, codex_body(prompt, tools=[WEATHER, CLOCK]))
    assert status == 200, raw
    events = events_of(raw)
    check_stream(events)
    calls = items_done(events)
    assert [c["name"] for c in calls] == ["get_weather", "clock"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Zürich", "unit": "c"}
    assert calls[1]["arguments"] == "{}"
    for index, item in enumerate(calls):
        first = next(
            e
            for e in events
            if e["type"] == "response.output_item.added" and e["output_index"] == index
        )
        assert first["item"]["arguments"] == "" and first["item"]["call_id"] == item["call_id"]
        deltas = [
            e["delta"]
            for e in events
            if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == index
        ]
        assert "".join(deltas) == item["arguments"]
        done = next(
            e
            for e in events
            if e["type"] == "response.function_call_arguments.done" and e["output_index"] == index
        )
        assert "name" not in done and done["arguments"] == item["arguments"]
    assert len([e for e in events if e["type"] == "response.function_call_arguments.delta"]) > 3
    assert not any(e["type"] == "response.output_text.delta" for e in events)


def test_forced_tool_choice_uses_schema_defaults(emulator: Emulator) -> None:
    body = codex_body(
        "anything", tools=[CLOCK, WEATHER], tool_choice={"type": "function", "name": "get_weather"}
    )
    (item,) = items_done(events_of(call(emulator, body)[2]))
    assert item["name"] == "get_weather"
    assert json.loads(item["arguments"]) == {"city": "fake", "unit": "c"}
    (item,) = items_done(events_of(call(emulator, dict(body, tool_choice="required"))[2]))
    assert item["name"] == "clock"
    # tool_choice none: the asked call is not made.
    body = codex_body("call clock()", tools=[CLOCK], tool_choice="none")
    assert [i["type"] for i in items_done(events_of(call(emulator, body)[2]))] == ["message"]


def test_final_answer_after_tool_outputs(emulator: Emulator) -> None:
    body = codex_body("x", tools=[CLOCK])
    body["input"] += [
        {"type": "function_call", "name": "clock", "arguments": "{}", "call_id": "call_a"},
        {"type": "function_call", "name": "clock", "arguments": "{}", "call_id": "call_b"},
        {"type": "function_call_output", "call_id": "call_a", "output": "12:00"},
        {"type": "function_call_output", "call_id": "call_b", "output": "13:00 ✓"},
    ]
    status, _, raw = call(emulator, body)
    assert status == 200, raw
    (message,) = items_done(events_of(raw))
    expected = expected_codex_tool_answer(["12:00", "13:00 ✓"], "gpt-5.5")
    assert message["content"][0]["text"] == expected


def test_plan_tool_calls_preamble_and_custom_tool(emulator: Emulator) -> None:
    codex_plan(
        emulator.url,
        preamble="Looking.",
        tool_calls=[
            {"name": "exec_command", "arguments": {"cmd": ["ls", "-la"]}, "call_id": "call_fixed"},
            {"name": "apply_patch", "arguments": "*** Begin Patch\n*** End Patch", "custom": True},
        ],
    )
    events = events_of(call(emulator, codex_body("list the files"))[2])
    check_stream(events)
    commentary, fn, custom = items_done(events)
    assert commentary["phase"] == "commentary" and commentary["content"][0]["text"] == "Looking."
    assert fn["call_id"] == "call_fixed" and json.loads(fn["arguments"]) == {"cmd": ["ls", "-la"]}
    assert custom["type"] == "custom_tool_call" and custom["input"].startswith("*** Begin")
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == custom["input"]
    # The plan was used once: the next call answers normally.
    assert [i["type"] for i in items_done(events_of(call(emulator, codex_body("x"))[2]))] == [
        "message"
    ]


def test_structured_output_and_single_calls(emulator: Emulator) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "array", "items": {"type": "integer"}},
            "mood": {"enum": ["sunny", "rainy"]},
        },
        "required": ["city", "days", "mood"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "name": "out", "schema": schema, "strict": True}
    (message,) = items_done(
        events_of(call(emulator, codex_body("Weather?", text={"format": fmt}))[2])
    )
    text = message["content"][0]["text"]
    assert text == expected_codex_json(fmt, "Weather?", "gpt-5.5")
    value = json.loads(text)
    assert set(value) == {"city", "days", "mood"} and value["mood"] == "sunny"
    body = codex_body("x", text={"format": {"type": "json_object"}})
    (message,) = items_done(events_of(call(emulator, body)[2]))
    assert json.loads(message["content"][0]["text"]) == {
        "answer": expected_codex_answer("x", "gpt-5.5")
    }
    # parallel_tool_calls false: only the first asked call is made.
    body = codex_body("call clock() then call clock()", tools=[CLOCK], parallel_tool_calls=False)
    assert len(items_done(events_of(call(emulator, body)[2]))) == 1


def test_cached_tokens_follow_the_prompt_cache_key(emulator: Emulator) -> None:
    body = codex_body("a long prompt " * 200, prompt_cache_key="k1")
    first = events_of(call(emulator, body)[2])[-1]["response"]["usage"]
    second = events_of(call(emulator, body)[2])[-1]["response"]["usage"]
    assert first["input_tokens_details"]["cached_tokens"] == 0
    assert 0 < second["input_tokens_details"]["cached_tokens"] <= second["input_tokens"]


# ---------------------------------------------------------------- refusals


def _with_id(body: dict[str, Any]) -> None:
    body["input"][0]["id"] = "msg_123"


def _orphan_output(body: dict[str, Any]) -> None:
    body["input"].append({"type": "function_call_output", "call_id": "call_x", "output": "1"})


def _unanswered_call(body: dict[str, Any]) -> None:
    body["input"].append(
        {"type": "function_call", "name": "clock", "arguments": "{}", "call_id": "call_y"}
    )


NOT_PERSISTED = (
    "Item with id 'msg_123' not found. Items are not persisted when `store` is set to false. "
    "Try again with `store` set to true, or remove this item from your input."
)


@pytest.mark.parametrize(
    "change, status, expected",
    [
        ({"instructions": None}, 400, {"detail": "Instructions are required"}),
        ({"instructions": "  "}, 400, {"detail": "Instructions are required"}),
        ({"store": None}, 400, {"detail": "Store must be set to false"}),
        ({"store": True}, 400, {"detail": "Store must be set to false"}),
        ({"stream": False}, 400, {"detail": "Stream must be set to true"}),
        ({"stream": None}, 400, {"detail": "Stream must be set to true"}),
        ({"max_output_tokens": 100}, 400, {"detail": "Unsupported parameter: max_output_tokens"}),
        ({"temperature": 0.2}, 400, {"detail": "Unsupported parameter: temperature"}),
        ({"top_p": 0.9}, 400, {"detail": "Unsupported parameter: top_p"}),
        ({"frequency_penalty": 0}, 400, {"detail": "Unsupported parameter: frequency_penalty"}),
        ({"presence_penalty": 0}, 400, {"detail": "Unsupported parameter: presence_penalty"}),
        (
            {"model": "gpt-5"},
            400,
            {
                "detail": "The 'gpt-5' model is not supported when using Codex with a ChatGPT "
                "account."
            },
        ),
        (_with_id, 400, {"error": {"message": NOT_PERSISTED, "type": "invalid_request_error",
                                   "param": "input", "code": None}}),
        (_orphan_output, 400, "No tool call found for function call output with call_id call_x."),
        (_unanswered_call, 400, "No tool output found for function call call_y."),
        ({"previous_response_id": "resp_1"}, 400, "previous_response_not_found"),
        ({"reasoning": {"effort": "ultra"}}, 400, "unsupported_value"),
        ({"reasoning": {"effort": "low", "summary": "long"}}, 400, "Invalid value: 'long'"),
        ({"tool_choice": "any"}, 400, "'none', 'auto', and 'required'"),
        (
            {"model": "gpt-5.3-codex-spark", "text": {"verbosity": "low"}},
            400,
            "Supported values are: 'medium'.",
        ),
        ({"tool_choice": {"type": "function", "name": "nope"}}, 400, "not found in 'tools'"),
        ({"input": "a bare string"}, 422, "type_error.list"),
    ],
)  # fmt: skip
def test_body_refusals(emulator: Emulator, change: Any, status: int, expected: Any) -> None:
    body = codex_body("hi")
    if callable(change):
        change(body)
    else:
        for key, value in change.items():
            if value is None:
                body.pop(key)
            else:
                body[key] = value
    got, _, raw = call(emulator, body)
    assert got == status, raw
    if isinstance(expected, str):
        assert expected in raw.decode()
    else:
        assert json.loads(raw) == expected
    # The first rule broken is the one reported, in the backend's order.
    got, _, raw = call(emulator, {"model": "gpt-5.5", "input": []})
    assert json.loads(raw) == {"detail": "Instructions are required"}
    got, _, raw = call(
        emulator, {"model": "gpt-5.5", "input": [], "instructions": "x", "stream": True}
    )
    assert json.loads(raw) == {"detail": "Store must be set to false"}


def test_a_codex_cli_request_once_forwarded(emulator: Emulator) -> None:
    """What Codex CLI 0.171.0 sends must lose its item ids and gain instructions to pass."""
    shape = json.loads(CLI_SHAPE.read_text())
    sent = dict(line.split(": ", 1) for line in shape["headers"])
    body = shape["body"]
    body["input"] = [i for i in body["input"] if isinstance(i, dict)]
    body["input"].append(user('call exec_command({"cmd": "ls"})'))
    body["input"][-1]["id"] = "msg_last"
    headers = {"originator": sent["originator"], "session-id": sent["session-id"]}
    status, _, raw = call(emulator, body, headers=headers, drop=("originator", "session_id"))
    assert (status, json.loads(raw)) == (400, {"detail": "Instructions are required"})
    body["instructions"] = "You are Codex."
    status, _, raw = call(emulator, body, headers=headers, drop=("originator", "session_id"))
    assert status == 400 and b"Item with id 'msg_5e3548cf" in raw
    for item in body["input"]:
        item.pop("id")
    status, _, raw = call(emulator, body, headers=headers, drop=("originator", "session_id"))
    assert status == 200, raw
    reasoning, fn = items_done(events_of(raw))
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"]
    assert (fn["name"], json.loads(fn["arguments"])) == ("exec_command", {"cmd": "ls"})


def _image(url: Any) -> dict[str, Any]:
    part = {"type": "input_image", "image_url": url}
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "see"}, part],
    }


PNG = "data:image/png;base64," + base64.b64encode(FAKE_PNG).decode()


@pytest.mark.parametrize(
    "item, code, marker",
    [
        (_image(PNG), None, ""),
        (_image("https://example.com/cat.png"), None, ""),
        (_image({"url": PNG}), "invalid_type", "expected a string, but got an object"),
        (_image("data:text/plain;base64,aGk="), "invalid_value", "data URL with an image MIME"),
        (_image("data:image/png;base64,bm90IGFuIGltYWdl"), "invalid_value", "not represent"),
        (
            {"role": "user", "content": [{"type": "text", "text": "chat-style part"}]},
            "invalid_value",
            "Invalid value: 'text'",
        ),
    ],
)
def test_message_content_parts(
    emulator: Emulator, item: dict[str, Any], code: str | None, marker: str
) -> None:
    body = codex_body("x")
    body["input"] = [item]
    status, _, raw = call(emulator, body)
    if code is None:
        assert status == 200, raw
    else:
        error = json.loads(raw)["error"]
        assert (status, error["code"]) == (400, code) and marker in error["message"]
        assert error["param"].startswith(
            "input[0].content[1]" if "image" in str(item) else "input[0]"
        )


def test_model_outside_the_plan(emulator: Emulator) -> None:
    free = mint_access_token(plan_type="free")
    status, _, raw = call(emulator, codex_body("x", model="gpt-5.4"), token=free)
    assert status == 400 and b"'gpt-5.4' model is not supported" in raw
    assert call(emulator, codex_body("x", model="gpt-5.4-mini"), token=free)[0] == 200


@pytest.mark.parametrize(
    "drop, extra, status, marker",
    [
        (("chatgpt-account-id",), {}, 400, "chatgpt-account-id"),
        ((), {"chatgpt-account-id": "someone-else"}, 403, "chatgpt-account-id"),
        (("openai-beta",), {}, 400, "responses=experimental"),
        ((), {"openai-beta": "assistants=v2"}, 400, "responses=experimental"),
        (("accept",), {}, 400, "text/event-stream"),
        (("originator",), {}, 400, "originator"),
        (("session_id",), {}, 400, "session_id"),
        (("authorization",), {}, 401, "Access token is missing"),
        ((), {"authorization": "Bearer not-a-jwt"}, 401, "Could not parse"),
    ],
)
def test_header_refusals(
    emulator: Emulator, drop: tuple[str, ...], extra: dict[str, str], status: int, marker: str
) -> None:
    got, _, raw = call(emulator, codex_body("x"), headers=extra, drop=drop)
    assert got == status and marker in raw.decode(), raw


def test_session_id_spellings_team_accounts_and_expiry(emulator: Emulator) -> None:
    token = mint_access_token(team_accounts=["team-123"])
    assert (
        call(emulator, codex_body("x"), token=token, headers={"chatgpt-account-id": "team-123"})[0]
        == 200
    )
    assert (
        call(emulator, codex_body("x"), drop=("session_id",), headers={"session-id": "s"})[0] == 200
    )
    short = mint_access_token(exp_in=60)
    advance_clock(emulator.url, 120)
    status, _, raw = call(emulator, codex_body("x"), token=short)
    assert status == 401 and b"expired" in raw


def test_encrypted_content_is_bound_to_its_account(emulator: Emulator) -> None:
    body = codex_body("x", reasoning={"effort": "low"}, include=["reasoning.encrypted_content"])
    token = mint_access_token()
    reasoning = items_done(events_of(call(emulator, body, token=token)[2]))[0]
    reasoning.pop("id")
    follow = codex_body("again")
    follow["input"].insert(0, reasoning)
    assert call(emulator, follow, token=token)[0] == 200
    status, _, raw = call(emulator, follow)  # another account
    assert status == 400 and json.loads(raw)["error"]["code"] == "invalid_encrypted_content"
    # A capture's blob is not ours to judge: accepted.
    follow["input"][0]["encrypted_content"] = "gAAAAABqdAAYo-I2Bum"
    assert call(emulator, follow)[0] == 200
