"""Timeouts and disconnects end to end: a running mitmdump, the backend emulator
and the official SDK.

* A client that goes away mid-stream makes the proxy close its backend stream
  at once: the emulator sees the disconnect within a fraction of a second, on
  both listeners.
* The total deadline (``TIMEOUT_TOTAL``) ends an answer that keeps coming but
  takes too long: the streamed client gets the text so far and then an error,
  the other a 504, and the backend stream is closed.
* Connect, first-byte and idle timeouts are in ``tests/test_e2e_faults.py``
  (stalls) and ``tests/test_upstream_http.py`` (connect).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import Emulator, mint_access_token
from tests.support.cells import run_cells
from tests.support.clients import proxy_env, run_client
from tests.support.mitm import Mitm

TOTAL = 3.0


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    env = {"TIMEOUT_IDLE": "10", "TIMEOUT_FIRST_BYTE": "10", "TIMEOUT_TOTAL": str(TOTAL)}
    return {"env": env}


HANG_UP = r"""
import os, urllib.request, openai
spec = json.loads(os.environ["C2A_SPEC"])
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def fake(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(spec["emulator"] + path, data=data,
                                 method="GET" if body is None else "POST",
                                 headers={"content-type": "application/json"})
    with direct.open(req, timeout=10) as resp:
        return json.loads(resp.read())

for case in spec["cases"]:
    fake("/_fake/reset", {})
    fake("/_fake/next", case["plan"])
    if case["via"] == "proxy":
        http_client = openai.DefaultHttpxClient(proxy=spec["proxy_url"], verify=spec["ca_bundle"])
        client = openai.OpenAI(api_key=spec["key"], max_retries=0, http_client=http_client)
    else:
        client = openai.OpenAI(api_key=spec["key"], base_url=spec["base_url"], max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": case["prompt"]}], stream=True)
    text, chunks = "", 0
    for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if chunks >= case["read"]:
            break
    stream.close()  # the user's program stops reading and hangs up
    closed = time.monotonic()
    seen, waited = None, None
    while time.monotonic() - closed < 5:
        calls = [r for r in fake("/_fake/requests") if r["path"].endswith("/conversation")]
        if calls and (calls[0].get("client_disconnected") or calls[0].get("ended")):
            seen, waited = calls[0], time.monotonic() - closed
            break
        time.sleep(0.02)
    emit({"via": case["via"], "text": text, "waited": waited,
          "disconnected": bool(seen and seen.get("client_disconnected")),
          "ended": seen and seen.get("ended"), "events_sent": seen and seen.get("events_sent")})
    client.close()
"""


def test_client_hang_up_mid_stream_closes_the_backend_stream(
    emulator: Emulator, mitm: Mitm
) -> None:
    key = mint_access_token(exp_in=86400)
    env = proxy_env(mitm, key)
    spec = {
        "emulator": emulator.url,
        "key": key,
        "base_url": mitm.base_url,
        "proxy_url": mitm.proxy_url,
        "ca_bundle": env["SSL_CERT_FILE"],
        # 100 ms between events: the whole answer would take about 6 s.
        "cases": [
            {"via": via, "prompt": f"hang up {via}", "plan": {"delay_ms": 100}, "read": 6}
            for via in ("proxy", "reverse")
        ],
    }
    results = run_client(
        HANG_UP, {"C2A_SPEC": json.dumps(spec), "SSL_CERT_FILE": env["SSL_CERT_FILE"]}
    )
    assert [r["via"] for r in results] == ["proxy", "reverse"]
    for r in results:
        assert r["text"] and expected_answer(f"hang up {r['via']}", "gpt-4o").startswith(r["text"])
        assert r["disconnected"], r
        assert r["ended"] is None, r  # not played to its end
        assert r["waited"] < 1.5, r  # at once: one 100 ms beat plus overhead
    assert "Traceback" not in mitm.log()


def test_total_deadline_ends_a_slow_answer(emulator: Emulator, mitm: Mitm) -> None:
    # 150 ms between events: about 8 s for the whole answer, well past TOTAL.
    plan = {"delay_ms": 150}
    cells: list[dict[str, Any]] = [
        {
            "name": f"slow/{'stream' if stream else 'whole'}",
            "prompt": f"slow {stream}",
            "stream": stream,
            "key": mint_access_token(exp_in=86400),
            "plan": plan,
            "timeout": 30,
            "settle": 0.3,
        }
        for stream in (True, False)
    ]
    results = run_cells(mitm, cells, emulator_url=emulator.url)
    streamed, whole = results["slow/stream"], results["slow/whole"]
    answer = expected_answer("slow True", "gpt-4o")
    # The streamed client got a true part of the answer, then an error, within the deadline.
    assert streamed["error"] and streamed["error"]["error_class"] == "APIError", streamed
    assert "deadline" in streamed["error"]["message"]
    assert streamed["text"] and answer.startswith(streamed["text"]) and streamed["text"] != answer
    assert streamed["finish_reason"] is None
    assert whole["error"] and whole["error"]["status"] == 504, whole
    assert whole["text"] == ""
    for r in (streamed, whole):
        assert TOTAL - 0.5 < r["elapsed"] < TOTAL + 2.5, r
        (call,) = r["calls"]
        assert call["client_disconnected"] and call["ended"] is None, call
    assert "Traceback" not in mitm.log()


def test_client_giving_up_before_the_answer_closes_the_backend_call(
    emulator: Emulator, mitm: Mitm
) -> None:
    """mitmproxy does not cancel a hook whose client left: chat2api must, at once."""
    cases = [
        ("before-first-byte/stream", True, {"stall_ms": 6000}),
        ("before-first-byte/whole", False, {"stall_ms": 6000}),
        ("during-whole-answer", False, {"delay_ms": 100}),  # about 6 s of answer
    ]
    cells = [
        {
            "name": name,
            "prompt": f"give up {name}",
            "stream": stream,
            "key": mint_access_token(exp_in=86400),
            "plan": plan,
            "timeout": 1.0,  # the SDK gives up after a second
            "settle": 1.0,
        }
        for name, stream, plan in cases
    ]
    results = run_cells(mitm, cells, emulator_url=emulator.url)
    for name, _, _ in cases:
        r = results[name]
        assert r["error"]["error_class"] == "APITimeoutError", r
        (call,) = r["calls"]
        # Closed within a second after the client left, not played to its end.
        assert call["client_disconnected"] and call["ended"] is None, (name, call)
    assert "Traceback" not in mitm.log()
    assert mitm.log().count("the client went away") >= len(cases)
