"""ChatGPT's file endpoints: the backend calls behind uploads and generated media.

The calls only; what to ask and what an answer means stays in ``service/``
(service/uploads.py uploads a user's files, service/media.py turns generated
images and sandbox files into links). Every call goes out as the account's
browser would make it (its headers, impersonation and proxy from the
:class:`~upstream.context.TurnContext`).
"""

from __future__ import annotations

import logging
from typing import Any

from errors import Chat2ApiError
from upstream.context import TurnContext
from upstream.http import BackendHttp, HttpAnswer

log = logging.getLogger(__name__)

# Headers of the account that the blob store (not ChatGPT) must not get.
_NOT_FOR_THE_BLOB_STORE = (
    "authorization",
    "oai-device-id",
    "oai-language",
    "chatgpt-account-id",
    "authkey",
)


async def call_json(
    http: BackendHttp,
    ctx: TurnContext,
    method: str,
    path: str,
    body: Any,
    *,
    timeout: float,
) -> HttpAnswer:
    """``method {base}{path}`` with a JSON body (None: none); raises Chat2ApiError
    when no answer came."""
    return await http.request(
        method,
        ctx.base + path,
        headers=ctx.headers(),
        json_body=body,
        impersonate=ctx.profile.impersonate,
        timeout=timeout,
        proxy=ctx.proxy,
    )


async def put_blob(
    http: BackendHttp,
    ctx: TurnContext,
    upload_url: str,
    data: bytes,
    mime_type: str,
    *,
    timeout: float,
) -> HttpAnswer:
    """PUT a file's bytes to the upload slot ChatGPT handed out (an Azure blob URL)."""
    # The blob store is not ChatGPT: no authorization, device id or language.
    headers = {
        k: v
        for k, v in ctx.headers(accept="application/json, text/plain, */*").items()
        if k not in _NOT_FOR_THE_BLOB_STORE
    }
    headers.update(
        {
            "content-type": mime_type,
            "x-ms-blob-type": "BlockBlob",
            "x-ms-version": "2020-04-08",
            "sec-fetch-site": "cross-site",
        }
    )
    return await http.request(
        "PUT",
        upload_url,
        headers=headers,
        data=data,
        impersonate=ctx.profile.impersonate,
        timeout=timeout,
        proxy=ctx.proxy,
    )


async def get_json(
    http: BackendHttp, ctx: TurnContext, path: str, *, timeout: float, limit: int
) -> tuple[int, Any]:
    """GET ``{base}{path}``: the status and the parsed JSON (None if it is not JSON);
    ``(0, None)`` when no answer came (logged)."""
    try:
        answer = await http.request(
            "GET",
            ctx.base + path,
            headers=ctx.headers(),
            impersonate=ctx.profile.impersonate,
            timeout=timeout,
            proxy=ctx.proxy,
            limit=limit,
        )
    except Chat2ApiError as e:
        log.warning("backend lookup %s failed: %s", path.split("?")[0], e.message)
        return 0, None
    try:
        return answer.status, answer.json()
    except ValueError:
        return answer.status, None


async def download(
    http: BackendHttp,
    ctx: TurnContext,
    url: str,
    *,
    same_site: bool,
    timeout: float,
    limit: int,
) -> HttpAnswer:
    """GET a download URL; the account's headers only when it is ChatGPT's own site."""
    headers = ctx.headers() if same_site else {"user-agent": ctx.profile.user_agent}
    return await http.request(
        "GET",
        url,
        headers=headers,
        impersonate=ctx.profile.impersonate,
        timeout=timeout,
        proxy=ctx.proxy,
        limit=limit,
    )
