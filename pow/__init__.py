"""Sentinel proof of work for chat2api: browser profiles, configs, solver.

Pure code: no mitmproxy, no network.  The flow an addon follows
(``docs/sentinel.md``)::

    profile = pick_profile(rng)                       # once per account
    config = classic_config(profile, script_src=..., build_id=..., rng=rng)
    p = requirements_token(config, rng=rng)           # body of chat-requirements
    ...                                               # the backend answers a challenge
    if too_hard(challenge_difficulty, settings_threshold):
        ...                                           # refuse, as upstream's 403
    answer = await solve_async(config, seed, difficulty)
    header = as_proof_token(answer)                   # openai-sentinel-proof-token

For the 2026 dialect use ``config_2026`` and ``algorithm="fnv1a"`` throughout.

Exceptions: ``ProofOfWorkError`` (no answer within the iteration cap; the caller
answers 403, docs/sentinel.md#giving-up) and ``ValueError`` (a malformed difficulty or config, for
settings validation through ``parse_difficulty``).  Call ``shutdown()`` when the
addon unloads, to stop the worker processes of ``solve_async``.
"""

from pow.config import SENTINEL_SDK_URL, ConfigValue, classic_config, config_2026
from pow.profile import (
    MINUS,
    NAVIGATOR_KEYS,
    PROFILES,
    WINDOW_KEYS,
    BrowserProfile,
    pick_profile,
)
from pow.solver import (
    DEFAULT_MAX_ITERATIONS,
    PARALLEL_THRESHOLD,
    PROOF_PREFIX,
    REQUIREMENTS_DIFFICULTY,
    REQUIREMENTS_PREFIX,
    SUFFIX_2026,
    Algorithm,
    ProofOfWorkError,
    as_proof_token,
    encode_config,
    expected_work,
    parse_difficulty,
    proof_token,
    requirements_token,
    shutdown,
    solve,
    solve_async,
    too_hard,
    verify,
)

__all__ = [
    "DEFAULT_MAX_ITERATIONS",
    "MINUS",
    "NAVIGATOR_KEYS",
    "PARALLEL_THRESHOLD",
    "PROFILES",
    "PROOF_PREFIX",
    "REQUIREMENTS_DIFFICULTY",
    "REQUIREMENTS_PREFIX",
    "SENTINEL_SDK_URL",
    "SUFFIX_2026",
    "WINDOW_KEYS",
    "Algorithm",
    "BrowserProfile",
    "ConfigValue",
    "ProofOfWorkError",
    "as_proof_token",
    "classic_config",
    "config_2026",
    "encode_config",
    "expected_work",
    "parse_difficulty",
    "pick_profile",
    "proof_token",
    "requirements_token",
    "shutdown",
    "solve",
    "solve_async",
    "too_hard",
    "verify",
]
