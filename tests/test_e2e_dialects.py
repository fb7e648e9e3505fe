"""The backend dialects end to end: the official openai SDK, a running mitmdump, the emulator.

* the API path answers exactly in each dialect, against an emulator that speaks only it;
* under the 2026 dialect a stream dropped or stalled after N events is resumed from the
  event offset: the SDK gets the whole answer exactly once, and the prompt is never posted
  again; with resuming refused, the SDK raises;
* ``auto`` falls back to the classic flow against an emulator that only speaks it, and
  remembers that per upstream.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer, expected_reasoning
from tests.fakechatgpt.harness import Emulator, EmulatorFactory, next_plan, received, reset
from tests.support.clients import client_env, reverse_env
from tests.support.dialects import is_conversation_call
from tests.support.mitm import Mitm, MitmFactory
from tests.support.sdk import ask, chat

SETTINGS = {
    # Short enough that stall tests stay quick, long enough for a loaded CI box.
    "TIMEOUT_IDLE": "2",
    "TIMEOUT_FIRST_BYTE": "10",
}


@pytest.fixture(scope="module")
def emulator_options(dialect: str) -> dict[str, Any]:
    return {"dialect": dialect}


@pytest.fixture(scope="module")
def chat2api_options(dialect: str) -> dict[str, Any]:
    return {"dialect": dialect, "env": SETTINGS}


def paths(emulator: Emulator) -> list[str]:
    return [r["path"] for r in received(emulator.url) if r["path"].startswith("/backend-")]


def calls(emulator: Emulator, suffix: str) -> list[dict[str, Any]]:
    return [r for r in received(emulator.url) if r["path"].endswith(suffix)]


def total_events(emulator: Emulator, mitm: Mitm, token: str, prompt: str) -> int:
    """How many events a clean turn for ``prompt`` streams (the emulator counts them)."""
    out = chat(reverse_env(mitm, token), **ask(prompt, stream=True))
    assert out.get("error") is None, out
    (call,) = calls(emulator, "/f/conversation")
    reset(emulator.url)
    return int(call["events_sent"])


# -- every dialect ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_answer_arrives_exactly_in_each_dialect(
    emulator: Emulator, mitm: Mitm, dialect: str, token: str, mode: str, stream: bool
) -> None:
    prompt = f"Hello in the {dialect} dialect over {mode}"
    env = client_env(mitm, mode, token)
    out = chat(env, **ask(prompt, stream=stream))
    assert out.get("error") is None, out
    assert out["text"] == expected_answer(prompt, "gpt-4o")
    assert out["finish_reason"] == "stop"
    conversations = [p for p in paths(emulator) if p.endswith("conversation")]
    assert len(conversations) == 1
    assert is_conversation_call(dialect, conversations[0])


@pytest.mark.parametrize("dialect", ["2026"], indirect=True)  # resumes and the 2026 flow
def test_2026_turn_is_prepared_finalized_and_conduited(
    emulator: Emulator, mitm: Mitm, dialect: str, token: str
) -> None:
    prompt = "Think about the 2026 flow"
    spec = ask(prompt, model="o3-mini", stream=True, extra={"reasoning_effort": "high"})
    out = chat(reverse_env(mitm, token), **spec)
    assert out.get("error") is None, out
    assert out["text"] == expected_answer(prompt, "o3-mini")
    reasoning = expected_reasoning(prompt, "o3-mini")
    assert reasoning and out["reasoning"].startswith(reasoning)
    backend = paths(emulator)
    assert backend == [
        "/backend-api/sentinel/chat-requirements/prepare",
        "/backend-api/sentinel/chat-requirements/finalize",
        "/backend-api/f/conversation/prepare",
        "/backend-api/f/conversation",
    ]
    (finalize,) = calls(emulator, "/finalize")
    assert set(json.loads(finalize["body"])) == {"prepare_token", "proofofwork"}
    (conduit,) = calls(emulator, "/f/conversation/prepare")
    (conv,) = calls(emulator, "/f/conversation")
    assert "messages" not in json.loads(conduit["body"])
    assert not any(h.startswith("openai-sentinel") for h in conduit["headers"])
    headers = conv["headers"]
    assert headers["x-conduit-token"].startswith("ct_")
    assert headers["x-oai-turn-trace-id"] == conduit["headers"]["x-oai-turn-trace-id"]
    assert headers["openai-sentinel-proof-token"].endswith("~S")
    for name in ("oai-device-id", "oai-language", "oai-session-id", "x-openai-target-path"):
        assert headers[name]
    body = json.loads(conv["body"])
    assert body["client_prepare_state"] == "success"
    assert body["supports_buffering"] is True
    assert body["paragen_cot_summary_display_override"] == "allow"
    assert body["thinking_effort"] == "max"  # reasoning_effort high


# -- resuming (2026) -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["2026"], indirect=True)  # resumes and the 2026 flow
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("where", ["early", "middle", "late"])
def test_dropped_stream_is_resumed_exactly_once(
    emulator: Emulator, mitm: Mitm, dialect: str, token: str, where: str, stream: bool
) -> None:
    prompt = f"A long answer that breaks {where}"
    total = total_events(emulator, mitm, token, prompt)
    drop = {"early": 3, "middle": total // 2, "late": total - 2}[where]
    next_plan(emulator.url, drop_after_events=drop)
    # Default settings: history_disabled is true, so this is a temporary chat.
    out = chat(reverse_env(mitm, token), **ask(prompt, stream=stream))
    assert out.get("error") is None, out
    assert out["text"] == expected_answer(prompt, "gpt-4o")
    assert out["finish_reason"] == "stop"
    # One conversation call (the prompt was not posted again), then a resume from the drop.
    assert len(calls(emulator, "/f/conversation")) == 1
    (conv,) = calls(emulator, "/f/conversation")
    assert conv["ended"] == "dropped"
    (resume,) = calls(emulator, "/f/conversation/resume")
    body = json.loads(resume["body"])
    assert body["conversation_id"] == conv["conversation_id"]
    assert 0 < body["offset"] <= drop
    assert resume["completed"] is True
    assert resume["headers"]["x-oai-turn-trace-id"] == conv["headers"]["x-oai-turn-trace-id"]


@pytest.mark.parametrize("dialect", ["2026"], indirect=True)  # resumes and the 2026 flow
def test_stalled_stream_is_resumed(
    emulator: Emulator, mitm: Mitm, dialect: str, token: str
) -> None:
    prompt = "An answer that stalls half way"
    total = total_events(emulator, mitm, token, prompt)
    next_plan(emulator.url, stall_after_events=total // 2, stall_ms=8000)
    out = chat(reverse_env(mitm, token), **ask(prompt, stream=True))
    assert out.get("error") is None, out
    assert out["text"] == expected_answer(prompt, "gpt-4o")
    assert len(calls(emulator, "/f/conversation/resume")) == 1
    assert out["elapsed"] < 7


@pytest.mark.parametrize("dialect", ["2026"], indirect=True)  # resumes and the 2026 flow
@pytest.mark.parametrize("where", ["early", "late"])
def test_refused_resume_ends_in_the_openai_error(
    emulator: Emulator, mitm: Mitm, dialect: str, token: str, where: str
) -> None:
    prompt = f"An answer that breaks {where} for good"
    total = total_events(emulator, mitm, token, prompt)
    next_plan(
        emulator.url, drop_after_events=3 if where == "early" else total - 2, resume_fail=True
    )
    out = chat(reverse_env(mitm, token), **ask(prompt, stream=True))
    error = out.get("error")
    assert error is not None, out
    if where == "early":  # nothing was sent yet: an HTTP error
        assert error["status"] == 502
    else:  # mid-stream: the OpenAI error event, which the SDK raises
        assert error["error_class"] == "APIError"
        assert out["text"] and expected_answer(prompt, "gpt-4o").startswith(out["text"])
    assert len(calls(emulator, "/f/conversation/resume")) == 1  # a 404 is not retried


# -- auto -------------------------------------------------------------------------------------


def test_auto_falls_back_to_classic_and_remembers(
    emulator_factory: EmulatorFactory, mitm_factory: MitmFactory, token: str
) -> None:
    emu = emulator_factory(dialect="classic")
    mitm = mitm_factory(SETTINGS, emulator_url=emu.url, dialect="auto")
    for i in range(2):
        prompt = f"auto against classic, turn {i}"
        out = chat(reverse_env(mitm, token), **ask(prompt, stream=i == 0))
        assert out.get("error") is None, out
        assert out["text"] == expected_answer(prompt, "gpt-4o")
    backend = paths(emu)
    log = mitm.log()
    assert backend == [
        "/backend-api/sentinel/chat-requirements/prepare",  # 404: not spoken here
        "/backend-api/sentinel/chat-requirements",
        "/backend-api/conversation",
        # remembered: straight to the classic flow
        "/backend-api/sentinel/chat-requirements",
        "/backend-api/conversation",
    ]
    assert "does not speak the 2026 backend dialect" in log


def test_auto_uses_2026_where_it_is_spoken(
    emulator_factory: EmulatorFactory, mitm_factory: MitmFactory, token: str
) -> None:
    emu = emulator_factory(dialect="2026")
    mitm = mitm_factory(SETTINGS, emulator_url=emu.url, dialect="auto")
    prompt = "auto against 2026"
    total = total_events(emu, mitm, token, prompt)
    next_plan(emu.url, drop_after_events=total // 2)
    out = chat(reverse_env(mitm, token), **ask(prompt, stream=True))
    backend = paths(emu)
    assert out.get("error") is None, out
    assert out["text"] == expected_answer(prompt, "gpt-4o")
    assert "/backend-api/conversation" not in backend
    assert "/backend-api/f/conversation/resume" in backend


def test_2026_against_a_classic_only_upstream_names_the_setting(
    emulator_factory: EmulatorFactory, mitm_factory: MitmFactory, token: str
) -> None:
    emu = emulator_factory(dialect="classic")
    mitm = mitm_factory(SETTINGS, emulator_url=emu.url, dialect="2026")
    out = chat(reverse_env(mitm, token), **ask("wrong dialect", stream=True))
    assert out["error"]["status"] == 502
    assert "BACKEND_DIALECT" in out["error"]["message"]


def test_resume_attempts_zero_turns_resuming_off(
    emulator_factory: EmulatorFactory, mitm_factory: MitmFactory, token: str
) -> None:
    emu = emulator_factory(dialect="2026")
    mitm = mitm_factory({**SETTINGS, "RESUME_ATTEMPTS": "0"}, emulator_url=emu.url, dialect="2026")
    prompt = "no resuming"
    total = total_events(emu, mitm, token, prompt)
    next_plan(emu.url, drop_after_events=total - 2)
    out = chat(reverse_env(mitm, token), **ask(prompt, stream=True))
    backend = paths(emu)
    assert out["error"]["error_class"] == "APIError"
    assert "/backend-api/f/conversation/resume" not in backend
