"""Fetching a user-supplied media URL: one GET, pinned to a checked address.

The policy (which URLs, which addresses, redirects, limits, error messages)
is service/uploads.py's ``MediaFetcher``; this is the HTTP exchange itself, on
curl_cffi, through ``EXPORT_PROXY_URL`` when one is set. :func:`ask_fetcher` is
the other way, ``CF_FILE_URL``: the operator's own fetcher gets the URL
(docs/file-fetcher.md).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from curl_cffi import CurlECode, CurlError, CurlOpt
from curl_cffi.curl import CURL_WRITEFUNC_ERROR
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException


class FetchTooLarge(Exception):
    """The body is (or says it is) larger than the limit."""


class FetchFailed(Exception):
    """No answer: the reason, short and without curl's help link."""


async def fetch_pinned(
    url: str,
    host: str,
    port: int,
    address: str,
    *,
    proxy: str | None,
    timeout: float,
    max_bytes: int,
) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` without following redirects, connecting to ``address`` only
    (``CURLOPT_RESOLVE``, so a second DNS answer cannot swap in another one).

    The body is bounded while curl decodes it: curl inflates a gzip, deflate or
    brotli body before the write callback sees it, and its own size limit
    (``MAXFILESIZE``) counts the bytes on the wire, so a 1 MiB gzip could
    inflate to 1 GiB. The callback counts decoded bytes and fails the transfer
    at ``max_bytes``; curl stops reading at once (docs/api-security.md).

    The status, the headers (lower-case names) and the body.
    Raises :class:`FetchTooLarge` or :class:`FetchFailed`.
    """
    pinned = f"[{address}]" if ":" in address else address
    options: dict[CurlOpt, Any] = {}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        options[CurlOpt.RESOLVE] = [f"{host}:{port}:{pinned}"]
    return await _bounded("GET", url, options, proxy=proxy, timeout=timeout, max_bytes=max_bytes)


async def ask_fetcher(
    fetcher: str, file_url: str, *, timeout: float, max_bytes: int
) -> tuple[int, dict[str, str], bytes]:
    """``POST {"file_url": file_url}`` to the operator's fetcher (``CF_FILE_URL``), the
    original's request shape; its answer is the file. The fetcher is trusted (it may
    be on loopback), so no address pinning and no proxy; redirects are not followed
    and the body is bounded as in :func:`fetch_pinned`."""
    return await _bounded(
        "POST",
        fetcher,
        {},
        proxy=None,
        timeout=timeout,
        max_bytes=max_bytes,
        json_body={"file_url": file_url},
    )


async def _bounded(
    method: str,
    url: str,
    options: dict[CurlOpt, Any],
    *,
    proxy: str | None,
    timeout: float,
    max_bytes: int,
    json_body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    options = {CurlOpt.MAXFILESIZE_LARGE: max_bytes, **options}
    body = _BoundedBody(max_bytes)
    session: AsyncSession[Any] = AsyncSession(
        trust_env=False, discard_cookies=True, curl_options=options
    )
    try:
        rsp = await session.request(
            method,  # type: ignore[arg-type]
            url,
            impersonate="chrome",
            proxy=proxy,
            allow_redirects=False,
            content_callback=body.write,
            timeout=timeout,
            json=json_body,
        )
    except (RequestException, CurlError) as e:
        if body.over or getattr(e, "code", None) == CurlECode.FILESIZE_EXCEEDED:
            raise FetchTooLarge() from None
        raise FetchFailed(str(e).split(" See https://")[0][:200]) from None
    finally:
        await session.close()
    headers = {str(k).lower(): str(v) for k, v in rsp.headers.items()}
    return rsp.status_code, headers, body.data()


class _BoundedBody:
    """curl's write callback for a media fetch: keeps at most ``limit`` decoded bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.over = False
        self._chunks: list[bytes] = []

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.limit:
            self.over = True
            self._chunks.clear()
            return CURL_WRITEFUNC_ERROR  # curl aborts the transfer (CURLE_WRITE_ERROR)
        self._chunks.append(chunk)
        return len(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)
