"""Everything chat2api does to private internals of mitmproxy, pyOpenSSL and curl_cffi.

Nothing here is needed for correct answers: each patch makes chat2api faster or
leaner than the libraries' stock behaviour, and chat2api works without any of
them (README "Patches"). They are installed by one explicit call,
:func:`install`, made at start-up by whichever runs first: the lean launcher's
``main`` (``python -m patches.launcher``, what run.sh starts) or the chat2api
addon's first ``configure`` (plain ``mitmdump -s addons/chat2api.py``). Later
calls change nothing. No module of this package patches anything on import.

Before a patch is applied, its ``fits`` function checks that the installed
library has the shapes it replaces (attributes, signatures, versions). When it
does not, the patch stands aside with one log line naming it and why, and the
library's stock behaviour stays: slower, never a TypeError in the middle of a
request. ``MITM_PATCHES=off`` (settings ``mitm_patches``) makes every patch
stand aside.

=================== ======= =====================================================
patch               where   what it replaces
=================== ======= =====================================================
malloc              both    glibc's malloc thresholds (patches/memory.py)
curl_headers        both    frees a reused curl handle's header list
                            (``curl_cffi``'s private ``_headers``; patches/curl.py)
inline_stream       both    ``HttpStream.send_response``: addon answers streamed
                            from mitmproxy's HTTP layer (patches/inline_stream.py)
early_answer        both    ``HttpStream``'s request-body states: an answer before
                            the body is read, a body cut at its limit
                            (patches/early_answer.py)
deferred_addons     lean    ``mitmproxy.addons``' ``__init__`` run on demand, with a
                            copy of the left-out addons' options
                            (patches/deferred.py)
fast_addon_manager  lean    the master's ``AddonManager`` class and its
                            ``_iter_hooks`` (patches/addon_manager.py)
layer_shim          lean    ``ProxyConnectionHandler.__init__``: the top layer
                            wrapped (patches/layer_shim.py)
quiet_add_log       lean    the master's ``_legacy_log_events.emit``
task_names          lean    ``asyncio_utils.set_task_debug_info`` (patches/tasks.py)
tls_buffers         lean    ``SSL_set_mode`` through ``OpenSSL._util``
                            (patches/memory.py)
=================== ======= =====================================================

"lean" patches only apply under the lean launcher; under plain mitmdump they
are not listed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("chat2api.patches")

# mitmproxy majors the mitmproxy patches were written and tested against.
KNOWN_MITMPROXY = ("11.", "12.")


@dataclass(frozen=True)
class Patch:
    name: str
    #: Only under the lean launcher (it needs the launcher's master or start order).
    lean_only: bool
    #: None when the installed library has the shapes the patch replaces, else why not.
    fits: Callable[[], str | None]
    apply: Callable[[], None]


# Decided patches: name -> None (active) or why it stands aside.
_decided: dict[str, str | None] = {}
_reported = False
_enabled: bool | None = None


def _lazy(module: str, func: str) -> Callable[[], object]:
    """``patches.<module>.<func>``, imported when called: the launcher applies the
    first patches before anything imports mitmproxy, so nothing is imported early."""

    def call() -> object:
        return getattr(importlib.import_module(f"patches.{module}"), func)()

    return call


def _nothing() -> None:
    """For patches the lean master applies itself, per master (patches/lean.py)."""


def _registry() -> list[Patch]:
    def patch(name: str, lean_only: bool, module: str, fits: str, apply: str | None) -> Patch:
        return Patch(
            name,
            lean_only,
            _lazy(module, fits),  # type: ignore[arg-type]
            _lazy(module, apply) if apply else _nothing,  # type: ignore[arg-type]
        )

    # In the order they are applied: malloc and the deferred import come first.
    return [
        patch("malloc", False, "memory", "malloc_fits", "tune_malloc_now"),
        patch("deferred_addons", True, "deferred", "fits", "apply"),
        patch("curl_headers", False, "curl", "fits", None),
        patch("inline_stream", False, "inline_stream", "fits", "apply"),
        patch("early_answer", False, "early_answer", "fits", "apply"),
        patch("fast_addon_manager", True, "addon_manager", "fits", None),
        patch("layer_shim", True, "layer_shim", "fits", "apply"),
        patch("quiet_add_log", True, "addon_manager", "quiet_log_fits", None),
        patch("task_names", True, "tasks", "fits", "apply"),
        patch("tls_buffers", True, "memory", "tls_fits", None),
    ]


# Patches that import nothing of mitmproxy and come before it is imported.
_EARLY = ("malloc", "deferred_addons")


def install(
    *, enabled: bool, lean: bool = False, before_mitmproxy: Callable[[], None] | None = None
) -> dict[str, str | None]:
    """Apply every patch that fits (all stand aside when ``enabled`` is false).

    ``lean`` adds the patches only the lean launcher uses. Each patch is decided
    once per process; later calls return what was decided. The result maps each
    decided patch to None (active) or the reason it stands aside.
    ``before_mitmproxy`` runs after the early patches (malloc, the deferred
    import) and before the checks of the others import mitmproxy.
    """
    global _enabled
    if _enabled is None:
        _enabled = enabled
    for patch in _registry():
        if before_mitmproxy is not None and patch.name not in _EARLY:
            before_mitmproxy()
            before_mitmproxy = None
        if patch.name in _decided or (patch.lean_only and not lean):
            continue
        if not _enabled:
            _decided[patch.name] = "MITM_PATCHES=off"
            continue
        try:
            why = patch.fits()
        except Exception as e:  # noqa: BLE001 - a check that breaks means "does not fit"
            why = f"its check failed ({type(e).__name__}: {e})"
        if why is None:
            try:
                patch.apply()
            except Exception as e:  # noqa: BLE001 - stock behaviour rather than a half patch
                why = f"applying it failed ({type(e).__name__}: {e})"
        _decided[patch.name] = why
    return dict(_decided)


def active(name: str) -> bool:
    """Whether patch ``name`` was installed (False before :func:`install`)."""
    return name in _decided and _decided[name] is None


def decided() -> dict[str, str | None]:
    return dict(_decided)


def report(wanted: bool | None = None) -> None:
    """Log, once, which patches are active and which stood aside (and why).

    Called from the addon's first ``configure``, when mitmproxy's log is set up.
    ``wanted`` is the ``mitm_patches`` setting the addon read: if the launcher
    decided otherwise (it reads config.yaml and the environment before the addon
    can see ``--set chat2api_config``), that is said too.
    """
    global _reported
    if _reported:
        return
    _reported = True
    on = sorted(name for name, why in _decided.items() if why is None)
    off = sorted(name for name, why in _decided.items() if why is not None)
    log.info(
        "chat2api patches: active: %s; standing aside: %s",
        ", ".join(on) or "none",
        ", ".join(off) or "none",
    )
    for name in off:
        why = _decided[name]
        if why != "MITM_PATCHES=off":
            log.warning("chat2api patch %s stands aside (stock mitmproxy behaviour): %s", name, why)
    if wanted is not None and _enabled is not None and wanted != _enabled:
        log.warning(
            "mitm_patches=%s in the settings, but the launcher installed patches with %s "
            "(set MITM_PATCHES in the environment to choose before start-up)",
            "on" if wanted else "off",
            "on" if _enabled else "off",
        )


def mitmproxy_version_fits() -> str | None:
    """None when the installed mitmproxy is a version the patches know."""
    from mitmproxy import version

    if not version.VERSION.startswith(KNOWN_MITMPROXY):
        return f"mitmproxy {version.VERSION} is not a version these patches know (11, 12)"
    return None


def _reset_for_tests() -> None:
    global _reported, _enabled
    _decided.clear()
    _reported = False
    _enabled = None
