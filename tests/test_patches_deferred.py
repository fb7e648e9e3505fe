"""patches/deferred.py: mitmproxy.addons imported on demand, and the copy of the
left-out addons' options it needs."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mitmproxy import options

from patches import deferred


def _quietly(name: str) -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # passlib imports crypt
        return importlib.import_module(name)


@pytest.fixture(scope="module", autouse=True)
def real_addons() -> None:
    """The real ``mitmproxy.addons`` first, so that a deferred import here changes
    nothing for the rest of this test process."""
    _quietly("mitmproxy.addons")


def _package(tmp_path: Path, name: str) -> None:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "RUNS = globals().get('RUNS', 0) + 1\nfrom . import heavy\nVALUE = 42\n"
    )
    (pkg / "light.py").write_text("NAME = 'light'\n")
    (pkg / "heavy.py").write_text("NAME = 'heavy'\n")


def test_deferred_package_imports_submodules_without_its_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "deferred_pkg_a"
    _package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert deferred.defer_package_init(name) is True
    try:
        light = importlib.import_module(f"{name}.light")
        assert light.NAME == "light"
        package = sys.modules[name]
        assert "RUNS" not in package.__dict__
        assert f"{name}.heavy" not in sys.modules
        # Its own names: the real __init__ runs, once.
        assert package.VALUE == 42
        assert package.RUNS == 1
        assert package.heavy.NAME == "heavy"
        assert package.VALUE == 42 and package.RUNS == 1
        with pytest.raises(AttributeError):
            package.missing  # noqa: B018
    finally:
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]


def test_unknown_name_runs_the_init_then_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "deferred_pkg_b"
    _package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert deferred.defer_package_init(name) is True
    try:
        package = sys.modules[name]
        assert not hasattr(package, "missing")
        assert package.RUNS == 1
    finally:
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]


def test_an_imported_package_is_left_alone() -> None:
    package = sys.modules["mitmproxy.addons"]
    assert deferred.defer_package_init("mitmproxy.addons") is False
    assert sys.modules["mitmproxy.addons"] is package
    assert callable(package.default_addons)
    assert deferred.defer_package_init("json") is False  # not a package


class _Recorder:
    def __init__(self, opts: options.Options) -> None:
        self.opts = opts

    def add_option(
        self, name: str, typespec: Any, default: Any, help: str, choices: Any = None
    ) -> None:
        self.opts.add_option(name, typespec, default, help, choices)

    def add_command(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_heavy_options_are_those_the_addons_define() -> None:
    real = options.Options()
    recorder = _Recorder(real)
    heavy: dict[str, Any] = {
        name: _quietly(f"mitmproxy.addons.{name}")
        for name in ("dumper", "export", "maplocal", "onboarding", "proxyauth")
    }
    for addon in (
        heavy["dumper"].Dumper(),
        heavy["export"].Export(),
        heavy["maplocal"].MapLocal(),
        heavy["onboarding"].Onboarding(),
        heavy["proxyauth"].ProxyAuth(),
    ):
        addon.load(recorder)
    copied = options.Options()
    for name, typespec, default, help, choices in deferred.heavy_options():
        copied.add_option(name, typespec, default, help, choices)
    base = set(options.Options().keys())  # type: ignore[no-untyped-call]
    assert set(copied.keys()) - base == set(real.keys()) - base  # type: ignore[no-untyped-call]
    for name, *_ in deferred.heavy_options():
        theirs, ours = real._options[name], copied._options[name]
        assert ours.typespec == theirs.typespec, name
        assert ours.default == theirs.default, name
        assert ours.help == theirs.help, name
        assert list(ours.choices or []) == list(theirs.choices or []), name


def test_it_stands_aside_once_the_package_is_imported() -> None:
    from mitmproxy.version import VERSION

    assert VERSION in deferred._CONTENT_VIEWS  # a copy for every pinned version
    assert deferred.fits() == "mitmproxy.addons was imported already"
