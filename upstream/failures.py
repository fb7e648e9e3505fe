"""Turning the backend's error answers into chat2api errors.

The backend refuses in several dialects (``docs/backend-protocol.md#errors``): FastAPI
``{"detail": ...}`` JSON, Cloudflare challenge HTML, ``{"detail": {"message",
"clears_in"}}`` for rate limits. Each becomes one error of our tree, tagged with
what it means for the account that was used (``outcome``), so the pool can
refresh, cool down or mark it, and the retry loop knows whether another
attempt can help.
"""

from __future__ import annotations

import json
from typing import Any

from accounts.pool import Outcome
from errors import (
    AuthenticationFailed,
    Chat2ApiError,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# Marks an error as the client's or ours, not the account's: retrying is pointless.
NOT_THE_ACCOUNT = "not-the-account"


def outcome_of(error: Chat2ApiError) -> Outcome | None:
    """What ``error`` says about the account used; None when another won't help."""
    tagged = getattr(error, "outcome", None)
    if tagged == NOT_THE_ACCOUNT:
        return None
    if isinstance(tagged, Outcome):
        return tagged
    if isinstance(error, UpstreamTimeout):
        return Outcome.TIMEOUT
    if isinstance(error, (UpstreamError, UpstreamUnavailable)):
        return Outcome.SERVER_ERROR
    if isinstance(error, RateLimited):
        return Outcome.RATE_LIMITED
    return None


def _tag(error: Chat2ApiError, outcome: Outcome | str) -> Chat2ApiError:
    error.outcome = outcome  # type: ignore[attr-defined]
    return error


def _detail(body: bytes, content_type: str) -> tuple[Any, str]:
    """The parsed ``detail`` (or whole JSON) and a short printable text."""
    text = body.decode("utf-8", "replace")
    if "json" in content_type or text.lstrip().startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None, text[:200]
        detail = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
        if isinstance(detail, dict):
            message = detail.get("message") or detail.get("error") or json.dumps(detail)[:200]
        elif isinstance(detail, list):
            message = "; ".join(
                str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                for item in detail[:3]
            )
        else:
            message = str(detail)
        return detail, str(message)[:300]
    return None, text[:200]


def classify(status: int, content_type: str, body: bytes, *, what: str) -> Chat2ApiError:
    """The error for a non-2xx backend answer to ``what`` (e.g. "conversation")."""
    detail, message = _detail(body, content_type)
    lowered = body[:MAX_SCAN].decode("utf-8", "replace").lower()
    if "cf_chl_opt" in lowered or "challenge-platform" in lowered:
        return _tag(
            PermissionDenied(
                f"ChatGPT's Cloudflare check refused the {what} request (HTTP {status}); "
                "another account or a PROXY_URL may help",
                code="cloudflare_challenge",
            ),
            Outcome.FORBIDDEN_CLOUDFLARE,
        )
    if status == 401:
        return _tag(
            AuthenticationFailed(f"ChatGPT refused the access token ({message or 'unauthorized'})"),
            Outcome.UNAUTHORIZED,
        )
    if status == 403:
        return _tag(
            PermissionDenied(f"ChatGPT refused the {what} request: {message}"),
            Outcome.FORBIDDEN_UNUSUAL,
        )
    if status == 404:
        if "model" in lowered:
            return _tag(ModelNotFound(f"ChatGPT: {message}"), NOT_THE_ACCOUNT)
        return _tag(NotFound(f"ChatGPT: {message}", code=None), NOT_THE_ACCOUNT)
    if status == 429:
        clears_in = detail.get("clears_in") if isinstance(detail, dict) else None
        retry_after = float(clears_in) if isinstance(clears_in, (int, float)) else None
        return _tag(
            RateLimited(f"ChatGPT rate limit: {message}", retry_after=retry_after),
            Outcome.RATE_LIMITED,
        )
    if status in (400, 413, 422):
        # The backend rejected the body we built: our fault or the client's
        # input, and another account would get the same answer.
        if status == 413:
            return _tag(InvalidRequest(f"ChatGPT: {message}"), NOT_THE_ACCOUNT)
        return _tag(
            UpstreamError(f"ChatGPT rejected the {what} request (HTTP {status}): {message}"),
            NOT_THE_ACCOUNT,
        )
    if status in (503, 504):
        cls = UpstreamUnavailable if status == 503 else UpstreamTimeout
        return _tag(cls(f"ChatGPT is unavailable (HTTP {status}): {message}"), Outcome.SERVER_ERROR)
    return _tag(
        UpstreamError(f"ChatGPT failed the {what} request (HTTP {status}): {message}"),
        Outcome.SERVER_ERROR,
    )


MAX_SCAN = 16 * 1024
