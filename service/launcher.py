"""``python -m service.launcher [mitmdump arguments]``: a lean mitmdump.

``run.sh`` starts chat2api this way; ``mitmdump -s addons/chat2api.py`` works
just the same, only slower. The arguments, ``--set`` options and ``config.yaml``
handling are mitmdump's own (the same ``mitmproxy.tools.main.run`` with
mitmdump's parser). Two things differ:

**The addons** (:class:`LeanMaster`). mitmdump loads about 40 addons and
dispatches every event of every flow through all of them. chat2api needs a
handful: the log output to the terminal (errors, the "listening at" lines and
chat2api's own lines, but not the per-flow dump), ``core`` (the core options
and commands), ``block`` (mitmproxy's refusal of clients from public addresses
when listening on all interfaces), ``proxyserver``, the ``-s`` script loader,
``next_layer``, ``tlsconfig``, ``keepserving`` and ``errorcheck`` (exit when an
error is logged during startup), in mitmdump's order. Termination on SIGINT and
SIGTERM is the entry point's. The options of the addons left out are still
defined, with mitmdump's types and defaults (:class:`Compat`), so every
mitmdump flag and ``--set`` parses: the ones that only shape output or replay
(``flow_detail``, ``keepserving``, filter expressions, ``onboarding`` ...) are
accepted and have no effect; setting one that would change what the proxy does
(``proxyauth``, ``modify_headers``, ``save_stream_file``, ``rfile`` ...) to
anything but its default is refused at startup with a pointer to plain
``mitmdump``, rather than silently ignored.

**The hook dispatch** (:class:`FastAddonManager`). mitmproxy's
:class:`~mitmproxy.addonmanager.AddonManager` walks its whole chain for every event of every flow:
each addon through a
recursive generator, a ``safecall`` context manager and a coroutine, whether
or not the addon has a method for that event, and once more for the ``update``
event that follows each flow event. :class:`FastAddonManager`
keeps, per event name, the list of methods the chain has for it, and calls
just those, in the same order, with the same error handling (an exception in
an addon is logged as "Addon error" and the next top-level addon still runs;
``AddonHalt`` stops the event). The list is rebuilt after anything that can
change the addon tree: ``register``, ``remove``, a direct invocation (which is
how the script loader starts a freshly (re)loaded script) and a ``configure``
event.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, hooks, master, options
from mitmproxy.addons import (
    anticache,
    anticomp,
    block,
    blocklist,
    clientplayback,
    command_history,
    core,
    dns_resolver,
    dumper,
    errorcheck,
    export,
    keepserving,
    maplocal,
    mapremote,
    modifybody,
    modifyheaders,
    next_layer,
    onboarding,
    proxyauth,
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
from mitmproxy.tools import cmdline
from mitmproxy.tools import main as mitm_main

# Per top-level addon: the hook methods of it and its sub-addons, or None when
# one of them is not callable (mitmproxy reports that as an addon error).
_Group = tuple[Any, list[Callable[..., Any]] | None]


class FastAddonManager(addonmanager.AddonManager):
    """An ``AddonManager`` that remembers which addons handle which event."""

    _hooks: dict[str, list[_Group]]

    @classmethod
    def adopt(cls, manager: addonmanager.AddonManager) -> FastAddonManager:
        """Turn ``manager`` (with its chain and subscriptions) into one of these."""
        manager.__class__ = cls
        assert isinstance(manager, cls)
        manager._hooks = {}
        return manager

    def _invalidate(self) -> None:
        self._hooks = {}

    def _groups(self, event: hooks.Hook) -> list[_Group]:
        groups = self._hooks.get(event.name)
        if groups is None:
            groups = []
            for addon in self.chain:
                try:
                    funcs = [func for _, func in self._iter_hooks(addon, event)]
                except exceptions.AddonManagerError:
                    groups.append((addon, None))
                    continue
                if funcs:
                    groups.append((addon, funcs))
            self._hooks[event.name] = groups
        return groups

    def register(self, addon: Any) -> Any:
        self._invalidate()
        try:
            return super().register(addon)  # type: ignore[no-untyped-call]
        finally:
            self._invalidate()

    def remove(self, addon: Any) -> None:
        self._invalidate()
        try:
            super().remove(addon)  # type: ignore[no-untyped-call]
        finally:
            self._invalidate()

    def invoke_addon_sync(self, addon: Any, event: hooks.Hook) -> None:
        self._invalidate()
        super().invoke_addon_sync(addon, event)

    async def invoke_addon(self, addon: Any, event: hooks.Hook) -> None:
        self._invalidate()
        await super().invoke_addon(addon, event)

    async def trigger_event(self, event: hooks.Hook) -> None:
        if isinstance(event, hooks.ConfigureHook):
            self._invalidate()
        groups = self._groups(event)
        if not groups:
            return
        args = event.args()
        for addon, funcs in groups:
            try:
                with addonmanager.safecall():
                    if funcs is None:  # let mitmproxy raise (and log) its own error
                        await addonmanager.AddonManager.invoke_addon(self, addon, event)
                        continue
                    for func in funcs:
                        result = func(*args)
                        if result is not None and inspect.isawaitable(result):
                            await result
            except exceptions.AddonHalt:
                return

    def trigger(self, event: hooks.Hook) -> None:
        # The synchronous variant: option changes, "update" and the add_log event
        # mitmproxy sends for every log record.
        if isinstance(event, hooks.ConfigureHook):
            self._invalidate()
        groups = self._groups(event)
        if not groups:
            return
        args = event.args()
        for addon, funcs in groups:
            try:
                with addonmanager.safecall():
                    if funcs is None:
                        addonmanager.AddonManager.invoke_addon_sync(self, addon, event)
                        continue
                    for func in funcs:
                        if inspect.iscoroutinefunction(func):
                            raise exceptions.AddonManagerError(  # type: ignore[no-untyped-call]
                                f"Async handler {event.name} ({addon}) cannot be called "
                                "from sync context"
                            )
                        func(*args)
            except exceptions.AddonHalt:
                return


# mitmdump's addons that LeanMaster leaves out; Compat defines their options.
_ABSENT: tuple[Callable[[], Any], ...] = (
    anticache.AntiCache,
    anticomp.AntiComp,
    blocklist.BlockList,
    clientplayback.ClientPlayback,
    command_history.CommandHistory,
    dns_resolver.DnsResolver,
    dumper.Dumper,
    export.Export,
    maplocal.MapLocal,
    mapremote.MapRemote,
    modifybody.ModifyBody,
    modifyheaders.ModifyHeaders,
    onboarding.Onboarding,
    proxyauth.ProxyAuth,
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
        for make in _ABSENT:
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
                "(python -m service.launcher); run mitmdump -s addons/chat2api.py instead"
            )


class LeanMaster(master.Master):
    """mitmdump's master with only the addons chat2api needs, and
    :class:`FastAddonManager`."""

    def __init__(self, opts: options.Options, event_loop: Any = None) -> None:
        super().__init__(opts, event_loop=event_loop, with_termlog=True)
        FastAddonManager.adopt(self.addons)
        self.addons.add(  # type: ignore[no-untyped-call]
            core.Core(),
            block.Block(),
            proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
            script.ScriptLoader(),  # type: ignore[no-untyped-call]
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            Compat(),
            keepserving.KeepServing(),
            errorcheck.ErrorCheck(),
        )


def _extra(args: Any) -> dict[str, Any]:
    # What mitmdump's own entry point passes (mitmproxy.tools.main.mitmdump).
    if args.filter_args:
        v = " ".join(args.filter_args)
        return {"save_stream_filter": v, "readfile_filter": v, "dumper_filter": v}
    return {}


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    mitm_main.run(LeanMaster, cmdline.mitmdump, arguments, _extra)


if __name__ == "__main__":
    main()
