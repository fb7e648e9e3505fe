"""A cheaper hook dispatch for the lean master (patches ``fast_addon_manager``
and ``quiet_add_log``).

mitmproxy's :class:`~mitmproxy.addonmanager.AddonManager` walks its whole chain
for every event of every flow: each addon through a recursive generator, a
``safecall`` context manager and a coroutine, whether or not the addon has a
method for that event, and once more for the ``update`` event that follows each
flow event. :class:`FastAddonManager` keeps, per event name, the list of
methods the chain has for it (found with the manager's private
``_iter_hooks``), and calls just those, in the same order, with the same error
handling (an exception in an addon is logged as "Addon error" and the next
top-level addon still runs; ``AddonHalt`` stops the event). The list is rebuilt
after anything that can change the addon tree: ``register``, ``remove``, a
direct invocation (which is how the script loader starts a freshly (re)loaded
script) and a ``configure`` event.

The lean master (patches/lean.py) turns its manager into one with
:meth:`FastAddonManager.adopt` (a class swap) when the patch is active.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks

import patches

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


def fits() -> str | None:
    why = patches.mitmproxy_version_fits()
    if why is not None:
        return why
    manager = addonmanager.AddonManager
    for name in (
        "_iter_hooks",
        "register",
        "remove",
        "invoke_addon",
        "invoke_addon_sync",
        "trigger_event",
        "trigger",
    ):
        if not callable(getattr(manager, name, None)):
            return f"mitmproxy's AddonManager has no {name}"
    params = list(inspect.signature(manager._iter_hooks).parameters)
    if params != ["self", "addon", "event"]:
        return f"AddonManager._iter_hooks takes {params}, not (self, addon, event)"
    if not hasattr(addonmanager, "safecall") or not hasattr(exceptions, "AddonHalt"):
        return "mitmproxy's addonmanager has no safecall or AddonHalt"
    return None


def quiet_log_fits() -> str | None:
    """Log records reach the ``add_log`` hook only when an addon listens for it."""
    if not patches.active("fast_addon_manager"):
        return "it needs fast_addon_manager"
    from mitmproxy import log, master

    if not hasattr(log, "LegacyLogEvents") or not hasattr(log.LegacyLogEvents, "emit"):
        return "mitmproxy.log has no LegacyLogEvents.emit"
    if "_legacy_log_events" not in inspect.getsource(master.Master.__init__):
        return "mitmproxy's Master keeps no _legacy_log_events"
    return None
