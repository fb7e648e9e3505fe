"""Building chat2api's live objects from :class:`settings.Settings`.

The addons share one :class:`Runtime` per process (``mitmdump -s
addons/chat2api.py -s addons/mirror.py`` loads two scripts that must see the
same account pool), kept in :data:`CURRENT`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from accounts.pool import Credential
from service.accounts import AccountsService
from service.api import ApiApp
from service.bridge import Bridge
from service.completions import CompletionService, Limits
from service.media import MediaResolver
from settings import Settings
from translator.models import ResolvedModel
from translator.request import ChatRequest, build_conversation_body
from upstream.classic import ClassicDialect
from upstream.classic import Limits as DialectLimits
from upstream.context import TurnContext, make_context
from upstream.http import BackendHttp

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    http: BackendHttp
    bridge: Bridge
    accounts: AccountsService
    api: ApiApp

    async def start(self) -> None:
        await self.bridge.start()
        await self.accounts.start()

    async def stop(self) -> None:
        await self.bridge.stop()
        await self.accounts.stop()
        await self.http.close()


CURRENT: Runtime | None = None


def build_runtime(settings: Settings) -> Runtime:
    http = BackendHttp(proxies=settings.proxy_url, connect_timeout=settings.timeouts.connect)
    accounts = AccountsService(settings, http)
    dialect = ClassicDialect(
        http,
        DialectLimits(
            pow_threshold=settings.pow_difficulty,
            first_byte_timeout=settings.timeouts.first_byte,
        ),
        conversation_only=settings.conversation_only,
    )

    def context_for(credential: Credential, rng: random.Random) -> TurnContext:
        return make_context(
            origins=settings.chatgpt_base_url,
            credential=credential,
            language=settings.oai_language,
            auth_key=settings.auth_key,
            proxy=http.pick_proxy(),
            rng=rng,
        )

    def body_for(
        req: ChatRequest, model: ResolvedModel, ctx: TurnContext, rng: random.Random
    ) -> dict[str, Any]:
        history_disabled = (
            settings.history_disabled if req.history_disabled is None else req.history_disabled
        )
        return build_conversation_body(
            req,
            model=model,
            history_disabled=history_disabled,
            timezone=ctx.profile.timezone,
            timezone_offset_min=ctx.profile.timezone_offset_min(datetime.now(UTC)),
            rng=rng,
        )

    completions = CompletionService(
        accounts=accounts,
        dialect=dialect,
        make_context=context_for,
        build_body=body_for,
        media=MediaResolver(http),
        limits=Limits(
            retry_times=settings.retry_times,
            idle_timeout=settings.timeouts.idle,
            total_timeout=settings.timeouts.total,
            inline_reasoning=settings.reasoning_inline,
        ),
    )
    api = ApiApp(
        api_root=settings.api_root,
        models=settings.models,
        unknown_model=settings.unknown_model,
        completions=completions,
        max_body_bytes=settings.max_body_bytes,
        history_disabled=settings.history_disabled,
    )
    return Runtime(settings=settings, http=http, bridge=Bridge(), accounts=accounts, api=api)
