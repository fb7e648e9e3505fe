"""The ChatGPT Codex backend: ``POST {origin}/backend-api/codex/responses``.

It speaks the Responses protocol natively (``docs/codex-backend.md``). The call
goes out on the web backend's transport (:class:`upstream.http.BackendHttp`:
curl_cffi impersonation, pooled handles, the same timeouts and proxies) with
an account's access token. This module knows the headers, the error bodies
(each becomes one error of the tree, tagged with what it means for the
account, as :mod:`upstream.failures` does for the web path) and the
``x-codex-*`` limit headers. The body is built by
:func:`translator.responses.request.codex_body`; the stream is decoded by
:class:`translator.responses.events.Decoder`.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accounts.pool import Outcome
from accounts.tokens import account_id_from_jwt
from errors import (
    Chat2ApiError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from upstream.context import TurnContext
from upstream.failures import NOT_THE_ACCOUNT, classify
from upstream.http import BackendHttp, StreamAnswer

PATH = "/backend-api/codex/responses"
_RNG = random.Random()
ORIGINATOR = "codex_cli_rs"

# Marks an error as "this account's plan has no Codex for this": with
# CODEX_BACKEND=auto the request falls back to the web conversation.
PLAN_REFUSED = "codex-plan-refused"
# Marks a 400 about reasoning blobs made by another account: retry without them.
FOREIGN_REASONING = "codex-foreign-reasoning"

_NOT_SUPPORTED = re.compile(r"not supported when using codex with a chatgpt account", re.I)
_TRY_AGAIN = re.compile(r"try again in\s*(\d+(?:\.\d+)?)\s*(ms|s|seconds?)", re.I)


def _tag(error: Chat2ApiError, outcome: Outcome | str, *, why: str | None = None) -> Chat2ApiError:
    error.outcome = outcome  # type: ignore[attr-defined]
    if why is not None:
        error.codex = why  # type: ignore[attr-defined]
    return error


def codex_reason(error: Chat2ApiError) -> str | None:
    """PLAN_REFUSED, FOREIGN_REASONING or None."""
    value = getattr(error, "codex", None)
    return value if isinstance(value, str) else None


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _reset_seconds(error: Mapping[str, Any], now: float) -> float | None:
    seconds = error.get("resets_in_seconds")
    if isinstance(seconds, (int, float)) and seconds > 0:
        return float(seconds)
    at = error.get("resets_at")
    if isinstance(at, (int, float)) and at > now:
        return float(at) - now
    return None


def limit_error(error: Mapping[str, Any], *, now: float | None = None) -> Chat2ApiError:
    """``usage_limit_reached`` / ``usage_not_included`` (a body's or ``response.failed``'s)."""
    kind = str(error.get("type") or error.get("code") or "")
    retry_after = _reset_seconds(error, time.time() if now is None else now)
    plan = error.get("plan_type")
    if kind == "usage_not_included":
        message = "This account's ChatGPT plan does not include the Codex backend"
        limited = RateLimited(
            message + (f" (plan {plan})" if isinstance(plan, str) else ""),
            retry_after=retry_after or 24 * 3600.0,
            code="usage_not_included",
        )
        return _tag(limited, Outcome.RATE_LIMITED, why=PLAN_REFUSED)
    message = str(error.get("message") or "The Codex usage limit has been reached")
    limited = RateLimited(
        f"Codex backend: {message}", retry_after=retry_after, code="usage_limit_reached"
    )
    return _tag(limited, Outcome.RATE_LIMITED)


def classify_codex(status: int, headers: Mapping[str, str], body: bytes) -> Chat2ApiError:
    """The error for a non-200 answer of ``/codex/responses`` (docs/codex-backend.md)."""
    data = _parse(body)
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    detail = data.get("detail")
    kind = str((error or {}).get("type") or (error or {}).get("code") or "")
    if kind in ("usage_limit_reached", "usage_not_included") and status in (404, 429, 403):
        return limit_error(error or {})
    content_type = headers.get("content-type", "")
    if status in (401, 403) or headers.get("cf-mitigated"):
        return classify(status, content_type, body, what="Codex")
    if isinstance(detail, str) and _NOT_SUPPORTED.search(detail):
        return _tag(ModelNotFound(f"Codex backend: {detail}"), NOT_THE_ACCOUNT, why=PLAN_REFUSED)
    if status == 400:
        message = detail if isinstance(detail, str) else None
        code = None
        param = None
        if error is not None:
            message = str(error.get("message") or message or "bad request")
            code = error.get("code") if isinstance(error.get("code"), str) else None
            param = error.get("param") if isinstance(error.get("param"), str) else None
        invalid = InvalidRequest(
            f"Codex backend: {message or body[:200].decode('utf-8', 'replace')}",
            param=param,
            code=code,
        )
        why = FOREIGN_REASONING if code == "invalid_encrypted_content" else None
        return _tag(invalid, NOT_THE_ACCOUNT, why=why)
    if status == 429:
        retry = headers.get("retry-after")
        seconds = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        message = (error or {}).get("message") or detail or "rate limited"
        return _tag(
            RateLimited(f"Codex backend: {message}", retry_after=seconds), Outcome.RATE_LIMITED
        )
    return classify(status, content_type, body, what="Codex")


def failure_error(error: Mapping[str, Any]) -> Chat2ApiError:
    """The error a ``response.failed`` (or ``error`` event) stands for."""
    code = str(error.get("code") or error.get("type") or "")
    message = str(error.get("message") or "the Codex backend failed the response")
    if code in ("usage_limit_reached", "usage_not_included"):
        return limit_error(error)
    if code in ("context_length_exceeded", "invalid_prompt", "cyber_policy"):
        return _tag(InvalidRequest(f"Codex backend: {message}", code=code), NOT_THE_ACCOUNT)
    if code in ("rate_limit_exceeded", "slow_down"):
        match = _TRY_AGAIN.search(message)
        seconds = None
        if match:
            seconds = float(match.group(1)) / (1000 if match.group(2).lower() == "ms" else 1)
        return _tag(
            RateLimited(f"Codex backend: {message}", retry_after=seconds), Outcome.RATE_LIMITED
        )
    if code == "server_is_overloaded":
        return _tag(UpstreamUnavailable(f"Codex backend: {message}"), Outcome.SERVER_ERROR)
    return _tag(UpstreamError(f"Codex backend: {message}", code=code or None), Outcome.SERVER_ERROR)


# --- the x-codex-* limit headers ----------------------------------------------------------

_NUMBERS = ("used-percent", "window-minutes", "reset-after-seconds", "reset-at")


def limit_headers(headers: Mapping[str, str], *, now: float | None = None) -> dict[str, Any] | None:
    """The account's Codex limits from one answer's headers, for ``/tokens``.

    ``{"primary": {"used_percent", "window_minutes", "resets_at"}, "secondary": …,
    "credits": {...}, "active_limit", "seen"}``; None when there are none.
    """
    now = time.time() if now is None else now
    out: dict[str, Any] = {}
    for window in ("primary", "secondary"):
        values: dict[str, float] = {}
        for name in _NUMBERS:
            raw = headers.get(f"x-codex-{window}-{name}")
            try:
                values[name] = float(raw) if raw is not None else float("nan")
            except ValueError:
                continue
        found = {k: v for k, v in values.items() if v == v}
        if not found:
            continue
        resets_at = found.get("reset-at")
        if resets_at is None and "reset-after-seconds" in found:
            resets_at = now + found["reset-after-seconds"]
        out[window] = {
            "used_percent": found.get("used-percent"),
            "window_minutes": int(found["window-minutes"]) if "window-minutes" in found else None,
            "resets_at": resets_at,
        }
    credits = {
        key: headers[f"x-codex-credits-{key.replace('_', '-')}"]
        for key in ("has_credits", "unlimited", "balance")
        if f"x-codex-credits-{key.replace('_', '-')}" in headers
    }
    if credits:
        out["credits"] = credits
    if "x-codex-active-limit" in headers:
        out["active_limit"] = headers["x-codex-active-limit"]
    if not out:
        return None
    out["seen"] = now
    return out


# --- the call ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CodexLimits:
    first_byte_timeout: float = 60.0


class CodexBackend:
    """Opens Codex-backend streams for an account."""

    def __init__(self, http: BackendHttp, limits: CodexLimits) -> None:
        self.http = http
        self.limits = limits

    def headers(self, ctx: TurnContext, *, session_id: str) -> dict[str, str]:
        token = ctx.credential.access_token
        if not token:
            raise UpstreamError("the Codex backend needs an account")
        h = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "accept": "text/event-stream",
            "openai-beta": "responses=experimental",
            "originator": ORIGINATOR,
            "session_id": session_id,
            # The browser the TLS handshake impersonates: a mismatch is a bot signal.
            "user-agent": ctx.profile.user_agent,
        }
        account_id = ctx.credential.account_id or account_id_from_jwt(token)
        if account_id:
            h["chatgpt-account-id"] = account_id
        if ctx.auth_key:
            h["authkey"] = ctx.auth_key
        return h

    async def open(
        self, ctx: TurnContext, body: dict[str, Any], *, session_id: str | None = None
    ) -> StreamAnswer:
        """POST ``body``; the open 200 stream, or the classified error."""
        session = session_id or body.get("prompt_cache_key")
        if not session:  # (not uuid4: a system call per request, for an id that is no secret)
            session = str(uuid.UUID(int=_RNG.getrandbits(128), version=4))
        stream = await self.http.open_stream(
            ctx.origin + PATH,
            headers=self.headers(ctx, session_id=str(session)),
            json_body=body,
            impersonate=ctx.profile.impersonate,
            first_byte_timeout=self.limits.first_byte_timeout,
            proxy=ctx.proxy,
        )
        # (The backend sends its event stream without a content type: any 200 is one.)
        if stream.status == 200:
            return stream
        try:
            raw = await stream.read_all()
        finally:
            await stream.close()
        error = classify_codex(stream.status, stream.headers, raw)
        error.limits = limit_headers(stream.headers)  # type: ignore[attr-defined]
        raise error


__all__ = [
    "FOREIGN_REASONING",
    "PLAN_REFUSED",
    "CodexBackend",
    "CodexLimits",
    "classify_codex",
    "codex_reason",
    "failure_error",
    "limit_error",
    "limit_headers",
]
