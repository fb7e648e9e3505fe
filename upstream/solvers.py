"""External solvers for the sentinel's turnstile and arkose challenges.

chat2api solves the proof of work itself; the other two challenges need a
browser, so, like the original, it hands them to services the operator runs
(``TURNSTILE_SOLVER_URL``, ``ARKOSE_TOKEN_URL``), with the original's request
and answer shapes (docs/original-settings.md):

- turnstile: ``POST {"url": origin, "p": <requirements token>, "dx": <dx>,
  "ua": <user agent>}`` → ``{"t": <token>}``, sent as
  ``openai-sentinel-turnstile-token`` (2026 dialect: the ``turnstile`` key of
  ``finalize``);
- arkose: ``POST {"blob": <dx>, "method": "chat35" | "chat4"}`` →
  ``{"token": <token>, "solved": true}``, sent as ``openai-sentinel-arkose-token``.

Without a solver, or when one fails, the turn goes on without that token and a
warning is logged once per challenge (the backend often still answers).
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

from errors import Chat2ApiError
from upstream.context import TurnContext
from upstream.http import BackendHttp

log = logging.getLogger(__name__)

SOLVER_TIMEOUT = 15.0


def required(challenge: Any) -> bool:
    return isinstance(challenge, dict) and bool(challenge.get("required"))


class ChallengeSolvers:
    def __init__(
        self,
        http: BackendHttp,
        *,
        turnstile_url: str | None = None,
        arkose_urls: tuple[str, ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.http = http
        self.turnstile_url = turnstile_url
        self.arkose_urls = arkose_urls
        self._rng = rng or random.Random()
        self._warned: set[str] = set()

    async def turnstile(self, ctx: TurnContext, p: str, challenge: Any) -> str | None:
        """The turnstile token for a required challenge, else None."""
        if not required(challenge):
            return None
        if self.turnstile_url is None:
            self._warn_once("turnstile", "TURNSTILE_SOLVER_URL is not set")
            return None
        body = {"url": ctx.origin, "p": p, "dx": challenge.get("dx"), "ua": ctx.profile.user_agent}
        answer = await self._ask("turnstile", self.turnstile_url, body)
        token = answer.get("t") if answer else None
        return token if isinstance(token, str) and token else None

    async def arkose(self, challenge: Any, persona: str | None) -> str | None:
        """The arkose token for a required challenge, else None."""
        if not required(challenge):
            return None
        if not self.arkose_urls:
            self._warn_once("arkose", "ARKOSE_TOKEN_URL is not set")
            return None
        method = "chat35" if persona == "chatgpt-freeaccount" else "chat4"
        body = {"blob": challenge.get("dx"), "method": method}
        answer = await self._ask("arkose", self._rng.choice(self.arkose_urls), body)
        if not answer or answer.get("solved", True) is False:
            return None
        token = answer.get("token")
        return token if isinstance(token, str) and token else None

    async def _ask(self, name: str, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            answer = await self.http.request(
                "POST",
                url,
                headers={"content-type": "application/json", "accept": "application/json"},
                json_body=body,
                impersonate=None,
                timeout=SOLVER_TIMEOUT,
            )
        except Chat2ApiError as e:
            log.warning("the %s solver could not be reached: %s; going on without it", name, e)
            return None
        try:
            data = json.loads(answer.body) if answer.status == 200 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            log.warning(
                "the %s solver answered HTTP %s without a token; going on without it",
                name,
                answer.status,
            )
            return None
        return data

    def _warn_once(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning(
                "ChatGPT asks for a %s token and %s; going on without it "
                "(the backend may refuse the turn)",
                name,
                why,
            )
