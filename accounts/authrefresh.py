"""``POST /auth/refresh``: the refresh and account check Chat-Share calls
(docs/original-clients.md).

Form fields ``refresh_token`` and/or ``access_token`` (or ``accessToken``). An
access token valid for more than five days more is kept; otherwise the refresh
token is exchanged at ``refresh_url``. Then the backend's model list and
account check are read with the access token, and the answer merges the form
fields, the token answer, ``refresh_token``, ``accessToken``, ``models``,
``accounts_info`` and ``accountCheckInfo: {is_deactivated, plan_type,
team_ids}``, as the original's did.

The original left this open, which made it a free refresh proxy for anyone: it
needs the admin key or an AUTHORIZATION code unless ``auth_refresh_open`` is
set, and then each client address gets ``auth_refresh_per_minute`` calls.
Nothing here touches the pool: the tokens are the caller's own.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from accounts.tokens import jwt_exp
from errors import AuthenticationFailed, InvalidRequest, RateLimited, UpstreamError

PostJson = Callable[[str, Mapping[str, Any], float], Awaitable[tuple[int, dict[str, Any]]]]
# await get_json(url, access_token) -> (status, parsed body or None)
GetJson = Callable[[str, str], Awaitable[tuple[int, Any]]]

KEEP_FOR = 5 * 24 * 3600.0
_MAX_CLIENTS = 10_000


@dataclass(frozen=True, kw_only=True)
class RefreshConfig:
    token_url: str
    client_id: str
    redirect_uri: str
    origin: str  # the backend's origin, for the model list and account check
    open: bool = False
    per_minute: int = 10


class RateLimit:
    """At most ``per_minute`` calls per key in any 60 s (in this instance)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._calls: dict[str, collections.deque[float]] = {}

    def check(self, key: str) -> None:
        now = self.clock()
        calls = self._calls.get(key)
        if calls is None:
            if len(self._calls) >= _MAX_CLIENTS:
                self._prune(now)
            calls = self._calls[key] = collections.deque()
        while calls and now - calls[0] >= 60:
            calls.popleft()
        if len(calls) >= self.per_minute:
            raise RateLimited(
                "Too many /auth/refresh calls from this address; try again later.",
                retry_after=60 - (now - calls[0]),
            )
        calls.append(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, c in self._calls.items() if not c or now - c[-1] >= 60]:
            del self._calls[key]
        if len(self._calls) >= _MAX_CLIENTS:
            self._calls.clear()


class AuthRefresh:
    def __init__(
        self,
        config: RefreshConfig,
        post_json: PostJson,
        get_json: GetJson,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.post_json = post_json
        self.get_json = get_json
        self.clock = clock
        self.limit = RateLimit(config.per_minute)

    def admit(self, authorised: Callable[[], None], client: str) -> None:
        """Let the call in: with a key, or (when open) within the address's rate."""
        try:
            authorised()
            return
        except AuthenticationFailed:
            if not self.config.open:
                raise
        except Exception:
            if not self.config.open:
                raise
        self.limit.check(client)

    async def handle(self, fields: Mapping[str, str]) -> dict[str, Any]:
        rt = (fields.get("refresh_token") or "").strip()
        at = (fields.get("access_token") or fields.get("accessToken") or "").strip()
        if not rt and not at:
            raise InvalidRequest("Expected the form field refresh_token or access_token.")
        answer: dict[str, Any] = dict(fields)
        exp = jwt_exp(at) if at else None
        if not (exp is not None and exp - self.clock() > KEEP_FOR):
            if not rt:
                raise AuthenticationFailed("Unauthorized: the access token expires soon.")
            token = await self._refresh(rt)
            answer.update(token)
            at = str(token["access_token"])
            rt = str(token.get("refresh_token") or rt)
        answer["refresh_token"] = rt
        answer["accessToken"] = at
        status, models = await self.get_json(
            f"{self.config.origin}/backend-api/models?history_and_training_disabled=false", at
        )
        if status == 401:
            raise AuthenticationFailed("Unauthorized")
        answer["models"] = models.get("models", []) if isinstance(models, dict) else []
        status, info = await self.get_json(
            f"{self.config.origin}/backend-api/accounts/check/v4-2023-04-27", at
        )
        if status != 200 or not isinstance(info, dict):
            raise AuthenticationFailed("Unauthorized")
        answer["accounts_info"] = info
        answer["accountCheckInfo"] = account_check(info)
        return answer

    async def _refresh(self, rt: str) -> dict[str, Any]:
        c = self.config
        body = {
            "client_id": c.client_id,
            "grant_type": "refresh_token",
            "redirect_uri": c.redirect_uri,
            "refresh_token": rt,
        }
        try:
            status, token = await self.post_json(c.token_url, body, 30.0)
        except Exception as exc:
            raise UpstreamError("Failed to refresh the access token.") from exc
        if status != 200 or not isinstance(token.get("access_token"), str):
            if 400 <= status < 500:
                raise AuthenticationFailed("Unauthorized: the refresh token was rejected.")
            raise UpstreamError(f"Failed to refresh the access token (HTTP {status}).")
        return token


def account_check(info: Mapping[str, Any]) -> dict[str, Any]:
    """``{is_deactivated, plan_type, team_ids}`` from an accounts/check answer."""
    accounts = info.get("accounts")
    accounts = accounts if isinstance(accounts, dict) else {}
    ordering = info.get("account_ordering")
    ordering = ordering if isinstance(ordering, list) else list(accounts)
    plan_type = None
    team_ids: list[str] = []
    states: list[bool] = []
    for n, account_id in enumerate(ordering):
        item = accounts.get(account_id)
        if not isinstance(item, dict):
            continue
        account = _dict(item.get("account"))
        entitlement = _dict(item.get("entitlement"))
        plan = account.get("plan_type") or entitlement.get("subscription_plan")
        deactivated = bool(account.get("is_deactivated"))
        states.append(deactivated)
        if n == 0:
            plan_type = plan
        if not deactivated and isinstance(plan, str) and "team" in plan:
            plan_type = plan
            team_ids.append(str(account_id))
    return {
        "is_deactivated": bool(states) and all(states),
        "plan_type": plan_type,
        "team_ids": team_ids,
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
