"""patches/launcher.py and patches/lean.py: the lean mitmdump run.sh starts (in a
fresh interpreter, as ``python -m patches.launcher`` runs)."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.support.fresh import run_python

# Installs the patches the way the launcher's main does, in a fresh interpreter.
_INSTALL = "import patches\npatches.install(enabled=True, lean=True)\n"


def test_launcher_defines_every_mitmdump_option_without_the_heavy_imports() -> None:
    """In a fresh interpreter, as ``python -m patches.launcher`` runs."""
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        import patches
        patches.install(enabled=True, lean=True)
        from patches import lean as launcher
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


def test_launcher_releases_tls_buffers_after_tlsconfig() -> None:
    code = _INSTALL + textwrap.dedent(
        """
        import asyncio, json
        from mitmproxy import options
        from patches import lean

        async def chain():
            master = lean.LeanMaster(options.Options())
            return [type(addon).__name__ for addon in master.addons.chain]

        print(json.dumps(asyncio.run(chain())))
        """
    )
    names = json.loads(run_python(code).strip().splitlines()[-1])
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
        sys.argv = ["patches.launcher", "--version"]
        runpy.run_module("patches.launcher", run_name="__main__")
        """
    )
    out = run_python(code)
    lines = out.splitlines()
    assert lines[0] == "build o200k_base False"
    assert any(line.startswith(("Mitmproxy: 11.", "Mitmproxy: 12.")) for line in lines[1:])


def test_importing_the_launcher_builds_nothing() -> None:
    code = (
        "from patches import launcher\n"
        "from translator import usage\n"
        "print(sorted(usage._cache))\n"
    )
    out = run_python(code)
    assert out.strip() == "[]"


@pytest.mark.parametrize("setting", ["on", "off"])
def test_the_launcher_installs_what_the_setting_says(setting: str) -> None:
    code = textwrap.dedent(
        """
        import json, os, sys
        os.environ["MITM_PATCHES"] = sys.argv[1]
        import patches
        from patches import launcher
        patches.install(enabled=launcher.patches_wanted(), lean=True)
        print(json.dumps(patches.decided()))
        """
    )
    decided = json.loads(run_python(code, setting).strip().splitlines()[-1])
    assert set(decided) == {
        "malloc",
        "deferred_addons",
        "curl_headers",
        "inline_stream",
        "early_answer",
        "fast_addon_manager",
        "layer_shim",
        "quiet_add_log",
        "task_names",
        "tls_buffers",
    }
    if setting == "on":
        assert all(why is None for why in decided.values()), decided
    else:
        assert set(decided.values()) == {"MITM_PATCHES=off"}


def test_without_patches_the_lean_master_is_stock_but_complete() -> None:
    """MITM_PATCHES=off: mitmproxy's own AddonManager, the real heavy addons'
    options, no TLS addon; every mitmdump option still defined."""
    code = textwrap.dedent(
        """
        import asyncio, json
        import patches
        patches.install(enabled=False, lean=True)
        from mitmproxy import addonmanager, options
        from patches import lean

        async def main():
            opts = options.Options()
            master = lean.LeanMaster(opts)
            from mitmproxy.tools.dump import DumpMaster
            full = options.Options()
            DumpMaster(full)
            return {
                "manager": type(master.addons).__name__,
                "names": [type(a).__name__ for a in master.addons.chain],
                "missing": sorted(set(full.keys()) - set(opts.keys())),
            }

        print(json.dumps(asyncio.run(main())))
        """
    )
    result = json.loads(run_python(code).strip().splitlines()[-1])
    assert result["manager"] == "AddonManager"
    assert "ReleaseTlsBuffers" not in result["names"]
    assert result["missing"] == []
