"""patches/layer_shim.py: fewer loop round trips and writes, same layer decisions."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection, hooks
from mitmproxy.proxy import commands, events
from mitmproxy.test import tflow

from patches.layer_shim import LayerShim
from tests.support.fresh import run_python


@dataclass
class QuietHook(commands.StartHook):  # type: ignore[no-untyped-call]
    data: Any
    name = "chat2api_test_quiet"


@dataclass
class HeardHook(commands.StartHook):  # type: ignore[no-untyped-call]
    data: Any
    name = "chat2api_test_heard"


class Script:
    """A fake layer: per event, the commands it yields; records what it got."""

    def __init__(self, plan: dict[str, list[commands.Command]]) -> None:
        self.plan = plan
        self.seen: list[events.Event] = []

    def handle_event(self, event: events.Event) -> Generator[commands.Command, Any, None]:
        self.seen.append(event)
        key = type(event).__name__
        if isinstance(event, events.HookCompleted):
            key = f"done:{event.command.name}"
        yield from self.plan.get(key, [])


def _client() -> connection.Client:
    return connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2))


def _listened(names: set[str]) -> Any:
    return lambda hook: hook.name in names


def test_writes_to_one_connection_in_one_pass_are_joined() -> None:
    a, b = _client(), _client()
    close = commands.CloseConnection(a)
    inner = Script(
        {
            "Start": [
                commands.SendData(a, b"head"),
                commands.SendData(a, b"body"),
                commands.SendData(b, b"other"),
                commands.SendData(a, b"more"),
                close,
                commands.SendData(a, b"after"),
            ]
        }
    )
    out = list(LayerShim(inner, _listened(set())).handle_event(events.Start()))
    assert [(type(c).__name__, getattr(c, "data", None)) for c in out] == [
        ("SendData", b"headbody"),
        ("SendData", b"other"),
        ("SendData", b"more"),
        ("CloseConnection", None),
        ("SendData", b"after"),
    ]
    assert out[0].connection is a and out[1].connection is b and out[3] is close  # type: ignore[attr-defined]


def test_a_hook_nobody_handles_is_answered_in_the_same_pass() -> None:
    a = _client()
    quiet = QuietHook(None)
    inner = Script(
        {
            "Start": [commands.SendData(a, b"x"), quiet],
            "done:chat2api_test_quiet": [commands.SendData(a, b"y")],
        }
    )
    out = list(LayerShim(inner, _listened(set())).handle_event(events.Start()))
    assert [c.data for c in out if isinstance(c, commands.SendData)] == [b"xy"]
    assert not any(isinstance(c, commands.StartHook) for c in out)
    assert isinstance(inner.seen[1], events.HookCompleted) and inner.seen[1].command is quiet


def test_a_hook_someone_handles_goes_to_the_loop() -> None:
    a = _client()
    heard = HeardHook(None)
    inner = Script({"Start": [commands.SendData(a, b"x"), heard]})
    out = list(LayerShim(inner, _listened({"chat2api_test_heard"})).handle_event(events.Start()))
    assert out[0].data == b"x"  # type: ignore[attr-defined]
    assert out[1] is heard
    assert len(inner.seen) == 1


def test_a_flow_hook_stays_when_someone_handles_update() -> None:
    flow = tflow.tflow()
    quiet = QuietHook(flow)
    inner = Script({"Start": [quiet]})
    out = list(LayerShim(inner, _listened({hooks.UpdateHook.name})).handle_event(events.Start()))
    assert out == [quiet]
    out = list(LayerShim(inner, _listened(set())).handle_event(events.Start()))
    assert out == []


def test_lean_master_hands_log_lines_to_add_log_only_when_an_addon_listens() -> None:
    """In a fresh interpreter, as ``python -m patches.launcher`` runs."""
    code = textwrap.dedent(
        """
        import asyncio, json, logging
        import patches
        patches.install(enabled=True, lean=True)
        from patches import lean as launcher
        from mitmproxy import options

        async def main():
            master = launcher.LeanMaster(options.Options())
            loop = asyncio.get_running_loop()
            scheduled = []
            real = loop.call_soon_threadsafe
            loop.call_soon_threadsafe = lambda *a, **k: (scheduled.append(a), real(*a, **k))[1]
            logging.getLogger("chat2api").warning("nobody hears this")
            quiet = len(scheduled)

            class Listener:
                def __init__(self):
                    self.lines = []
                def add_log(self, entry):
                    self.lines.append(entry.msg)

            listener = Listener()
            master.addons.add(listener)
            logging.getLogger("chat2api").warning("someone hears this")
            await asyncio.sleep(0.05)
            return {"quiet": quiet, "heard": [l for l in listener.lines if "hears" in l]}

        print(json.dumps(asyncio.run(main())))
        """
    )
    out = run_python(code)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["quiet"] == 0
    assert len(result["heard"]) == 1 and "someone hears this" in result["heard"][0]
