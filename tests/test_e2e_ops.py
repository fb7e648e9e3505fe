"""Operability end to end (issue 17): /health and /ready, request ids, CORS,
/metrics and the log formats, against a running mitmdump answered by the
backend emulator, with the official openai SDK and plain HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakechatgpt.harness import Emulator, mint_access_token, next_plan
from tests.support.admin import wait_until
from tests.support.clients import reverse_env, run_client
from tests.support.http import call
from tests.support.mitm import Mitm, MitmFactory, free_port

ADMIN_KEY = "admin-key-0123456789abcdef"
METRICS_KEY = "metrics-key-0123456789abcdef"
CODE = "pool-code-0123456789"


def base_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    return {
        "CHATGPT_BASE_URL": emulator.url,
        "ADMIN_KEY": ADMIN_KEY,
        "AUTHORIZATION": CODE,
        "TIMEOUT_IDLE": "10",
        "TIMEOUT_FIRST_BYTE": "10",
        "RETRY_TIMES": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def chat2api_options(emulator: Emulator) -> dict[str, Any]:
    return {"env": base_env(emulator, METRICS_KEY=METRICS_KEY)}


def root(m: Mitm) -> str:
    return f"http://127.0.0.1:{m.reverse_port}"


# -- health and readiness -----------------------------------------------------------


def test_health_and_ready(mitm: Mitm) -> None:
    h = call(root(mitm) + "/health")
    assert (h.status, h.json()) == (200, {"status": "ok"})
    r = wait_until(lambda: (a := call(root(mitm) + "/ready")).status == 200 and a)
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"]["storage"] == "ok"
    assert h.headers["x-request-id"].startswith("req_")
    # Not on the HTTPS proxy's pass-through side, and no key needed: nothing secret in it.
    assert ADMIN_KEY not in r.body.decode()


def test_ready_without_usable_account(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    env = base_env(emulator, ALLOW_ANONYMOUS="false")
    with mitm_factory.run(tmp=tmp_path, env=env) as m:
        r = wait_until(lambda: (a := call(root(m) + "/ready")).status == 503 and a)
        assert r.json()["reason"] == "no usable account and anonymous use is off"
        added = call(
            root(m) + "/tokens/api/tokens",
            "POST",
            headers={"authorization": f"Bearer {ADMIN_KEY}", "content-type": "text/plain"},
            body=(mint_access_token() + "\n").encode(),
        )
        assert added.status == 200, added.body
        assert call(root(m) + "/ready").status == 200


def test_ready_when_redis_does_not_answer(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    env = base_env(emulator, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with mitm_factory.run(tmp=tmp_path, env=env) as m:
        r = wait_until(lambda: (a := call(root(m) + "/ready")).status == 503 and a)
        assert r.json()["checks"]["storage"] == "unreachable"
        assert "127.0.0.1" not in r.body.decode()  # no address for outsiders
        assert call(root(m) + "/health").status == 200


# -- request ids ---------------------------------------------------------------------

IDS = r"""
import os, openai
client = openai.OpenAI(max_retries=0, timeout=60)
out = {}
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
out["ok_header"] = raw.headers.get("x-request-id")
out["ok_request_id"] = raw.parse()._request_id
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
    extra_headers={"x-request-id": "client-chosen.id_1"})
out["kept"] = raw.headers.get("x-request-id")
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
out["stream_header"] = raw.headers.get("x-request-id")
out["stream_text"] = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
try:  # refused before its body is read
    bad = openai.OpenAI(max_retries=0, api_key="sk-not-a-chatgpt-token-0123456789")
    bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
except openai.APIStatusError as e:
    out["refused"] = [e.status_code, e.request_id, e.response.headers.get("x-request-id")]
emit(out)
"""


def test_request_ids(mitm: Mitm) -> None:
    (out,) = run_client(IDS, reverse_env(mitm, CODE))
    assert out["ok_header"].startswith("req_")
    assert out["ok_request_id"] == out["ok_header"]
    assert out["kept"] == "client-chosen.id_1"
    assert out["stream_header"].startswith("req_") and out["stream_text"]
    status, rid, header = out["refused"]
    assert status == 401 and rid == header and rid.startswith("req_")
    log = mitm.log()
    assert f"[{out['ok_header']}]" in log
    assert "[client-chosen.id_1]" in log


def test_request_id_in_server_errors(mitm: Mitm, emulator: Emulator) -> None:
    next_plan(emulator.url, preset="server_error", count=10)
    script = r"""
import openai
client = openai.OpenAI(max_retries=0, timeout=60)
try:
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "bad id with spaces"})
    emit({"status": 200})
except openai.APIStatusError as e:
    emit({"status": e.status_code, "request_id": e.request_id, "message": e.message})
"""
    (out,) = run_client(script, reverse_env(mitm, CODE))
    assert out["status"] >= 500
    rid = out["request_id"]
    assert rid.startswith("req_")  # the insane incoming id was replaced
    assert f"(request id {rid})" in out["message"]
    assert f"[{rid}]" in mitm.log()


def test_request_ids_on_admin_and_unknown_paths(mitm: Mitm) -> None:
    a = call(root(mitm) + "/tokens/api/tokens", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert a.status == 200 and a.headers["x-request-id"].startswith("req_")
    page = call(root(mitm) + "/tokens", headers={"x-request-id": "page-1"})
    assert page.headers["x-request-id"] == "page-1"
    missing = call(root(mitm) + "/nothing/here")
    assert missing.status == 404 and missing.headers["x-request-id"]


# -- CORS ------------------------------------------------------------------------------

SDK_HEADERS = (
    "authorization,content-type,x-stainless-os,x-stainless-lang,x-stainless-arch,"
    "x-stainless-runtime,x-stainless-runtime-version,x-stainless-package-version,"
    "x-stainless-retry-count,x-stainless-timeout,openai-organization,openai-project,openai-beta"
)


def test_cors_preflight_and_answer(mitm: Mitm) -> None:
    pre = call(
        mitm.base_url + "/chat/completions",
        "OPTIONS",
        headers={
            "origin": "https://chat.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": SDK_HEADERS,
        },
    )
    assert pre.status == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "POST" in pre.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in pre.headers["access-control-allow-headers"].split(",")}
    assert set(SDK_HEADERS.split(",")) <= allowed
    got = call(mitm.base_url + "/models", headers={"origin": "https://chat.example"})
    assert got.status == 200
    assert got.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in got.headers["access-control-expose-headers"]


def test_no_cors_on_admin_routes(mitm: Mitm) -> None:
    for path in ("/tokens", "/tokens/api/tokens", "/metrics", "/health"):
        pre = call(
            root(mitm) + path,
            "OPTIONS",
            headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
        )
        assert "access-control-allow-origin" not in pre.headers, path
        got = call(root(mitm) + path, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in got.headers, path


def test_cors_origin_list(mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path) -> None:
    env = base_env(emulator, CORS_ORIGINS="https://good.example")
    with mitm_factory.run(tmp=tmp_path, env=env) as m:
        ok = call(m.base_url + "/models", headers={"origin": "https://good.example"})
        assert ok.headers["access-control-allow-origin"] == "https://good.example"
        assert "origin" in ok.headers["vary"].lower()
        bad = call(m.base_url + "/models", headers={"origin": "https://bad.example"})
        assert "access-control-allow-origin" not in bad.headers


# -- metrics -----------------------------------------------------------------------------

TRAFFIC = r"""
import openai
client = openai.OpenAI(max_retries=0, timeout=60)
client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
text = ""
for chunk in client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
client.models.list()
emit({"text": text})
"""


def scrape(m: Mitm, key: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    got = call(root(m) + "/metrics", headers={"authorization": f"Bearer {key}"})
    assert got.status == 200, got.body
    assert got.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(got.body.decode()):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def value(families: dict, name: str, sample: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(
        sum(
            v
            for n, lab, v in families.get(name, [])
            if n == sample and all(lab.get(k) == x for k, x in labels.items())
        )
    )


def test_metrics_after_traffic(mitm: Mitm) -> None:
    assert call(root(mitm) + "/metrics").status == 401
    assert call(root(mitm) + "/metrics", headers={"authorization": "Bearer nope"}).status == 401
    before = scrape(mitm, METRICS_KEY)
    (out,) = run_client(TRAFFIC, reverse_env(mitm, CODE))
    assert out["text"]
    after = scrape(mitm, ADMIN_KEY)  # the admin key works too
    route = "/v1/chat/completions"
    name = "chat2api_requests"
    done = value(after, name, name + "_total", route=route, status="200", backend="web")
    assert done - value(before, name, name + "_total", route=route, status="200") == 2
    models = value(after, name, name + "_total", route="/v1/models", status="200")
    assert models >= 1
    ttfb = "chat2api_time_to_first_byte_seconds"
    assert value(after, ttfb, ttfb + "_count", route=route) >= 2
    dur = "chat2api_request_duration_seconds"
    assert value(after, dur, dur + "_count", route=route) >= 2
    assert value(after, "chat2api_prompt_tokens", "chat2api_prompt_tokens_total") > 0
    assert value(after, "chat2api_completion_tokens", "chat2api_completion_tokens_total") > 0
    assert "chat2api_pool_accounts" in after
    assert value(after, "chat2api_active_streams", "chat2api_active_streams") == 0
    assert value(after, "chat2api_pow_solve_seconds", "chat2api_pow_solve_seconds_count") >= 1
    assert all(n.startswith("chat2api_") for n in after)


def test_metrics_count_backend_errors_and_retries(mitm: Mitm, emulator: Emulator) -> None:
    before = scrape(mitm, METRICS_KEY)
    next_plan(emulator.url, preset="server_error", count=10)
    call(
        mitm.base_url + "/chat/completions",
        "POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {CODE}"},
        body=json.dumps(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        ).encode(),
    )
    after = scrape(mitm, METRICS_KEY)
    errors = "chat2api_backend_errors"
    assert value(after, errors, errors + "_total") > value(before, errors, errors + "_total")
    retries = "chat2api_retries"
    assert value(after, retries, retries + "_total") > value(before, retries, retries + "_total")


# -- logs --------------------------------------------------------------------------------


def test_startup_summary_and_access_lines(mitm: Mitm) -> None:
    call(root(mitm) + "/health", headers={"x-request-id": "summary-check"})
    log = wait_until(lambda: "summary-check" in mitm.log() and mitm.log())
    assert "CA certificate:" in log and "pool:" in log
    assert "chat2api settings:" not in log  # the old settings dict
    assert ADMIN_KEY not in log and METRICS_KEY not in log
    line = next(x for x in log.splitlines() if "[summary-check]" in x and "GET /health" in x)
    assert "-> 200" in line and " ms" in line


def test_json_log_format(mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path) -> None:
    env = base_env(emulator, LOG_FORMAT="json")
    with mitm_factory.run(tmp=tmp_path, env=env) as m:
        run_client(TRAFFIC, reverse_env(m, CODE))
        records = []
        for line in m.log().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        access = [r for r in records if r.get("route") == "/v1/chat/completions"]
        assert len(access) == 2, records
        for r in access:
            assert r["status"] == 200 and r["request_id"].startswith("req_")
            assert r["duration_ms"] >= r["ttfb_ms"] >= 0
            assert r["account"] == "anonymous"
            assert r["backend"] == "web"
        assert any("CA certificate" in r["msg"] for r in records)


def test_under_the_lean_launcher(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    """As run.sh starts it (patches/launcher.py, whose layer shim answers flow
    hooks nobody listens to at once): ids, CORS, access lines and metrics all
    come from the request pass, with no response hooks of their own."""

    from addons.ops import Ops, OpsTail

    for cls in (Ops, OpsTail):
        # (requestheaders and request: the shield and the API listen to them anyway)
        for hook in ("responseheaders", "response", "error", "update"):
            assert not hasattr(cls, hook), (cls, hook)
    env = base_env(emulator, METRICS_KEY=METRICS_KEY)
    with mitm_factory.run(tmp=tmp_path, env=env, launcher=True) as m:
        (out,) = run_client(IDS, reverse_env(m, CODE))
        assert out["ok_header"].startswith("req_") and out["stream_header"].startswith("req_")
        assert out["stream_text"]
        got = call(m.base_url + "/models", headers={"origin": "https://chat.example"})
        assert got.headers["access-control-allow-origin"] == "*"
        families = scrape(m, METRICS_KEY)
        name = "chat2api_requests"
        route = "/v1/chat/completions"
        assert value(families, name, name + "_total", route=route, status="200") == 3
        assert value(families, "chat2api_active_streams", "chat2api_active_streams") == 0
        log = m.log()
        assert f"[{out['stream_header']}] POST /v1/chat/completions -> 200" in log


def test_with_mitm_patches_off(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    """Stock mitmproxy (MITM_PATCHES=off): streamed answers go through the loopback
    bridge, and still carry their id and get their access line and metrics."""
    env = base_env(emulator, METRICS_KEY=METRICS_KEY, MITM_PATCHES="off")
    with mitm_factory.run(tmp=tmp_path, env=env) as m:
        (out,) = run_client(IDS, reverse_env(m, CODE))
        assert out["stream_header"].startswith("req_") and out["stream_text"]
        assert out["ok_request_id"] == out["ok_header"]
        families = scrape(m, METRICS_KEY)
        name = "chat2api_requests"
        route = "/v1/chat/completions"
        assert value(families, name, name + "_total", route=route, status="200") == 3
        assert value(families, "chat2api_active_streams", "chat2api_active_streams") == 0
        assert f"[{out['stream_header']}] POST /v1/chat/completions -> 200" in m.log()
