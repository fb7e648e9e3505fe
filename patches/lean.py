"""The lean master: mitmdump with only the addons chat2api needs.

mitmdump loads about 40 addons and dispatches every event of every flow through
all of them. chat2api needs a handful: the log output to the terminal (errors,
the "listening at" lines and chat2api's own lines, but not the per-flow dump),
``core`` (the core options and commands), ``block`` (mitmproxy's refusal of
clients from public addresses when listening on all interfaces),
``proxyserver``, the ``-s`` script loader, ``next_layer``, ``tlsconfig``,
``keepserving`` and ``errorcheck`` (exit when an error is logged during
startup), in mitmdump's order. The options of the addons left out are still
defined, with mitmdump's types and defaults (:class:`Compat`), so every
mitmdump flag and ``--set`` parses: the ones that only shape output or replay
(``flow_detail``, ``keepserving``, filter expressions, ``onboarding`` ...) are
accepted and have no effect; setting one that would change what the proxy does
(``proxyauth``, ``modify_headers``, ``save_stream_file``, ``rfile`` ...) to
anything but its default is refused at startup with a pointer to plain
``mitmdump``, rather than silently ignored.

Choosing addons is public mitmproxy API. What the lean master adds on top is
patches (patches/__init__.py), each only when :func:`patches.install` found it
fits: the fast hook dispatch (patches/addon_manager.py), the layer shim
(patches/layer_shim.py), the quiet ``add_log`` below, the TLS buffer release
(patches/memory.py), and the options of the heavy left-out addons from a copy
(patches/deferred.py). Import this module only after :func:`patches.install`
(patches/launcher.py does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, log, master, options
from mitmproxy.addons import (
    anticache,
    anticomp,
    block,
    blocklist,
    clientplayback,
    command_history,
    core,
    dns_resolver,
    errorcheck,
    keepserving,
    mapremote,
    modifybody,
    modifyheaders,
    next_layer,
    proxyserver,
    readfile,
    save,
    savehar,
    script,
    serverplayback,
    stickyauth,
    stickycookie,
    strip_dns_https_records,
    tlsconfig,
    update_alt_svc,
    upstream_auth,
)

import patches
from patches import deferred, layer_shim, memory
from patches.addon_manager import FastAddonManager

# mitmdump's addons that LeanMaster leaves out; Compat defines their options.
# Those of dumper, export, maplocal, onboarding and proxyauth come from
# patches/deferred.py's copy when that patch is active, else from _heavy().
_ABSENT: tuple[Callable[[], Any], ...] = (
    anticache.AntiCache,
    anticomp.AntiComp,
    blocklist.BlockList,
    clientplayback.ClientPlayback,
    command_history.CommandHistory,
    dns_resolver.DnsResolver,
    mapremote.MapRemote,
    modifybody.ModifyBody,
    modifyheaders.ModifyHeaders,
    readfile.ReadFile,
    save.Save,
    savehar.SaveHar,
    serverplayback.ServerPlayback,
    stickyauth.StickyAuth,
    stickycookie.StickyCookie,
    strip_dns_https_records.StripDnsHttpsRecords,
    update_alt_svc.UpdateAltSvc,
    upstream_auth.UpstreamAuth,
)

# Options of those addons that change what the proxy does: refused unless left
# at their default. All their other options (output, replay tuning, DNS mode,
# the onboarding app, ...) are accepted and have no effect.
REFUSED = frozenset(
    {
        "anticache",
        "anticomp",
        "block_list",
        "client_replay",
        "hardump",
        "map_local",
        "map_remote",
        "modify_body",
        "modify_headers",
        "proxyauth",
        "rfile",
        "save_stream_file",
        "server_replay",
        "stickyauth",
        "stickycookie",
        "upstream_auth",
    }
)


class _OptionRecorder:
    """The part of a ``Loader`` the absent addons' ``load`` uses: options only."""

    def __init__(self, loader: addonmanager.Loader) -> None:
        self.loader = loader

    def add_option(
        self,
        name: str,
        typespec: Any,
        default: Any,
        help: str,
        choices: Sequence[str] | None = None,
    ) -> None:
        if name not in ctx.options:
            self.loader.add_option(name, typespec, default, help, choices)

    def add_command(self, *args: Any, **kwargs: Any) -> None:
        pass


class Compat:
    """mitmdump's options for the addons :class:`LeanMaster` does not load."""

    def load(self, loader: addonmanager.Loader) -> None:
        recorder = _OptionRecorder(loader)
        if patches.active("deferred_addons"):
            for name, typespec, default, help, choices in deferred.heavy_options():
                recorder.add_option(name, typespec, default, help, choices)
            absent = _ABSENT
        else:  # the real addons define them (and cost what they cost under mitmdump)
            absent = _heavy() + _ABSENT
        for make in absent:
            addon = make()
            load = getattr(addon, "load", None)
            if load is not None:
                load(recorder)

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        refused = sorted(
            name
            for name in updated & REFUSED
            if name in opts and getattr(opts, name) != opts.default(name)
        )
        if refused:
            raise exceptions.OptionsError(  # type: ignore[no-untyped-call]
                f"{', '.join(refused)}: not available in chat2api's lean launcher "
                "(python -m patches.launcher); run mitmdump -s addons/chat2api.py instead"
            )


class LeanMaster(master.Master):
    """mitmdump's master with only the addons chat2api needs, and the lean
    patches that :func:`patches.install` found fitting."""

    def __init__(self, opts: options.Options, event_loop: Any = None) -> None:
        super().__init__(opts, event_loop=event_loop, with_termlog=True)
        if patches.active("fast_addon_manager"):
            FastAddonManager.adopt(self.addons)
        tls = [memory.ReleaseTlsBuffers()] if patches.active("tls_buffers") else []
        self.addons.add(  # type: ignore[no-untyped-call]
            core.Core(),
            block.Block(),
            proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
            script.ScriptLoader(),  # type: ignore[no-untyped-call]
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            *tls,
            Compat(),
            keepserving.KeepServing(),
            errorcheck.ErrorCheck(),
        )
        manager = self.addons
        if not isinstance(manager, FastAddonManager):
            return
        if patches.active("layer_shim"):
            layer_shim.attach(self, lambda hook: bool(manager._groups(hook)))
        if not patches.active("quiet_add_log"):
            return
        # mitmproxy hands every log record to the deprecated `add_log` hook
        # through the loop's self-pipe (a system call per line), listened to or not.
        legacy = self._legacy_log_events
        add_log = log.AddLogHook(log.LogEntry("", "info"))  # type: ignore[no-untyped-call]
        emit = legacy.emit

        def emit_if_heard(record: logging.LogRecord) -> None:
            if manager._groups(add_log):
                emit(record)

        legacy.emit = emit_if_heard  # type: ignore[method-assign]


def _extra(args: Any) -> dict[str, Any]:
    # What mitmdump's own entry point passes (mitmproxy.tools.main.mitmdump).
    if args.filter_args:
        v = " ".join(args.filter_args)
        return {"save_stream_filter": v, "readfile_filter": v, "dumper_filter": v}
    return {}


def _heavy() -> tuple[Callable[[], Any], ...]:
    """The heavy left-out addons themselves (without the deferred_addons patch)."""
    from mitmproxy.addons import dumper, export, maplocal, onboarding, proxyauth

    return (
        dumper.Dumper,
        export.Export,
        maplocal.MapLocal,
        onboarding.Onboarding,
        proxyauth.ProxyAuth,
    )
