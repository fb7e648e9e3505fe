"""The account pool as the API path and the admin page see it.

Builds the :class:`accounts.pool.Pool` over its store (files under ``DATA_DIR``,
or Redis with ``REDIS_URL``) and refresher from the settings, runs the start-up
and scheduled refreshes, and gives each request a
:class:`accounts.pool.PoolSession` (its first account and its retries).

With Redis, an empty shared pool imports ``DATA_DIR``'s state at start-up when
``DATA_DIR/token.txt`` exists (:func:`accounts.migrate.import_files`), so going
from one instance to several needs no extra step.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accounts.migrate import import_files, make_store
from accounts.pool import Pool, PoolSession
from accounts.redisstore import RedisStore
from accounts.refresh import Refresher, Schedule, start_background
from accounts.store import Store
from errors import UpstreamUnavailable
from settings import Settings
from upstream.http import BackendHttp

log = logging.getLogger(__name__)


class AccountsService:
    def __init__(self, settings: Settings, http: BackendHttp) -> None:
        self.settings = settings
        self.http = http
        self.store: Store = make_store(settings)
        self.refresher = Refresher(
            self.store,
            self._post_json,
            token_url=settings.refresh_url,
            client_id=settings.refresh_client_id,
            redirect_uri=settings.refresh_redirect_uri,
        )
        self.pool = Pool(
            self.store,
            refresher=self.refresher,
            codes=settings.authorization,
            random_token=settings.random_token,
            retry_times=settings.retry_times,
            enable_limit=settings.enable_limit,
            allow_anonymous=settings.allow_anonymous,
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._opened = False

    async def start(self) -> None:
        if self._opened:
            return
        await self.store.open()
        self._opened = True
        data_dir = Path(self.settings.data_dir).expanduser()
        if isinstance(self.store, RedisStore) and not await self._import(data_dir):
            self._tasks.append(asyncio.get_running_loop().create_task(self._import_later(data_dir)))
        schedule = (
            Schedule.parse(self.settings.refresh_schedule)
            if self.settings.scheduled_refresh
            else None
        )
        self._tasks += start_background(self.refresher, schedule)
        where = self.store if isinstance(self.store, RedisStore) else data_dir
        try:
            log.info("token pool: %d token(s) in %s", len(await self.store.tokens()), where)
        except UpstreamUnavailable:
            pass  # the store logged the outage

    async def _import(self, data_dir: Path) -> bool:
        """Import DATA_DIR into an empty shared pool; False if Redis is unreachable."""
        assert isinstance(self.store, RedisStore)
        try:
            await import_files(self.store, data_dir)
        except UpstreamUnavailable:
            return False
        return True

    async def _import_later(self, data_dir: Path) -> None:
        while not await self._import(data_dir):
            await asyncio.sleep(2)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._opened:
            await self.store.close()  # the best-effort health notes (last use)

    def session(
        self,
        bearer: str | None,
        header_account_id: str | None,
        body_account_id: str | None,
        *,
        model: str,
    ) -> PoolSession:
        # AUTO_SEED=false: API keys are mirror seeds, as in the original.
        return self.pool.session(
            bearer,
            header_account_id,
            body_account_id,
            model=model,
            seeds_only=not self.settings.auto_seed,
        )

    async def post_json(
        self, url: str, body: Mapping[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        """A JSON POST to an auth endpoint (also /auth/refresh's, addons/admin.py)."""
        return await self._post_json(url, body, timeout)

    async def _post_json(
        self, url: str, body: Mapping[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        origin = "/".join(url.split("/")[:3])
        answer = await self.http.request(
            "POST",
            url,
            headers={
                "accept": "*/*",
                "accept-language": "en-US,en;q=0.9",
                "content-type": "application/json",
                "origin": origin,
            },
            json_body=dict(body),
            impersonate="chrome",
            timeout=timeout,
            proxy=self.http.pick_proxy(),
        )
        try:
            data = json.loads(answer.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {"_raw": answer.body[:500].decode("utf-8", "replace")}
        return answer.status, data
