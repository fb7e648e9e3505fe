"""Resolving generated images and sandbox files into links for the client.

The backend streams asset pointers (``file-service://<id>``, ``sediment://<id>``)
and ``sandbox:/`` paths; the client needs URLs. Each is looked up through the
download endpoints of ``docs/backend-protocol.md#files`` and rendered as markdown, one
link per image, in the order the backend gave them.

Asynchronous image generation (``conversation_async_status``, the stream ends
with only "Processing image", fixture ``heygen_gpt-5-3_imagegen-async``) is
followed by :meth:`MediaResolver.follow_async`: it polls ``GET
{base}/conversation/{id}`` within a time bound, shows progress, and ends with
the images or a clear message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

from errors import UpstreamError
from translator import answer as tr
from upstream import files
from upstream.context import TurnContext
from upstream.http import BackendHttp

log = logging.getLogger(__name__)

#: A download lookup that answers without a URL yet is asked again this often.
LOOKUP_ATTEMPTS = 3


class MediaResolver:
    def __init__(
        self,
        http: BackendHttp,
        *,
        timeout: float = 30.0,
        async_timeout: float = 300.0,
        poll_interval: float = 2.0,
        progress_every: float = 10.0,
        max_image_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.http = http
        self.timeout = timeout
        self.async_timeout = async_timeout
        self.poll_interval = poll_interval
        self.progress_every = progress_every
        self.max_image_bytes = max_image_bytes

    # ------------------------------------------------------------------ lookups

    async def _get_json(self, ctx: TurnContext, path: str) -> tuple[int, Any]:
        return await files.get_json(
            self.http, ctx, path, timeout=self.timeout, limit=32 * 1024 * 1024
        )

    async def _download_url(self, ctx: TurnContext, path: str) -> str | None:
        for attempt in range(LOOKUP_ATTEMPTS):
            status, obj = await self._get_json(ctx, path)
            url = obj.get("download_url") if isinstance(obj, dict) else None
            if status == 200 and isinstance(url, str) and url:
                return url
            if status not in (200, 202, 404) or attempt == LOOKUP_ATTEMPTS - 1:
                log.warning("download lookup answered HTTP %d without a URL", status)
                return None
            # Freshly generated files may not be registered yet: ask again shortly.
            await asyncio.sleep(min(1.0, self.poll_interval))
        return None

    @staticmethod
    def _image_path(piece: Any) -> str | None:
        """The download lookup of an image pointer, or None if it cannot be located."""
        pointer: str = piece.pointer
        conversation_id = getattr(piece, "conversation_id", None)
        if pointer.startswith("file-service://"):
            file_id = pointer.removeprefix("file-service://")
            return f"/files/{quote(file_id, safe='')}/download"
        if pointer.startswith("sediment://") and conversation_id:
            # Sediment files live in their conversation (fixture heygen_files_download_*).
            file_id = pointer.removeprefix("sediment://")
            return (
                f"/conversation/{quote(conversation_id, safe='')}"
                f"/attachment/{quote(file_id, safe='')}/download"
            )
        return None

    async def image_url(self, ctx: TurnContext, piece: Any) -> str | None:
        """The signed download URL of a generated image, or None."""
        path = self._image_path(piece)
        return None if path is None else await self._download_url(ctx, path)

    async def image_markdown(self, ctx: TurnContext, piece: Any) -> str:
        if self._image_path(piece) is None:
            return "\n\n*(an image was generated but cannot be located)*\n\n"
        url = await self.image_url(ctx, piece)
        if url is None:
            return "\n\n*(an image was generated but could not be downloaded)*\n\n"
        return f"\n\n![image]({url})\n\n"

    async def image_bytes(self, ctx: TurnContext, url: str) -> bytes:
        """The bytes behind a download URL (for ``b64_json``)."""
        same_site = urlsplit(url)[:2] == urlsplit(ctx.origin)[:2]
        answer = await files.download(
            self.http,
            ctx,
            url,
            same_site=same_site,
            timeout=self.timeout,
            limit=self.max_image_bytes,
        )
        if answer.status != 200 or not answer.body:
            raise UpstreamError(f"downloading a generated image failed (HTTP {answer.status})")
        return answer.body

    async def sandbox_markdown(self, ctx: TurnContext, piece: Any) -> str:
        """The URL that replaces ``sandbox:/path`` inside the answer's own markdown link
        (the text around the piece keeps the brackets); the path itself if none."""
        path: str = piece.path
        conversation_id = getattr(piece, "conversation_id", None)
        message_id = getattr(piece, "message_id", None)
        if not conversation_id or not message_id:
            return f"sandbox:{path}"
        url = await self._download_url(
            ctx,
            f"/conversation/{quote(conversation_id, safe='')}/interpreter/download"
            f"?message_id={quote(message_id, safe='')}&sandbox_path={quote(path, safe='/')}",
        )
        if url is None:
            # History off: the sandbox cannot be reached after the turn.
            return f"sandbox:{path}"
        return url.replace(" ", "%20").replace(")", "%29").replace("(", "%28")

    # ------------------------------------------------------------------ async images

    async def follow_async(
        self, ctx: TurnContext, pending: Any, *, deadline: float
    ) -> AsyncIterator[Any]:
        """Poll the conversation until the asynchronous images are there.

        Yields :class:`~translator.answer.Progress` while waiting, then one
        :class:`~translator.answer.Image` per image in order and a ``Finish``; or
        a ``Text`` saying why there are none, and a ``Finish``.
        """
        cid = pending.conversation_id
        if not cid:
            yield tr.Text(
                text="The image is being generated, but ChatGPT gave no conversation id to "
                "fetch it from."
            )
            yield tr.Finish(reason="stop")
            return
        started = time.monotonic()
        until = min(deadline, started + self.async_timeout)
        yield tr.Progress(text="The image is being generated; waiting for it.")
        last_note = started
        while True:
            status, obj = await self._get_json(ctx, f"/conversation/{quote(cid, safe='')}")
            if status == 404:
                yield tr.Text(
                    text=(
                        "The image is being generated asynchronously, but ChatGPT does not let "
                        "this conversation be read back (chat history is disabled for it). Send "
                        "the request with history enabled (`history_disabled: false` or "
                        "HISTORY_DISABLED=false) to receive such images."
                    )
                )
                yield tr.Finish(reason="stop")
                return
            if status == 200 and isinstance(obj, dict):
                pointers = async_images(obj)
                if pointers:
                    for pointer in pointers:
                        yield tr.Image(pointer=pointer, message_id=None, conversation_id=cid)
                    yield tr.Finish(reason="stop")
                    return
                if obj.get("async_status") is None and _turn_finished(obj):
                    yield tr.Text(text="ChatGPT finished the turn without an image.")
                    yield tr.Finish(reason="stop")
                    return
            now = time.monotonic()
            if now + self.poll_interval > until:
                yield tr.Text(
                    text=(
                        f"The image was still being generated after {now - started:.0f} s; it "
                        f"will appear in the ChatGPT conversation {cid}."
                    )
                )
                yield tr.Finish(reason="stop")
                return
            if now - last_note >= self.progress_every:
                last_note = now
                yield tr.Progress(text=f"Still generating ({now - started:.0f} s).")
            await asyncio.sleep(self.poll_interval)


def _branch(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of the current branch after its last user message, oldest first."""
    mapping = conversation.get("mapping")
    node_id = conversation.get("current_node")
    if not isinstance(mapping, dict):
        return []
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id]
        message = node.get("message") if isinstance(node, dict) else None
        if isinstance(message, dict):
            role = (message.get("author") or {}).get("role")
            if role == "user":
                break
            chain.append(message)
        node_id = node.get("parent") if isinstance(node, dict) else None
    chain.reverse()
    return chain


def async_images(conversation: dict[str, Any]) -> list[str]:
    """Asset pointers of the finished images of the conversation's last turn, in order."""
    pointers: list[str] = []
    for message in _branch(conversation):
        role = (message.get("author") or {}).get("role")
        content = message.get("content")
        status = message.get("status")
        if role not in ("assistant", "tool") or not isinstance(content, dict):
            continue
        if content.get("content_type") != "multimodal_text" or status != "finished_successfully":
            continue
        for part in content.get("parts") or []:
            if isinstance(part, dict) and part.get("content_type") == "image_asset_pointer":
                pointer = part.get("asset_pointer")
                if isinstance(pointer, str) and pointer and pointer not in pointers:
                    pointers.append(pointer)
    return pointers


def _turn_finished(conversation: dict[str, Any]) -> bool:
    branch = _branch(conversation)
    last = branch[-1] if branch else None
    return bool(
        last
        and (last.get("author") or {}).get("role") == "assistant"
        and last.get("end_turn") is True
        and last.get("status") == "finished_successfully"
    )
