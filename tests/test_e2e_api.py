"""The API path end to end: the official openai SDK, curl and LangChain, through a
running mitmdump, answered by the backend emulator.

Both client set-ups users have are exercised: the HTTPS proxy (``HTTPS_PROXY`` +
``SSL_CERT_FILE``, base URL untouched) and the reverse listener
(``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer, expected_reasoning
from tests.fakechatgpt.harness import Emulator, next_plan, received
from tests.support.captures import COMPLETE, FIXTURES, ref_answer
from tests.support.clients import client_env, proxy_env, reverse_env, run_client
from tests.support.mitm import Mitm, MitmFactory
from tests.support.sdk import ask, chat

MODES = ["proxy", "reverse"]


@pytest.fixture(scope="module")
def emulator_options(dialect: str) -> dict[str, Any]:
    """Every test here runs against a backend speaking only this dialect."""
    return {"dialect": dialect}


@pytest.fixture(scope="module")
def chat2api_options(dialect: str) -> dict[str, Any]:
    # Short enough that stall tests stay quick, long enough for a loaded CI box.
    env = {
        "TIMEOUT_IDLE": "3",
        "TIMEOUT_FIRST_BYTE": "4",
        # The pass-through test's TLS server is local: listed, so the proxy may reach it.
        "PROXY_ALLOW_HOSTS": "localhost",
    }
    return {"dialect": dialect, "env": env}


def conversation_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in received(emulator.url) if r["path"].endswith("/conversation")]


# -- answers -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("mode", MODES)
def test_generated_answer_arrives_exactly(
    emulator: Emulator, mitm: Mitm, token: str, dialect: str, mode: str, stream: bool
) -> None:
    prompt = f"Tell me about Paris ({mode}, {stream})"
    extra = {"stream_options": {"include_usage": True}} if stream else {}
    result = chat(client_env(mitm, mode, token), **ask(prompt, stream=stream, extra=extra))
    assert "error" not in result, result
    assert result["text"] == expected_answer(prompt, "gpt-4o")
    assert result["reasoning"] == ""
    assert result["finish_reason"] == "stop"
    assert len(set(result["ids"])) == 1 and result["ids"][0].startswith("chatcmpl-")
    assert set(result["models"]) == {"gpt-4o-2024-08-06"}
    usage = result["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    (call,) = conversation_calls(emulator)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert headers["authorization"] == f"Bearer {token}"
    assert headers["openai-sentinel-chat-requirements-token"]
    if dialect == "classic":
        assert headers["openai-sentinel-proof-token"].startswith("gAAAAAB")
    else:
        assert call["path"].endswith("/f/conversation") and headers["x-conduit-token"]
    body = json.loads(call["body"])
    assert body["model"] == "gpt-4o"
    assert body["messages"][-1]["content"]["parts"] == [prompt]
    assert body["history_and_training_disabled"] is True


@pytest.mark.parametrize("model", ["o3-mini", "o4-mini"], ids=["tool-style", "thoughts"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_reasoning_arrives_as_reasoning_content(
    emulator: Emulator, mitm: Mitm, token: str, model: str, stream: bool
) -> None:
    prompt = "Why is the sky blue?"
    result = chat(client_env(mitm, "reverse", token), **ask(prompt, model=model, stream=stream))
    assert "error" not in result, result
    assert result["text"] == expected_answer(prompt, model)
    thought = expected_reasoning(prompt, model)
    assert thought
    # Every piece of the backend's reasoning, in order, and none of it in the answer.
    pos = 0
    for line in (s for s in thought.split("\n") if s.strip()):
        found = result["reasoning"].find(line, pos)
        assert found >= 0, (line, result["reasoning"])
        pos = found + len(line)
        assert line not in result["text"]


@pytest.mark.parametrize("name", COMPLETE, ids=[Path(n).stem[:40] for n in COMPLETE])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_every_complete_capture_replayed(
    emulator: Emulator, mitm: Mitm, token: str, name: str, stream: bool
) -> None:
    capture = FIXTURES / name
    expected = ref_answer(capture.read_bytes())
    next_plan(emulator.url, replay=str(capture))
    mode = "proxy" if stream else "reverse"
    result = chat(client_env(mitm, mode, token), **ask("replay", stream=stream))
    assert "error" not in result, result
    assert result["text"] == expected
    assert result["finish_reason"] == "stop"
    for hidden in ("\ue200", "\ue201", "\ue202", "skipped_mainline", "user_editable_context"):
        assert hidden not in result["text"]


def test_streaming_is_incremental(emulator: Emulator, mitm: Mitm, token: str) -> None:
    """With an event every 100 ms, chunks reach the client as they are sent."""
    next_plan(emulator.url, delay_ms=100)
    result = chat(client_env(mitm, "proxy", token), **ask("pace me", stream=True))
    assert "error" not in result, result
    times = result["times"]
    assert len(times) >= 20
    # Buffering would deliver everything within a few ms at the end.
    assert times[-1] - times[0] >= 0.1 * (len(times) - 1) * 0.8
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    # Most text chunks follow their predecessor by one 100 ms beat (some by a few
    # beats, where the backend sent non-text events in between).
    assert 0.07 < gaps[len(gaps) // 2] < 0.2, gaps
    assert times[0] < result["elapsed"] - 1.0


def test_history_enabled_per_request(emulator: Emulator, mitm: Mitm, token: str) -> None:
    result = chat(
        client_env(mitm, "reverse", token),
        **ask("remember this", stream=False, extra={"extra_body": {"history_disabled": False}}),
    )
    assert "error" not in result, result
    body = json.loads(conversation_calls(emulator)[0]["body"])
    assert body["history_and_training_disabled"] is False


# -- other clients -------------------------------------------------------------


@pytest.mark.parametrize("http_version", ["--http1.1", "--http2"])
def test_curl_streams_through_the_https_proxy(
    emulator: Emulator, mitm: Mitm, token: str, http_version: str
) -> None:
    """Streamed answers go out over HTTP/1.1 (chunked) and HTTP/2 (DATA frames) alike."""
    env = proxy_env(mitm, token)
    body = json.dumps(ask("curl says hi", stream=True))
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "-v",
            http_version,
            "--proxy",
            env["HTTPS_PROXY"],
            "--cacert",
            str(mitm.ca_path),
            "https://api.openai.com/v1/chat/completions",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    negotiated = "h2" if http_version == "--http2" else "http/1.1"
    assert f"ALPN: server accepted {negotiated}" in proc.stderr
    events = [line[6:] for line in proc.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == expected_answer("curl says hi", "gpt-4o")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_langchain_chat_openai(emulator: Emulator, mitm: Mitm, token: str) -> None:
    script = """
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="gpt-4o", max_retries=0)
    msg = llm.invoke("LangChain asks")
    parts = [c.content for c in llm.stream("LangChain streams")]
    emit({"invoke": msg.content, "stream": "".join(parts), "pieces": len(parts)})
    """
    (result,) = run_client(script, reverse_env(mitm, token))
    assert result["invoke"] == expected_answer("LangChain asks", "gpt-4o")
    assert result["stream"] == expected_answer("LangChain streams", "gpt-4o")
    assert result["pieces"] > 5


# -- models and routes ---------------------------------------------------------


def test_models_list_and_retrieve(mitm: Mitm, token: str) -> None:
    script = """
    import openai
    client = openai.OpenAI(max_retries=0)
    ids = [m.id for m in client.models.list()]
    one = client.models.retrieve("gpt-4o")
    try:
        client.models.retrieve("no-such-model")
        missing = None
    except Exception as e:
        missing = describe_error(e)
    emit({"ids": ids, "one": one.id, "owned_by": one.owned_by, "missing": missing})
    """
    (result,) = run_client(script, proxy_env(mitm, token))
    assert "gpt-4o" in result["ids"] and "o3-mini" in result["ids"]
    assert result["one"] == "gpt-4o"
    assert result["missing"]["error_class"] == "NotFoundError"


def test_unknown_route_is_an_openai_404_and_never_forwarded(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    script = """
    import openai
    client = openai.OpenAI(max_retries=0)
    try:
        client.embeddings.create(model="text-embedding-3-small", input="x")
        emit({"ok": True})
    except Exception as e:
        emit(describe_error(e))
    """
    for env in (proxy_env(mitm, token), reverse_env(mitm, token)):
        (result,) = run_client(script, env)
        assert result["error_class"] == "NotFoundError" and result["status"] == 404
    assert received(emulator.url) == []


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ],
)
def test_bad_requests_are_openai_400s(
    mitm: Mitm, token: str, body: dict[str, Any], param: str
) -> None:
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            mitm.base_url + "/chat/completions",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    payload, status = proc.stdout.rsplit("\n", 1)
    assert status == "400"
    error = json.loads(payload)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_invalid_json_is_a_400(mitm: Mitm) -> None:
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            mitm.base_url + "/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{not json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    payload, status = proc.stdout.rsplit("\n", 1)
    assert status == "400"
    assert json.loads(payload)["error"]["type"] == "invalid_request_error"


# -- faults --------------------------------------------------------------------

# (plan, stream, expected SDK exception class)
FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("unauthorized", {"preset": "unauthorized"}, "AuthenticationError"),
    ("cloudflare", {"preset": "cloudflare"}, "PermissionDeniedError"),
    ("unusual-activity", {"preset": "unusual_activity"}, "PermissionDeniedError"),
    ("rate-limit", {"preset": "rate_limit"}, "RateLimitError"),
    ("server-error", {"preset": "server_error"}, "InternalServerError"),
    ("bad-gateway", {"preset": "bad_gateway"}, "InternalServerError"),
    ("model-not-found", {"preset": "model_not_found"}, "NotFoundError"),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("name, plan, error_class", FAULTS, ids=[f[0] for f in FAULTS])
def test_backend_refusals_raise_the_matching_sdk_error(
    emulator: Emulator,
    mitm: Mitm,
    token: str,
    name: str,
    plan: dict[str, Any],
    error_class: str,
    stream: bool,
) -> None:
    next_plan(emulator.url, **plan)
    result = chat(client_env(mitm, "reverse", token), **ask(f"fault {name}", stream=stream))
    assert result.get("error", {}).get("error_class") == error_class, result
    assert result["text"] == ""
    assert result["elapsed"] < 20


def test_rate_limit_carries_retry_after(emulator: Emulator, mitm: Mitm, token: str) -> None:
    next_plan(emulator.url, preset="rate_limit")
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-D",
            "-",
            mitm.base_url + "/chat/completions",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(ask("limit me")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    head = proc.stdout.lower()
    assert " 429" in head.splitlines()[0]
    assert "retry-after: 30" in head


MID_STREAM = [
    ("drop", {"drop_after_events": 12}),
    ("error-event", {"error_event": "Something went wrong upstream", "error_after_events": 12}),
    ("stall", {"stall_after_events": 12, "stall_ms": 8000}),
]


@pytest.mark.parametrize("name, plan", MID_STREAM, ids=[m[0] for m in MID_STREAM])
def test_mid_stream_failures_raise_instead_of_a_fake_success(
    emulator: Emulator, mitm: Mitm, token: str, dialect: str, name: str, plan: dict[str, Any]
) -> None:
    if dialect == "2026":
        # The 2026 dialect resumes broken streams (tests/test_e2e_dialects.py);
        # here the resume is refused, so the break must reach the client.
        plan = {**plan, "resume_fail": True}
    next_plan(emulator.url, **plan)
    result = chat(client_env(mitm, "proxy", token), **ask(f"break {name}", stream=True))
    assert result.get("error", {}).get("error_class") == "APIError", result
    assert result["finish_reason"] is None
    assert result["elapsed"] < 15

    next_plan(emulator.url, **plan)
    whole = chat(client_env(mitm, "reverse", token), **ask(f"break {name} whole", stream=False))
    assert whole.get("error", {}).get("error_class") in (
        "InternalServerError",
        "APIStatusError",
    ), whole
    assert whole["elapsed"] < 15


def test_stall_before_the_first_event_times_out(emulator: Emulator, mitm: Mitm, token: str) -> None:
    next_plan(emulator.url, stall_ms=8000)
    result = chat(client_env(mitm, "reverse", token), **ask("stall first", stream=True))
    assert result.get("error", {}).get("error_class") == "InternalServerError", result
    assert result["elapsed"] < 15


# -- the proxy leaves other hosts alone ----------------------------------------


def test_non_intercepted_host_keeps_its_own_certificate(
    mitm: Mitm, token: str, tmp_path: Path
) -> None:
    from tests.support.tlsserver import serve_https

    with serve_https(tmp_path, "localhost") as (port, ca_file):
        proc = subprocess.run(
            [
                "curl",
                "-sS",
                "--proxy",
                mitm.proxy_url,
                "--cacert",
                str(ca_file),
                f"https://localhost:{port}/hello",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # Trusting only the server's own CA works, so the certificate came through.
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "hello from the real server"
        intercepted = subprocess.run(
            [
                "curl",
                "-sS",
                "--proxy",
                mitm.proxy_url,
                "--cacert",
                str(mitm.ca_path),
                f"https://localhost:{port}/hello",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert intercepted.returncode != 0  # mitmproxy's CA does not sign it


# -- patches -------------------------------------------------------------------


def test_plain_mitmdump_installs_its_patches(mitm: Mitm, token: str) -> None:
    """Under plain mitmdump the addon installs the patches that apply there
    (inline_stream among them: no loopback bridge is started)."""
    result = chat(client_env(mitm, "reverse", token), **ask("patched", stream=True))
    assert "error" not in result, result
    log = mitm.log()
    active = "curl_headers, early_answer, inline_stream, malloc"
    assert f"chat2api patches: active: {active}; standing aside: none" in log
    assert "/bridge/" not in log


# -- run.sh's launcher ----------------------------------------------------------


def test_run_sh_launcher_streams_an_sdk_answer(
    emulator: Emulator, dialect: str, token: str, mitm_factory: MitmFactory
) -> None:
    """chat2api started as run.sh starts it (``python -m patches.launcher``, the lean
    master) answers the SDK through both listeners, usage included."""
    launched = mitm_factory(
        emulator_url=emulator.url, dialect=dialect, launcher=True, flow_detail=1
    )
    for mode in MODES:
        prompt = f"Tell me about Lyon ({mode})"
        extra = {"stream_options": {"include_usage": True}}
        result = chat(client_env(launched, mode, token), **ask(prompt, stream=True, extra=extra))
        assert "error" not in result, result
        assert result["text"] == expected_answer(prompt, "gpt-4o")
        assert result["finish_reason"] == "stop"
        assert result["usage"]["completion_tokens"] > 0
    log = launched.log()
    assert "Loading script" in log and "chat2api" in log
    # Every patch fits the pinned mitmproxy (patches/__init__.py).
    assert "chat2api patches: active: curl_headers, deferred_addons," in log
    assert "standing aside: none" in log
    assert "<< 200" not in log  # no per-flow dump (flow_detail is accepted, no dumper)
