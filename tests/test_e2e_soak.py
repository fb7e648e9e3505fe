"""A modest run of ``bench/soak.py``: concurrent streams through one mitmdump with
backend faults mixed in. Every client gets exactly its own answer or an honest
error, none is lost, memory is flat after warm-up and file descriptors come back.
(The long run, 200 clients for minutes, is ``python bench/soak.py``; its figures
are in the README.)"""

from __future__ import annotations

from bench import soak
from tests.fakechatgpt.harness import Emulator
from tests.support.mitm import MitmFactory


def test_modest_soak(emulator: Emulator, mitm_factory: MitmFactory) -> None:
    args = soak.parse_args(
        ["--clients", "40", "--minutes", "0.3", "--fault-share", "0.1", "--sample", "1"]
    )
    env, pool = soak.settings(emulator.url)
    result = soak.measure(mitm_factory(env, pool=pool), emulator.url, args)
    problems = soak.verdict(result, args)
    assert not problems, problems
    assert result["tracebacks_in_log"] == 0
    assert result["outcomes"]["ok"] > 50, result["outcomes"]
    # Faults were mixed in, and some of them showed as honest failures.
    assert result["outcomes"].get("failed", 0) > 0, result["outcomes"]
