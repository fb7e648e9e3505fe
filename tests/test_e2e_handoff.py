"""A 2026 thinking turn the backend hands off mid-answer arrives whole (docs/stream-handoff.md).

The emulator ends the conversation stream after N events with a ``stream_handoff`` and
``[DONE]``; the rest of the turn is served by ``/f/conversation/resume`` from offset 0
(going on where the first stream stopped, or repeating the turn from its start). The
official openai SDK, through a running mitmdump, must get exactly the answer and the
reasoning of a turn that was not handed off, streamed and not, and the prompt is never
posted twice.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import Emulator, next_plan, received, reset
from tests.support.clients import reverse_env
from tests.support.mitm import Mitm
from tests.support.sdk import ask, chat

MODEL = "o3"  # a thinking model: its turn streams thoughts before the answer


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": "2026"}


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"dialect": "2026", "env": {"TIMEOUT_IDLE": "5"}}


def calls(emulator: Emulator, suffix: str) -> list[dict[str, Any]]:
    return [r for r in received(emulator.url) if r["path"].endswith(suffix)]


def clean_turn(
    emulator: Emulator, mitm: Mitm, token: str, prompt: str
) -> tuple[dict[str, Any], int]:
    """What a turn that is not handed off gives the SDK, and how many events it has."""
    out = chat(reverse_env(mitm, token), **ask(prompt, model=MODEL, stream=True))
    assert out.get("error") is None, out
    assert out["text"] == expected_answer(prompt, MODEL) and out["reasoning"]
    (call,) = calls(emulator, "/f/conversation")
    reset(emulator.url)
    return out, int(call["events_sent"])


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("replay", [False, True], ids=["rest", "replay"])
@pytest.mark.parametrize("where", ["before-thinking", "thinking", "answering"])
def test_a_handed_off_turn_arrives_whole(
    emulator: Emulator, mitm: Mitm, token: str, where: str, replay: bool, stream: bool
) -> None:
    prompt = f"Think hard, then answer ({where}, {replay})"
    baseline, total = clean_turn(emulator, mitm, token, prompt)
    cut = {"before-thinking": 3, "thinking": total // 3, "answering": total - 8}[where]
    next_plan(emulator.url, handoff_after_events=cut, handoff_replay=replay)
    out = chat(reverse_env(mitm, token), **ask(prompt, model=MODEL, stream=stream))
    assert out.get("error") is None, out
    assert out["text"] == baseline["text"]
    assert out["reasoning"] == baseline["reasoning"]
    assert out["finish_reason"] == "stop"
    # One conversation call (the prompt is never posted again), then the handed-off
    # stream, read from its start with the turn's resume token.
    (conv,) = calls(emulator, "/f/conversation")
    assert conv["handoff"] is True and conv["completed"] is True
    (resume,) = calls(emulator, "/f/conversation/resume")
    assert json.loads(resume["body"]) == {
        "conversation_id": conv["conversation_id"],
        "offset": 0,
    }
    assert resume["completed"] is True
    assert resume["headers"]["x-conduit-token"].count(".") == 2  # the resume JWT
    assert resume["headers"]["x-oai-turn-trace-id"] == conv["headers"]["x-oai-turn-trace-id"]


def test_a_handoff_that_cannot_be_followed_is_an_honest_error(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    prompt = "Think, then get lost"
    baseline, total = clean_turn(emulator, mitm, token, prompt)
    next_plan(emulator.url, handoff_after_events=total - 8, resume_fail=True)
    out = chat(reverse_env(mitm, token), **ask(prompt, model=MODEL, stream=True))
    error = out.get("error")
    assert error is not None, out
    # Text was already streamed: the OpenAI error event, which the SDK raises.
    assert error["error_class"] == "APIError"
    assert "handed the answer off" in json.dumps(error)
    assert out["text"] and baseline["text"].startswith(out["text"])
    assert len(calls(emulator, "/f/conversation/resume")) == 1  # a 404 is not retried

    next_plan(emulator.url, handoff_after_events=3, resume_fail=True)
    out = chat(reverse_env(mitm, token), **ask(prompt, model=MODEL))
    assert out["error"]["status"] == 502  # nothing was sent yet: an HTTP error


def test_the_user_websocket_address(emulator: Emulator, token: str) -> None:
    """``GET /backend-api/celsius/ws/user`` answers ``{websocket_url}`` as peers expect."""
    parts = urlsplit(emulator.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request(
            "GET", "/backend-api/celsius/ws/user", headers={"authorization": f"Bearer {token}"}
        )
        answer = conn.getresponse()
        body = json.loads(answer.read())
    finally:
        conn.close()
    assert answer.status == 200
    url = body["websocket_url"]
    assert url.startswith("wss://ws.chatgpt.com/p") and "/ws/user/user-" in url
    assert "?verify=" in url
