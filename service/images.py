"""``POST /v1/images/generations`` on ChatGPT's own image path.

The prompt goes out as one chat turn with the ``picture_v2`` hint (the same path
``gpt-4o-image`` chat requests take); the images ChatGPT answers with, also
asynchronous ones, are looked up through the download endpoints and returned
in OpenAI's shape (``{"created", "data": [{"url"} | {"b64_json"}]}``).
``n`` above one runs that many turns, stopping early once enough images came.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import time
from typing import Any

from errors import InvalidRequest, UpstreamError
from service.completions import CompletionService
from service.media import MediaResolver
from settings.model_table import ModelTable
from translator import answer as tr
from translator.models import ResolvedModel, resolve_model
from translator.request import ChatRequest, Message, TextPart

RESPONSE_FORMATS = ("url", "b64_json")
DEFAULT_MODEL = "gpt-image-1"
MAX_N = 10
MAX_PROMPT = 32_000
#: Accepted, type-checked and folded into the prompt where ChatGPT can honour them.
_STRING_FIELDS = (
    "size",
    "quality",
    "style",
    "user",
    "background",
    "moderation",
    "output_format",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageRequest:
    prompt: str
    model: str
    n: int
    response_format: str
    size: str | None
    style: str | None
    history_disabled: bool | None


def parse_image_request(raw: bytes) -> ImageRequest:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Invalid type for request body: expected an object.")
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("'prompt' is a required property", param="prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("Invalid 'prompt': expected a non-empty string.", param="prompt")
    if len(prompt) > MAX_PROMPT:
        raise InvalidRequest(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{MAX_PROMPT}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    model = body.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        raise InvalidRequest("Invalid 'model': expected a string.", param="model")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise InvalidRequest(f"Invalid 'n': expected an integer between 1 and {MAX_N}.", param="n")
    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"Invalid value: '{response_format}'. Supported values are: 'url' and 'b64_json'.",
            param="response_format",
            code="invalid_value",
        )
    for key in _STRING_FIELDS:
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidRequest(f"Invalid '{key}': expected a string.", param=key)
    history = body.get("history_disabled")
    return ImageRequest(
        prompt=prompt,
        model=model,
        n=n,
        response_format=response_format,
        size=body.get("size"),
        style=body.get("style"),
        history_disabled=history if isinstance(history, bool) else None,
    )


def image_prompt(req: ImageRequest) -> str:
    """The chat message that asks ChatGPT for the image."""
    hints = []
    if req.size and req.size != "auto" and "x" in req.size:
        hints.append(f"size {req.size}")
    if req.style:
        hints.append(f"{req.style} style")
    suffix = f"\n\n({', '.join(hints)})" if hints else ""
    return f"Generate an image: {req.prompt}{suffix}"


class ImagesService:
    def __init__(
        self,
        *,
        completions: CompletionService,
        media: MediaResolver,
        models: ModelTable,
        max_body_bytes: int,
    ) -> None:
        self.completions = completions
        self.media = media
        self.models = models
        self.max_body_bytes = max_body_bytes

    def model_for(self, name: str) -> ResolvedModel:
        # OpenAI's image model names are not chat models: any name runs on the
        # table's slug for it (or the default), always with the picture hint.
        resolved = resolve_model(self.models, name, unknown="default")
        return dataclasses.replace(resolved, image=True)

    async def generate(
        self, body: bytes, *, bearer: str | None, header_account_id: str | None
    ) -> dict[str, Any]:
        if len(body) > self.max_body_bytes:
            raise InvalidRequest("Request body too large.", status=413)
        req = parse_image_request(body)
        model = self.model_for(req.model)
        chat = ChatRequest(
            model=req.model,
            messages=(Message(role="user", content=(TextPart(text=image_prompt(req)),)),),
            history_disabled=req.history_disabled,
        )
        data: list[dict[str, Any]] = []
        for _ in range(req.n):
            data += await self._one_turn(
                chat, model, req, bearer, header_account_id, want=req.n - len(data)
            )
            if len(data) >= req.n:
                break
        return {"created": int(time.time()), "data": data[: req.n]}

    async def _one_turn(
        self,
        chat: ChatRequest,
        model: ResolvedModel,
        req: ImageRequest,
        bearer: str | None,
        header_account_id: str | None,
        *,
        want: int,
    ) -> list[dict[str, Any]]:
        primed = await self.completions.prime(
            chat, model, bearer=bearer, header_account_id=header_account_id
        )
        images: list[Any] = []
        text: list[str] = []
        async with contextlib.aclosing(self.completions.pieces(primed)) as pieces:
            async for piece in pieces:
                if isinstance(piece, tr.Failure):
                    raise piece.error
                if isinstance(piece, tr.Finish):
                    break
                if isinstance(piece, tr.Image):
                    images.append(piece)
                elif isinstance(piece, tr.Text):
                    text.append(piece.text)
        if not images:
            said = " ".join("".join(text).split())[:300]
            raise UpstreamError(
                "ChatGPT answered without an image" + (f": {said}" if said else "."),
                code="image_generation_failed",
            )
        out: list[dict[str, Any]] = []
        for piece in images[:want]:
            url = await self.media.image_url(primed.ctx, piece)
            if url is None:
                raise UpstreamError("ChatGPT generated an image, but it could not be downloaded")
            if req.response_format == "b64_json":
                raw = await self.media.image_bytes(primed.ctx, url)
                out.append({"b64_json": base64.b64encode(raw).decode("ascii")})
            else:
                out.append({"url": url})
        return out
