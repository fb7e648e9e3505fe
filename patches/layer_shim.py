"""Less loop work per flow, between a connection's handler and its layers
(patch ``layer_shim``).

:class:`LayerShim` wraps a connection's top layer (``ConnectionHandler.layer``)
in chat2api's lean master (``patches/lean.py``); plain mitmdump keeps
mitmproxy's own behaviour. It changes how often the loop is involved, never
what the layers decide:

**Hooks nobody listens to are answered in the same pass.** mitmproxy runs every
hook a layer yields as a task: through the addon manager, then back to the
layers as a ``HookCompleted`` event, behind an asyncio lock. A streamed
completion passes three flow hooks no addon of the lean master handles
(``requestheaders``, ``responseheaders``, ``response``), each a round trip
through the loop. Such a hook is answered at once, as if its (empty) handling
had finished immediately. Only when no addon has a method for it and, for
hooks about a flow, none for ``update`` either (mitmproxy follows every flow
hook with an ``update`` event).

**Writes to one connection in one pass leave as one.** The handler writes each
``SendData`` to its socket at once; an answer's head, a batch of it and its
last chunk, made in one pass, would be three system calls (and, through the
HTTPS proxy, three TLS writes of the socket). Consecutive ``SendData`` commands
for the same connection are joined; anything else in between keeps its place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import flow, hooks
from mitmproxy.connection import Connection
from mitmproxy.proxy import commands, events

import patches


class LayerShim:
    """A stand-in for a connection's top layer (only ``handle_event`` is used)."""

    def __init__(self, inner: Any, listened: Callable[[hooks.Hook], bool]) -> None:
        self.inner = inner
        self._listened = listened
        self._update = hooks.UpdateHook([])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _idle(self, hook: commands.StartHook) -> bool:
        if self._listened(hook):
            return False
        # (vars, not hook.args(): that walks dataclasses.fields every time)
        about_a_flow = any(isinstance(v, flow.Flow) for v in vars(hook).values())
        return not (about_a_flow and self._listened(self._update))

    def handle_event(self, event: events.Event) -> Generator[commands.Command, Any, None]:
        todo: deque[events.Event] = deque([event])
        to: Connection | None = None
        pending: list[bytes] = []
        while todo:
            for command in self.inner.handle_event(todo.popleft()):
                if isinstance(command, commands.StartHook) and self._idle(command):
                    if command.blocking:
                        # The layer is paused on it: resume it after this pass.
                        todo.append(events.HookCompleted(command))
                    continue
                if type(command) is commands.SendData:
                    if command.connection is to:
                        pending.append(command.data)
                        continue
                    if pending:
                        yield _joined(to, pending)
                    to, pending = command.connection, [command.data]
                    continue
                if pending:
                    yield _joined(to, pending)
                    to, pending = None, []
                yield command
        if pending:
            yield _joined(to, pending)


def _joined(to: Connection | None, pending: list[bytes]) -> commands.SendData:
    assert to is not None
    return commands.SendData(to, pending[0] if len(pending) == 1 else b"".join(pending))


def fits() -> str | None:
    """The handler builds its top layer in ``__init__(master, ...)`` and only ever
    calls its ``handle_event``; the shim needs the fast hook dispatch's lists."""
    import inspect

    why = patches.mitmproxy_version_fits()
    if why is not None:
        return why
    if not patches.active("fast_addon_manager"):
        return "it needs fast_addon_manager"
    from mitmproxy.proxy import mode_servers, server

    cls = getattr(mode_servers, "ProxyConnectionHandler", None)
    if cls is None:
        return "mitmproxy has no ProxyConnectionHandler"
    init = getattr(cls.__init__, "chat2api_original", cls.__init__)
    params = list(inspect.signature(init).parameters)
    if params[:2] != ["self", "master"]:
        return f"ProxyConnectionHandler.__init__ takes {params}, not (self, master, ...)"
    if "self.layer" not in inspect.getsource(server.ConnectionHandler):
        return "mitmproxy's ConnectionHandler keeps no self.layer"
    return None


def apply() -> None:
    """Give every client connection of a master that asked (:func:`attach`) a
    :class:`LayerShim`. The handler class is shared by every master in the
    process, so only connections of such masters are wrapped."""
    from mitmproxy.proxy import mode_servers

    cls: Any = mode_servers.ProxyConnectionHandler
    if getattr(cls.__init__, "chat2api_shim", False):
        return
    original = cls.__init__

    def __init__(self: Any, master: Any, *args: Any, **kwargs: Any) -> None:
        original(self, master, *args, **kwargs)
        shim = getattr(master, "chat2api_listened", None)
        if shim is not None:
            self.layer = LayerShim(self.layer, shim)

    __init__.chat2api_shim = True  # type: ignore[attr-defined]
    __init__.chat2api_original = original  # type: ignore[attr-defined]
    cls.__init__ = __init__


def attach(master: Any, listened: Callable[[hooks.Hook], bool]) -> None:
    """Wrap the top layer of ``master``'s client connections (after :func:`apply`)."""
    master.chat2api_listened = listened
