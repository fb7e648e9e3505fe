"""Building chat2api's live objects from :class:`settings.Settings`.

The addons share one :class:`Runtime` per process (``mitmdump -s
addons/chat2api.py -s addons/mirror.py`` loads two scripts that must see the
same account pool), kept in :data:`CURRENT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curl_cffi.requests import BrowserType

from accounts.pool import Credential
from pow import BrowserProfile
from pow.browsers import BrowserChoice, build_profiles
from service.accounts import AccountsService
from service.api import ApiApp
from service.codex_chat import CodexChat
from service.completions import CompletionService, Limits
from service.images import ImagesService
from service.media import MediaResolver
from service.responses import ResponsesLimits, ResponsesService
from service.responsestore import FileResponseStore, RedisResponseStore, ResponseStore
from service.uploads import MediaFetcher, MediaLimits, Uploader
from settings import Settings, SettingsError
from translator import usage
from translator.backend_body import (
    Attachments,
    build_conversation_body,
    build_prepare_body,
    contextual_info,
)
from translator.models import ResolvedModel
from translator.request import ChatRequest
from upstream.auto import AutoDialect
from upstream.classic import ClassicDialect
from upstream.codex import CodexBackend, CodexLimits
from upstream.common import Limits as DialectLimits
from upstream.context import TurnContext, make_context, pinned_proxy
from upstream.d2026 import Dialect2026
from upstream.dialect import Dialect, PrepareState, TurnBodies, Wire
from upstream.http import BackendHttp
from upstream.site import SitePages
from upstream.solvers import ChallengeSolvers

log = logging.getLogger(__name__)

# How long a request that comes in during start-up waits for it.
STARTUP_WAIT = 30.0


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    http: BackendHttp
    accounts: AccountsService
    api: ApiApp
    #: The backend dialect and the context of an account's calls, for the mirror's
    #: server-side sentinel (mirror/sentinel.py).
    dialect: Dialect | None = None
    context_for: Callable[[Credential, random.Random], TurnContext] | None = None
    _warm_up: asyncio.Future[Any] | None = None
    #: Set once :meth:`start` is done. mitmproxy opens its listeners before the
    #: addons' ``running`` hooks finish, so a request can come in before that.
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def until_started(self, timeout: float = STARTUP_WAIT) -> bool:
        """Wait (at most ``timeout``) for start-up; whether it is done."""
        if not self.started.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.started.wait()
        return self.started.is_set()

    async def start(self) -> None:
        await self.accounts.start()
        # Building the tokenizer takes about a second: do it now, off the loop,
        # rather than in the first request's usage count.
        self._warm_up = asyncio.ensure_future(
            asyncio.to_thread(usage.get_encoding, usage.encoding_name_for("gpt-4o"))
        )
        self.started.set()

    async def stop(self) -> None:
        await self.accounts.stop()
        if self.api.responses is not None:
            await self.api.responses.store.close()
        await self.http.close()


CURRENT: Runtime | None = None


def make_dialect(settings: Settings, http: BackendHttp) -> Dialect:
    """The backend dialect ``backend_dialect`` names (README, "Backend dialects")."""
    limits = DialectLimits(
        pow_threshold=settings.pow_difficulty,
        pow_algorithm=None if settings.pow_algorithm == "auto" else settings.pow_algorithm,
        first_byte_timeout=settings.timeouts.first_byte,
    )
    only = settings.conversation_only
    solvers = ChallengeSolvers(
        http,
        turnstile_url=settings.turnstile_solver_url,
        arkose_urls=settings.arkose_token_url,
    )
    # One reading of each upstream's home page for both dialects (upstream/site.py).
    site = SitePages(http)
    classic = ClassicDialect(http, limits, conversation_only=only, solvers=solvers, site=site)
    if settings.backend_dialect == "classic":
        return classic
    newer = Dialect2026(http, limits, conversation_only=only, solvers=solvers, site=site)
    if settings.backend_dialect == "2026":
        return newer
    return AutoDialect(newer, classic)


def browser_profiles(settings: Settings) -> tuple[BrowserProfile, ...]:
    """The browsers accounts look like (``IMPERSONATE``, ``USER_AGENTS``, ``*_TUPLE``)."""
    choice = BrowserChoice(
        impersonate=settings.impersonate,
        user_agents=settings.user_agents,
        devices=settings.device_tuple,
        browsers=settings.browser_tuple,
        platforms=settings.platform_tuple,
    )
    try:
        built = build_profiles(choice, (b.value for b in BrowserType))
    except ValueError as e:
        raise SettingsError("impersonate", str(e)) from None
    for note in built.skipped:
        log.warning("chat2api: %s", note)
    return built.profiles


def make_response_store(settings: Settings) -> ResponseStore:
    """Stored responses where the accounts live: Redis with REDIS_URL, else DATA_DIR."""
    ttl = float(settings.responses_ttl)
    if settings.redis_url:
        return RedisResponseStore(settings.redis_url, prefix=settings.redis_prefix, ttl=ttl)
    return FileResponseStore(Path(settings.data_dir).expanduser() / "responses", ttl=ttl)


def build_runtime(settings: Settings) -> Runtime:
    http = BackendHttp(proxies=settings.proxy_url, connect_timeout=settings.timeouts.connect)
    accounts = AccountsService(settings, http)
    dialect = make_dialect(settings, http)

    profiles = browser_profiles(settings)

    def context_for(credential: Credential, rng: random.Random) -> TurnContext:
        return make_context(
            origins=settings.chatgpt_base_url,
            credential=credential,
            language=settings.oai_language,
            auth_key=settings.auth_key,
            proxy=pinned_proxy(settings.proxy_url, credential, rng),
            sentinel_proxy=pinned_proxy(settings.sentinel_proxy_url, credential, rng),
            rng=rng,
            profiles=profiles,
        )

    def body_for(
        req: ChatRequest,
        model: ResolvedModel,
        ctx: TurnContext,
        rng: random.Random,
        attachments: Attachments | None = None,
    ) -> TurnBodies:
        history_disabled = (
            settings.history_disabled if req.history_disabled is None else req.history_disabled
        )
        timezone = ctx.profile.timezone
        offset = ctx.profile.timezone_offset_min(datetime.now(UTC))
        info = contextual_info(rng)  # one browser window for both bodies of the turn

        def conversation(wire: Wire, prepare_state: PrepareState) -> dict[str, Any]:
            if wire == "classic" and model.thinking and req.reasoning_effort is not None:
                # Only the 2026 body has a field for it (translator/backend_body.py).
                log.info(
                    "reasoning_effort %r not applied: the classic dialect has no such field",
                    req.reasoning_effort,
                )
            return build_conversation_body(
                req,
                model=model,
                history_disabled=history_disabled,
                attachments_by_part=attachments,
                timezone=timezone,
                timezone_offset_min=offset,
                rng=rng,
                dialect=wire,
                client_contextual_info=info,
                prepare_state=prepare_state,
            )

        def prepare() -> dict[str, Any]:
            return build_prepare_body(
                req,
                model=model,
                timezone=timezone,
                timezone_offset_min=offset,
                rng=rng,
                client_contextual_info=info,
            )

        return TurnBodies(
            conversation=conversation, prepare=prepare, refuse_persona=model.refused_for
        )

    media = MediaResolver(
        http,
        async_timeout=settings.media_async_timeout,
        poll_interval=settings.media_poll_interval,
        max_image_bytes=settings.media_max_bytes,
    )
    completions = CompletionService(
        accounts=accounts,
        dialect=dialect,
        make_context=context_for,
        build_body=body_for,
        media=media,
        uploader=Uploader(http),
        limits=Limits(
            retry_times=settings.retry_times,
            idle_timeout=settings.timeouts.idle,
            total_timeout=settings.timeouts.total,
            inline_reasoning=settings.reasoning_inline,
            resume_attempts=settings.resume_attempts,
            on_downgrade=settings.on_downgrade,
        ),
    )
    media_fetcher = MediaFetcher(
        MediaLimits(
            max_bytes=settings.media_max_bytes,
            fetch_timeout=settings.media_fetch_timeout,
            allow_hosts=settings.media_allow_hosts,
            upload_by_url=settings.upload_by_url,
        ),
        export_proxy=settings.export_proxy_url,
        file_fetcher=settings.cf_file_url,
    )
    responses = ResponsesService(
        accounts=accounts,
        pool=accounts.pool,
        codex=CodexBackend(http, CodexLimits(first_byte_timeout=settings.timeouts.first_byte)),
        make_context=context_for,
        completions=completions,
        web_models=settings.models,
        codex_models=settings.codex_models,
        unknown_model=settings.unknown_model,
        mode=settings.codex_backend,
        store=make_response_store(settings),
        limits=ResponsesLimits(
            idle_timeout=settings.timeouts.idle,
            total_timeout=settings.timeouts.total,
            max_body_bytes=settings.max_body_bytes,
        ),
        media=media_fetcher,
    )
    api = ApiApp(
        api_root=settings.api_root,
        models=settings.models,
        unknown_model=settings.unknown_model,
        completions=completions,
        max_body_bytes=settings.max_body_bytes,
        history_disabled=settings.history_disabled,
        media=media_fetcher,
        responses=responses,
        codex_models=settings.codex_models,
        codex_chat=CodexChat(
            responses=responses,
            completions=completions,
            web_models=settings.models,
            codex_models=settings.codex_models,
            unknown_model=settings.unknown_model,
            mode=settings.codex_backend,
        ),
        images=ImagesService(
            completions=completions,
            media=media,
            models=settings.models,
            max_body_bytes=settings.max_body_bytes,
        ),
        key_check=lambda bearer, refresh: accounts.pool.check_key(
            bearer, refresh=refresh, seeds_only=not settings.auto_seed
        ),
    )
    return Runtime(
        settings=settings,
        http=http,
        accounts=accounts,
        api=api,
        dialect=dialect,
        context_for=context_for,
    )
