"""Backend HTTP calls through curl_cffi, with browser impersonation.

mitmproxy's own TLS client is easy for the real site's bot checks to tell apart
from a browser, so every backend call goes through one shared curl_cffi
``AsyncSession`` created on mitmproxy's event loop (``mitmproxy-notes.md`` §1c:
``trust_env=False`` so curl never loops back into our own proxy through
``HTTPS_PROXY``, and a raised ``max_clients``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from curl_cffi import Curl, CurlError
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException, Timeout

from translator.errors import Chat2ApiError, UpstreamError, UpstreamTimeout, UpstreamUnavailable

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
    _response: Any
    _session: Any
    _closed: bool = field(default=False)

    async def chunks(self, *, idle_timeout: float) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; a gap longer than ``idle_timeout`` raises.

        What curl has received by the time the caller asks comes as one chunk:
        each chunk costs a translator call and a write towards the client, and
        a fast backend delivers many small reads at once.
        """
        rsp = self._response
        queue = getattr(rsp, "queue", None)
        if not isinstance(queue, asyncio.Queue):  # not curl_cffi 0.17's layout
            async for chunk in self._chunks_plain(idle_timeout):
                yield chunk
            return
        while True:
            if queue.empty():
                try:
                    async with asyncio.timeout(idle_timeout):
                        item = await queue.get()
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"the ChatGPT backend sent nothing for {idle_timeout:g} s"
                    ) from None
            else:
                # Let the loop run between batches, so that what was made of the
                # last one reaches the client (mitmproxy shares this loop).
                await asyncio.sleep(0)
                item = queue.get_nowait()
            batch: list[bytes] = []
            size = 0
            while isinstance(item, bytes):
                if item:
                    batch.append(item)
                    size += len(item)
                if queue.empty() or size >= _BATCH_BYTES:
                    item = None
                    break
                item = queue.get_nowait()
            if batch:
                yield batch[0] if len(batch) == 1 else b"".join(batch)
            if item is None:
                continue
            # The end of the stream, or its error (curl_cffi's aiter_content does the same).
            with contextlib.suppress(Exception):
                await rsp.aclose()
            if isinstance(item, (RequestException, CurlError)):
                raise UpstreamError(f"the ChatGPT backend stream broke: {_reason(item)}")
            return

    async def _chunks_plain(self, idle_timeout: float) -> AsyncIterator[bytes]:
        iterator = self._response.aiter_content().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(iterator.__anext__(), idle_timeout)
            except StopAsyncIteration:
                return
            except (asyncio.TimeoutError, TimeoutError):
                raise UpstreamTimeout(
                    f"the ChatGPT backend sent nothing for {idle_timeout:g} s"
                ) from None
            except (RequestException, CurlError) as e:
                raise UpstreamError(f"the ChatGPT backend stream broke: {_reason(e)}") from None
            if chunk:
                yield chunk

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
        rsp = self._response
        try:
            if rsp.quit_now is not None:
                rsp.quit_now.set()
            curl = getattr(rsp, "curl", None)
            if curl is not None and rsp.astream_task is not None and not rsp.astream_task.done():
                # quit_now only acts on the next received chunk; removing the
                # handle ends a stalled transfer at once.
                self._session.acurl.remove_handle(curl)
            if rsp.astream_task is not None:
                await asyncio.wait_for(asyncio.shield(rsp.astream_task), 2.0)
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing must not fail
            pass


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    # curl messages can be long and carry URLs with query strings: keep the gist.
    return text.split(" See https://")[0][:200]


# The curl handles a request takes, seen from the task that makes it (see _Session).
_HANDLES: ContextVar[list[Curl] | None] = ContextVar("chat2api_curl_handles", default=None)


class _Session(AsyncSession[Any]):
    """An ``AsyncSession`` that tells the caller which curl handle a request got.

    A streamed request cancelled while it waits for the response headers leaves
    its transfer running inside curl (curl_cffi 0.17 only cancels the wait), so
    a backend that never answers would hold a connection and a handle forever.
    With the handle known, :meth:`BackendHttp.open_stream` aborts it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # handle -> the list of the request that holds it, until it is released
        self._holders: dict[Curl, list[Curl]] = {}

    async def pop_curl(self) -> Curl:
        curl = await super().pop_curl()
        handles = _HANDLES.get()
        if handles is not None:
            handles.append(curl)
            self._holders[curl] = handles
        return curl

    def release_curl(self, curl: Curl) -> None:
        # A released handle may serve another request next: never abort it then.
        handles = self._holders.pop(curl, None)
        if handles is not None and curl in handles:
            handles.remove(curl)
        super().release_curl(curl)


class BackendHttp:
    """The one curl_cffi session, and the calls chat2api makes with it."""

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
        self._session: AsyncSession[Any] | None = None

    @property
    def session(self) -> AsyncSession[Any]:
        if self._session is None:
            # Created lazily on the running loop (mitmproxy's), never at import.
            self._session = _Session(
                max_clients=self._max_clients, trust_env=False, discard_cookies=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            try:
                await session.close()
            except Exception:  # noqa: BLE001
                log.debug("closing the backend session failed", exc_info=True)

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
        try:
            rsp = await self.session.request(
                method,  # type: ignore[arg-type]
                url,
                headers=dict(headers),
                json=json_body,
                data=data,
                impersonate=impersonate,  # type: ignore[arg-type]
                timeout=(min(self._connect_timeout, timeout), timeout),
                proxy=proxy,
                allow_redirects=False,
            )
        except Timeout as e:
            raise UpstreamTimeout(
                f"the ChatGPT backend did not answer in time: {_reason(e)}"
            ) from None
        except (RequestException, CurlError) as e:
            raise UpstreamUnavailable(f"cannot reach the ChatGPT backend: {_reason(e)}") from None
        body = rsp.content or b""
        if len(body) > limit:
            raise UpstreamError("the ChatGPT backend answered with an oversized body")
        return HttpAnswer(status=rsp.status_code, headers=_lower(rsp.headers), body=body)

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
        session = self.session
        handles: list[Curl] = []
        token = _HANDLES.set(handles)
        try:
            rsp = await asyncio.wait_for(
                session.request(
                    "POST",
                    url,
                    headers=dict(headers),
                    json=json_body,
                    impersonate=impersonate,  # type: ignore[arg-type]
                    # (connect, read): curl applies the read part only as a
                    # 1 byte/s low-speed floor, a backstop to our own timeouts.
                    timeout=(self._connect_timeout, _STALL_BACKSTOP),
                    proxy=proxy,
                    stream=True,
                    allow_redirects=False,
                    accept_encoding="gzip, deflate, br",
                ),
                timeout=first_byte_timeout,
            )
        except BaseException as e:
            for curl in list(handles):  # still held: the transfer is running
                _abort(session, curl)
            if isinstance(e, Timeout):  # curl's own: the connect timeout
                raise UpstreamTimeout(
                    f"cannot connect to the ChatGPT backend in time: {_reason(e)}"
                ) from None
            if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
                raise UpstreamTimeout(
                    f"the ChatGPT backend did not start answering within {first_byte_timeout:g} s"
                ) from None
            if isinstance(e, (RequestException, CurlError)):
                raise UpstreamUnavailable(
                    f"cannot reach the ChatGPT backend: {_reason(e)}"
                ) from None
            raise
        finally:
            _HANDLES.reset(token)
        return StreamAnswer(
            status=rsp.status_code, headers=_lower(rsp.headers), _response=rsp, _session=session
        )


# Seconds below 1 byte/s after which curl itself ends a streamed transfer.
_STALL_BACKSTOP = 3600.0


def _abort(session: AsyncSession[Any], curl: Curl) -> None:
    """End a transfer that is still running (a no-op for one that has ended)."""
    try:
        session.acurl.remove_handle(curl)
    except Exception:  # noqa: BLE001 - aborting must not fail
        log.debug("aborting a transfer failed", exc_info=True)


def _lower(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        out[str(key).lower()] = str(value)
    return out
