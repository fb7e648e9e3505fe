"""patches/addon_manager.py: the lean master's hook dispatch does what mitmproxy's
AddonManager does (order, AddonHalt, "Addon error", reloads), only cheaper."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from typing import Any

import pytest

with warnings.catch_warnings():
    # mitmproxy.addons → passlib imports the deprecated crypt module; not ours to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    from mitmproxy import exceptions, hooks
    from mitmproxy.test import taddons, tflow

from patches import addon_manager
from patches.addon_manager import FastAddonManager


class Recorder:
    def __init__(self, name: str, calls: list[str], action: Callable[[], None] | None = None):
        self.name = name
        self.calls = calls
        self.action = action

    def request(self, flow: Any) -> None:
        self.calls.append(self.name)
        if self.action is not None:
            self.action()


class AsyncRecorder(Recorder):
    async def request(self, flow: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(self.name)


class Parent:
    """An addon with sub-addons: mitmproxy calls the parent first, then its children."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.addons = [Recorder("child", calls)]

    def request(self, flow: Any) -> None:
        self.calls.append("parent")


def _request_hook() -> hooks.Hook:
    from mitmproxy.proxy.layers.http._hooks import HttpRequestHook

    return HttpRequestHook(tflow.tflow())


def _run(build: Callable[[Any], Any]) -> Any:
    async def main() -> Any:
        with taddons.context(loadcore=False) as tctx:  # type: ignore[no-untyped-call]
            manager = FastAddonManager.adopt(tctx.master.addons)
            return await build(manager)

    return asyncio.run(main())


def test_the_shapes_it_replaces_are_there() -> None:
    assert addon_manager.fits() is None


def test_addons_run_in_chain_order_parents_before_children() -> None:
    calls: list[str] = []

    async def build(manager: Any) -> None:
        manager.add(Recorder("a", calls), Parent(calls), AsyncRecorder("c", calls))
        await manager.trigger_event(_request_hook())

    _run(build)
    assert calls == ["a", "parent", "child", "c"]


def test_addon_halt_stops_the_event() -> None:
    calls: list[str] = []

    def halt() -> None:
        raise exceptions.AddonHalt()  # type: ignore[no-untyped-call]

    async def build(manager: Any) -> None:
        manager.add(Recorder("a", calls, halt), Recorder("b", calls))
        await manager.trigger_event(_request_hook())
        manager.trigger(_request_hook())  # the synchronous path too

    _run(build)
    assert calls == ["a", "a"]


def test_an_exception_is_an_addon_error_and_the_next_addon_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    async def build(manager: Any) -> None:
        manager.add(Recorder("a", calls, boom), Recorder("b", calls))
        with caplog.at_level(logging.ERROR):
            await manager.trigger_event(_request_hook())

    _run(build)
    assert calls == ["a", "b"]
    assert any("Addon error: boom" in r.getMessage() for r in caplog.records)


def test_the_lists_follow_register_remove_and_reload() -> None:
    calls: list[str] = []

    async def build(manager: Any) -> None:
        first = Recorder("first", calls)
        manager.add(first)
        await manager.trigger_event(_request_hook())
        second = Recorder("second", calls)
        manager.add(second)  # after the list for "request" was made
        await manager.trigger_event(_request_hook())
        manager.remove(first)
        await manager.trigger_event(_request_hook())
        # A reloaded script: the loader swaps the addons of an existing parent and
        # invokes "running" on them directly, without register.
        holder = Parent(calls)
        manager.add(holder)
        await manager.trigger_event(_request_hook())
        holder.addons = [Recorder("reloaded", calls)]
        await manager.invoke_addon(holder, hooks.RunningHook())  # type: ignore[no-untyped-call]
        await manager.trigger_event(_request_hook())

    _run(build)
    assert calls == [
        "first",
        "first",
        "second",
        "second",
        "second",
        "parent",
        "child",
        "second",
        "parent",
        "reloaded",
    ]


def test_an_async_handler_on_the_synchronous_path_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def build(manager: Any) -> None:
        manager.add(AsyncRecorder("async", calls), Recorder("b", calls))
        with caplog.at_level(logging.ERROR):
            manager.trigger(_request_hook())

    _run(build)
    assert calls == ["b"]
    assert any("cannot be called from sync context" in r.getMessage() for r in caplog.records)
