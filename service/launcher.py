"""``python -m service.launcher [mitmdump arguments]``: a lean mitmdump.

``run.sh`` starts chat2api this way; ``mitmdump -s addons/chat2api.py`` works
just the same, only slower. The arguments, ``--set`` options and ``config.yaml``
handling are mitmdump's own (the same ``mitmproxy.tools.main.run`` with
mitmdump's parser). Three things differ:

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

**Memory** (issue 7; README "Performance"). glibc's malloc is set up first
(:func:`service.memory.tune_malloc`), and TLS connections free their buffers
while idle (:class:`service.memory.ReleaseTlsBuffers`, right after
``tlsconfig``). The modules the left-out addons need
are not imported: ``mitmproxy.addons``' ``__init__`` imports all of mitmdump's
addons, with Flask (the onboarding app), ldap3 and passlib (proxy
authentication), the content views (the flow dump) ..., about 14 MB that
chat2api never runs. :func:`defer_package_init` imports that package without
running its ``__init__`` until a name other than a submodule is asked of it
(``mitmproxy.addons.default_addons`` still works, and then costs what it
always did); the options of the heavy left-out addons come from
:data:`HEAVY_OPTIONS`, a copy of what those addons define (a test compares the
two), and those of the light ones from the addons themselves, as before.
Started as a program, it also builds the tokenizer before importing mitmproxy
(:func:`build_tokenizer_first`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

from service import layer_shim, memory
from translator import usage


def defer_package_init(name: str) -> bool:
    """Put package ``name`` in ``sys.modules`` with its ``__init__`` not yet run.

    Its submodules import as usual (``from name import sub``); the first access to
    any other name of the package runs the real ``__init__`` in place, so nothing
    that uses the package's own names breaks. False if the package was imported
    already (or is not a package): then nothing changes.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    loader = spec.loader if spec is not None else None
    if spec is None or loader is None or spec.submodule_search_locations is None:
        return False
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        try:
            # `from package import sub` asks for `sub` before importing it.
            return importlib.import_module(f"{name}.{attr}")
        except ModuleNotFoundError as e:
            if e.name != f"{name}.{attr}":
                raise
        # One of the package's own names: run its __init__ now, once.
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attr)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)
    return True


def build_tokenizer_first() -> None:
    """Build the tokenizer before mitmproxy is imported (``python -m service.launcher``).

    Building o200k_base goes through a 26 MB dict of its ranks next to the Rust
    tables being filled: in the background after start-up (what
    :meth:`service.runtime.Runtime.start` does), that spike came on top of
    everything else and set the process's peak (141 MB against 113 MB idle). Done
    here it costs about 0.25 s of start-up and the peak is the idle size;
    ``Runtime.start`` then finds it built.
    """
    try:
        usage.get_encoding(usage.encoding_name_for("gpt-4o"))
    except usage.EncodingDataError as e:  # as before: each usage count reports it
        print(f"chat2api: {e}", file=sys.stderr)


# Before anything imports mitmproxy's addons (mitmproxy.master does).
memory.tune_malloc()
defer_package_init("mitmproxy.addons")
if __name__ == "__main__":
    build_tokenizer_first()

from mitmproxy import addonmanager, ctx, exceptions, hooks, log, master, options  # noqa: E402
from mitmproxy.addons import (  # noqa: E402
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
from mitmproxy.tools import cmdline  # noqa: E402
from mitmproxy.tools import main as mitm_main  # noqa: E402
from mitmproxy.utils import asyncio_utils  # noqa: E402

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
# Those of dumper, export, maplocal, onboarding and proxyauth are HEAVY_OPTIONS.
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

# The options of mitmdump's left-out addons whose modules cost megabytes to import
# (mitmproxy 11.0.2's, as they define them; tests/test_launcher.py compares):
# name, type, default, help, choices.
HEAVY_OPTIONS: tuple[tuple[str, Any, Any, str, Sequence[str] | None], ...] = (
    # mitmproxy.addons.dumper (the content views)
    (
        "flow_detail",
        int,
        1,
        """
        The display detail level for flows in mitmdump: 0 (quiet) to 4 (very verbose).
          0: no output
          1: shortened request URL with response status code
          2: full request URL with response status code and HTTP headers
          3: 2 + truncated response content, content of WebSocket and TCP messages \
(content_view_lines_cutoff: 512)
          4: 3 + nothing is truncated
        """,
        None,
    ),
    (
        "dumper_default_contentview",
        str,
        "auto",
        "The default content view mode.",
        (
            "auto",
            "raw",
            "raw hex stream",
            "hex dump",
            "graphql",
            "json",
            "xml/html",
            "wbxml",
            "javascript",
            "css",
            "url-encoded",
            "multipart form",
            "image",
            "query",
            "protocol buffer",
            "msgpack",
            "grpc/protocol buffer",
            "mqtt",
            "http/3 frames",
            "dns-over-https",
        ),
    ),
    ("dumper_filter", Optional[str], None, "Limit which flows are dumped.", None),
    # mitmproxy.addons.export
    (
        "export_preserve_original_ip",
        bool,
        False,
        """
        When exporting a request as an external command, make an effort to
        connect to the same IP as in the original request. This helps with
        reproducibility in cases where the behaviour depends on the
        particular host we are connecting to. Currently this only affects
        curl exports.
        """,
        None,
    ),
    # mitmproxy.addons.maplocal
    (
        "map_local",
        Sequence[str],
        [],
        """
        Map remote resources to a local file using a pattern of the form
        "[/flow-filter]/url-regex/file-or-directory-path", where the
        separator can be any character.
        """,
        None,
    ),
    # mitmproxy.addons.onboarding (Flask)
    ("onboarding", bool, True, "Toggle the mitmproxy onboarding app.", None),
    (
        "onboarding_host",
        str,
        "mitm.it",
        """
        Onboarding app domain. For transparent mode, use an IP when a DNS
        entry for the app domain is not present.
        """,
        None,
    ),
    # mitmproxy.addons.proxyauth (ldap3, passlib)
    (
        "proxyauth",
        Optional[str],
        None,
        """
        Require proxy authentication. Format:
        "username:pass",
        "any" to accept any user/pass combination,
        "@path" to use an Apache htpasswd file,
        or "ldap[s]:url_server_ldap[:port]:dn_auth:password:dn_subtree\
[?search_filter_key=...]" for LDAP authentication.
        """,
        None,
    ),
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
        for name, typespec, default, help, choices in HEAVY_OPTIONS:
            recorder.add_option(name, typespec, default, help, choices)
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
            memory.ReleaseTlsBuffers(),
            Compat(),
            keepserving.KeepServing(),
            errorcheck.ErrorCheck(),
        )
        manager = self.addons
        assert isinstance(manager, FastAddonManager)
        layer_shim.install(self, lambda hook: bool(manager._groups(hook)))
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


def _task_debug_info(task: Any, *, name: str, client: tuple[Any, ...] | None = None) -> None:
    """mitmproxy's ``set_task_debug_info`` without its look-up of
    ``PYTEST_CURRENT_TEST`` in the environment, which it makes for every task
    (every hook of every flow) to label tasks in mitmproxy's own test runs."""
    task.created = time.time()
    task.set_name(name)
    if client:
        task.client = client


def main(argv: Sequence[str] | None = None) -> None:
    asyncio_utils.set_task_debug_info = _task_debug_info
    arguments = list(sys.argv[1:] if argv is None else argv)
    mitm_main.run(LeanMaster, cmdline.mitmdump, arguments, _extra)


if __name__ == "__main__":
    main()
