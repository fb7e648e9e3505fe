"""MITM_PATCHES=off: chat2api on stock mitmproxy behaviour, end to end.

With the patches off (patches/__init__.py), streamed answers cannot leave from
mitmproxy's HTTP layer; they cross the loopback bridge (service/bridge.py)
instead. Every streaming case that matters for a client runs here once more,
through both listeners, under plain mitmdump and under run.sh's launcher: the
SDK's answer with usage, chunks arriving as the backend sends them, curl over
HTTP/1.1 and HTTP/2, a break mid-stream raising an error, and a client that
hangs up mid-stream.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import Emulator, next_plan
from tests.support.clients import client_env, reverse_env, run_client
from tests.support.mitm import Mitm
from tests.support.sdk import ask, chat


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": "classic"}


@pytest.fixture(scope="module", params=["mitmdump", "launcher"])
def chat2api_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Plain mitmdump and run.sh's launcher, both with every patch off."""
    env = {"MITM_PATCHES": "off", "TIMEOUT_IDLE": "3", "TIMEOUT_FIRST_BYTE": "4"}
    return {"env": env, "dialect": "classic", "launcher": request.param == "launcher"}


def test_the_log_says_no_patch_is_active(mitm: Mitm, token: str) -> None:
    # (One request first: the line is written once the addon is configured.)
    chat(reverse_env(mitm, token), **ask("hello", stream=False))
    log = mitm.log()
    assert "chat2api patches: active: none; standing aside: " in log
    assert "inline_stream" in log and "stands aside" not in log  # off is not a misfit


@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_sdk_streams_the_exact_answer_with_usage(mitm: Mitm, token: str, mode: str) -> None:
    prompt = f"Stock streaming ({mode})"
    extra = {"stream_options": {"include_usage": True}}
    result = chat(client_env(mitm, mode, token), **ask(prompt, stream=True, extra=extra))
    assert "error" not in result, result
    assert result["text"] == expected_answer(prompt, "gpt-4o")
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] > 0
    assert len(set(result["ids"])) == 1


def test_chunks_arrive_as_the_backend_sends_them(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, delay_ms=100)
    result = chat(client_env(mitm, "proxy", token), **ask("pace me", stream=True))
    assert "error" not in result, result
    times = result["times"]
    assert len(times) >= 20
    assert times[-1] - times[0] >= 0.1 * (len(times) - 1) * 0.8
    assert times[0] < result["elapsed"] - 1.0


@pytest.mark.parametrize("http_version", ["--http1.1", "--http2"])
def test_curl_streams_through_the_https_proxy(mitm: Mitm, token: str, http_version: str) -> None:
    body = json.dumps(ask("curl says hi", stream=True))
    proc = subprocess.run(
        ["curl", "-sS", "-N", http_version, "--proxy", mitm.proxy_url]
        + ["--cacert", str(mitm.ca_path), "https://api.openai.com/v1/chat/completions"]
        + ["-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json"]
        + ["-d", body],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    events = [line[6:] for line in proc.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == expected_answer("curl says hi", "gpt-4o")


@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_a_break_mid_stream_raises_instead_of_a_fake_success(
    emulator: Emulator, mitm: Mitm, token: str, mode: str
) -> None:
    next_plan(emulator.url, drop_after_events=12)
    result = chat(client_env(mitm, mode, token), **ask("break drop", stream=True))
    assert result.get("error", {}).get("error_class") == "APIError", result
    assert result["finish_reason"] is None
    assert result["elapsed"] < 15


def test_the_client_key_never_reaches_the_loopback_bridge(mitm: Mitm, token: str) -> None:
    """The bridge gets the flow without the client's Authorization header; nothing
    of it is in the log either."""
    result = chat(reverse_env(mitm, token), **ask("keep my key", stream=True))
    assert "error" not in result, result
    assert token not in mitm.log()


def test_a_client_that_hangs_up_mid_stream_leaves_the_proxy_serving(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, delay_ms=200)
    script = """
    import openai
    client = openai.OpenAI(max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hang up"}], stream=True
    )
    got = 0
    for chunk in stream:
        got += 1
        if got == 3:
            break
    stream.close()
    emit({"got": got})
    """
    (result,) = run_client(script, reverse_env(mitm, token))
    assert result["got"] == 3
    # The proxy is still fine afterwards.
    after = chat(reverse_env(mitm, token), **ask("still there", stream=True))
    assert after["text"] == expected_answer("still there", "gpt-4o")
