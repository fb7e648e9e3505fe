"""``python -m patches.launcher [mitmdump arguments]``: a lean mitmdump.

``run.sh`` starts chat2api this way; ``mitmdump -s addons/chat2api.py`` works
just the same, only slower. The arguments, ``--set`` options and ``config.yaml``
handling are mitmdump's own (the same ``mitmproxy.tools.main.run`` with
mitmdump's parser); the master is :class:`patches.lean.LeanMaster`.

:func:`main` installs the patches first (:func:`patches.install`, with the
``mitm_patches`` setting read from config.yaml and the environment), before
anything imports mitmproxy: glibc's malloc is tuned before the first big
allocation, and ``mitmproxy.addons`` is deferred before ``mitmproxy.master``
imports it. It also builds the tokenizer before importing mitmproxy
(:func:`build_tokenizer_first`). Importing this module does none of that.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import patches
from settings import SettingsError, load_settings
from translator import usage

ROOT = Path(__file__).resolve().parent.parent


def build_tokenizer_first() -> None:
    """Build the tokenizer before mitmproxy is imported.

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


def patches_wanted() -> bool:
    """The ``mitm_patches`` setting, as the addon will read it by default
    (``CHAT2API_CONFIG`` or config.yaml, then the environment). A bad config is
    left for the addon to report: patches stay on meanwhile."""
    path = os.environ.get("CHAT2API_CONFIG") or str(ROOT / "config.yaml")
    try:
        return load_settings(path, os.environ).mitm_patches == "on"
    except SettingsError:
        return os.environ.get("MITM_PATCHES", "on").strip().lower() not in ("off", "false", "0")


def main(argv: Sequence[str] | None = None) -> None:
    patches.install(enabled=patches_wanted(), lean=True, before_mitmproxy=build_tokenizer_first)
    from mitmproxy.tools import cmdline
    from mitmproxy.tools import main as mitm_main

    from patches.lean import LeanMaster, _extra

    arguments = list(sys.argv[1:] if argv is None else argv)
    mitm_main.run(LeanMaster, cmdline.mitmdump, arguments, _extra)


if __name__ == "__main__":
    main()
