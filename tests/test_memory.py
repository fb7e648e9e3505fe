"""What keeps the proxy's memory down (issue 7): malloc settings, the launcher's
imports, the tokenizer build. Behaviour only; the figures are bench/proxy.py's."""

from __future__ import annotations

import asyncio
import base64
import ctypes
import gzip
import importlib
import json
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mitmproxy import options

from service import memory
from tests.support.fresh import run_python
from translator import usage

GLIBC = memory._glibc() is not None


def _quietly(name: str) -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # passlib imports crypt
        return importlib.import_module(name)


@pytest.fixture(scope="module")
def launcher() -> ModuleType:
    """service.launcher, imported here after the real ``mitmproxy.addons`` (so that
    its deferred import changes nothing for the rest of this test process)."""
    _quietly("mitmproxy.addons")
    return importlib.import_module("service.launcher")


# -- service/memory.py ----------------------------------------------------------


_MAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
from service import memory

if sys.argv[1] == "tuned":
    assert memory.tune_malloc() is True
    assert memory.tune_malloc() is True  # once per process; again is harmless
libc = ctypes.CDLL(None)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    ).split()]

libc.mallinfo2.restype = MallInfo2
big = bytearray(2_000_000)
del big  # untuned, glibc raises its mmap threshold past 2 MB here
mapped = libc.mallinfo2().hblks
block = bytearray(300_000)
print(libc.mallinfo2().hblks - mapped)
"""


@pytest.mark.skipif(
    not GLIBC or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33+ only"
)
def test_tuned_malloc_maps_large_buffers_of_its_own() -> None:
    def mapped(mode: str) -> int:
        return int(run_python(_MAPPED_AFTER_A_BIG_FREE, mode, timeout=60))

    assert mapped("default") == 0  # glibc's dynamic threshold: from the heap
    assert mapped("tuned") == 1  # fixed at 64 KiB: a mapping of its own


def test_without_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_looked_up", True)
    monkeypatch.setattr(memory, "_libc", None)
    assert memory.tune_malloc() is False


# -- the tokenizer's rank file --------------------------------------------------


@pytest.mark.parametrize("spec", [usage.CL100K_BASE, usage.O200K_BASE], ids=lambda s: s.name)
def test_ranks_parse_as_tiktoken_reads_them(spec: usage.EncodingSpec) -> None:
    data = gzip.decompress(spec.path.read_bytes())
    # tiktoken.load.load_tiktoken_bpe, without its download.
    expected = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    assert usage.parse_ranks(data) == expected


def test_ranks_parse_skips_blank_lines() -> None:
    assert usage.parse_ranks(b"IQ== 0\n\nIg== 1\n") == {b"!": 0, b'"': 1}


# -- the launcher's deferred package ---------------------------------------------


def _package(tmp_path: Path, name: str) -> None:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "RUNS = globals().get('RUNS', 0) + 1\nfrom . import heavy\nVALUE = 42\n"
    )
    (pkg / "light.py").write_text("NAME = 'light'\n")
    (pkg / "heavy.py").write_text("NAME = 'heavy'\n")


def test_deferred_package_imports_submodules_without_its_init(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "deferred_pkg_a"
    _package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert launcher.defer_package_init(name) is True
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
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "deferred_pkg_b"
    _package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert launcher.defer_package_init(name) is True
    try:
        package = sys.modules[name]
        assert not hasattr(package, "missing")
        assert package.RUNS == 1
    finally:
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]


def test_an_imported_package_is_left_alone(launcher: ModuleType) -> None:
    package = sys.modules["mitmproxy.addons"]
    assert launcher.defer_package_init("mitmproxy.addons") is False
    assert sys.modules["mitmproxy.addons"] is package
    assert callable(package.default_addons)
    assert launcher.defer_package_init("json") is False  # not a package


# -- the launcher's options ------------------------------------------------------


class _Recorder:
    def __init__(self, opts: options.Options) -> None:
        self.opts = opts

    def add_option(
        self, name: str, typespec: Any, default: Any, help: str, choices: Any = None
    ) -> None:
        self.opts.add_option(name, typespec, default, help, choices)

    def add_command(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_heavy_options_are_those_the_addons_define(launcher: ModuleType) -> None:
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
    for name, typespec, default, help, choices in launcher.HEAVY_OPTIONS:
        copied.add_option(name, typespec, default, help, choices)
    base = set(options.Options().keys())  # type: ignore[no-untyped-call]
    assert set(copied.keys()) - base == set(real.keys()) - base  # type: ignore[no-untyped-call]
    for name, *_ in launcher.HEAVY_OPTIONS:
        theirs, ours = real._options[name], copied._options[name]
        assert ours.typespec == theirs.typespec, name
        assert ours.default == theirs.default, name
        assert ours.help == theirs.help, name
        assert list(ours.choices or []) == list(theirs.choices or []), name


def test_launcher_defines_every_mitmdump_option_without_the_heavy_imports() -> None:
    """In a fresh interpreter, as ``python -m service.launcher`` runs."""
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        from service import launcher
        from mitmproxy import options

        HEAVY = ("flask", "ldap3", "passlib", "mitmproxy.contentviews")

        async def main():
            lean = options.Options()
            launcher.LeanMaster(lean)
            heavy = sorted(m for m in HEAVY if m in sys.modules)
            from mitmproxy.tools.dump import DumpMaster  # the package's own names, on demand
            full = options.Options()
            DumpMaster(full)
            return {
                "heavy": heavy,
                "missing": sorted(set(full.keys()) - set(lean.keys())),
                "defaults_differ": sorted(
                    k for k in full.keys() if k in lean and full.default(k) != lean.default(k)
                ),
            }

        print(json.dumps(asyncio.run(main())))
        """
    )
    out = run_python(code)
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"heavy": [], "missing": [], "defaults_differ": []}


# -- TLS buffers -----------------------------------------------------------------


def test_tls_connections_release_their_buffers() -> None:
    from types import SimpleNamespace

    from OpenSSL import SSL
    from OpenSSL._util import lib

    def mode(conn: SSL.Connection) -> int:
        return int(lib.SSL_set_mode(conn._ssl, 0))  # adds nothing, returns the mode

    addon = memory.ReleaseTlsBuffers()
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
    assert not mode(conn) & SSL.MODE_RELEASE_BUFFERS
    addon.tls_start_client(SimpleNamespace(ssl_conn=conn))
    assert mode(conn) & SSL.MODE_RELEASE_BUFFERS
    addon.tls_established_server(SimpleNamespace(ssl_conn=conn))  # again: no harm
    assert mode(conn) & SSL.MODE_RELEASE_BUFFERS
    addon.tls_start_server(SimpleNamespace(ssl_conn=None))  # nothing to do


def test_launcher_releases_tls_buffers_after_tlsconfig(launcher: ModuleType) -> None:
    async def chain() -> list[str]:
        master = launcher.LeanMaster(options.Options())
        return [type(addon).__name__ for addon in master.addons.chain]

    names = asyncio.run(chain())
    assert names.index("ReleaseTlsBuffers") == names.index("TlsConfig") + 1


def test_launcher_builds_the_tokenizer_before_importing_mitmproxy() -> None:
    code = textwrap.dedent(
        """
        import runpy, sys
        from translator import usage

        built = usage.get_encoding

        def spy(name):
            print("build", name, "mitmproxy.master" in sys.modules, flush=True)
            return built(name)

        usage.get_encoding = spy
        sys.argv = ["service.launcher", "--version"]
        runpy.run_module("service.launcher", run_name="__main__")
        """
    )
    out = run_python(code)
    lines = out.splitlines()
    assert lines[0] == "build o200k_base False"
    assert any(line.startswith("Mitmproxy: 11.") for line in lines[1:])


def test_importing_the_launcher_builds_nothing() -> None:
    code = (
        "from service import launcher\n"
        "from translator import usage\n"
        "print(sorted(usage._cache))\n"
    )
    out = run_python(code)
    assert out.strip() == "[]"
