"""The pure parts of issue 17's operability work: request ids, CORS, metric
labels and registries, readiness verdicts, the log formats, the original's
form bodies, /auth/refresh's account check and rate limit."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.authrefresh import RateLimit, account_check
from accounts.legacy import form_fields
from errors import RateLimited, UpstreamError, UpstreamUnavailable
from ops import health, requestid
from ops.cors import Cors, allow_headers
from ops.logs import JsonFormatter, TextFormatter, summary
from ops.metrics import Metrics, route_label
from settings import load_settings


def test_request_ids_keep_sane_incoming_ones() -> None:
    assert requestid.accept("abc-DEF_1.2") == "abc-DEF_1.2"
    for bad in (None, "", "has space", "x" * 129, "semi;colon", "é"):
        new = requestid.accept(bad)
        assert new.startswith("req_") and len(new) == 28
    assert requestid.new_id() != requestid.new_id()


def test_request_id_in_records_and_5xx_messages() -> None:
    requestid.install_record_factory()
    token = requestid.CURRENT.set(requestid.RequestInfo("req-unit-1"))
    try:
        record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "hi %s", ("a",), None)
        assert record.request_id == "req-unit-1"  # type: ignore[attr-defined]
        assert TextFormatter(None).format(record) == "[req-unit-1] hi a"
        line = json.loads(JsonFormatter().format(record))
        assert line["request_id"] == "req-unit-1" and line["msg"] == "hi a"
        assert "(request id req-unit-1)" in UpstreamError("boom").to_dict()["error"]["message"]
        assert "request id" not in RateLimited("slow down").to_dict()["error"]["message"]
    finally:
        requestid.CURRENT.reset(token)
    assert UpstreamError("boom").to_dict()["error"]["message"] == "boom"


def test_cors_headers() -> None:
    asked = "Authorization, Content-Type, X-Stainless-OS, x-stainless-retry-count, openai-beta"
    assert allow_headers(asked) == asked.lower()
    fixed = allow_headers("authorization, x-evil")
    assert "x-evil" not in fixed and "authorization" in fixed and "*" not in fixed
    any_origin = Cors(("*",))
    pre = any_origin.preflight({"origin": "https://a.example"})
    assert pre["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in pre
    listed = Cors(("https://a.example",))
    assert listed.simple("https://a.example")["access-control-allow-origin"] == "https://a.example"
    assert listed.simple("https://b.example") == {}
    assert "access-control-allow-origin" not in listed.preflight({"origin": "https://b.example"})
    assert not Cors(()).enabled


def test_route_labels_are_bounded() -> None:
    assert route_label("/v1/chat/completions", "/v1") == "/v1/chat/completions"
    assert route_label("/v1/models/gpt-4o", "/v1") == "/v1/models/{id}"
    assert route_label("/p/v1/models", "/p/v1") == "/v1/models"
    assert route_label("/v1/whatever/" + "x" * 50, "/v1") == "/v1/other"
    assert route_label("/elsewhere", "/v1") == "other"


def test_metrics_registries_are_per_instance() -> None:
    one, two = Metrics(), Metrics()
    one.request_done("/v1/models", 200, "web", 0.01, 0.02)
    one.tokens(5, 7)
    one.set_pool(["healthy", "healthy", "cooling", "weird"])
    two.backend_error("timeout")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(one.render().decode())
        for s in f.samples
    }
    key = (("backend", "web"), ("route", "/v1/models"), ("status", "200"))
    assert samples[("chat2api_requests_total", key)] == 1
    assert samples[("chat2api_prompt_tokens_total", ())] == 5
    assert samples[("chat2api_pool_accounts", (("state", "healthy"),))] == 2
    assert samples[("chat2api_pool_accounts", (("state", "bad"),))] == 1
    assert b"chat2api_backend_errors_total{" not in one.render()
    assert b'kind="timeout"' in two.render()


class _Store:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def ping(self) -> None:
        if self.fail:
            raise UpstreamUnavailable("shared state (Redis) is unreachable: redis://secret@h")


def _runtime(*, fail: bool = False, anonymous: bool = True, states: list[str]) -> Any:
    started = asyncio.Event()
    started.set()

    async def views() -> list[Any]:
        return [SimpleNamespace(state=s) for s in states]

    accounts = SimpleNamespace(store=_Store(fail), pool=SimpleNamespace(views=views))
    settings = SimpleNamespace(allow_anonymous=anonymous)
    return SimpleNamespace(settings=settings, accounts=accounts, started=started)


def test_readiness_verdicts() -> None:
    run = asyncio.run
    assert run(health.ready(None)).status == 503
    assert run(health.ready(_runtime(states=[]))).status == 200
    down = run(health.ready(_runtime(fail=True, states=["healthy"])))
    assert down.status == 503 and "secret" not in json.dumps(down.body)
    none = run(health.ready(_runtime(anonymous=False, states=["bad", "cooling"])))
    assert none.status == 503 and none.body["checks"]["accounts"] == "none usable"
    assert run(health.ready(_runtime(anonymous=False, states=["bad", "healthy"]))).status == 200


def test_form_fields_urlencoded_and_multipart() -> None:
    assert form_fields("application/x-www-form-urlencoded", b"text=a%0Ab&x=") == {
        "text": "a\nb",
        "x": "",
    }
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="text"\r\n\r\n' b"tok1\ntok2\r\n--XyZ--\r\n"
    )
    assert form_fields("multipart/form-data; boundary=XyZ", body) == {"text": "tok1\ntok2"}


def test_account_check_summary() -> None:
    info = {
        "account_ordering": ["p", "t1", "t2"],
        "accounts": {
            "p": {"account": {"plan_type": "plus", "is_deactivated": False}},
            "t1": {"account": {"plan_type": "team", "is_deactivated": True}},
            "t2": {"account": {"plan_type": "team", "is_deactivated": False}},
        },
    }
    assert account_check(info) == {"is_deactivated": False, "plan_type": "team", "team_ids": ["t2"]}
    dead = {"accounts": {"p": {"account": {"plan_type": "free", "is_deactivated": True}}}}
    assert account_check(dead)["is_deactivated"] is True


def test_rate_limit_per_address() -> None:
    now = [0.0]
    limit = RateLimit(2, clock=lambda: now[0])
    limit.check("1.2.3.4")
    limit.check("1.2.3.4")
    limit.check("5.6.7.8")
    with pytest.raises(RateLimited):
        limit.check("1.2.3.4")
    now[0] = 61.0
    limit.check("1.2.3.4")


def test_startup_summary_is_short_and_secret_free() -> None:
    env = {
        "ADMIN_KEY": "admin-secret-123",
        "AUTHORIZATION": "code-secret-1,code-secret-2",
        "REDIS_URL": "redis://:redispass@10.0.0.1:6379/0",
        "PROXY_URL": "http://user:proxypass@p:3128",
        "API_PREFIX": "hidden-prefix",
    }
    lines = summary(
        load_settings(None, env), listeners=["reverse (API) at x"], ca_path="/c", pool_size=3
    )
    text = "\n".join(lines)
    assert len(lines) <= 8 and "3 token(s)" in text and "access codes: 2" in text
    for secret in ("admin-secret", "code-secret", "redispass", "proxypass", "hidden-prefix"):
        assert secret not in text
