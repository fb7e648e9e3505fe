"""The ChatGPT site mirror (``ENABLE_GATEWAY``), free of mitmproxy.

* :mod:`mirror.paths`: canonical paths, the ban list, conversation ids in paths;
* :mod:`mirror.rewrite`: upstream choice by path prefix, header, cookie and body rewriting;
* :mod:`mirror.seeds`: who a login value is (seed or own token), conversation ownership;
* :mod:`mirror.seedapi`: ``/seedtoken``, behind the admin key;
* :mod:`mirror.stubs`: identity and telemetry stand-ins;
* :mod:`mirror.recorder`: the conversation id in a streamed answer;
* :mod:`mirror.router`: the decision for one request, built by :func:`build_gateway`.

``addons/mirror.py`` applies the decisions to mitmproxy flows.
"""

from __future__ import annotations

from accounts.admin import AdminApi
from accounts.pool import Pool
from accounts.store import Store
from mirror.rewrite import Upstreams
from mirror.router import Gateway
from mirror.seedapi import SeedApi
from mirror.seeds import Seeds
from settings import Settings
from settings.ban_list import parse_ban_rules


def build_gateway(settings: Settings, store: Store, pool: Pool) -> Gateway:
    seeds = Seeds(store, pool, auto_seed=settings.auto_seed)
    return Gateway(
        upstreams=Upstreams(
            site=settings.chatgpt_base_url,
            assets=settings.gateway_assets_url,
            files=settings.gateway_files_url,
            sandbox=settings.gateway_sandbox_url,
            statsig=settings.gateway_statsig_url,
        ),
        rules=parse_ban_rules(settings.gateway_blocked_paths),
        seeds=seeds,
        seed_api=SeedApi(seeds, AdminApi(pool, admin_key=settings.admin_key)),
    )


__all__ = ["Gateway", "build_gateway"]
