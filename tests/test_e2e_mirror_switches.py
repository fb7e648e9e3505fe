"""The original's mirror switches end to end, through a running mitmdump with the
emulator as every upstream: ``FORCE_NO_HISTORY``, ``X_SIGN``, ``FILE_HOST`` /
``VOICE_HOST`` and ``NO_SENTINEL`` (docs/mirror-switches.md).

What the emulator received shows what the mirror changed on the way up; the answers
show what it changed on the way back.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from typing import Any

import pytest

import pow
from tests.fakechatgpt import site as fake_site
from tests.fakechatgpt.harness import (
    Emulator,
    mint_access_token,
    next_plan,
    received,
)
from tests.support.mitm import Mitm, MitmFactory

POOL_AT = mint_access_token(exp_in=7 * 86400)
SEED = "seed-switches-5b1e0c7d"
SIGN = "x-sign-value-7c2a"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


def mirror(factory: MitmFactory, emulator: Emulator, **env: str) -> Mitm:
    """The mirror on the emulator, with one pool account in its old token.txt."""
    full = {"AUTO_SEED": "true", **env}
    return factory(full, emulator_url=emulator.url, mirror=True, pool=[POOL_AT])


@pytest.fixture(scope="module")
def switched(emulator: Emulator, module_mitm_factory: MitmFactory) -> Mitm:
    env = {
        "FORCE_NO_HISTORY": "true",
        "X_SIGN": SIGN,
        "FILE_HOST": "files.mirror.example",  # the original's form: a bare host name
        "VOICE_HOST": "https://voice.mirror.example",
    }
    return mirror(module_mitm_factory, emulator, **env)


def call(
    mitm: Mitm, method: str, target: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", mitm.reverse_port, timeout=30)
    try:
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        conn.request(method, target, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def browser_headers(seed: str = SEED) -> dict[str, str]:
    return {
        "authorization": f"Bearer {seed}",
        "oai-device-id": str(uuid.uuid4()),
        "user-agent": BROWSER_UA,
    }


def browser_sentinel(mitm: Mitm, headers: dict[str, str]) -> dict[str, str]:
    """The browser's own chat-requirements exchange through the mirror: its headers."""
    rng = random.Random(11)
    profile = pow.pick_profile(rng)
    # The emulator's page (when it shows one) names the script and build the config carries.
    scripts = getattr(fake_site, "SCRIPTS", [""])
    config = pow.classic_config(
        profile, script_src=scripts[0], build_id=getattr(fake_site, "DPL", None), rng=rng
    )
    p = pow.requirements_token(config, rng=rng)
    headers["user-agent"] = profile.user_agent
    status, _, body = call(
        mitm, "POST", "/backend-api/sentinel/chat-requirements", {"p": p}, **headers
    )
    assert status == 200, body
    req = json.loads(body)
    work = req["proofofwork"]
    proof = pow.as_proof_token(pow.solve(config, work["seed"], work["difficulty"]))
    return {
        "openai-sentinel-chat-requirements-token": req["token"],
        "openai-sentinel-proof-token": proof,
    }


def turn_body(**extra: Any) -> dict[str, Any]:
    message = {
        "id": str(uuid.uuid4()),
        "author": {"role": "user"},
        "content": {"content_type": "text", "parts": ["Hello through the switches"]},
    }
    return {
        "action": "next",
        "messages": [message],
        "parent_message_id": str(uuid.uuid4()),
        "model": "auto",
        **extra,
    }


def conduit(mitm: Mitm, headers: dict[str, str]) -> str:
    """The 2026 front-end's ``f/conversation/prepare`` through the mirror."""
    body = {"action": "next", "model": "auto", "parent_message_id": str(uuid.uuid4())}
    status, _, raw = call(
        mitm,
        "POST",
        "/backend-api/f/conversation/prepare",
        body,
        **headers,
        **{"x-conduit-token": ""},
    )
    assert status == 200, raw
    token: str = json.loads(raw)["conduit_token"]
    return token


def start_turn(
    mitm: Mitm, path: str, headers: dict[str, str], **extra: Any
) -> tuple[int, dict[str, str], bytes]:
    if path.startswith("/backend-api/f/"):
        headers = {**headers, "x-conduit-token": conduit(mitm, headers)}
    return call(mitm, "POST", path, turn_body(**extra), **headers, accept="text/event-stream")


def posted(emulator: Emulator, path: str) -> list[dict[str, Any]]:
    return [e for e in received(emulator.url) if e["method"] == "POST" and e["path"] == path]


# -- FORCE_NO_HISTORY and X_SIGN ------------------------------------------------------


@pytest.mark.parametrize("path", ["/backend-api/conversation", "/backend-api/f/conversation"])
def test_force_no_history_makes_a_seeds_turn_a_temporary_chat_and_x_sign_is_added(
    switched: Mitm, emulator: Emulator, path: str
) -> None:
    headers = browser_headers()
    headers.update(browser_sentinel(switched, headers))
    status, answer, body = start_turn(switched, path, headers, history_and_training_disabled=False)
    assert status == 200, body
    assert answer["content-type"].startswith("text/event-stream")
    assert answer["x-sign"] == SIGN
    (sent,) = posted(emulator, path)
    assert json.loads(sent["body"])["history_and_training_disabled"] is True
    assert sent["headers"]["authorization"] == f"Bearer {POOL_AT}"


def test_own_token_users_keep_their_history_choice(switched: Mitm, emulator: Emulator) -> None:
    headers = {"authorization": f"Bearer {POOL_AT}", "oai-device-id": str(uuid.uuid4())}
    headers.update(browser_sentinel(switched, headers))
    status, answer, body = start_turn(
        switched, "/backend-api/conversation", headers, history_and_training_disabled=False
    )
    assert status == 200, body
    assert answer["x-sign"] == SIGN  # on every conversation answer
    (sent,) = posted(emulator, "/backend-api/conversation")
    assert json.loads(sent["body"])["history_and_training_disabled"] is False


def test_x_sign_is_only_on_conversation_answers(switched: Mitm) -> None:
    status, answer, _ = call(switched, "GET", "/backend-api/models", **browser_headers())
    assert status == 200
    assert "x-sign" not in answer


# -- FILE_HOST and VOICE_HOST -----------------------------------------------------------


def test_file_host_and_voice_host_in_rewritten_text(switched: Mitm, emulator: Emulator) -> None:
    text = {
        "download_url": "https://files.oaiusercontent.com/file-abc?sig=1",
        "voice": "wss://webrtc.chatgpt.com/session",
        "connect": "webrtc.chatgpt.com files.oaiusercontent.com",
        "home": "https://chatgpt.com/",
    }
    next_plan(emulator.url, target="sentinel", status=200, body=text)
    status, _, body = call(
        switched, "POST", "/backend-api/sentinel/chat-requirements", {"p": "x"}, **browser_headers()
    )
    assert status == 200, body
    assert json.loads(body) == {
        "download_url": "https://files.mirror.example/file-abc?sig=1",
        "voice": "wss://voice.mirror.example/session",
        "connect": "voice.mirror.example files.mirror.example",
        "home": f"http://127.0.0.1:{switched.reverse_port}/",
    }


# -- NO_SENTINEL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serverside(emulator: Emulator, module_mitm_factory: MitmFactory) -> Mitm:
    return mirror(module_mitm_factory, emulator, NO_SENTINEL="true")


FAKE_KEYS = {"arkose", "persona", "proofofwork", "token", "turnstile"}


def requirements_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return posted(emulator, "/backend-api/sentinel/chat-requirements")


def wait_for(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["/backend-api/conversation", "/backend-api/f/conversation"])
def test_no_sentinel_answers_the_browser_and_sends_the_real_tokens(
    serverside: Mitm, emulator: Emulator, path: str
) -> None:
    headers = browser_headers()
    status, _, body = call(
        serverside, "POST", "/backend-api/sentinel/chat-requirements", {"p": "junk"}, **headers
    )
    assert status == 200, body
    fake = json.loads(body)
    assert set(fake) == FAKE_KEYS and fake["persona"] == "chatgpt-paid"
    assert fake["proofofwork"] == {"required": False, "seed": None, "difficulty": None}
    assert fake["turnstile"] == fake["arkose"] == {"required": False, "dx": None}
    # Meanwhile the mirror runs the real exchange for the seed's account.
    wait_for(lambda: len(requirements_calls(emulator)) == 1)
    (real,) = requirements_calls(emulator)
    assert real["headers"]["authorization"] == f"Bearer {POOL_AT}"
    assert json.loads(real["body"])["p"] != "junk"
    sent = {
        "openai-sentinel-chat-requirements-token": fake["token"],
        "openai-sentinel-proof-token": "gAAAAABnot-a-proof",
    }
    status, _, body = start_turn(serverside, path, {**headers, **sent})
    # The emulator checks the requirements token and the proof strictly.
    assert status == 200, body
    assert b"conversation_id" in body
    (turn,) = posted(emulator, path)
    got = turn["headers"]
    assert got["openai-sentinel-chat-requirements-token"] != fake["token"]
    assert got["openai-sentinel-proof-token"].startswith("gAAAAAB")
    assert got["openai-sentinel-proof-token"] != sent["openai-sentinel-proof-token"]
    assert len(requirements_calls(emulator)) == 1  # the prefetched tokens were used


def test_no_sentinel_without_a_prefetch_runs_a_fresh_exchange(
    serverside: Mitm, emulator: Emulator
) -> None:
    status, _, body = start_turn(serverside, "/backend-api/conversation", browser_headers())
    assert status == 200, body
    assert len(requirements_calls(emulator)) == 1
    (turn,) = posted(emulator, "/backend-api/conversation")
    assert turn["headers"]["openai-sentinel-proof-token"].startswith("gAAAAAB")


def test_no_sentinel_2026_prepare_and_finalize_are_answered_too(
    serverside: Mitm, emulator: Emulator
) -> None:
    headers = browser_headers()
    base = "/backend-api/sentinel/chat-requirements"
    status, _, body = call(serverside, "POST", base + "/prepare", {"p": "junk"}, **headers)
    assert status == 200, body
    prepared = json.loads(body)
    assert prepared["proofofwork"]["required"] is False and prepared["prepare_token"]
    status, _, body = call(
        serverside,
        "POST",
        base + "/finalize",
        {"prepare_token": prepared["prepare_token"]},
        **headers,
    )
    assert status == 200, body
    token = json.loads(body)["token"]
    assert not posted(emulator, base + "/prepare") and not posted(emulator, base + "/finalize")
    sent = {"openai-sentinel-chat-requirements-token": token}
    status, _, body = start_turn(serverside, "/backend-api/f/conversation", {**headers, **sent})
    assert status == 200, body
    (turn,) = posted(emulator, "/backend-api/f/conversation")
    assert turn["headers"]["openai-sentinel-chat-requirements-token"] != token
    assert len(requirements_calls(emulator)) == 1


def test_no_sentinel_failure_is_a_403(serverside: Mitm, emulator: Emulator) -> None:
    next_plan(emulator.url, target="sentinel", status=403, body={"detail": "nope"})
    status, _, body = start_turn(serverside, "/backend-api/conversation", browser_headers())
    assert (status, json.loads(body)) == (403, {"detail": "Sentinel failed"})
    assert not posted(emulator, "/backend-api/conversation")
