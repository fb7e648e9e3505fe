"""The ChatGPT site mirror (``ENABLE_GATEWAY``), free of mitmproxy.

* :mod:`mirror.paths`: canonical paths, the ban list, conversation ids in paths;
* :mod:`mirror.rewrite`: upstream choice by path prefix, header, cookie and body rewriting;
* :mod:`mirror.seeds`: who a login value is (seed or own token), conversation ownership;
* :mod:`mirror.seedapi`: ``/seedtoken``, behind the admin key;
* :mod:`mirror.stubs`: identity and telemetry stand-ins;
* :mod:`mirror.bodies`: conversation ids in request bodies, read tolerantly;
* :mod:`mirror.limits`: per-address limits on new seeds and sign-in refreshes;
* :mod:`mirror.recorder`: the conversation id in a streamed answer;
* :mod:`mirror.switches`: the original's ``FORCE_NO_HISTORY``, ``X_SIGN``, ``FILE_HOST``
  and ``VOICE_HOST``;
* :mod:`mirror.sentinel`: ``NO_SENTINEL``, the sentinel run server-side;
* :mod:`mirror.router`: the decision for one request, built by :func:`build_gateway`.

``addons/mirror.py`` applies the decisions to mitmproxy flows.
"""

from __future__ import annotations

import logging

from accounts.admin import AdminApi
from accounts.pool import Pool
from accounts.store import Store
from mirror.limits import PerAddress
from mirror.rewrite import Upstreams
from mirror.router import Gateway
from mirror.seedapi import SeedApi
from mirror.seeds import Seeds
from mirror.sentinel import Runner, ServerSentinel
from mirror.switches import Switches, replaced_hosts
from settings import Settings
from settings.allow_list import parse_allow_rules
from settings.ban_list import parse_ban_rules

log = logging.getLogger(__name__)


def default_hosts(listen: str) -> tuple[str, ...]:
    """The names the mirror answers to without ``gateway_hosts``: the listen address
    (unless it is a wildcard) and the loopback names."""
    wildcard = listen in ("0.0.0.0", "::", "")
    return (*(() if wildcard else (listen,)), "localhost", "127.0.0.1", "::1")


def build_gateway(
    settings: Settings, store: Store, pool: Pool, *, sentinel: Runner | None = None
) -> Gateway:
    """``sentinel`` runs the real exchange for ``NO_SENTINEL`` (the API path's, see
    :func:`mirror.sentinel.dialect_runner`); without it the switch cannot work."""
    if settings.no_sentinel and sentinel is None:
        log.warning("no_sentinel is on, but no sentinel runner was given: it has no effect")
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
        switches=Switches(
            force_no_history=settings.force_no_history,
            x_sign=settings.x_sign,
            hosts=replaced_hosts(settings.file_host, settings.voice_host),
            sentinel=ServerSentinel(sentinel) if settings.no_sentinel and sentinel else None,
        ),
    )


__all__ = ["Gateway", "build_gateway"]
