"""Where a mirror request goes, and how headers and bodies are rewritten on the way.

Upstreams (docs/mirror.md#upstreams, chosen by the exact prefix of the canonical path, never by
a substring anywhere in it):

============  ===========================  =========================================
prefix        upstream (default)           notes
============  ===========================  =========================================
``/assets/``  https://cdn.oaistatic.com    JS, CSS, fonts, images of the site
``/file-``    files.oaiusercontent.com     signed file downloads
``/sandbox``  web-sandbox.oaiusercontent…  the prefix is removed
``/ab/``      https://ab.chatgpt.com       Statsig; the prefix is removed (``/v1``
                                           belongs to the API, so not the original's
                                           substring ``v1/``)
anything      ``CHATGPT_BASE_URL``         the site and its backend API
============  ===========================  =========================================

Only the site upstream gets the ``Authorization`` header and cookies; the CDNs get
neither. Upstream origins in text bodies and in ``Location``, CSP and CORS headers
become the gateway's origin (with the prefix above), and ``Set-Cookie`` loses its
``Domain`` (and, over plain http, ``Secure``) so the browser keeps it for the gateway.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mirror.paths import CanonicalPath

COOKIE_NAME = "token"

WELL_KNOWN = {
    "site": ("https://chatgpt.com", "https://chat.openai.com"),
    "assets": ("https://cdn.oaistatic.com",),
    "files": ("https://files.oaiusercontent.com",),
    "sandbox": ("https://web-sandbox.oaiusercontent.com",),
    "statsig": ("https://ab.chatgpt.com",),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Upstream:
    name: str
    origins: tuple[str, ...]  # configured; one is picked per request
    prefix: str  # canonical-path prefix that selects it ("" for the default)
    strip: str  # removed from the forwarded path
    mount: str  # where its origin lives on the gateway ("" or "/ab", "/sandbox")
    credentials: bool  # Authorization and cookies go here (the site only)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Upstreams:
    def __init__(
        self,
        *,
        site: Sequence[str],
        assets: str = WELL_KNOWN["assets"][0],
        files: str = WELL_KNOWN["files"][0],
        sandbox: str = WELL_KNOWN["sandbox"][0],
        statsig: str = WELL_KNOWN["statsig"][0],
        rng: random.Random | None = None,
    ) -> None:
        if not site:
            raise ValueError("at least one site origin is required")
        self.site = Upstream(
            name="site",
            origins=tuple(u.rstrip("/") for u in site),
            prefix="",
            strip="",
            mount="",
            credentials=True,
        )

        def one(name: str, url: str, prefix: str, strip: str, mount: str) -> Upstream:
            return Upstream(
                name=name,
                origins=(url.rstrip("/"),),
                prefix=prefix,
                strip=strip,
                mount=mount,
                credentials=False,
            )

        self.others = (
            one("assets", assets, "/assets/", "", ""),
            one("files", files, "/file-", "", ""),
            one("sandbox", sandbox, "/sandbox/", "/sandbox", "/sandbox"),
            one("statsig", statsig, "/ab/", "/ab", "/ab"),
        )
        self.rng = rng or random.SystemRandom()

    def pick(self, path: CanonicalPath) -> tuple[Upstream, str]:
        """The upstream for a canonical path and the full URL to forward to."""
        chosen = self.site
        for upstream in self.others:
            if (path.match + "/").startswith(upstream.prefix):
                chosen = upstream
                break
        forward = path.forward
        if chosen.strip and forward[: len(chosen.strip)].lower() == chosen.strip:
            forward = forward[len(chosen.strip) :] or "/"
        base = self.rng.choice(chosen.origins)
        query = "?" + path.query if path.query else ""
        return chosen, base + forward + query

    def site_origin(self) -> str:
        return origin_of(self.site.origins[0])

    def host_map(self) -> list[tuple[str, str]]:
        """(upstream origin, gateway mount) pairs for rewriting; first mention wins."""
        pairs: dict[str, str] = {}
        for upstream in (self.site, *self.others):
            for origin in (*upstream.origins, *WELL_KNOWN[upstream.name]):
                pairs.setdefault(origin_of(origin).lower(), upstream.mount)
        return list(pairs.items())


class HostRewriter:
    """Replaces upstream origins by the gateway's origin in text (also JSON-escaped
    ``https:\\/\\/host``), only where the host name ends (not ``chatgpt.community``).

    ``hosts`` maps a host name to an address of the operator's (``FILE_HOST``,
    ``VOICE_HOST``): the name is replaced wherever it stands alone, with or without a
    scheme; ``https://name`` becomes the address, ``wss://name`` keeps its WebSocket
    scheme, a bare ``name`` becomes the address's host (docs/mirror-switches.md).
    """

    def __init__(
        self, host_map: Iterable[tuple[str, str]], hosts: Mapping[str, str] | None = None
    ) -> None:
        self._hosts = {name.lower(): url.rstrip("/") for name, url in (hosts or {}).items()}
        self._mounts: dict[str, str] = {}
        alternatives = []
        for origin, mount in host_map:
            if urlsplit(origin).hostname in self._hosts:
                continue  # the operator's address wins
            escaped = origin.replace("/", "\\/")
            self._mounts[origin] = mount
            self._mounts[escaped] = mount
            alternatives += [origin, escaped]
        alternatives.sort(key=len, reverse=True)
        body = "|".join(re.escape(a) for a in alternatives)
        self._pattern = re.compile(f"(?:{body})(?![A-Za-z0-9.-])", re.IGNORECASE)
        names = "|".join(re.escape(n) for n in sorted(self._hosts, key=len, reverse=True))
        self._named = (
            re.compile(
                rf"(?<![A-Za-z0-9.-])(?:(https?|wss?):(\\?/\\?/))?({names})(?![A-Za-z0-9.-])",
                re.IGNORECASE,
            )
            if names
            else None
        )

    def _named_sub(self, m: re.Match[str]) -> str:
        target = urlsplit(self._hosts[m.group(3).lower()])
        scheme, slashes = m.group(1), m.group(2)
        if scheme is None:
            return target.netloc
        if scheme.lower().startswith("ws"):
            scheme = "wss" if target.scheme == "https" else "ws"
        else:
            scheme = target.scheme
        path = target.path.replace("/", "\\/") if "\\" in slashes else target.path
        return f"{scheme}:{slashes}{target.netloc}{path}"

    def rewrite(self, text: str, gateway: str) -> str:
        if self._named is not None:
            text = self._named.sub(self._named_sub, text)
        escaped_gateway = gateway.replace("/", "\\/")

        def sub(m: re.Match[str]) -> str:
            found = m.group(0).lower()
            mount = self._mounts[found]
            if "\\/" in found:
                return escaped_gateway + mount.replace("/", "\\/")
            return gateway + mount

        return self._pattern.sub(sub, text)


# -- request headers ---------------------------------------------------------------

_DROP_REQUEST = frozenset(
    {
        "authorization",
        "cookie",
        "forwarded",
        "via",
        "x-real-ip",
        "true-client-ip",
        "cdn-loop",
        "chatgpt-account-id",
        "origin",
        "referer",
        "accept-encoding",
    }
)


def _dropped(name: str) -> bool:
    return name in _DROP_REQUEST or name.startswith(("x-forwarded-", "cf-"))


def strip_token_cookie(value: str) -> str:
    """A ``Cookie`` header value without the gateway's own ``token`` cookie."""
    pairs = [p.strip() for p in value.split(";")]
    kept = [p for p in pairs if p and p.split("=", 1)[0].strip() != COOKIE_NAME]
    return "; ".join(kept)


def request_headers(
    fields: Sequence[tuple[str, str]],
    *,
    upstream: Upstream,
    site_origin: str,
    gateway_origin: str,
    access_token: str | None,
    account_id: str | None,
    keep_account_header: bool,
    identity_encoding: bool,
) -> list[tuple[str, str]]:
    """The headers to send upstream, from the browser's (see the module docstring)."""
    out: list[tuple[str, str]] = []
    cookies: list[str] = []
    browser_account: str | None = None
    origin = referer = encoding = None
    for name, value in fields:
        lower = name.lower()
        if lower == "cookie":
            cookies.append(value)
        elif lower == "chatgpt-account-id":
            browser_account = value
        elif lower == "origin":
            origin = value
        elif lower == "referer":
            referer = value
        elif lower == "accept-encoding":
            encoding = value
        if not _dropped(lower):
            out.append((name, value))
    if origin is not None:
        out.append(("origin", site_origin))
    if referer is not None and referer.startswith(gateway_origin + "/"):
        out.append(("referer", site_origin + referer[len(gateway_origin) :]))
    if identity_encoding:
        out.append(("accept-encoding", "identity"))
    elif encoding is not None:
        out.append(("accept-encoding", encoding))
    if not upstream.credentials:
        return out
    kept = strip_token_cookie("; ".join(cookies))
    if kept:
        out.append(("cookie", kept))
    if access_token:
        out.append(("authorization", f"Bearer {access_token}"))
    account = account_id or (browser_account if keep_account_header else None)
    if account:
        out.append(("chatgpt-account-id", account))
    return out


# -- response headers --------------------------------------------------------------

_DROP_RESPONSE = frozenset({"alt-svc", "nel", "report-to", "reporting-endpoints"})
_HOSTS_IN = frozenset(
    {
        "location",
        "content-security-policy",
        "content-security-policy-report-only",
        "access-control-allow-origin",
        "link",
    }
)


def rewrite_set_cookie(value: str, *, secure: bool) -> str | None:
    """An upstream cookie for the gateway: no ``Domain``; over http no ``Secure``
    (and ``SameSite=None`` becomes ``Lax``, which browsers require without it).
    A cookie named like the gateway's own ``token`` is dropped."""
    parts = [p.strip() for p in value.split(";")]
    if not parts or parts[0].split("=", 1)[0].strip() == COOKIE_NAME:
        return None
    kept = [parts[0]]
    for attr in parts[1:]:
        key, _, arg = attr.partition("=")
        key = key.strip().lower()
        if not key or key == "domain":
            continue
        if not secure and key in ("secure", "partitioned"):
            continue
        if not secure and key == "samesite" and arg.strip().lower() == "none":
            attr = "SameSite=Lax"
        kept.append(attr)
    return "; ".join(kept)


def response_headers(
    fields: Sequence[tuple[str, str]],
    *,
    rewriter: HostRewriter,
    gateway_origin: str,
    secure: bool,
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in fields:
        lower = name.lower()
        if lower in _DROP_RESPONSE or (lower == "strict-transport-security" and not secure):
            continue
        if lower == "set-cookie":
            cookie = rewrite_set_cookie(value, secure=secure)
            if cookie is not None:
                out.append((name, cookie))
            continue
        if lower in _HOSTS_IN:
            value = rewriter.rewrite(value, gateway_origin)
            if lower.startswith("content-security-policy") and not secure:
                value = re.sub(r"(^|;)\s*upgrade-insecure-requests\s*(?=;|$)", r"\1", value)
        out.append((name, value))
    return out


# -- bodies --------------------------------------------------------------------------

_TEXT_TYPES = (
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "text/x-script",
    "application/manifest+json",
)


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def rewritable(content_type: str) -> bool:
    """Whether a body of this media type has its host names rewritten (so is buffered)."""
    return content_type in _TEXT_TYPES or content_type.endswith("+json")


def is_event_stream(content_type: str) -> bool:
    return content_type == "text/event-stream"
