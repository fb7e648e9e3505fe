"""The browser-probe arrays that proof-of-work answers encode.

Two dialects (``docs/sentinel.md``):

* ``classic_config``: the 18 elements of ``docs/sentinel.md#classic-config`` (SHA3-512 proofs);
* ``config_2026``: the 25 elements of the 2026 sentinel (FNV-1a proofs).

Both are built fresh for every call from one ``BrowserProfile``
(docs/original-behaviour.md#weaknesses-fixed-here, 9:
upstream cached the array for days, freezing its clock and ids).  Elements 3 and 9 are
placeholders that the solver overwrites (``pow.solver``).

Timing elements imitate one page load: element 13 is ``performance.now()``, the age of
the page, and element 17 is ``performance.timeOrigin``, so that element 17 + element 13
is the current time.  A caller that keeps one simulated page per account passes its
load moment as ``page_loaded_at`` (a ``time.perf_counter()`` value); without it every
call is a page loaded a random few seconds to minutes ago, so that no two accounts share
a time origin.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime

from pow.profile import WINDOW_KEYS, BrowserProfile

__all__ = [
    "SENTINEL_SDK_URL",
    "ConfigValue",
    "classic_config",
    "config_2026",
]

ConfigValue = str | int | float | None

#: The sentinel script's own URL, which the 2026 script reports as element 5 (aurora
#: sends exactly this; the classic dialect used it as the fallback script source).
SENTINEL_SDK_URL = "https://chatgpt.com/backend-api/sentinel/sdk.js"

_BASE36 = "abcdefghijklmnopqrstuvwxyz0123456789"


def _document_key(rng: random.Random) -> str:
    # React marks the root with "_reactListening" + Math.random().toString(36).slice(2),
    # one random suffix per page load; "location" is the other key upstream reports.
    if rng.random() < 0.5:
        return "location"
    return "_reactListening" + "".join(rng.choice(_BASE36) for _ in range(rng.choice((10, 11))))


def _page_timing(
    rng: random.Random, now: datetime, page_loaded_at: float | None
) -> tuple[float, float]:
    """``(performance.now(), performance.timeOrigin)`` in ms, consistent with ``now``.

    Chrome coarsens both to 0.1 ms when the page is not cross-origin isolated.
    """
    if page_loaded_at is None:
        # Log-uniform between 2 s and 15 min: most requests come soon after a load.
        perf_now = 2000.0 * (450.0 ** rng.random())
    else:
        perf_now = max(0.0, (time.perf_counter() - page_loaded_at) * 1000.0)
    perf_now = round(perf_now, 1)
    return perf_now, round(now.timestamp() * 1000.0 - perf_now, 1)


def _common(
    profile: BrowserProfile,
    *,
    script_src: str,
    build_id: str | None,
    rng: random.Random,
    now: datetime | None,
    page_loaded_at: float | None,
    instance_id: str,
    element9: ConfigValue,
) -> list[ConfigValue]:
    now = datetime.now(UTC) if now is None else now
    perf_now, time_origin = _page_timing(rng, now, page_loaded_at)
    return [
        profile.screen_width + profile.screen_height,  # 0: screen.width + screen.height
        profile.date_string(now),  # 1: new Date().toString()
        profile.js_heap_size_limit,  # 2: performance.memory.jsHeapSizeLimit
        0,  # 3: nonce, set by the solver
        profile.user_agent,  # 4: navigator.userAgent (the header's value)
        script_src,  # 5: a <script src> of the page
        build_id,  # 6: build id (dpl "c/<id>/_" or <html data-build>)
        profile.language,  # 7: navigator.language
        ",".join(profile.languages),  # 8: navigator.languages
        element9,  # 9: varied by the solver
        rng.choice(profile.navigator_probes()),  # 10: "<navigator prop>−<value>"
        _document_key(rng),  # 11: a key of document
        rng.choice(WINDOW_KEYS),  # 12: a key of window
        perf_now,  # 13: performance.now()
        instance_id,  # 14: see the callers
        "",  # 15: location.search keys, joined (none on the chat page)
        profile.hardware_concurrency,  # 16: navigator.hardwareConcurrency
        time_origin,  # 17: performance.timeOrigin
    ]


def classic_config(
    profile: BrowserProfile,
    *,
    script_src: str,
    build_id: str | None,
    rng: random.Random,
    now: datetime | None = None,
    page_loaded_at: float | None = None,
) -> list[ConfigValue]:
    """The 18-element config of the classic sentinel (docs/sentinel.md#classic-config).

    ``script_src`` is a script URL of the home page (``""`` if it could not be fetched);
    ``build_id`` the dpl or ``data-build`` (None if unknown).  ``now`` must be aware.
    """
    return _common(
        profile,
        script_src=script_src,
        build_id=build_id,
        rng=rng,
        now=now,
        page_loaded_at=page_loaded_at,
        # 14: crypto.randomUUID(), new for every config.
        instance_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        element9=0,  # i >> 1 while solving
    )


def config_2026(
    profile: BrowserProfile,
    *,
    device_id: str,
    build_id: str | None,
    rng: random.Random,
    script_src: str = SENTINEL_SDK_URL,
    now: datetime | None = None,
    page_loaded_at: float | None = None,
) -> list[ConfigValue]:
    """The 25-element config of the 2026 sentinel (``docs/sentinel.md#2026-config``).

    Elements 0-17 keep their classic meaning except:

    * 5: the sentinel SDK's script URL (aurora's 2026 capture: never null);
    * 9: ``Math.random()`` in the requirements token; the solver replaces it with the
      elapsed milliseconds of the search in a proof;
    * 14: the device id (the ``oai-device-id`` header / ``oai-did`` cookie of the
      account) instead of a fresh UUID; aurora notes an empty one is treated as an
      unknown device.

    Elements 18-24 are new: seven ``Number("<name>" in window)`` checks.  Which names
    the script checks is not public (aurora does not name them either); they are
    presumably automation and extension globals, and a clean browser answers 0 to all
    seven, which is what aurora's 2026 capture shows, so they are 0 here.
    """
    config = _common(
        profile,
        script_src=script_src,
        build_id=build_id,
        rng=rng,
        now=now,
        page_loaded_at=page_loaded_at,
        instance_id=device_id,
        element9=rng.random(),
    )
    config.extend([0] * 7)
    return config
