"""Fetching a user-supplied media URL: one GET, pinned to a checked address.

The policy (which URLs, which addresses, redirects, limits, error messages)
is service/uploads.py's ``MediaFetcher``; this is the HTTP exchange itself, on
curl_cffi, through ``EXPORT_PROXY_URL`` when one is set.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from curl_cffi import CurlError, CurlOpt
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

    The status, the headers (lower-case names) and, for a 200, the body.
    Raises :class:`FetchTooLarge` or :class:`FetchFailed`.
    """
    pinned = f"[{address}]" if ":" in address else address
    options: dict[CurlOpt, Any] = {}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        options[CurlOpt.RESOLVE] = [f"{host}:{port}:{pinned}"]
    session: AsyncSession[Any] = AsyncSession(
        trust_env=False, discard_cookies=True, curl_options=options
    )
    try:
        rsp = await session.request(
            "GET",
            url,
            impersonate="chrome",
            proxy=proxy,
            allow_redirects=False,
            stream=True,
            timeout=timeout,
        )
        headers = {str(k).lower(): str(v) for k, v in rsp.headers.items()}
        chunks: list[bytes] = []
        size = 0
        if rsp.status_code == 200:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge()
            async for chunk in rsp.aiter_content():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchTooLarge()
                chunks.append(chunk)
        await rsp.aclose()
        return rsp.status_code, headers, b"".join(chunks)
    except (RequestException, CurlError) as e:
        raise FetchFailed(str(e).split(" See https://")[0][:200]) from None
    finally:
        await session.close()
