"""The OpenAI-style routes, free of mitmproxy: a request in, a reply out.

The addon turns a flow into ``handle(method, path, headers, body)`` and applies
the result: a :class:`Reply` is sent as it is, a :class:`StreamReply` is
streamed piece by piece (``patches/inline_stream.py``; without that patch,
through the loopback bridge, ``service/bridge.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from errors import (
    AuthenticationFailed,
    Chat2ApiError,
    InvalidRequest,
    NotFound,
    printable,
)
from service.codex_chat import CodexChat
from service.completions import Answer, CompletionService, error_answer
from service.emulation import Emulation, is_live
from service.images import ImagesService
from service.responses import ResponsesService, Streamed
from service.uploads import MediaFetcher
from settings.model_table import ModelTable
from translator.chunks import json_bytes
from translator.models import get_model, list_models, resolve_model
from translator.request import parse_chat_request
from translator.toolcalls.protocol import emulate, needs_emulation

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(kw_only=True)
class StreamReply:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    metadata: dict[str, Any] = field(default_factory=dict)


def json_reply(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
    h = {"content-type": "application/json"}
    if headers:
        h.update(headers)
    return Reply(status=status, headers=h, body=json_bytes(obj))


def error_reply(error: Chat2ApiError) -> Reply:
    answer = error_answer(error)
    return Reply(status=answer.status, headers=answer.headers, body=answer.body)


def bearer_of(headers: Mapping[str, str]) -> str | None:
    """The credentials of ``Authorization: Bearer <token>[,<account id>]``."""
    value = headers.get("authorization", "").strip()
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    key = credentials.strip()
    if key != printable(key):  # bytes that are not UTF-8: no token or code looks like that
        raise AuthenticationFailed("Incorrect API key provided: it is not valid UTF-8.")
    return key or None


class ApiApp:
    def __init__(
        self,
        *,
        api_root: str,
        models: ModelTable,
        unknown_model: str,
        completions: CompletionService,
        max_body_bytes: int,
        history_disabled: bool,
        media: MediaFetcher | None = None,
        images: ImagesService | None = None,
        key_check: Callable[[str | None, bool], Awaitable[None]] | None = None,
        responses: ResponsesService | None = None,
        codex_models: ModelTable | None = None,
        codex_chat: CodexChat | None = None,
    ) -> None:
        self.api_root = api_root
        self.models = models
        self.unknown_model = unknown_model
        self.completions = completions
        self.emulation = Emulation(completions)
        self.max_body_bytes = max_body_bytes
        self.history_disabled = history_disabled
        self.media = media
        self.images = images
        #: (bearer, refresh) -> raises AuthenticationFailed for an unusable key
        #: (``Pool.check_key``); run before any work is done for a request.
        self.key_check = key_check
        self.responses = responses
        self.codex_models = codex_models
        self.codex_chat = codex_chat
        self.created = int(time.time())

    def owns(self, path: str) -> bool:
        """Whether ``path`` (without query) is one of our API paths."""
        return path == self.api_root or path.startswith(self.api_root + "/")

    def needs_key(self, method: str, path: str) -> bool:
        """Whether the route does work for a key (a backend turn): such requests are
        refused before their body is read when the key cannot be used."""
        if method != "POST" or not self.owns(path):
            return False
        route = path[len(self.api_root) :].rstrip("/")
        return route in ("/chat/completions", "/images/generations")

    async def check_key(self, headers: Mapping[str, str], *, refresh: bool) -> None:
        """Raise AuthenticationFailed if the request's key cannot be used."""
        if self.key_check is not None:
            await self.key_check(bearer_of(headers), refresh)

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | StreamReply:
        try:
            return await self._route(method, path, headers, body)
        except Chat2ApiError as e:
            return error_reply(e)

    async def _route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | StreamReply:
        route = path[len(self.api_root) :] if self.owns(path) else None
        if route is None:
            raise NotFound(f"Unknown request URL: {method} {path}.")
        route = route.rstrip("/") or "/"
        if route == "/chat/completions":
            if method != "POST":
                raise NotFound(f"Unknown request URL: {method} {path}. Use POST.")
            return await self._chat(headers, body)
        if route == "/images/generations" and self.images is not None:
            if method != "POST":
                raise NotFound(f"Unknown request URL: {method} {path}. Use POST.")
            result = await self.images.generate(
                body, bearer=bearer_of(headers), header_account_id=headers.get("chatgpt-account-id")
            )
            return json_reply(200, result)
        if (route == "/responses" or route.startswith("/responses/")) and self.responses:
            return await self._responses(method, path, route, headers, body)
        if route == "/models" and method == "GET":
            return json_reply(200, {"object": "list", "data": self._model_list()})
        if route.startswith("/models/") and method == "GET":
            model_id = route[len("/models/") :]
            if self.codex_models is not None and model_id in self.codex_models.exact:
                return json_reply(200, get_model(self.codex_models, model_id))
            return json_reply(200, get_model(self.models, model_id))
        raise NotFound(
            f"Unknown request URL: {method} {path}. chat2api serves /chat/completions, "
            "/responses, /images/generations and /models under this prefix."
        )

    def _model_list(self) -> list[dict[str, Any]]:
        data = list_models(self.models)
        if self.codex_models is not None:
            seen = {m["id"] for m in data}
            data += [m for m in list_models(self.codex_models) if m["id"] not in seen]
        return data

    async def _responses(
        self, method: str, path: str, route: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | StreamReply:
        """``POST /responses``, ``GET``/``DELETE /responses/{id}``, ``GET …/input_items``."""
        assert self.responses is not None
        bearer = bearer_of(headers)
        parts = route.split("/")[2:]  # "/responses/<id>[/input_items]"
        if not parts:
            if method != "POST":
                raise NotFound(f"Unknown request URL: {method} {path}. Use POST.")
            _check_json(headers)
            answer = await self.responses.create(headers, body, bearer)
            if isinstance(answer, Streamed):
                return StreamReply(
                    status=200,
                    headers=answer.headers,
                    body=answer.body,
                    metadata={"account": answer.account},
                )
            return Reply(status=answer.status, headers=answer.headers, body=answer.body)
        response_id = parts[0]
        if len(parts) == 1 and method == "GET":
            return json_reply(200, await self.responses.retrieve(response_id, bearer))
        if len(parts) == 1 and method == "DELETE":
            return json_reply(200, await self.responses.delete(response_id, bearer))
        if parts[1:] == ["input_items"] and method == "GET":
            return json_reply(200, await self.responses.input_items(response_id, bearer))
        raise NotFound(f"Unknown request URL: {method} {path}.")

    async def _chat(self, headers: Mapping[str, str], body: bytes) -> Reply | StreamReply:
        _check_json(headers)
        req = parse_chat_request(body, max_body_bytes=self.max_body_bytes)
        bearer = bearer_of(headers)
        account = headers.get("chatgpt-account-id")
        if self.codex_chat is not None and self.codex_chat.wanted(req):
            codex = await self.codex_chat.answer(req, bearer=bearer, account=account)
            if codex is not None:
                answer, label = codex
                if isinstance(answer, Answer):
                    return Reply(status=answer.status, headers=answer.headers, body=answer.body)
                return StreamReply(
                    status=200, headers=dict(_SSE), body=answer, metadata={"account": label}
                )
        model = resolve_model(self.models, req.model, unknown=self.unknown_model)
        if model.unknown:
            log.info(
                "model %r is not in the model table: mapped to %s (unknown_model: default)",
                req.model,
                model.slug,
            )
        if req.ignored:
            log.info("fields not applied (ChatGPT has no such setting): %s", ", ".join(req.ignored))
        if req.reasoning_effort is not None and not model.thinking:
            log.info(
                "reasoning_effort %r not applied: %s is not a thinking model",
                req.reasoning_effort,
                model.slug,
            )
        blobs = None
        if self.media is not None:  # image, file and audio parts → bytes, before any account
            req = self.media.prepare(req)
            if self.media.has_parts(req):
                # Never fetch a URL for a caller whose key is no good: no DNS, no connection.
                await self.check_key(headers, refresh=True)
            blobs = await self.media.fetch_all(req)
        # With history on, the conversation's id comes back so a client can continue it.
        show_ids = not (
            self.history_disabled if req.history_disabled is None else req.history_disabled
        )
        if needs_emulation(req) and not is_live(req):
            result = await self.emulation.checked(
                req, model, bearer=bearer, header_account_id=account, blobs=blobs, show_ids=show_ids
            )
            if isinstance(result, Answer):
                return Reply(status=result.status, headers=result.headers, body=result.body)
            return StreamReply(status=200, headers=dict(_SSE), body=result)
        primed = await self.completions.prime(
            emulate(req), model, bearer=bearer, header_account_id=account, blobs=blobs
        )
        switched = {}
        if primed.switched is not None:
            # A header value: printable ASCII only, whatever the client's model name holds.
            asked = "".join(c if " " <= c <= "~" else "?" for c in req.model)
            switched = {"x-chat2api-model-downgraded": f"{asked} -> {primed.switched}"}
        if req.stream:
            body_iter = (
                self.emulation.stream_live(req, model, primed, show_ids=show_ids)
                if needs_emulation(req)
                else self.completions.stream_body(req, model, primed, show_ids=show_ids)
            )
            return StreamReply(
                status=200,
                headers={**_SSE, **switched},
                body=body_iter,
                metadata={"account": primed.ctx.label},
            )
        answer = await self.completions.complete(req, model, primed, show_ids=show_ids)
        headers = {**answer.headers, **switched} if answer.status == 200 else answer.headers
        return Reply(status=answer.status, headers=headers, body=answer.body)


_SSE = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def _check_json(headers: Mapping[str, str]) -> None:
    content_type = headers.get("content-type", "application/json").lower()
    if content_type and "json" not in content_type and "text/plain" not in content_type:
        raise InvalidRequest("Invalid content type: expected application/json.", param=None)
