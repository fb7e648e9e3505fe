"""The emulator's Codex backend: replays of the shared captures byte for byte, fault plans, the
model catalog, and a real client reading its streams (docs/codex-backend.md)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    EmulatorFactory,
    codex_body,
    codex_headers,
    codex_plan,
    expected_codex_answer,
    mint_access_token,
    next_plan,
    received,
)
from tests.support.clients import run_client
from tests.test_fakechatgpt_codex import (
    CAPTURE_01,
    CAPTURE_03,
    CAPTURE_04,
    call,
    events_of,
)

# ---------------------------------------------------------------- replay


def test_replay_is_byte_for_byte(emulator: Emulator) -> None:
    codex_plan(emulator.url, replay=str(CAPTURE_01))
    status, headers, raw = call(emulator, codex_body("x"))
    assert status == 200 and raw == CAPTURE_01.read_bytes()
    assert "x-codex-primary-used-percent" in headers
    # 04 holds two responses: a plan used twice plays them in turn.
    codex_plan(emulator.url, replay=str(CAPTURE_04), count=2)
    first, second = call(emulator, codex_body("x"))[2], call(emulator, codex_body("x"))[2]
    assert first + second == CAPTURE_04.read_bytes()
    assert events_of(first)[-1]["type"] == "response.completed"
    assert events_of(second)[0]["type"] == "response.created"
    codex_plan(emulator.url, replay=str(CAPTURE_04), replay_part="all")
    assert call(emulator, codex_body("x"))[2] == CAPTURE_04.read_bytes()


def test_replay_wire_framing_and_chunks(emulator: Emulator) -> None:
    codex_plan(emulator.url, replay=str(CAPTURE_01), framing="wire")
    events = events_of(call(emulator, codex_body("x"))[2])
    lines = [ln[6:] for ln in CAPTURE_01.read_text().splitlines() if ln.startswith("data: ")]
    assert [json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in events] == lines
    # 03: one JSON event per line, framed as SSE; four responses, one per call.
    responses = CAPTURE_03.read_text().splitlines()
    codex_plan(emulator.url, replay=str(CAPTURE_03), count=4)
    got: list[str] = []
    for _ in range(4):
        raw = call(emulator, codex_body("x"))[2]
        blocks = [b for b in raw.decode().split("\n\n") if b]
        got += [b.split("\n")[1][6:] for b in blocks]
        assert events_of(raw)[-1]["type"] == "response.completed"
    assert got == [ln for ln in responses if ln.strip()]


def test_replay_flag(emulator_factory: EmulatorFactory) -> None:
    e = emulator_factory(codex_replay=str(CAPTURE_04))
    first, second = call(e, codex_body("x"))[2], call(e, codex_body("x"))[2]
    assert first + second == CAPTURE_04.read_bytes()
    # Refusals still apply before the replay.
    assert call(e, codex_body("x", store=True))[0] == 400
    e = emulator_factory(codex_replay=str(CAPTURE_01), codex_replay_framing="wire")
    events = events_of(call(e, codex_body("x"))[2])
    assert [ev["sequence_number"] for ev in events] == list(range(11))


# ---------------------------------------------------------------- faults


def test_usage_limit(emulator: Emulator) -> None:
    codex_plan(emulator.url, preset="usage_limit", resets_in_seconds=120)
    status, headers, raw = call(emulator, codex_body("x"))
    assert status == 429
    error = json.loads(raw)["error"]
    assert error["type"] == "usage_limit_reached" and error["plan_type"] == "plus"
    assert error["resets_in_seconds"] == 120 and error["resets_at"] > 0
    assert headers["x-codex-primary-used-percent"] == "100.0"
    codex_plan(emulator.url, preset="usage_limit", status=404)
    assert call(emulator, codex_body("x"))[0] == 404
    codex_plan(emulator.url, preset="usage_not_included")
    status, _, raw = call(emulator, codex_body("x"), token=mint_access_token(plan_type="free"))
    error = json.loads(raw)["error"]
    assert status == 429 and error["type"] == "usage_not_included" and error["plan_type"] == "free"
    assert call(emulator, codex_body("x"))[0] == 200


def test_plans_for_one_account(emulator: Emulator) -> None:
    limited, other = mint_access_token(), mint_access_token()
    account = codex_headers(limited)["chatgpt-account-id"]
    codex_plan(emulator.url, preset="usage_limit", account=account, count=5)
    assert call(emulator, codex_body("x"), token=other)[0] == 200
    assert call(emulator, codex_body("x"), token=limited)[0] == 429
    assert call(emulator, codex_body("x"), token=limited)[0] == 429


@pytest.mark.parametrize(
    "preset, status, marker",
    [
        ("expired", 401, b"expired"),
        ("cloudflare", 403, b"Just a moment"),
        ("account_deactivated", 403, b"account_deactivated"),
        ("model_not_supported", 400, b"'gpt-5.5' model is not supported"),
        ("server_error", 500, b"server_error"),
        ("overloaded", 503, b"server_is_overloaded"),
    ],
)
def test_presets(emulator: Emulator, preset: str, status: int, marker: bytes) -> None:
    codex_plan(emulator.url, preset=preset)
    got, headers, raw = call(emulator, codex_body("x"))
    assert got == status and marker in raw
    if preset == "cloudflare":
        assert headers["content-type"].startswith("text/html")
        assert headers["cf-mitigated"] == "challenge"


def test_status_plan_and_web_plans_stay_apart(emulator: Emulator) -> None:
    next_plan(emulator.url, preset="rate_limit")  # a web-conversation plan: not for Codex calls
    codex_plan(emulator.url, status=418, body={"detail": "teapot"}, headers={"x-extra": "1"})
    status, headers, raw = call(emulator, codex_body("x"))
    assert (status, json.loads(raw), headers["x-extra"]) == (418, {"detail": "teapot"}, "1")
    codex_plan(emulator.url, headers={"x-codex-primary-used-percent": "87.5"})
    status, headers, _ = call(emulator, codex_body("x"))
    assert (status, headers["x-codex-primary-used-percent"]) == (200, "87.5")
    assert call(emulator, codex_body("x"))[0] == 200


def test_drop_mid_stream(emulator: Emulator) -> None:
    codex_plan(emulator.url, drop_after_events=4)
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        call(emulator, codex_body("x"))
    assert received(emulator.url)[-1]["ended"] == "dropped"


@pytest.mark.parametrize(
    "plan, last",
    [
        ({"failed": {"code": "server_is_overloaded", "message": "busy"}}, "response.failed"),
        ({"error_event": "rate_limit_exceeded"}, "error"),
        ({"incomplete": "max_output_tokens"}, "response.incomplete"),
        ({"no_completed": True}, "response.content_part.done"),
        ({"failed": "context_length_exceeded", "fail_after_events": 3}, "response.failed"),
    ],
)
def test_stream_endings(emulator: Emulator, plan: dict[str, Any], last: str) -> None:
    codex_plan(emulator.url, **plan)
    status, _, raw = call(emulator, codex_body("x"))
    events = events_of(raw)
    assert status == 200
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == last or (
        last == "response.content_part.done" and events[-1]["type"] == "response.output_item.done"
    )
    assert not any(e["type"] == "response.completed" for e in events)
    assert received(emulator.url)[-1]["codex"]["terminal"] == events[-1]["type"]
    if last == "response.failed":
        failed = plan["failed"]
        code = failed if isinstance(failed, str) else failed["code"]
        assert events[-1]["response"]["status"] == "failed"
        assert events[-1]["response"]["error"]["code"] == code
        assert events[-1]["response"]["output"] == []
    if last == "error":
        assert events[-1]["code"] == "rate_limit_exceeded" and "message" in events[-1]
    if plan.get("fail_after_events") == 3:
        assert len(events) == 4


def test_bad_codex_plans_are_rejected(emulator: Emulator) -> None:
    with pytest.raises(Exception, match="400"):
        codex_plan(emulator.url, bogus=1)
    with pytest.raises(Exception, match="400"):
        codex_plan(emulator.url, replay="/nonexistent/capture.sse")
    with pytest.raises(Exception, match="400"):
        codex_plan(emulator.url, preset="nope")


# ---------------------------------------------------------------- models


def test_models_catalog(emulator: Emulator) -> None:
    def models(token: str, query: str) -> tuple[int, dict[str, str], Any]:
        status, headers, raw = call(
            emulator, None, token=token, method="GET", path=f"/backend-api/codex/models{query}"
        )
        return status, headers, json.loads(raw)

    plus, free = mint_access_token(), mint_access_token(plan_type="free")
    status, headers, body = models(plus, "?client_version=0.171.0")
    slugs = [m["slug"] for m in body["models"]]
    assert status == 200 and headers["x-models-etag"]
    assert {"gpt-5.5", "gpt-5.4", "gpt-6-sol", "codex-auto-review"} <= set(slugs)
    entry = next(m for m in body["models"] if m["slug"] == "gpt-5.5")
    assert {"effort": "high"}.items() <= entry["supported_reasoning_levels"][3].items()
    assert entry["context_window"] == 272000 and "plus" in entry["available_in_plans"]
    old = [m["slug"] for m in models(plus, "?client_version=0.100.0")[2]["models"]]
    assert "gpt-6-sol" not in old and "gpt-5.5" in old
    free_slugs = {m["slug"] for m in models(free, "?client_version=0.171.0")[2]["models"]}
    assert "gpt-5.4" not in free_slugs and "gpt-5.4-mini" in free_slugs
    assert models(plus, "")[0] == 422
    assert models(plus, "?client_version=v1.5.0")[0] == 400


# ---------------------------------------------------------------- a real client


def test_openai_sdk_accumulator_accepts_the_streams(emulator: Emulator) -> None:
    """openai-python's `responses.stream` asserts the event order as it accumulates."""
    token = mint_access_token()
    headers = codex_headers(token)
    del headers["authorization"], headers["content-type"]
    script = f"""
    from openai import OpenAI
    client = OpenAI(api_key={token!r}, base_url={emulator.url + "/backend-api/codex"!r},
                    default_headers={headers!r}, max_retries=0)
    tools = [{{"type": "function", "name": "clock", "strict": False,
              "parameters": {{"type": "object", "properties": {{}}}}}}]
    for prompt in ["hello", "call clock() and call clock()"]:
        with client.responses.stream(
            model="gpt-5.5", instructions="Be brief.", store=False, tools=tools,
            input=[{{"role": "user", "content": prompt}}],
            reasoning={{"effort": "low", "summary": "auto"}},
            include=["reasoning.encrypted_content"],
        ) as stream:
            events = list(stream)
            final = stream.get_final_response()
        done = [e.item.type for e in events if e.type == "response.output_item.done"]
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        emit({{"done": done, "output": len(final.output), "text": text,
              "reasoning_tokens": final.usage.output_tokens_details.reasoning_tokens}})
    """
    text, calls = run_client(script, timeout=60)
    assert text["done"] == ["reasoning", "message"] and calls["done"][1:] == ["function_call"] * 2
    assert text["text"] == expected_codex_answer("hello", "gpt-5.5")
    assert text["output"] == 0 and text["reasoning_tokens"] > 0  # completed.output is []
