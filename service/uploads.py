"""User media in: fetching ``image_url`` / ``file`` parts and uploading them to ChatGPT.

Two steps, because they depend on different things:

1. :class:`MediaFetcher` turns every non-text part of a request into bytes
   (:class:`Blob`) *before* an account is chosen: ``data:`` URLs are decoded,
   ``http(s)`` URLs fetched through ``EXPORT_PROXY_URL`` with a size limit, a
   time limit and a server-side request forgery guard (:class:`UrlGuard`).
2. :class:`Uploader` sends the blobs to the account that will answer, with the
   upload flow of ``docs/backend-protocol.md#files`` (``docs/original-behaviour.md#uploads``), and
   reports one
   :class:`~translator.backend_body.Attachment` per part.

Every part that cannot be fetched or uploaded is a 400 naming it
(``messages[i].content[j]``); nothing is dropped silently (the original did,
docs/original-behaviour.md#messages).

The guard: the host of a user-supplied URL is resolved here, every address is
checked (no loopback, private, link-local, shared, reserved or cloud-metadata
address), and curl is told to connect to the checked address only
(``CURLOPT_RESOLVE``), so a second DNS answer cannot swap in another one.
Redirects are followed by hand, each hop checked again. ``media_allow_hosts``
lists hosts that skip the check (a local image server, the test emulator).
With ``EXPORT_PROXY_URL`` set the proxy makes the connection: the check still
runs on our own resolution, and the proxy is the boundary beyond it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import mimetypes
import re
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

from errors import Chat2ApiError, InvalidRequest
from service.file_fetcher import NotFetched, via_fetcher
from service.netguard import UrlGuard as UrlGuard  # (re-exported)
from service.netguard import forbidden_address as forbidden_address  # (re-exported)
from translator.backend_body import Attachment
from translator.request import (
    ChatRequest,
    FilePart,
    ImagePart,
    InputAudioPart,
    Message,
    Part,
    TextPart,
    split_leading_urls,
)
from upstream import files
from upstream.context import TurnContext
from upstream.failures import NOT_THE_ACCOUNT, classify, outcome_of
from upstream.http import BackendHttp
from upstream.media_fetch import FetchFailed, FetchTooLarge, fetch_pinned

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5

# Appendix C of the reference: what the web app uploads as an image, as a retrieval
# document, and (everything else) as a code-interpreter file.
IMAGE_TYPES = frozenset({"image/jpeg", "image/webp", "image/png", "image/gif"})
DOCUMENT_TYPES = frozenset(
    {
        "text/x-php",
        "application/msword",
        "text/x-c",
        "text/html",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/json",
        "text/javascript",
        "application/pdf",
        "text/x-java",
        "text/x-tex",
        "text/x-typescript",
        "text/x-sh",
        "text/x-csharp",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "text/x-c++",
        "application/x-latex",
        "text/markdown",
        "text/plain",
        "text/x-ruby",
        "text/x-script.python",
    }
)
EXTENSIONS: Mapping[str, str] = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/html": ".html",
    "text/css": ".css",
    "text/csv": ".csv",
    "text/xml": ".xml",
    "application/xml": ".xml",
    "text/javascript": ".js",
    "application/json": ".json",
    "application/pdf": ".pdf",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel": ".xls",
    "application/zip": ".zip",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "text/x-script.python": ".py",
    "application/octet-stream": ".bin",
}


# --------------------------------------------------------------------------- pure helpers


def use_case_for(mime: str) -> str:
    if mime in IMAGE_TYPES:
        return "multimodal"
    if mime in DOCUMENT_TYPES:
        return "my_files"
    return "ace_upload"


def sniff_image(data: bytes) -> tuple[str, int, int] | None:
    """``(mime, width, height)`` of a PNG, GIF, JPEG or WebP, from its header; else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return "image/png", w, h
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return "image/gif", w, h
    if data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
        return ("image/jpeg", *size) if size else None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return "image/webp", w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return "image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            h = int.from_bytes(data[27:30], "little") + 1
            return "image/webp", w, h
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def parse_data_url(url: str) -> tuple[str, bytes]:
    """``(mime, bytes)`` of a ``data:`` URL; ValueError if it is not one."""
    if not url[:5].lower() == "data:" or "," not in url:
        raise ValueError("not a data: URL")
    header, _, payload = url[5:].partition(",")
    params = [p.strip() for p in header.split(";")]
    mime = params[0].lower() or "text/plain"
    if "base64" in (p.lower() for p in params[1:]):
        return mime, _b64decode(payload)
    return mime, unquote_to_bytes(payload)


def _b64decode(text: str) -> bytes:
    cleaned = re.sub(r"\s+", "", text)
    cleaned = cleaned.replace("-", "+").replace("_", "/").rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the base64 data is not valid") from None


def mime_from_name(name: str | None) -> str | None:
    if not name:
        return None
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if name.lower().endswith(".md"):
        return "text/markdown"
    if name.lower().endswith(".py"):
        return "text/x-script.python"
    return guessed


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True)
class Blob:
    """The bytes of one part, and what they are."""

    where: str  # messages[i].content[j], for errors
    data: bytes
    mime_type: str
    name: str | None = None  # the client's file name, if it gave one
    width: int | None = None
    height: int | None = None

    @property
    def is_image(self) -> bool:
        return self.width is not None


Blobs = Mapping[tuple[int, int], Blob]


@dataclass(frozen=True, kw_only=True)
class MediaLimits:
    max_bytes: int = 20 * 1024 * 1024
    fetch_timeout: float = 30.0
    allow_hosts: tuple[str, ...] = ()
    upload_by_url: bool = False


class MediaRefused(InvalidRequest):
    """A part that cannot be used (400, naming it)."""


def refused(where: str, why: str) -> MediaRefused:
    return MediaRefused(f"Invalid '{where}': {why}", param=where, code="invalid_media")


# --------------------------------------------------------------------------- fetching


class MediaFetcher:
    """Every non-text part of a request → :class:`Blob` (see the module docstring)."""

    def __init__(
        self,
        limits: MediaLimits,
        *,
        export_proxy: str | None = None,
        file_fetcher: str | None = None,
    ) -> None:
        self.limits = limits
        self.export_proxy = export_proxy
        self.file_fetcher = file_fetcher  # CF_FILE_URL (service/file_fetcher.py)
        self.guard = UrlGuard(limits.allow_hosts)

    def prepare(self, req: ChatRequest) -> ChatRequest:
        """``UPLOAD_BY_URL``: leading URLs of a user's plain text become image parts."""
        if not self.limits.upload_by_url:
            return req
        messages = []
        for m in req.messages:
            if m.role == "user" and len(m.content) == 1 and isinstance(m.content[0], TextPart):
                urls, rest = split_leading_urls(m.content[0].text)
                if urls:
                    parts: tuple[Part, ...] = (TextPart(text=rest),) + tuple(
                        ImagePart(url=u) for u in urls
                    )
                    m = Message(role=m.role, content=parts, name=m.name)
            messages.append(m)
        return _replace_messages(req, tuple(messages))

    @staticmethod
    def has_parts(req: ChatRequest) -> bool:
        """Whether the request has any part to turn into bytes."""
        return any(not isinstance(p, TextPart) for m in req.messages for p in m.content)

    async def fetch_all(self, req: ChatRequest) -> dict[tuple[int, int], Blob]:
        jobs: dict[tuple[int, int], Any] = {}
        for i, message in enumerate(req.messages):
            for j, part in enumerate(message.content):
                if not isinstance(part, TextPart):
                    jobs[(i, j)] = self.fetch_part(f"messages[{i}].content[{j}]", part)
        if not jobs:
            return {}
        results = await asyncio.gather(*jobs.values(), return_exceptions=True)
        blobs: dict[tuple[int, int], Blob] = {}
        for key, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            blobs[key] = result
        return blobs

    async def fetch_part(self, where: str, part: Part) -> Blob:
        name: str | None = None
        if isinstance(part, ImagePart):
            if part.url[:5].lower() == "data:":
                declared, data = self._decode(where, part.url)
            else:
                declared, data = await self.fetch_url(where, part.url)
                name = _name_from_url(part.url)
        elif isinstance(part, FilePart):
            name = part.filename
            if not part.file_data:
                raise refused(
                    where,
                    "an OpenAI file id cannot be fetched by this server; send the file "
                    "itself as 'file_data' (a base64 data: URL).",
                )
            if part.file_data[:5].lower() == "data:":
                declared, data = self._decode(where, part.file_data)
            else:
                try:
                    data = _b64decode(part.file_data)
                except ValueError as e:
                    raise refused(where, f"{e}.") from None
                declared = mime_from_name(name) or "application/octet-stream"
        elif isinstance(part, InputAudioPart):
            try:
                data = _b64decode(part.data)
            except ValueError as e:
                raise refused(where, f"{e}.") from None
            declared = "audio/mpeg" if part.format == "mp3" else "audio/wav"
            name = f"audio.{part.format}"
        else:  # pragma: no cover - TextPart never gets here
            raise refused(where, "unsupported part")
        if not data:
            raise refused(where, "the file is empty.")
        if len(data) > self.limits.max_bytes:
            raise refused(where, self._too_big())
        return self._blob(where, declared, data, name, expect_image=isinstance(part, ImagePart))

    def _blob(
        self, where: str, declared: str, data: bytes, name: str | None, *, expect_image: bool
    ) -> Blob:
        declared = declared.split(";")[0].strip().lower() or "application/octet-stream"
        if declared in ("text/plain", "application/octet-stream", "binary/octet-stream"):
            declared = mime_from_name(name) or declared
        image = sniff_image(data)
        if image is not None:
            mime, width, height = image
            return Blob(
                where=where, data=data, mime_type=mime, name=name, width=width, height=height
            )
        if declared.startswith("image/"):
            raise refused(
                where,
                f"the data is not a PNG, JPEG, GIF or WebP image (it was sent as {declared}).",
            )
        if expect_image and declared in ("text/html", "application/xhtml+xml"):
            raise refused(where, "the URL answered with a web page, not an image.")
        return Blob(where=where, data=data, mime_type=declared, name=name)

    def _decode(self, where: str, url: str) -> tuple[str, bytes]:
        try:
            return parse_data_url(url)
        except ValueError as e:
            raise refused(where, f"the data: URL cannot be decoded ({e}).") from None

    def _too_big(self) -> str:
        return (
            f"the file is larger than the limit of {self.limits.max_bytes} bytes (media_max_bytes)."
        )

    async def fetch_url(self, where: str, url: str) -> tuple[str, bytes]:
        """GET ``url`` within the limits; the content type and the bytes."""
        if self.file_fetcher is not None:
            fetch = self._ask(where, url, self.file_fetcher)
        else:
            fetch = self._follow(where, url)
        try:
            return await asyncio.wait_for(fetch, self.limits.fetch_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise refused(
                where,
                f"fetching {_short(url)} took longer than {self.limits.fetch_timeout:g} s "
                "(media_fetch_timeout).",
            ) from None

    async def _ask(self, where: str, url: str, fetcher: str) -> tuple[str, bytes]:
        try:
            return await via_fetcher(
                fetcher,
                url,
                allowed=self.guard.allowed,
                timeout=self.limits.fetch_timeout,
                max_bytes=self.limits.max_bytes,
            )
        except FetchTooLarge:
            raise refused(where, self._too_big()) from None
        except NotFetched as e:
            raise refused(where, f"{e}.") from None

    async def _follow(self, where: str, url: str) -> tuple[str, bytes]:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https") or not parts.hostname:
                raise refused(
                    where, f"only http(s) and data: URLs can be fetched, not {_short(url)}."
                )
            try:
                port = parts.port or (443 if scheme == "https" else 80)
            except ValueError:  # "+80", "80:81", "99999": urlsplit refuses them only here
                raise refused(where, f"{_short(url)} has an invalid port.") from None
            try:
                addresses = await self.guard.addresses(parts.hostname, port)
            except ValueError as e:
                raise refused(where, f"{_short(url)} is refused: {e}.") from None
            status, headers, data = await self._get(where, url, parts.hostname, port, addresses[0])
            if status in (301, 302, 303, 307, 308):
                location = headers.get("location")
                if not location:
                    raise refused(where, f"{_short(url)} redirected without a Location.")
                url = urljoin(url, location)
                continue
            if status != 200:
                raise refused(where, f"fetching {_short(url)} failed with HTTP {status}.")
            return headers.get("content-type", "application/octet-stream"), data
        raise refused(where, f"too many redirects (more than {MAX_REDIRECTS}).")

    async def _get(
        self, where: str, url: str, host: str, port: int, address: str
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            return await fetch_pinned(
                url,
                host,
                port,
                address,
                proxy=self.export_proxy,
                timeout=self.limits.fetch_timeout,
                max_bytes=self.limits.max_bytes,
            )
        except FetchTooLarge:
            raise refused(where, self._too_big()) from None
        except FetchFailed as e:
            raise refused(where, f"fetching {_short(url)} failed: {e}.") from None


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def _name_from_url(url: str) -> str | None:
    tail = urlsplit(url).path.rsplit("/", 1)[-1]
    return tail if tail and "." in tail and len(tail) <= 120 else None


def _replace_messages(req: ChatRequest, messages: tuple[Message, ...]) -> ChatRequest:
    return dataclasses.replace(req, messages=messages)


# --------------------------------------------------------------------------- uploading


class Uploader:
    """The upload flow of ``docs/backend-protocol.md#files`` for one account."""

    def __init__(
        self,
        http: BackendHttp,
        *,
        timeout: float = 60.0,
        index_polls: int = 30,
        index_interval: float = 1.0,
    ) -> None:
        self.http = http
        self.timeout = timeout
        self.index_polls = index_polls
        self.index_interval = index_interval

    async def upload_all(
        self, ctx: TurnContext, blobs: Blobs, *, timezone_offset_min: int
    ) -> dict[tuple[int, int], Attachment]:
        if not blobs:
            return {}
        keys = list(blobs)
        results = await asyncio.gather(
            *(self.upload(ctx, blobs[k], timezone_offset_min=timezone_offset_min) for k in keys),
            return_exceptions=True,
        )
        out: dict[tuple[int, int], Attachment] = {}
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            out[key] = result
        return out

    async def upload(self, ctx: TurnContext, blob: Blob, *, timezone_offset_min: int) -> Attachment:
        name = _file_name(blob)
        use_case = use_case_for(blob.mime_type)
        created = await self._json(
            ctx,
            blob,
            "POST",
            "/files",
            {
                "file_name": name,
                "file_size": len(blob.data),
                "use_case": use_case,
                "timezone_offset_min": timezone_offset_min,
                "reset_rate_limits": False,
            },
            step="creating the upload",
        )
        file_id, upload_url = created.get("file_id"), created.get("upload_url")
        if not isinstance(file_id, str) or not isinstance(upload_url, str) or not file_id:
            raise refused(blob.where, "ChatGPT did not hand out an upload slot for it.")
        await self._put(ctx, blob, upload_url)
        done = await self._json(
            ctx, blob, "POST", f"/files/{file_id}/uploaded", {}, step="confirming the upload"
        )
        if not done.get("download_url"):
            raise refused(blob.where, "ChatGPT did not accept the uploaded file.")
        if use_case == "my_files":
            await self._wait_indexed(ctx, blob, file_id)
        return Attachment(
            file_id=file_id,
            size=len(blob.data),
            name=name,
            mime_type=blob.mime_type,
            width=blob.width,
            height=blob.height,
            is_image=blob.is_image,
        )

    async def _json(
        self, ctx: TurnContext, blob: Blob, method: str, path: str, body: Any, *, step: str
    ) -> dict[str, Any]:
        try:
            answer = await files.call_json(self.http, ctx, method, path, body, timeout=self.timeout)
        except Chat2ApiError as e:
            raise _tagged(refused(blob.where, f"uploading it failed: {e.message}."), e) from None
        if answer.status != 200:
            error = classify(answer.status, answer.content_type, answer.body, what="file upload")
            raise _tagged(
                refused(blob.where, f"uploading it failed while {step}: {error.message}."), error
            )
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise refused(blob.where, f"ChatGPT's answer while {step} was not JSON.")
        return parsed

    async def _put(self, ctx: TurnContext, blob: Blob, upload_url: str) -> None:
        # (The blob store gets none of the account's own headers: upstream/files.py,
        # docs/original-behaviour.md#uploads.)
        try:
            answer = await files.put_blob(
                self.http, ctx, upload_url, blob.data, blob.mime_type, timeout=self.timeout
            )
        except Chat2ApiError as e:
            raise _tagged(
                refused(blob.where, f"sending its bytes failed: {e.message}."), e
            ) from None
        if answer.status not in (200, 201):
            raise refused(blob.where, f"the file store refused its bytes (HTTP {answer.status}).")

    async def _wait_indexed(self, ctx: TurnContext, blob: Blob, file_id: str) -> None:
        # Documents are indexed for retrieval before a message may use them; the web
        # app waits for it, the original gave up after 30 s and went on
        # (docs/original-behaviour.md#uploads).
        deadline = time.monotonic() + self.index_polls * self.index_interval
        while True:
            info = await self._json(ctx, blob, "GET", f"/files/{file_id}", None, step="checking it")
            status = info.get("retrieval_index_status")
            if status == "success":
                return
            if status == "failed":
                raise refused(blob.where, "ChatGPT could not index the document.")
            if time.monotonic() >= deadline:
                log.warning(
                    "file %s not indexed after %.0f s; sending it anyway",
                    file_id,
                    self.index_polls * self.index_interval,
                )
                return
            await asyncio.sleep(self.index_interval)


def _tagged(error: MediaRefused, cause: Chat2ApiError) -> MediaRefused:
    # An account problem (expired token, rate limit, server error) lets the retry loop
    # try another account; the client still gets the 400 naming the part if all fail.
    outcome = outcome_of(cause)
    error.outcome = outcome if outcome is not None else NOT_THE_ACCOUNT  # type: ignore[attr-defined]
    return error


def _file_name(blob: Blob) -> str:
    ext = EXTENSIONS.get(blob.mime_type, "")
    if blob.name:
        safe = re.sub(r"[\x00-\x1f/\\]", "_", blob.name).strip()[:200]
        if safe:
            return safe if "." in safe or not ext else safe + ext
    return f"{uuid.uuid4()}{ext}"
