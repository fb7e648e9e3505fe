"""Canonical request paths and the ban list (docs/mirror.md#ban-list).

The original matched its ban regexes against the raw path, so ``/backend-api//payments``,
``/Backend-API/payments``, ``/backend-api/%70ayments`` or ``/x/../backend-api/payments``
walked past it. Here every decision (bans, stubs, ownership, upstream choice) is taken
on one canonical form, and that same form is what goes upstream, so what was checked is
what the backend sees:

* the query and fragment are cut off (and forwarded unchanged);
* percent-encoding is decoded until stable (``%252F`` → ``%2F`` → ``/``), ``\\``
  counts as ``/``; control characters are refused;
* empty and ``.`` segments are dropped, ``..`` removes the previous segment;
* for matching only, the path is case-folded (NFKC) and has no trailing slash.

The backend answers the same routes under several prefixes (``/backend-api``,
``/backend-alt``, ``/backend-anon``; docs/mirror-security.md). For every rule, any
``/backend-…`` first segment counts as ``/backend-api`` (:func:`as_backend_api`), so
a rule written once holds under all of them, and under prefixes not seen yet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from settings.allow_list import AllowRule
from settings.ban_list import BanRule

# Characters kept unencoded in a forwarded path segment (RFC 3986 pchar minus "%").
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"


class BadPath(ValueError):
    """A path that cannot be made canonical (control characters, endless encoding)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CanonicalPath:
    """``forward``: the decoded, normalised path to send upstream (re-encoded);
    ``match``: its case-folded form without trailing slash, for every decision;
    ``query``: the raw query string ("" if none)."""

    forward: str
    match: str
    query: str

    @property
    def forward_target(self) -> str:
        return self.forward + ("?" + self.query if self.query else "")


def canonical(target: str) -> CanonicalPath:
    """The canonical form of a request target (``/path?query``); raises BadPath."""
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    query = query.partition("#")[0]
    decoded = path
    for _ in range(4):
        try:
            once = unquote(decoded, errors="strict")
        except UnicodeDecodeError:
            raise BadPath("percent-encoding that is not UTF-8") from None
        if once == decoded:
            break
        decoded = once
    else:
        raise BadPath("too many levels of percent-encoding")
    if any(unicodedata.category(c) == "Cc" for c in decoded):
        raise BadPath("control characters in the path")
    segments: list[str] = []
    for segment in decoded.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = decoded.endswith(("/", "\\")) and bool(segments)
    forward = "/" + "/".join(quote(s, safe=_SEGMENT_SAFE) for s in segments)
    if trailing:
        forward += "/"
    match = unicodedata.normalize("NFKC", "/" + "/".join(segments)).casefold()
    return CanonicalPath(forward=forward, match=match, query=query)


def banned(rules: Sequence[BanRule], method: str, path: CanonicalPath) -> BanRule | None:
    """The first rule that forbids ``method`` on ``path``, or None."""
    for rule in rules:
        if rule.matches(method, path.match):
            return rule
    return None


_BACKEND_PREFIX = re.compile(r"^/backend-[^/]*(?=/|$)")
_PUBLIC_PREFIX = re.compile(r"^/public-api(?:/|$)")


def as_backend_api(path: CanonicalPath) -> CanonicalPath:
    """``path`` with any ``/backend-…`` prefix read as ``/backend-api``, for matching
    (``forward`` is kept: what goes upstream does not change)."""
    match = _BACKEND_PREFIX.sub("/backend-api", path.match, count=1)
    return path if match == path.match else replace(path, match=match)


def is_backend(path: CanonicalPath) -> bool:
    """Whether the path is the backend's API (any ``/backend-…`` prefix or ``/public-api``)."""
    return bool(_BACKEND_PREFIX.match(path.match) or _PUBLIC_PREFIX.match(path.match))


def allowed(rules: Sequence[AllowRule], method: str, path: CanonicalPath) -> bool:
    return any(rule.matches(method, path.match) for rule in rules)


_CONVERSATION_WORD = re.compile(r"(?:^|/)[^/]*(?:conversation|share)[^/]*(?:/|$)")


def names_conversations(path: CanonicalPath) -> bool:
    """Whether a path's body may name a conversation (any segment about conversations
    or shares): such a body must be readable before it is forwarded for a seed."""
    return _CONVERSATION_WORD.search(path.match) is not None


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CONVERSATION_PATH = re.compile(
    rf"^/backend-[^/]*/(?:f/)?conversation/(?:gen_title/)?({_UUID})(?:/|$)"
)


def conversation_in_path(path: CanonicalPath) -> str | None:
    """The conversation id a path reads or changes (``/backend-api/conversation/<id>…``)."""
    m = _CONVERSATION_PATH.match(path.match)
    return m.group(1) if m else None
