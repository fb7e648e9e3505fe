"""The Codex backend client without the network: its error classification (what each
refusal means for the account and the client), the x-codex-* limit headers and the
headers it sends."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from accounts.pool import Credential, Outcome, Source
from errors import InvalidRequest, ModelNotFound, PermissionDenied, RateLimited, UpstreamError
from tests.fakechatgpt.harness import mint_access_token, token_account_id
from upstream.codex import (
    FOREIGN_REASONING,
    PLAN_REFUSED,
    CodexBackend,
    CodexLimits,
    classify_codex,
    codex_reason,
    failure_error,
    limit_headers,
)
from upstream.context import make_context
from upstream.failures import NOT_THE_ACCOUNT, outcome_of
from upstream.http import BackendHttp


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_usage_limit_429_and_404_limit_the_account_until_the_reset() -> None:
    error = {
        "type": "usage_limit_reached",
        "message": "The usage limit has been reached",
        "plan_type": "plus",
        "resets_at": 1777972827,
        "resets_in_seconds": 36640,
    }
    for status in (429, 404):
        e = classify_codex(status, {}, body({"error": error}))
        assert isinstance(e, RateLimited) and e.retry_after == 36640
        assert outcome_of(e) is Outcome.RATE_LIMITED and codex_reason(e) is None
        assert e.headers() == {"retry-after": "36640"} and e.code == "usage_limit_reached"


def test_usage_not_included_is_a_plan_refusal() -> None:
    e = classify_codex(
        429, {}, body({"error": {"type": "usage_not_included", "plan_type": "free"}})
    )
    assert isinstance(e, RateLimited) and codex_reason(e) == PLAN_REFUSED
    assert outcome_of(e) is Outcome.RATE_LIMITED and e.retry_after and e.retry_after > 3600


def test_model_not_supported_is_model_not_found_and_a_plan_refusal() -> None:
    detail = "The 'gpt-5' model is not supported when using Codex with a ChatGPT account."
    e = classify_codex(400, {}, body({"detail": detail}))
    assert isinstance(e, ModelNotFound) and e.status == 404 and e.code == "model_not_found"
    assert codex_reason(e) == PLAN_REFUSED and outcome_of(e) is None


def test_body_refusals_are_the_clients_400_with_the_backends_message() -> None:
    e = classify_codex(400, {}, body({"detail": "Unsupported parameter: max_output_tokens"}))
    assert isinstance(e, InvalidRequest) and e.status == 400
    assert "Unsupported parameter: max_output_tokens" in e.message and outcome_of(e) is None
    blob = {"error": {"message": "could not be verified", "code": "invalid_encrypted_content"}}
    e = classify_codex(400, {}, body(blob))
    assert codex_reason(e) == FOREIGN_REASONING and e.code == "invalid_encrypted_content"
    assert getattr(e, "outcome", None) == NOT_THE_ACCOUNT


def test_auth_cloudflare_and_server_errors() -> None:
    e = classify_codex(401, {}, body({"detail": "token expired"}))
    assert outcome_of(e) is Outcome.UNAUTHORIZED and e.status == 401
    html = b"<html><script>window._cf_chl_opt={}</script>Just a moment...</html>"
    e = classify_codex(403, {"cf-mitigated": "challenge", "content-type": "text/html"}, html)
    assert isinstance(e, PermissionDenied) and outcome_of(e) is Outcome.FORBIDDEN_CLOUDFLARE
    e = classify_codex(403, {}, body({"detail": "account deactivated"}))
    assert outcome_of(e) is Outcome.FORBIDDEN_UNUSUAL
    e = classify_codex(503, {}, body({"error": {"code": "server_is_overloaded"}}))
    assert isinstance(e, UpstreamError) and outcome_of(e) is Outcome.SERVER_ERROR


@pytest.mark.parametrize(
    ("error", "status", "outcome"),
    [
        ({"code": "context_length_exceeded", "message": "too long"}, 400, None),
        ({"code": "server_is_overloaded", "message": "busy"}, 503, Outcome.SERVER_ERROR),
        (
            {"code": "rate_limit_exceeded", "message": "Try again in 1.5s."},
            429,
            Outcome.RATE_LIMITED,
        ),
        ({"code": "usage_limit_reached", "resets_in_seconds": 60}, 429, Outcome.RATE_LIMITED),
        ({"code": "weird", "message": "?"}, 502, Outcome.SERVER_ERROR),
    ],
)
def test_in_stream_failures(error: dict[str, Any], status: int, outcome: Outcome | None) -> None:
    e = failure_error(error)
    assert e.status == status and outcome_of(e) is outcome
    if error["code"] == "rate_limit_exceeded":
        assert isinstance(e, RateLimited) and e.retry_after == 1.5


def test_limit_headers_both_reset_forms() -> None:
    headers = {
        "x-codex-primary-used-percent": "42.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-after-seconds": "600",
        "x-codex-secondary-used-percent": "7",
        "x-codex-secondary-reset-at": "2000000000",
        "x-codex-credits-has-credits": "false",
        "x-codex-active-limit": "codex",
    }
    got = limit_headers(headers, now=1000.0)
    assert got is not None
    assert got["primary"] == {"used_percent": 42.5, "window_minutes": 300, "resets_at": 1600.0}
    assert got["secondary"]["resets_at"] == 2000000000.0
    assert got["credits"] == {"has_credits": "false"} and got["active_limit"] == "codex"
    assert limit_headers({"content-type": "x"}) is None


def test_headers_carry_the_account_and_codex_identity() -> None:
    token = mint_access_token(exp_in=3600)
    cred = Credential(source=Source.DIRECT, access_token=token, token=token, entry_id="e1")
    ctx = make_context(
        origins=("https://chatgpt.example",),
        credential=cred,
        language="en-US",
        auth_key=None,
        proxy=None,
        rng=random.Random(1),
    )
    h = CodexBackend(BackendHttp(), CodexLimits()).headers(ctx, session_id="s-1")
    assert h["authorization"] == f"Bearer {token}"
    assert h["chatgpt-account-id"] == token_account_id(token)
    assert h["openai-beta"] == "responses=experimental" and h["originator"] == "codex_cli_rs"
    assert h["session_id"] == "s-1" and h["accept"] == "text/event-stream"
    assert h["user-agent"] == ctx.profile.user_agent
