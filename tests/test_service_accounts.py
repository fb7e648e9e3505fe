"""service.accounts: the pool as built from the settings, started and stopped."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from accounts.pool import Outcome, Source
from accounts.tokens import token_id
from service.accounts import AccountsService
from settings import load_settings
from upstream.http import BackendHttp


def make_jwt(exp: float = 2e9) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': exp})}.sig"


def service(tmp_path: Path, **env: str) -> AccountsService:
    settings = load_settings(None, {"DATA_DIR": str(tmp_path), **env})
    return AccountsService(settings, BackendHttp())


def test_settings_reach_the_pool(tmp_path: Path) -> None:
    accounts = service(
        tmp_path,
        AUTHORIZATION="c1,c2",
        RANDOM_TOKEN="false",
        RETRY_TIMES="5",
        ENABLE_LIMIT="false",
        ALLOW_ANONYMOUS="false",
        REFRESH_URL="http://127.0.0.1:9/oauth/token",
        REFRESH_CLIENT_ID="client-x",
    )
    pool = accounts.pool
    assert tuple(pool.codes) == ("c1", "c2")
    assert (pool.random_token, pool.retry_times, pool.enable_limit) == (False, 5, False)
    assert pool.allow_anonymous is False
    assert accounts.refresher.token_url == "http://127.0.0.1:9/oauth/token"
    assert accounts.refresher.client_id == "client-x"


def test_stop_flushes_the_best_effort_health(tmp_path: Path) -> None:
    at = make_jwt()
    (tmp_path / "token.txt").write_text(at + "\n")

    async def main() -> None:
        accounts = service(tmp_path, AUTHORIZATION="c1")
        await accounts.start()
        session = accounts.session("c1", None, None, model="gpt-4o")
        cred = await session.next()
        assert cred is not None and cred.source is Source.POOL
        await session.report(Outcome.SERVER_ERROR, detail="HTTP 500")  # a touch only
        await accounts.stop()

    asyncio.run(main())
    health = json.loads((tmp_path / "health.json").read_text())
    assert health[token_id(at)]["last_error"] == "HTTP 500"
    assert health[token_id(at)]["last_used"]
