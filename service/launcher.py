"""``python -m service.launcher [mitmdump arguments]``: mitmdump, with a cheaper hook dispatch.

``run.sh`` starts chat2api this way; ``mitmdump -s addons/chat2api.py`` works
just the same, only slower. The arguments, options, ``config.yaml`` handling,
default addons and their order are mitmdump's own (the same
``mitmproxy.tools.main.run`` with mitmdump's parser and ``DumpMaster``); the one
difference is how an event reaches the addons.

mitmproxy's :class:`~mitmproxy.addonmanager.AddonManager` walks its whole chain
for every event of every flow: about 40 default addons, each through a
recursive generator, a ``safecall`` context manager and a coroutine, whether
or not the addon has a method for that event, and once more for the ``update``
event that follows each flow event. Profiled under load (``bench/proxy.py``)
that walk was the largest single cost of a request. :class:`FastAddonManager`
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

from mitmproxy import addonmanager, exceptions, hooks, options
from mitmproxy.tools import cmdline
from mitmproxy.tools import main as mitm_main
from mitmproxy.tools.dump import DumpMaster

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


class Chat2ApiMaster(DumpMaster):
    """mitmdump's master with :class:`FastAddonManager`."""

    def __init__(self, opts: options.Options, *args: Any, **kwargs: Any) -> None:
        super().__init__(opts, *args, **kwargs)
        FastAddonManager.adopt(self.addons)


def _extra(args: Any) -> dict[str, Any]:
    # What mitmdump's own entry point passes (mitmproxy.tools.main.mitmdump).
    if args.filter_args:
        v = " ".join(args.filter_args)
        return {"save_stream_filter": v, "readfile_filter": v, "dumper_filter": v}
    return {}


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    mitm_main.run(Chat2ApiMaster, cmdline.mitmdump, arguments, _extra)


if __name__ == "__main__":
    main()
