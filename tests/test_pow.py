"""Tests for pow: answers are checked against a deliberately plain reimplementation.

The reference below serialises the whole config with ``json.dumps`` at every
iteration and hashes with hashlib or a byte loop, as the backend documents describe
(``docs/sentinel.md``); it shares no code with
``pow.solver``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pow
from pow import solver

# --- the plain reference ----------------------------------------------------------


def ref_answer(config: list[Any], n3: int, n9: object) -> str:
    config = list(config)
    config[3] = n3
    config[9] = n9
    text = json.dumps(config, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def ref_sha3_ok(answer: str, seed: str, difficulty: str) -> bool:
    digest = hashlib.sha3_512((seed + answer).encode("utf-8")).digest()
    if len(difficulty) % 2 == 0:  # upstream's own form of the rule (docs/sentinel.md#difficulty)
        return digest[: len(difficulty)] <= bytes.fromhex(difficulty)
    return int(digest.hex()[: len(difficulty)], 16) < int(difficulty, 16)


def ref_fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) % 2**32
    return h


def ref_fnv_hex(text: str) -> str:
    h = ref_fnv1a32(text.encode("utf-8"))
    # MurmurHash3's 32-bit finaliser, as aurora applies it after FNV-1a.
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    h ^= h >> 16
    return "%08x" % h


def ref_fnv_ok(answer: str, seed: str, difficulty: str) -> bool:
    return ref_fnv_hex(seed + answer)[: len(difficulty)] <= difficulty


def ref_solve_sha3(config: list[Any], seed: str, difficulty: str, cap: int = 500_000) -> str | None:
    for i in range(cap):
        answer = ref_answer(config, i, i >> 1)
        if ref_sha3_ok(answer, seed, difficulty):
            return answer
    return None


def ref_solve_fnv(config: list[Any], seed: str, difficulty: str, elapsed: int) -> str | None:
    for i in range(500_000):
        answer = ref_answer(config, i, elapsed)
        if ref_fnv_ok(answer, seed, difficulty):
            return answer
    return None


def decode(answer: str) -> list[Any]:
    decoded: list[Any] = json.loads(base64.b64decode(answer, validate=True))
    return decoded


# --- fixtures ---------------------------------------------------------------------

NOW = datetime(2025, 5, 17, 9, 2, 36, tzinfo=UTC)
DEVICE = "0f1e2d3c-4b5a-4697-8877-665544332211"
# A script URL with '%' and a build id with non-ASCII text: the solver splices
# pre-serialised bytes with %-formatting and must keep both byte-exact.
SCRIPT = "https://cdn.oaistatic.com/_next/static/chunks/app%20page-0a1b2c3d.js"
BUILD = "prod-ç0ffee"


def classic(seed: int = 1, page_loaded_at: float | None = None) -> list[Any]:
    rng = random.Random(seed)
    profile = pow.pick_profile(rng)
    return pow.classic_config(
        profile, script_src=SCRIPT, build_id=BUILD, rng=rng, now=NOW, page_loaded_at=page_loaded_at
    )


def modern(seed: int = 1) -> list[Any]:
    rng = random.Random(seed)
    return pow.config_2026(
        pow.pick_profile(rng), device_id=DEVICE, build_id=BUILD, rng=rng, now=NOW
    )


@pytest.fixture(scope="module", autouse=True)
def _stop_pool() -> Iterator[None]:
    yield
    pow.shutdown()


# --- the reference itself -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],
)
def test_reference_fnv_matches_published_vectors(data: bytes, expected: int) -> None:
    assert ref_fnv1a32(data) == expected


# --- solve / verify ---------------------------------------------------------------


@pytest.mark.parametrize("difficulty", ["0fffff", "00ffff", "000fff", "07f", "1"])
@pytest.mark.parametrize("make", [classic, modern])
def test_sha3_answer_is_the_first_the_reference_finds(
    make: Callable[[], list[Any]], difficulty: str
) -> None:
    config = make()
    answer = pow.solve(config, "0.8118163372193237", difficulty)
    assert answer == ref_solve_sha3(config, "0.8118163372193237", difficulty)
    assert pow.verify(answer, "0.8118163372193237", difficulty)


# The reference hashes in a Python loop: its difficulties stay easy.
@pytest.mark.parametrize("difficulty", ["0fffff", "00ffff", "007fff", "07f", "3", "00ffffffff"])
@pytest.mark.parametrize("make", [classic, modern])
def test_fnv_answer_is_the_first_the_reference_finds(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], list[Any]], difficulty: str
) -> None:
    monkeypatch.setattr(solver, "_clock", lambda: 1000.0)  # elapsed is always 0 ms
    config = make()
    answer = pow.solve(config, "0.5803295893613895", difficulty, algorithm="fnv1a")
    assert answer == ref_solve_fnv(config, "0.5803295893613895", difficulty, 0)
    assert pow.verify(answer, "0.5803295893613895", difficulty, algorithm="fnv1a")


def test_fnv_element_9_is_elapsed_milliseconds() -> None:
    config = modern()
    started = time.monotonic()
    answer = pow.solve(config, "0.25", "0000ff", algorithm="fnv1a")
    spent_ms = (time.monotonic() - started) * 1000
    found = decode(answer)
    assert ref_fnv_ok(answer, "0.25", "0000ff")
    assert isinstance(found[9], int) and 0 <= found[9] <= spent_ms + 1
    assert found[:3] == config[:3] and found[4:9] == config[4:9] and found[10:] == config[10:]
    assert answer == ref_answer(config, found[3], found[9])


def test_solve_does_not_touch_the_config() -> None:
    config = classic()
    before = list(config)
    pow.solve(config, "0.1", "00ffff")
    assert config == before


@pytest.mark.parametrize("algorithm", ["sha3", "fnv1a"])
def test_an_answer_fails_for_another_seed(algorithm: pow.Algorithm) -> None:
    config = modern()
    answer = pow.solve(config, "0.111", "000fff", algorithm=algorithm)
    check = ref_sha3_ok if algorithm == "sha3" else ref_fnv_ok
    assert check(answer, "0.111", "000fff")
    assert not check(answer, "0.222", "000fff")
    assert not pow.verify(answer, "0.222", "000fff", algorithm=algorithm)


@pytest.mark.parametrize("algorithm", ["sha3", "fnv1a"])
def test_the_cap_raises(algorithm: pow.Algorithm) -> None:
    with pytest.raises(pow.ProofOfWorkError) as caught:
        pow.solve(classic(), "0.987654321", "0000001", algorithm=algorithm, max_iterations=3000)
    assert "3000" in str(caught.value)
    assert "0.987654321" not in str(caught.value)


def test_an_impossible_difficulty_raises_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(pow.ProofOfWorkError):
        pow.solve(classic(), "0.5", "000000")
    assert time.monotonic() - started < 0.1


def test_a_short_config_is_refused() -> None:
    with pytest.raises(ValueError):
        pow.solve([1, 2, 3], "0.5", "0fffff")


def test_ten_element_config_round_trips() -> None:
    config = list(range(10))
    answer = pow.solve(config, "0.5", "00ffff")
    assert answer == ref_solve_sha3(config, "0.5", "00ffff")


@settings(max_examples=40, deadline=None)
@given(seed=st.text(max_size=30), easy=st.sampled_from(["0fff", "1", "3fffff"]))
def test_round_trip_on_random_seeds(seed: str, easy: str) -> None:
    config = classic(7)
    answer = pow.solve(config, seed, easy)
    assert ref_sha3_ok(answer, seed, easy) and pow.verify(answer, seed, easy)
    answer = pow.solve(config, seed, easy, algorithm="fnv1a")
    assert ref_fnv_ok(answer, seed, easy) and pow.verify(answer, seed, easy, algorithm="fnv1a")


# --- tokens -------------------------------------------------------------------------


def test_classic_tokens() -> None:
    config = classic()
    token = pow.requirements_token(config, rng=random.Random(3))
    seed = str(random.Random(3).random())
    assert token.startswith("gAAAAAC")
    assert ref_sha3_ok(token[7:], seed, "0fffff")
    proof = pow.proof_token(config, "0.42", "00ffff")
    assert proof == "gAAAAAB" + str(ref_solve_sha3(config, "0.42", "00ffff"))


def test_2026_tokens() -> None:
    config = modern()
    token = pow.requirements_token(config, algorithm="fnv1a", rng=random.Random(3))
    assert token.startswith("gAAAAAC") and token.endswith("~S")
    sent = decode(token[7:-2])
    assert sent[3] == 1 and sent[9] == config[9] and isinstance(sent[9], float)
    assert sent[:3] == config[:3] and sent[10:] == config[10:]
    proof = pow.proof_token(config, "0.42", "00ffff", algorithm="fnv1a")
    assert proof.startswith("gAAAAAB") and proof.endswith("~S")
    assert ref_fnv_ok(proof[7:-2], "0.42", "00ffff")
    assert pow.encode_config(config) == ref_answer(config, config[3], config[9])


# --- difficulty rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("difficulty", "threshold", "refused"),
    [
        ("000032", "000032", True),
        ("000031", "000032", True),
        ("000000", "000032", True),
        ("00003a", "000032", False),
        ("0fffff", "000032", False),
        ("073682", "000032", False),
        ("0000ffff", "00ffff", True),  # 256 times the work
        ("00ffff", "0000ffff", False),
        ("0fff", "00ffff", False),  # 16 against 256 hashes
        ("00ff00", "00ff", True),  # exactly the same work; the string rule would allow it
        ("ABCDEF", "abcdef", True),
    ],
)
def test_too_hard(difficulty: str, threshold: str, refused: bool) -> None:
    assert pow.too_hard(difficulty, threshold) is refused
    if len(difficulty) == len(threshold):  # upstream's string rule (docs/sentinel.md#difficulty)
        assert refused is (difficulty.lower() <= threshold.lower())


def test_expected_work() -> None:
    assert pow.expected_work("000032") == pytest.approx(335_544.32)
    assert pow.expected_work("0fffff") == pytest.approx(16.0, rel=1e-5)
    assert pow.expected_work("0fffff", algorithm="fnv1a") == 16.0
    assert pow.expected_work("000000") == float("inf")


@pytest.mark.parametrize("bad", ["", "xyz", "12 3", "0x32", "-1", "0" * 129])
def test_parse_difficulty_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        pow.parse_difficulty(bad)


def test_parse_difficulty_normalises() -> None:
    assert pow.parse_difficulty("00003A") == "00003a"


# --- configs and profiles -----------------------------------------------------------


REACT_KEY = r"_reactListening[a-z0-9]{10,11}"
DATE = r"Sat May 17 2025 (\d\d):02:36 GMT([+-])(\d\d)(\d\d) \((.+)\)"
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.mark.parametrize("profile", pow.PROFILES, ids=lambda p: p.impersonate)
def test_config_shapes_follow_the_profile(profile: pow.BrowserProfile) -> None:
    rng = random.Random(9)
    old: list[Any] = pow.classic_config(profile, script_src=SCRIPT, build_id=None, rng=rng, now=NOW)
    new: list[Any] = pow.config_2026(profile, device_id=DEVICE, build_id=BUILD, rng=rng, now=NOW)
    assert len(old) == 18 and len(new) == 25
    for config in (old, new):
        assert config[0] == profile.screen_width + profile.screen_height
        assert config[2] == profile.js_heap_size_limit
        assert config[4] == profile.user_agent
        assert config[7] == profile.language and config[8] == ",".join(profile.languages)
        assert config[10] in profile.navigator_probes()
        assert config[11] == "location" or re.fullmatch(
            r"_reactListening[a-z0-9]{10,11}", config[11]
        )
        assert config[12] in pow.WINDOW_KEYS
        assert config[15] == "" and config[16] == profile.hardware_concurrency
        assert config[13] + config[17] == pytest.approx(NOW.timestamp() * 1000, abs=0.2)
        match = re.fullmatch(
            r"Sat May 17 2025 (\d\d):02:36 GMT([+-])(\d\d)(\d\d) \((.+)\)", config[1]
        )
        assert match
        sign = 1 if match[2] == "+" else -1
        offset = timedelta(hours=int(match[3]), minutes=int(match[4])) * sign
        assert offset == profile.utc_offset(NOW)
        assert int(match[1]) == (NOW + offset).hour
        assert match[5] == profile.timezone_names[1]  # May: daylight time
    assert old[5] == SCRIPT and old[6] is None
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", old[14]
    )
    assert new[5] == pow.SENTINEL_SDK_URL and new[14] == DEVICE
    assert isinstance(new[9], float) and new[18:] == [0] * 7
    assert profile.user_agent.count(f"Chrome/{profile.impersonate.removeprefix('chrome')}.") == 1


def test_winter_date_uses_standard_time() -> None:
    profile = pow.PROFILES[0]
    winter = datetime(2025, 1, 7, 9, 2, 36, tzinfo=UTC)
    assert (
        profile.date_string(winter) == "Tue Jan 07 2025 04:02:36 GMT-0500 (Eastern Standard Time)"
    )
    assert profile.timezone_offset_min(winter) == 300


def test_configs_are_fresh_per_call() -> None:
    rng = random.Random(4)
    profile = pow.pick_profile(rng)
    first: list[Any] = pow.classic_config(profile, script_src=SCRIPT, build_id=BUILD, rng=rng)
    time.sleep(0.002)
    second: list[Any] = pow.classic_config(profile, script_src=SCRIPT, build_id=BUILD, rng=rng)
    assert first[14] != second[14]
    assert first[13] != second[13] and first[17] != second[17]
    now_ms = time.time() * 1000
    assert abs(second[13] + second[17] - now_ms) < 1000


def test_page_loaded_at_drives_performance_now() -> None:
    loaded = time.perf_counter() - 12.5
    config = classic(page_loaded_at=loaded)
    assert 12_500 <= config[13] < 14_000


@pytest.mark.parametrize("profile", pow.PROFILES, ids=lambda p: p.impersonate)
def test_probes_are_consistent(profile: pow.BrowserProfile) -> None:
    probes = profile.navigator_probes()
    assert len(probes) == 93  # upstream's weighting, with the same total
    for probe in probes:
        name, sep, value = probe.partition("\u2212")
        assert sep or name == "doNotTrack"
        if name == "language":
            assert value == profile.language
        if name == "hardwareConcurrency":
            assert value == str(profile.hardware_concurrency)
        if name == "vendor":
            assert value == "Google Inc." and "Chrome/" in profile.user_agent
    assert "sendMsgToSolverCS" not in pow.WINDOW_KEYS
    assert len(pow.WINDOW_KEYS) == len(set(pow.WINDOW_KEYS)) == 251


def test_a_non_chrome_vendor_gets_no_vendor_probe() -> None:
    from dataclasses import replace

    other = replace(pow.PROFILES[0], vendor="")
    assert not any(p.startswith("vendor\u2212") for p in other.navigator_probes())


def test_pick_profile_is_reproducible() -> None:
    assert pow.pick_profile(random.Random(1)) is pow.pick_profile(random.Random(1))
    assert {pow.pick_profile(random.Random(s)) for s in range(50)} == set(pow.PROFILES)


# --- solve_async ----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha3", "fnv1a"])
def test_solve_async_inline(algorithm: pow.Algorithm) -> None:
    config = classic()
    answer = asyncio.run(pow.solve_async(config, "0.31", "00ffff", algorithm=algorithm))
    assert pow.verify(answer, "0.31", "00ffff", algorithm=algorithm)


def test_concurrent_inline_solves_share_nothing() -> None:
    async def run() -> list[str]:
        return await asyncio.gather(
            *(pow.solve_async(modern(k), f"0.{k}", "000fff", algorithm="fnv1a") for k in range(6))
        )

    for k, answer in enumerate(asyncio.run(run())):
        assert ref_fnv_ok(answer, f"0.{k}", "000fff")


needs_cores = pytest.mark.skipif(solver._workers() < 2, reason="one core")


def wait_for_free_slots(timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(solver._free_slots) == solver._SLOTS:
            return True
        time.sleep(0.01)
    return False


@needs_cores
@pytest.mark.parametrize(("algorithm", "difficulty"), [("sha3", "0003ff"), ("fnv1a", "0000ff")])
def test_solve_async_parallel(algorithm: pow.Algorithm, difficulty: str) -> None:
    config = modern()
    answer = asyncio.run(
        pow.solve_async(config, "0.77", difficulty, algorithm=algorithm, parallel_threshold=0)
    )
    assert solver._pool is not None
    check = ref_sha3_ok if algorithm == "sha3" else ref_fnv_ok
    assert check(answer, "0.77", difficulty)
    found = decode(answer)
    assert found[:3] == config[:3] and found[10:] == config[10:]
    assert wait_for_free_slots()  # the losers stopped and the flag was reset


@needs_cores
def test_solve_async_parallel_cap() -> None:
    with pytest.raises(pow.ProofOfWorkError):
        asyncio.run(
            pow.solve_async(
                classic(), "0.5", "0000001", max_iterations=40_000, parallel_threshold=0
            )
        )
    assert wait_for_free_slots()


@needs_cores
def test_cancelling_stops_the_workers() -> None:
    async def run() -> None:
        task = asyncio.create_task(
            pow.solve_async(
                classic(), "0.5", "00000001", max_iterations=50_000_000, parallel_threshold=0
            )
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert wait_for_free_slots(2.0)
