"""CORS for the API routes only (``cors_origins``), so browser-side clients work.

Only the OpenAI-style API gets it: the admin API, ``/tokens``, ``/seedtoken``
and the mirror never answer a cross-origin request (they use the admin key or
cookies, and a page elsewhere has no business calling them). The answer never
allows credentials, so ``*`` is safe: the API's secret is the bearer key the
page itself holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# What the OpenAI SDKs and browser clients send (the JS SDK adds x-stainless-*).
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "accept-language",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-request-id",
    "chatgpt-account-id",
    "x-stainless-*",
)
EXPOSE = "x-request-id, retry-after, openai-processing-ms, openai-version"
MAX_AGE = "600"
_TOKEN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def _header_allowed(name: str) -> bool:
    for allowed in ALLOWED_HEADERS:
        if allowed.endswith("*"):
            if name.startswith(allowed[:-1]):
                return True
        elif name == allowed:
            return True
    return False


def allow_headers(requested: str | None) -> str:
    """The preflight's ``access-control-allow-headers``: what was asked for when
    every name is one of ours (the only way to cover every ``x-stainless-*``),
    else the fixed list."""
    names = [n.strip().lower() for n in (requested or "").split(",") if n.strip()]
    if names and all(_TOKEN.fullmatch(n) and _header_allowed(n) for n in names):
        return ", ".join(names)
    return ", ".join(h for h in ALLOWED_HEADERS if not h.endswith("*"))


class Cors:
    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.rstrip("/").lower() for o in origins if o != "*")

    @property
    def enabled(self) -> bool:
        return self.any or bool(self.origins)

    def _allowed_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if self.any:
            return "*"
        return origin if origin.rstrip("/").lower() in self.origins else None

    @staticmethod
    def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
        return (
            method == "OPTIONS"
            and "origin" in headers
            and "access-control-request-method" in headers
        )

    def preflight(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers of the 204 answering a preflight (none when the origin is not allowed)."""
        allowed = self._allowed_origin(headers.get("origin"))
        out = {"vary": "origin, access-control-request-headers"}
        if allowed is None:
            return out
        out.update(
            {
                "access-control-allow-origin": allowed,
                "access-control-allow-methods": ALLOW_METHODS,
                "access-control-allow-headers": allow_headers(
                    headers.get("access-control-request-headers")
                ),
                "access-control-max-age": MAX_AGE,
            }
        )
        return out

    def simple(self, origin: str | None) -> dict[str, str]:
        """Headers added to an actual API answer."""
        allowed = self._allowed_origin(origin)
        if allowed is None:
            return {}
        out = {"access-control-allow-origin": allowed, "access-control-expose-headers": EXPOSE}
        if allowed != "*":
            out["vary"] = "origin"
        return out
