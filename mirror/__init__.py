"""The ChatGPT site mirror (``ENABLE_GATEWAY``), free of mitmproxy.

* :mod:`mirror.paths`: canonical paths, the ban list, conversation ids in paths;
* :mod:`mirror.rewrite`: upstream choice by path prefix, header, cookie and body rewriting;
* :mod:`mirror.seeds`: who a login value is (seed or own token), conversation ownership;
* :mod:`mirror.seedapi`: ``/seedtoken``, behind the admin key;
* :mod:`mirror.stubs`: identity and telemetry stand-ins;
* :mod:`mirror.bodies`: conversation ids in request bodies, read tolerantly;
* :mod:`mirror.limits`: per-address limits on new seeds and sign-in refreshes;
* :mod:`mirror.recorder`: the conversation id in a streamed answer;
* :mod:`mirror.router`: the decision for one request, built by :func:`build_gateway`.

``addons/mirror.py`` applies the decisions to mitmproxy flows.
"""

from __future__ import annotations

from accounts.admin import AdminApi
from accounts.pool import Pool
from accounts.store import Store
from mirror.limits import PerAddress
from mirror.rewrite import Upstreams
from mirror.router import Gateway
from mirror.seedapi import SeedApi
from mirror.seeds import Seeds
from settings import Settings
from settings.allow_list import parse_allow_rules
from settings.ban_list import parse_ban_rules


def default_hosts(listen: str) -> tuple[str, ...]:
    """The names the mirror answers to without ``gateway_hosts``: the listen address
    (unless it is a wildcard) and the loopback names."""
    wildcard = listen in ("0.0.0.0", "::", "")
    return (*(() if wildcard else (listen,)), "localhost", "127.0.0.1", "::1")


def build_gateway(settings: Settings, store: Store, pool: Pool) -> Gateway:
    seeds = Seeds(
        store,
        pool,
        auto_seed=settings.auto_seed,
        auto_seed_limit=settings.auto_seed_limit,
        new_seeds=PerAddress(settings.gateway_new_seeds_per_hour),
        refreshes=PerAddress(settings.gateway_signin_refreshes_per_hour),
    )
    return Gateway(
        upstreams=Upstreams(
            site=settings.chatgpt_base_url,
            assets=settings.gateway_assets_url,
            files=settings.gateway_files_url,
            sandbox=settings.gateway_sandbox_url,
            statsig=settings.gateway_statsig_url,
        ),
        rules=parse_ban_rules(settings.gateway_blocked_paths),
        allowed=parse_allow_rules(settings.gateway_allowed_paths),
        hosts=settings.gateway_hosts or default_hosts(settings.host),
        seeds=seeds,
        seed_api=SeedApi(seeds, AdminApi(pool, admin_key=settings.admin_key)),
    )


__all__ = ["Gateway", "build_gateway"]
