"""``GET /health`` (liveness) and ``GET /ready`` (readiness) on the reverse listener.

Neither needs a key, so neither says anything an outsider could use: no
addresses, counts or error texts from the store, only which check failed.
Readiness means this instance can answer an API request now: its settings
are loaded and started, its storage answers (a Redis ``PING`` with
``REDIS_URL``, the token list otherwise), and a pool account is usable or
anonymous use is allowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from accounts.store import State

PATHS = ("/health", "/ready")
# A load balancer checks often; a hung store must not hang its check.
STORE_TIMEOUT = 2.0


class _Runtime(Protocol):
    settings: Any
    accounts: Any
    started: asyncio.Event


@dataclass(frozen=True, slots=True)
class Verdict:
    status: int
    body: dict[str, Any]


def health() -> Verdict:
    return Verdict(200, {"status": "ok"})


async def _with_timeout(call: Callable[[], Awaitable[Any]]) -> Any:
    async with asyncio.timeout(STORE_TIMEOUT):
        return await call()


async def ready(runtime: _Runtime | None) -> Verdict:
    checks: dict[str, str] = {}
    if runtime is None or not runtime.started.is_set():
        checks["settings"] = "not loaded"
        return _verdict(checks, "settings are not loaded yet")
    checks["settings"] = "ok"
    store = runtime.accounts.store
    ping = getattr(store, "ping", None)
    try:
        await _with_timeout(ping if ping is not None else store.tokens)
    except Exception:  # noqa: BLE001 - any failure means "not ready", never a traceback
        checks["storage"] = "unreachable"
        return _verdict(checks, "the storage (Redis or data_dir) does not answer")
    checks["storage"] = "ok"
    pool = runtime.accounts.pool
    if runtime.settings.allow_anonymous:
        checks["accounts"] = "ok (anonymous use allowed)"
        return _verdict(checks, None)
    try:
        views = await _with_timeout(pool.views)
    except Exception:  # noqa: BLE001
        checks["accounts"] = "unknown"
        return _verdict(checks, "the token pool cannot be read")
    if not any(v.state == State.HEALTHY.value for v in views):
        checks["accounts"] = "none usable"
        return _verdict(checks, "no usable account and anonymous use is off")
    checks["accounts"] = "ok"
    return _verdict(checks, None)


def _verdict(checks: dict[str, str], reason: str | None) -> Verdict:
    if reason is None:
        return Verdict(200, {"status": "ready", "checks": checks})
    return Verdict(503, {"status": "not ready", "reason": reason, "checks": checks})
