"""Who is calling the backend, from where, looking like which browser."""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass

from accounts.pool import Credential, Source
from pow import PROFILES, BrowserProfile, pick_profile

# uuid5 namespace for device ids derived from an account (stable, token-free).
_DEVICE_NS = uuid.UUID("5f2b1c8e-7f43-4f0e-9a53-0c6b8e2a7d10")


def identity_of(token: str) -> str:
    """A short stable id for a token that reveals nothing of it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class TurnContext:
    origin: str  # e.g. https://chatgpt.com
    credential: Credential
    profile: BrowserProfile
    device_id: str
    language: str
    auth_key: str | None = None
    proxy: str | None = None
    #: the proxy of chat-requirements calls (``SENTINEL_PROXY_URL``); None: ``proxy``
    sentinel_proxy: str | None = None

    @property
    def sentinel_via(self) -> str | None:
        return self.sentinel_proxy or self.proxy

    @property
    def anonymous(self) -> bool:
        return self.credential.access_token is None

    @property
    def label(self) -> str:
        """A secret-free name of the account, for logs."""
        return self.credential.entry_id or self.credential.source.value

    @property
    def base(self) -> str:
        root = "/backend-anon" if self.anonymous else "/backend-api"
        return self.origin + root

    def headers(self, *, accept: str = "*/*") -> dict[str, str]:
        """The browser-like headers every backend call carries
        (docs/backend-protocol.md#headers-and-bases)."""
        h = {
            "accept": accept,
            "accept-language": f"{self.language},{self.language.split('-')[0]};q=0.9",
            "content-type": "application/json",
            "origin": self.origin,
            "referer": self.origin + "/",
            "priority": "u=1, i",
            "sec-fetch-dest": "empty",
            "sec-fetch-mode": "cors",
            "sec-fetch-site": "same-origin",
            # user-agent and sec-ch-ua*, as the profile's browser sends them
            **self.profile.client_hint_headers(),
            "oai-device-id": self.device_id,
            "oai-language": self.language,
        }
        if self.credential.access_token:
            h["authorization"] = f"Bearer {self.credential.access_token}"
        if self.credential.account_id:
            h["chatgpt-account-id"] = self.credential.account_id
        if self.auth_key:
            h["authkey"] = self.auth_key
        return h


def pinned_proxy(
    proxies: tuple[str, ...], credential: Credential, rng: random.Random
) -> str | None:
    """The proxy an account always leaves through, as the original pinned one per token.

    ``{}`` in the URL becomes a session id stable per account (rotating-proxy
    services key sticky sessions on it) that reveals nothing of the token.
    Anonymous requests get a random proxy and a fresh session id.
    """
    if not proxies:
        return None
    if credential.source is Source.ANONYMOUS or credential.token is None:
        return rng.choice(proxies).replace("{}", f"{rng.getrandbits(48):012x}")
    identity = identity_of(credential.token)
    return proxies[int(identity, 16) % len(proxies)].replace("{}", identity)


def make_context(
    *,
    origins: tuple[str, ...],
    credential: Credential,
    language: str,
    auth_key: str | None,
    proxy: str | None,
    rng: random.Random,
    profiles: tuple[BrowserProfile, ...] = PROFILES,
    sentinel_proxy: str | None = None,
) -> TurnContext:
    """A context with a browser profile and device id stable per account."""
    if credential.source is Source.ANONYMOUS or credential.token is None:
        profile = pick_profile(rng, profiles)
        device_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    else:
        # One browser and one device per account, stable across restarts.
        identity = identity_of(credential.token)
        profile = pick_profile(random.Random(identity), profiles)
        device_id = str(uuid.uuid5(_DEVICE_NS, identity))
    return TurnContext(
        origin=rng.choice(origins),
        credential=credential,
        profile=profile,
        device_id=device_id,
        language=language,
        auth_key=auth_key,
        proxy=proxy,
        sentinel_proxy=sentinel_proxy,
    )
