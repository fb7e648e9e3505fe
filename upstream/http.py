"""Backend HTTP calls through curl_cffi, with browser impersonation.

mitmproxy's own TLS client is easy for the real site's bot checks to tell apart
from a browser, so every backend call goes through libcurl (curl-impersonate,
by curl_cffi) on mitmproxy's event loop: :mod:`upstream.transfer` keeps
ready-configured handles and one connection pool; environment proxies are
ignored, so curl never loops back into our own proxy through ``HTTPS_PROXY``
(``docs/mitmproxy.md#curl_cffi-on-the-event-loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from curl_cffi import Curl, CurlError

from errors import Chat2ApiError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from upstream.transfer import CurlTransport, ImpersonationUnsupported, Kind, Transfer, is_timeout

log = logging.getLogger(__name__)

# A body larger than this from a JSON endpoint is not a real answer.
MAX_JSON_BODY = 4 * 1024 * 1024
# How much of an error body is kept for classification and logs.
MAX_ERROR_BODY = 64 * 1024
# At most this much of what curl has already received is handed on as one chunk
# (under a millisecond of translation for the backend's small delta events).
_BATCH_BYTES = 2048


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(kw_only=True)
class StreamAnswer:
    """An open streamed response; iterate :meth:`chunks`, always :meth:`close`."""

    status: int
    headers: Mapping[str, str]
    _transfer: Transfer
    _curl: Curl
    _transport: CurlTransport
    _closed: bool = field(default=False)

    async def chunks(self, *, idle_timeout: float) -> AsyncGenerator[bytes, None]:
        """Body chunks as they arrive; a gap longer than ``idle_timeout`` raises.

        What curl has received by the time the caller asks comes as one chunk
        (up to ``_BATCH_BYTES``): each chunk costs a translator call and a write
        towards the client, and a fast backend delivers many small reads at once.
        """
        transfer = self._transfer
        body, arrived = transfer.body, transfer.arrived
        while True:
            if body:
                batch = [body.popleft()]
                size = len(batch[0])
                while body and size < _BATCH_BYTES:
                    batch.append(body.popleft())
                    size += len(batch[-1])
                yield batch[0] if len(batch) == 1 else b"".join(batch)
                if body:
                    # Let the loop run between batches, so that what was made of
                    # the last one reaches the client (mitmproxy shares this loop).
                    await asyncio.sleep(0)
                continue
            if transfer.done:
                if transfer.error is not None and not self._closed:
                    raise UpstreamError(
                        f"the ChatGPT backend stream broke: {_reason(transfer.error)}"
                    )
                return
            arrived.clear()
            try:
                async with asyncio.timeout(idle_timeout):
                    await arrived.wait()
            except TimeoutError:
                raise UpstreamTimeout(
                    f"the ChatGPT backend sent nothing for {idle_timeout:g} s"
                ) from None

    async def read_all(self, limit: int = MAX_ERROR_BODY, timeout: float = 10.0) -> bytes:
        """Up to ``limit`` bytes of the body (for error answers)."""
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in self.chunks(idle_timeout=timeout):
                parts.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        except Chat2ApiError:
            pass
        return b"".join(parts)[:limit]

    async def close(self) -> None:
        """Stop the transfer now, even mid-stream or while the backend stalls."""
        if self._closed:
            return
        self._closed = True
        transfer = self._transfer
        if not transfer.done:
            transfer.stop()
            self._transport.abort(self._curl)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await transfer.finished.wait()
        transfer.body.clear()


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    # curl messages can be long and carry URLs with query strings: keep the gist.
    return text.split(" See https://")[0][:200]


class BackendHttp:
    """The backend calls chat2api makes, on pooled curl handles (``transfer.py``)."""

    def __init__(
        self,
        *,
        proxies: tuple[str, ...] = (),
        connect_timeout: float = 10.0,
        max_clients: int = 512,
    ) -> None:
        self._proxies = proxies
        self._connect_timeout = connect_timeout
        self._max_clients = max_clients
        self._transport: CurlTransport | None = None

    @property
    def transport(self) -> CurlTransport:
        if self._transport is None:
            # Created lazily on the running loop (mitmproxy's), never at import.
            self._transport = CurlTransport(
                connect_timeout=self._connect_timeout, max_transfers=self._max_clients
            )
        return self._transport

    async def close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            try:
                await transport.close()
            except Exception:  # noqa: BLE001
                log.debug("closing the backend transport failed", exc_info=True)

    def pick_proxy(self) -> str | None:
        return random.choice(self._proxies) if self._proxies else None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        data: bytes | None = None,
        impersonate: str | None,
        timeout: float,
        proxy: str | None = None,
        limit: int = MAX_JSON_BODY,
    ) -> HttpAnswer:
        """A whole (small) request and answer."""
        transport = self.transport
        body, header_items = _body_and_headers(headers, json_body, data)
        try:
            transfer, curl = await transport.start(
                Kind(method.upper(), impersonate, proxy, False),
                url,
                headers=header_items,
                body=body,
                timeout=min(self._connect_timeout, timeout) + timeout,
                limit=limit,
            )
        except (CurlError, ImpersonationUnsupported) as e:
            raise UpstreamUnavailable(f"cannot reach the ChatGPT backend: {_reason(e)}") from None
        try:
            await transfer.finished.wait()
        except BaseException:
            transport.abort(curl)
            raise
        if transfer.over_limit:
            raise UpstreamError("the ChatGPT backend answered with an oversized body")
        if transfer.error is not None:
            if is_timeout(transfer.error):
                raise UpstreamTimeout(
                    f"the ChatGPT backend did not answer in time: {_reason(transfer.error)}"
                )
            raise UpstreamUnavailable(
                f"cannot reach the ChatGPT backend: {_reason(transfer.error)}"
            )
        return HttpAnswer(
            status=transfer.status, headers=transfer.headers, body=b"".join(transfer.body)
        )

    async def open_stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any,
        impersonate: str | None,
        first_byte_timeout: float,
        proxy: str | None = None,
    ) -> StreamAnswer:
        """POST and return once the response headers are in.

        Connecting is limited by the connect timeout, the headers by
        ``first_byte_timeout``; a transfer given up (or cancelled) before its
        headers is aborted, so its connection is closed at once.
        """
        transport = self.transport
        body, header_items = _body_and_headers(headers, json_body, None)
        try:
            transfer, curl = await transport.start(
                Kind("POST", impersonate, proxy, True),
                url,
                headers=header_items,
                body=body,
                timeout=None,
            )
        except (CurlError, ImpersonationUnsupported) as e:
            raise UpstreamUnavailable(f"cannot reach the ChatGPT backend: {_reason(e)}") from None
        try:
            async with asyncio.timeout(first_byte_timeout):
                await transfer.head_done.wait()
        except BaseException as e:
            transfer.stop()
            transport.abort(curl)
            if isinstance(e, TimeoutError):
                raise UpstreamTimeout(
                    f"the ChatGPT backend did not start answering within {first_byte_timeout:g} s"
                ) from None
            raise
        if not transfer.status:  # it ended before a head came
            error = transfer.error or CurlError("the connection closed without an answer")
            if is_timeout(error):
                raise UpstreamTimeout(
                    f"cannot connect to the ChatGPT backend in time: {_reason(error)}"
                )
            raise UpstreamUnavailable(f"cannot reach the ChatGPT backend: {_reason(error)}")
        return StreamAnswer(
            status=transfer.status,
            headers=transfer.headers,
            _transfer=transfer,
            _curl=curl,
            _transport=transport,
        )


# One encoder for every call: json.dumps with options builds a new one each time.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _body_and_headers(
    headers: Mapping[str, str], json_body: Any, data: bytes | None
) -> tuple[bytes | None, list[tuple[str, str]]]:
    """The request body and header lines, as curl_cffi's ``json=``/``data=`` made them."""
    items = list(headers.items())
    names = {name.lower() for name, _ in items}
    body: bytes | None = None
    if json_body is not None:
        body = _compact_json(json_body).encode()
        if "content-type" not in names:
            items.append(("Content-Type", "application/json"))
    elif data is not None:
        body = data
        if data and "content-type" not in names:
            items.append(("Content-Type", "application/octet-stream"))
    return body, items
