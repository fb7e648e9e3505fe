"""The mirror's decisions: one request in, a local :class:`Answer` or a :class:`Forward`.

For every request on the reverse listener that the API and the token admin leave
alone (docs/mirror.md):

0. The ``Host`` must be one of ``gateway_hosts`` (else a plain 421): pages built for
   another name would point the browser there (DNS rebinding; docs/mirror-security.md).
1. The path is made canonical (:mod:`mirror.paths`); every decision uses that form.
2. Local pages: ``/login`` (GET the page, POST the form), ``/?token=…`` (sets the
   cookie and redirects to ``/``), ``/logout`` and ``/auth/logout`` (back to
   ``/login``), ``/seedtoken`` (admin key), telemetry stubs. A sign-in from another
   site is refused (``POST /login``) or must be confirmed (``/?token=``): login CSRF.
3. The login value is the bearer, or the ``token`` cookie when the bearer is absent
   or the session marker :data:`SESSION_BEARER` that ``/api/auth/session`` hands to
   the front-end (so no real token or seed is ever readable by page scripts). No
   value: a navigation goes to ``/login``, anything else gets 401. The gateway is
   never an open proxy.
4. Seed users (:class:`mirror.seeds.Identity` ``restricted``), under every backend
   prefix alike: identity stubs, then the ban list (403), then the allow-list of path
   families (403; fail closed), then conversation ownership in the path and in the
   body (404; an unreadable body on a conversation path is a 400), and their
   conversation list is filtered to what they own.
5. Everything else is forwarded (:mod:`mirror.rewrite`) with the real access token.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from mirror import stubs
from mirror.bodies import Unreadable, conversation_ids
from mirror.paths import (
    BadPath,
    CanonicalPath,
    allowed,
    as_backend_api,
    banned,
    canonical,
    conversation_in_path,
    is_backend,
    names_conversations,
)
from mirror.rewrite import (
    COOKIE_NAME,
    HostRewriter,
    Upstreams,
    origin_of,
    request_headers,
    response_headers,
    rewritable,
)
from mirror.seedapi import SeedApi
from mirror.seeds import Identity, LoginFailed, Seeds
from mirror.sentinel import SentinelFailed, browser_answer, with_tokens
from mirror.switches import CONVERSATION_POST, Switches, without_history
from settings.allow_list import AllowRule
from settings.ban_list import BanRule
from settings.host_names import split_host

log = logging.getLogger(__name__)

SESSION_BEARER = "chat2api-session"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest lifetime browsers keep (RFC 6265bis)
LIST_PAGE = 100  # the backend's largest conversation page
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
_READS = ("GET", "HEAD", "OPTIONS")
_SECURITY = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
]
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
LOGIN_PAGE = Path(__file__).with_name("login.html").read_text("utf-8")
_ERRORS = {
    "invalid": "That seed or token was not accepted. Try again.",
    "unavailable": "No account is available right now. Try again later.",
    "signin": "Please sign in.",
    "busy": "Too many sign-ins from your address. Try again later.",
    "closed": "This mirror takes no new seeds. Ask its operator for one.",
}
_SIGN_IN = """  <p>Sign in to the ChatGPT mirror with a <b>seed</b> you were given, or with your own
  ChatGPT <b>refresh token</b> or <b>access token</b>.</p>
  {error}
  <form method="post" action="/login">
    <label for="token">Seed, refresh token or access token</label>
    <textarea id="token" name="token" required autocomplete="off" spellcheck="false" autofocus>\
</textarea>
    <button type="submit">Sign in</button>
  </form>"""
_CONFIRM = """  <p>A link from another site wants to sign you in to this mirror with a seed or token
  it chose. Whoever made the link could then read everything you write here.</p>
  <p>Confirm only if you asked for this link yourself.</p>
  <form method="post" action="/login">
    <input type="hidden" name="token" value="{token}">
    <div class="actions"><a class="button" href="/login">Cancel</a>
    <button type="submit">Confirm and sign in</button></div>
  </form>"""


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class MirrorRequest:
    method: str
    target: str  # path and query as received
    headers: Sequence[tuple[str, str]]
    body: bytes = b""
    host: str = ""  # the Host header the browser sent
    secure: bool = False  # https between the browser and the gateway
    client: str = ""  # the client's address, for per-address limits

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def __repr__(self) -> str:  # headers and body hold credentials
        return f"MirrorRequest({self.method} {self.target.partition('?')[0]})"


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    reason: str = ""  # for flow.metadata and logs
    scrub_query: bool = False  # the query held a secret: drop it from the flow


@dataclass(frozen=True, kw_only=True, slots=True)
class ListWindow:
    owned: frozenset[str]
    offset: int
    limit: int


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class Forward:
    url: str
    headers: list[tuple[str, str]]
    upstream: str
    gateway_origin: str
    secure: bool
    record_for: str | None = None  # seed key: note the conversation id of the stream
    window: ListWindow | None = None  # filter a conversation list to these ids
    rewrite_json: bool = True
    reason: str = "forward"
    conversation: bool = False  # a new turn: the switches apply (mirror/switches.py)
    body: bytes | None = None  # replaces the request body when set
    path: str = field(default="")

    def __repr__(self) -> str:
        return f"Forward({self.upstream} {self.path})"


def json_answer(status: int, data: Any, reason: str, **extra: str) -> Answer:
    headers = [("content-type", "application/json"), *_SECURITY, *extra.items()]
    body = b"" if status == 204 else stubs.dumps(data)
    return Answer(status=status, headers=headers, body=body, reason=reason)


def redirect(location: str, reason: str, *cookies: str, status: int = 302) -> Answer:
    headers = [("location", location), *_SECURITY, *(("set-cookie", c) for c in cookies)]
    return Answer(status=status, headers=headers, reason=reason)


def login_page(status: int = 200, error: str | None = None) -> Answer:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _page(status, _SIGN_IN.format(error=message), "login")


def confirm_page(token: str) -> Answer:
    """Asks before a sign-in that another site started (``/?token=`` login CSRF)."""
    answer = _page(200, _CONFIRM.format(token=html.escape(token, quote=True)), "confirm")
    return replace(answer, scrub_query=True)


def plain(status: int, text: str, reason: str) -> Answer:
    headers = [("content-type", "text/plain; charset=utf-8"), *_SECURITY]
    return Answer(status=status, headers=headers, body=text.encode() + b"\n", reason=reason)


def _page(status: int, content: str, reason: str) -> Answer:
    body = LOGIN_PAGE.replace("{{content}}", content).encode()
    headers = [
        ("content-type", "text/html; charset=utf-8"),
        ("content-security-policy", _PAGE_CSP),
        ("x-frame-options", "DENY"),
        *_SECURITY,
    ]
    return Answer(status=status, headers=headers, body=body, reason=reason)


def session_cookie(value: str, *, secure: bool) -> str:
    parts = [
        f"{COOKIE_NAME}={quote(value, safe='')}",
        "Path=/",
        f"Max-Age={COOKIE_MAX_AGE}",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie(*, secure: bool) -> str:
    tail = "; Secure" if secure else ""
    return f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{tail}"


def cookie_value(req: MirrorRequest) -> str | None:
    for name, value in req.headers:
        if name.lower() != "cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            # A neighbour cookie SimpleCookie dislikes; find ours by hand.
            for pair in value.split(";"):
                key, _, raw = pair.strip().partition("=")
                if key == COOKIE_NAME and raw:
                    return unquote(raw)
            continue
        if COOKIE_NAME in jar and jar[COOKIE_NAME].value:
            return unquote(jar[COOKIE_NAME].value)
    return None


def bearer_of(req: MirrorRequest) -> str | None:
    scheme, _, value = (req.header("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def is_navigation(req: MirrorRequest) -> bool:
    if req.method.upper() not in ("GET", "HEAD"):
        return False
    if req.header("sec-fetch-mode") == "navigate":
        return True
    return "text/html" in (req.header("accept") or "")


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` or ``Referer`` URL is this gateway's origin (``host``: the
    request's ``Host``; without a port, the URL's default port is assumed)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    port = port or (443 if parts.scheme == "https" else 80)
    ours = split_host(host)
    return ours is not None and ours[0] == parts.hostname and (ours[1] or port) == port


def cross_site(req: MirrorRequest, *, referer: bool = False) -> bool:
    """Whether another site started this request. ``Sec-Fetch-Site`` decides when the
    browser sends it (pages cannot forge it; with ``Referrer-Policy: no-referrer`` the
    ``Origin`` of a same-origin form post is ``null``); otherwise an ``Origin`` (and,
    with ``referer``, a ``Referer``) naming another origin does."""
    site = (req.header("sec-fetch-site") or "").strip().lower()
    if site:
        return site not in ("same-origin", "none")
    origin = req.header("origin")
    if origin is not None and not same_origin(origin, req.host):
        return True
    came_from = req.header("referer") if referer else None
    return came_from is not None and not same_origin(came_from, req.host)


def gateway_origin(req: MirrorRequest, fallback: str = "127.0.0.1") -> str:
    host = req.host if _HOST.fullmatch(req.host or "") else fallback
    return f"{'https' if req.secure else 'http'}://{host}"


class Gateway:
    def __init__(
        self,
        *,
        upstreams: Upstreams,
        rules: Sequence[BanRule],
        seeds: Seeds,
        seed_api: SeedApi,
        hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
        allowed: Sequence[AllowRule] = (),
        switches: Switches | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.rules = tuple(rules)
        self.allowed = tuple(allowed)
        names = [split_host(h) for h in hosts]
        self.hosts = frozenset(n for n in names if n is not None)
        self.seeds = seeds
        self.seed_api = seed_api
        self.switches = switches or Switches()
        self.rewriter = HostRewriter(upstreams.host_map(), dict(self.switches.hosts))

    # -- requests ------------------------------------------------------------------
    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` (a ``Host`` header) names this gateway (``gateway_hosts``;
        an entry without a port allows any port)."""
        parts = split_host(host)
        if parts is None:
            return False
        return (parts[0], None) in self.hosts or parts in self.hosts

    async def handle(self, req: MirrorRequest) -> Answer | Forward:
        if not self.host_allowed(req.host):
            return plain(421, "This server does not answer to that host name.", "host refused")
        try:
            path = canonical(req.target)
        except BadPath as e:
            return json_answer(400, {"detail": str(e)}, "bad path")
        method = req.method.upper()
        local = await self._local(req, method, path)
        if local is not None:
            return local
        value = bearer_of(req)
        sent_bearer = value is not None
        from_cookie = value is None or value == SESSION_BEARER
        if from_cookie:
            value = cookie_value(req)
        if path.match == "/api/auth/session" and value is None:
            return json_answer(200, {}, "session")
        if value is None:
            if is_navigation(req):
                return redirect("/login", "login required")
            return json_answer(401, {"detail": "Sign in at /login first."}, "login required")
        try:
            identity = await self.seeds.resolve(value, req.client)
        except LoginFailed as e:
            if is_navigation(req):
                cookies = [clear_cookie(secure=req.secure)] if from_cookie else []
                return redirect(f"/login?error={_error_code(e)}", "login failed", *cookies)
            return _login_failed(e)
        if path.match == "/api/auth/session":
            return json_answer(200, stubs.session(SESSION_BEARER), "session")
        window: ListWindow | None = None
        if identity.restricted:
            refused = await self._restrict(req, method, path, identity, bearer=sent_bearer)
            if isinstance(refused, Answer):
                return refused
            window = refused
        sentinel = self.switches.sentinel
        if sentinel is not None and method == "POST":  # NO_SENTINEL (mirror/sentinel.py)
            fake = browser_answer(as_backend_api(path).match)
            if fake is not None:
                sentinel.prefetch(identity.credential)
                return json_answer(200, fake, "sentinel")
        fwd = self._forward(req, method, path, identity, window, bearer=sent_bearer)
        if sentinel is not None and fwd.conversation:
            try:
                tokens = await sentinel.tokens(identity.credential)
            except SentinelFailed:
                return json_answer(403, {"detail": "Sentinel failed"}, "sentinel failed")
            fwd = replace(fwd, headers=with_tokens(fwd.headers, tokens))
        return fwd

    async def _local(self, req: MirrorRequest, method: str, path: CanonicalPath) -> Answer | None:
        m = path.match
        if m == "/login":
            if method == "POST":
                return await self._login_form(req)
            error = dict(parse_qsl(path.query)).get("error")
            return login_page(error=_ERRORS.get(error or ""))
        if m in ("/logout", "/auth/logout"):
            return redirect("/login", "logout", clear_cookie(secure=req.secure))
        if m == "/seedtoken" or m.startswith("/seedtoken/"):
            a = await self.seed_api.handle(method, m, dict(req.headers), req.body, path.query)
            return Answer(
                status=a.status, headers=list(a.headers.items()), body=a.body, reason="seedtoken"
            )
        if m == "/" and method == "GET":
            token = dict(parse_qsl(path.query)).get("token")
            if token is not None:
                return await self._token_login(req, token)
        answer = stubs.telemetry(method, m)
        if answer is not None:
            return json_answer(answer[0], answer[1], "telemetry")
        return None

    async def _login_form(self, req: MirrorRequest) -> Answer:
        if cross_site(req):
            log.info("refused a sign-in posted from another site")
            return login_page(403, "Sign in from this page, not from another site.")
        if len(req.body) > 64 * 1024:
            return login_page(413, "That is too long for a seed or token.")
        fields = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        value = fields.get("token", "").strip()
        try:
            await self.seeds.resolve(value, req.client)
        except LoginFailed as e:
            return login_page(e.status, e.message)
        cookie = session_cookie(value, secure=req.secure)
        return redirect("/", "login", cookie, status=303)

    async def _token_login(self, req: MirrorRequest, token: str) -> Answer:
        token = token.strip()
        if cross_site(req, referer=True):
            return confirm_page(token)
        try:
            await self.seeds.resolve(token, req.client)
        except LoginFailed as e:
            answer = redirect(f"/login?error={_error_code(e)}", "login failed")
        else:
            answer = redirect("/", "login", session_cookie(token, secure=req.secure))
        return replace(answer, scrub_query=True)

    async def _restrict(
        self,
        req: MirrorRequest,
        method: str,
        path: CanonicalPath,
        identity: Identity,
        *,
        bearer: bool,
    ) -> Answer | ListWindow | None:
        assert identity.key is not None
        rule_path = as_backend_api(path)  # every backend prefix alike
        stub = stubs.SEED_STUBS.get((method, rule_path.match))
        if stub is not None:
            return json_answer(200, stub, "stub")
        rule = banned(self.rules, method, rule_path)
        why = rule.source if rule is not None else None
        if why is None and self._needs_allowing(path, bearer):
            if not allowed(self.allowed, method, rule_path):
                why = "not on the allow-list"
        if why is not None:
            log.info("blocked %s %s for seed %s (%s)", method, path.match, identity.key[:12], why)
            return json_answer(403, {"detail": "Not available through the mirror."}, "blocked")
        refused = await self._check_owner(req, method, rule_path, identity.key)
        if refused is not None:
            return refused
        if method == "GET" and rule_path.match == "/backend-api/conversations":
            query = dict(parse_qsl(path.query))
            owned = frozenset(await self.seeds.owned(identity.key))
            return ListWindow(
                owned=owned,
                offset=_int(query.get("offset"), 0, 0, 10**6),
                limit=_int(query.get("limit"), 28, 1, LIST_PAGE),
            )
        return None

    def _needs_allowing(self, path: CanonicalPath, bearer: bool) -> bool:
        """A seed's request must match the allow-list when it would carry the account's
        token or goes to the backend's API; pages and CDN files need not."""
        if not self.upstreams.pick(path)[0].credentials:
            return False
        return bearer or is_backend(path)

    async def _check_owner(
        self, req: MirrorRequest, method: str, rule_path: CanonicalPath, key: str
    ) -> Answer | None:
        """404 for a conversation the seed does not own (in the path, the query or the
        body), 400 for a body about conversations that cannot be read."""
        ids = [cid] if (cid := conversation_in_path(rule_path)) else []
        ids += [v for k, v in parse_qsl(rule_path.query) if k == "conversation_id" and v]
        if req.body and method not in _READS:
            try:
                ids += conversation_ids(req.body)
            except Unreadable as e:
                if names_conversations(rule_path):
                    return json_answer(400, {"detail": str(e)}, "unreadable body")
        for cid in ids:
            if not await self.seeds.owns(key, cid):
                return json_answer(404, {"detail": "Can't load that conversation."}, "not owner")
        return None

    def _forward(
        self,
        req: MirrorRequest,
        method: str,
        path: CanonicalPath,
        identity: Identity,
        window: ListWindow | None,
        *,
        bearer: bool,
    ) -> Forward:
        """The real access token replaces a bearer the browser sent; requests without
        one (page loads) get none, as on the real site."""
        if window is not None:
            query = [(k, v) for k, v in parse_qsl(path.query, keep_blank_values=True)]
            query = [(k, v) for k, v in query if k not in ("offset", "limit")]
            query += [("offset", "0"), ("limit", str(LIST_PAGE))]
            path = replace(path, query=urlencode(query))
        upstream, url = self.upstreams.pick(path)
        rule_path = as_backend_api(path)
        turn = method == "POST" and CONVERSATION_POST.match(rule_path.match) is not None
        record = identity.key if turn else None
        body = None
        if turn and identity.restricted and self.switches.force_no_history:
            body = without_history(req.body)
        gw = gateway_origin(req)
        cred = identity.credential
        headers = request_headers(
            req.headers,
            upstream=upstream,
            site_origin=origin_of(url) if upstream.credentials else self.upstreams.site_origin(),
            gateway_origin=gw,
            access_token=cred.access_token if bearer else None,
            account_id=cred.account_id,
            keep_account_header=not identity.restricted,
            identity_encoding=record is not None or window is not None,
        )
        return Forward(
            url=url,
            headers=headers,
            upstream=upstream.name,
            gateway_origin=gw,
            secure=req.secure,
            record_for=record,
            window=window,
            conversation=turn,
            body=body,
            rewrite_json=not rule_path.match.startswith("/backend-api/conversation/"),
            path=path.forward,
        )

    # -- responses -----------------------------------------------------------------
    def response_headers(
        self, fwd: Forward, fields: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        out = response_headers(
            fields, rewriter=self.rewriter, gateway_origin=fwd.gateway_origin, secure=fwd.secure
        )
        return out + self.switches.answer_headers() if fwd.conversation else out

    def wants_body(self, fwd: Forward, content_type: str) -> bool:
        """Whether the answer is buffered (to rewrite it) rather than streamed."""
        return fwd.window is not None or rewritable(content_type)

    def rewrite_text(self, fwd: Forward, content_type: str, text: str) -> str:
        if content_type.endswith("json") and not fwd.rewrite_json:
            return text
        return self.rewriter.rewrite(text, fwd.gateway_origin)

    @staticmethod
    def filter_list(window: ListWindow, data: Any) -> Any:
        """A seed's page of ``GET /backend-api/conversations``: only what it owns."""
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            return {"items": [], "total": 0, "limit": window.limit, "offset": window.offset}
        mine = [
            item
            for item in data["items"]
            if isinstance(item, dict) and str(item.get("id", "")).lower() in window.owned
        ]
        return {
            **data,
            "items": mine[window.offset : window.offset + window.limit],
            "total": len(mine),
            "limit": window.limit,
            "offset": window.offset,
            "has_missing_conversations": False,
        }


def _int(value: str | None, default: int, lo: int, hi: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(lo, min(hi, number))


def _error_code(e: LoginFailed) -> str:
    """The ``/login?error=`` code for a failed sign-in."""
    return {401: "invalid", 403: "closed", 429: "busy"}.get(e.status, "unavailable")


def _login_failed(e: LoginFailed) -> Answer:
    extra = {}
    if e.retry_after is not None:
        extra["retry-after"] = str(max(1, math.ceil(e.retry_after)))
    return json_answer(e.status, {"detail": e.message}, "login failed", **extra)
