"""Resolving generated images and sandbox files into links for the client.

The backend streams asset pointers (``file-service://<id>``, ``sediment://<id>``)
and ``sandbox:/`` paths; the client needs URLs. Each is looked up through the
download endpoints of ``chatgpt-backend.md`` §7 and rendered as markdown.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from translator.errors import Chat2ApiError
from upstream.context import TurnContext
from upstream.http import BackendHttp

log = logging.getLogger(__name__)


class MediaResolver:
    def __init__(self, http: BackendHttp, *, timeout: float = 30.0) -> None:
        self.http = http
        self.timeout = timeout

    async def _download_url(self, ctx: TurnContext, path: str) -> str | None:
        try:
            answer = await self.http.request(
                "GET",
                ctx.base + path,
                headers=ctx.headers(),
                impersonate=ctx.profile.impersonate,
                timeout=self.timeout,
                proxy=ctx.proxy,
            )
        except Chat2ApiError as e:
            log.warning("download lookup failed: %s", e.message)
            return None
        if answer.status != 200:
            log.warning("download lookup answered HTTP %d", answer.status)
            return None
        try:
            url = answer.json().get("download_url")
        except (ValueError, AttributeError):
            return None
        return url if isinstance(url, str) and url else None

    async def image_markdown(self, ctx: TurnContext, piece: Any) -> str:
        pointer: str = piece.pointer
        conversation_id = getattr(piece, "conversation_id", None)
        if pointer.startswith("file-service://"):
            file_id = pointer.removeprefix("file-service://")
            path = f"/files/{quote(file_id, safe='')}/download"
        elif pointer.startswith("sediment://") and conversation_id:
            file_id = pointer.removeprefix("sediment://")
            path = (
                f"/conversation/{quote(conversation_id, safe='')}"
                f"/attachment/{quote(file_id, safe='')}/download"
            )
        else:
            return "\n\n*(an image was generated but cannot be located)*\n\n"
        url = await self._download_url(ctx, path)
        if url is None:
            return "\n\n*(an image was generated but could not be downloaded)*\n\n"
        return f"\n\n![image]({url})\n\n"

    async def sandbox_markdown(self, ctx: TurnContext, piece: Any) -> str:
        path: str = piece.path
        conversation_id = getattr(piece, "conversation_id", None)
        message_id = getattr(piece, "message_id", None)
        name = path.rsplit("/", 1)[-1] or "file"
        if not conversation_id or not message_id:
            return f"`{name}` (download needs chat history enabled)"
        url = await self._download_url(
            ctx,
            f"/conversation/{quote(conversation_id, safe='')}/interpreter/download"
            f"?message_id={quote(message_id, safe='')}&sandbox_path={quote(path, safe='/')}",
        )
        if url is None:
            return f"`{name}` (download unavailable)"
        return f"[{name}]({url})"
