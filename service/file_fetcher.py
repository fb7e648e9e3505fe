"""``CF_FILE_URL``: the operator's own fetcher for user-supplied file URLs.

Instead of fetching an ``image_url`` (or ``UPLOAD_BY_URL``) URL itself, chat2api
POSTs ``{"file_url": URL}`` to the fetcher, the original's request shape, and takes
its answer as the file: status 200, the body (bounded by ``media_max_bytes`` as it
is decoded), the content type of the answer. Anything else is a 400 naming the part.

Trust (docs/file-fetcher.md): the fetcher is the operator's service, so its own
address is not checked (it may well be on loopback). The client's URL is not
fetched by chat2api, so it is not resolved here either (the fetcher resolves it
from its own network, which may be the only one that can); what can be judged
without resolving is still refused: schemes other than http(s), and hosts that
name this machine or a private network literally (``127.0.0.1``, ``[::1]``,
``10.0.0.1``, ``localhost``). ``media_allow_hosts`` lifts that as for direct fetches.
Guarding everything beyond is the fetcher's job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from service.netguard import forbidden_address, parse_address
from upstream.media_fetch import FetchFailed, ask_fetcher

log = logging.getLogger(__name__)


class NotFetched(Exception):
    """The reason a URL gave no file, safe to show the client (never the fetcher's URL,
    which may carry the operator's credentials)."""


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def check_client_url(url: str, allowed: Callable[[str, int], bool]) -> None:
    """Refuse what a fetcher should never be asked for (see the module docstring)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise NotFetched(f"only http(s) and data: URLs can be fetched, not {_short(url)}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise NotFetched(f"{_short(url)} has an invalid port") from None
    host = parts.hostname.rstrip(".").lower()
    if allowed(host, port):
        return
    literal = parse_address(host)
    local_name = host == "localhost" or host.endswith(".localhost")
    if local_name or (literal is not None and forbidden_address(literal)):
        raise NotFetched(
            f"{_short(url)} is refused: it names a local or private address this server "
            "does not fetch from"
        )


async def via_fetcher(
    fetcher: str,
    url: str,
    *,
    allowed: Callable[[str, int], bool],
    timeout: float,
    max_bytes: int,
) -> tuple[str, bytes]:
    """The content type and the bytes the fetcher answers for ``url``.

    Raises :class:`NotFetched`, or ``FetchTooLarge`` over ``max_bytes``."""
    check_client_url(url, allowed)
    try:
        status, headers, data = await ask_fetcher(
            fetcher, url, timeout=timeout, max_bytes=max_bytes
        )
    except FetchFailed as e:
        log.warning("the file fetcher (cf_file_url) could not be reached: %s", e)
        raise NotFetched("the file fetcher (cf_file_url) could not be reached") from None
    if status != 200:
        raise NotFetched(f"the file fetcher (cf_file_url) answered HTTP {status} for {_short(url)}")
    return headers.get("content-type", "application/octet-stream"), data
