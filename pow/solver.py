"""Solving and checking sentinel proof-of-work challenges.

An answer is ``base64(json(config))`` where the solver varies two elements of the
config until a hash of ``seed + answer`` meets the difficulty
(``docs/sentinel.md``).  Two algorithms:

``"sha3"`` (classic)
    ``config[3] = i``, ``config[9] = i >> 1``; accept when the first
    ``len(difficulty)`` hex digits of ``SHA3-512(seed + answer)``, as a number, are
    below ``int(difficulty, 16)`` (for even lengths: the first ``len/2`` digest bytes,
    big-endian, docs/sentinel.md#difficulty).
``"fnv1a"`` (2026)
    ``config[3] = i``, ``config[9]`` = milliseconds since the search began; accept
    when the 8 hex digits of the hash, cut to ``len(difficulty)``, are ``<=`` the
    difficulty as strings.  The hash is FNV-1a-32 over the bytes of
    ``seed + answer`` (both ASCII), followed by the MurmurHash3 32-bit finaliser, as
    aurora's ``FNV1aHash`` does (docs/sentinel.md#hashes).

Speed (the search runs for every conversation turn): the config is serialised once;
the JSON text before element 3 is hashed once (a copied SHA3 state, or the 32-bit
FNV state), and an iteration only base64-encodes the few bytes around the two
changing numbers, since base64 of the 3-byte-aligned constant runs between them is
precomputed.  FNV-1a is not in hashlib, so it runs on many nonces at once: one
Python integer holds one 64-bit lane per nonce, and each input byte costs three
big-integer operations for the whole batch (an xor with the byte repeated in every
lane, a multiply by the prime that cannot carry out of a lane, a mask).

Errors: ``ProofOfWorkError`` when no answer is found within the iteration cap (the
caller answers 403 as the original did, docs/sentinel.md#giving-up); ``ValueError`` for a malformed
difficulty or config.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from pow.config import ConfigValue

__all__ = [
    "DEFAULT_MAX_ITERATIONS",
    "INLINE_THRESHOLD",
    "PARALLEL_THRESHOLD",
    "PROOF_PREFIX",
    "REQUIREMENTS_DIFFICULTY",
    "REQUIREMENTS_PREFIX",
    "SUFFIX_2026",
    "Algorithm",
    "ProofOfWorkError",
    "as_proof_token",
    "encode_config",
    "expected_work",
    "parse_difficulty",
    "proof_token",
    "requirements_token",
    "shutdown",
    "solve",
    "solve_async",
    "too_hard",
    "verify",
]

log = logging.getLogger(__name__)

Algorithm = Literal["sha3", "fnv1a"]

PROOF_PREFIX = "gAAAAAB"
REQUIREMENTS_PREFIX = "gAAAAAC"
#: The 2026 sentinel ends both tokens with this (aurora ``prooftoken.Suffix``).
SUFFIX_2026 = "~S"
REQUIREMENTS_DIFFICULTY = "0fffff"
#: The original's cap (docs/sentinel.md#giving-up); the browser's too.
DEFAULT_MAX_ITERATIONS = 500_000
#: ``solve_async`` spreads a search over processes when its expected number of
#: iterations exceeds this (about 0.2 s of work on one core).
PARALLEL_THRESHOLD = 50_000
#: ... and right on the event loop when it is at most this (a few hundred
#: microseconds; the search there stops after ``_INLINE_CAP`` iterations and
#: goes on in a thread, so the loop is never held for more than about 2 ms).
INLINE_THRESHOLD = 64
_INLINE_CAP = 512

_MAX_DIFFICULTY_DIGITS = 128  # a SHA3-512 digest has 128 hex digits
_BLOCK = 8192  # nonces between two looks at the stop flag
_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619
_MASK32 = 0xFFFFFFFF
_B2A = binascii.b2a_base64
_clock = time.monotonic  # system-wide, so workers can measure from the caller's start


class ProofOfWorkError(Exception):
    """No answer was found within the iteration cap."""


# One encoder for every call: json.dumps with options builds a new one each time.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_config(config: Sequence[ConfigValue]) -> str:
    """``base64(compact JSON)`` of a config, as the answer carries it."""
    text = "[" + ",".join(_json(v) for v in config) + "]"
    return binascii.b2a_base64(text.encode(), newline=False).decode("ascii")


def parse_difficulty(text: str) -> str:
    """Validate a difficulty (a hex string, as in settings or a challenge).

    Returns it in lower case (the backend sends lower case, and the 2026 rule compares
    strings); raises ValueError for anything that is not 1-128 hex digits.
    """
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_DIFFICULTY_DIGITS:
        raise ValueError(f"difficulty must be 1 to {_MAX_DIFFICULTY_DIGITS} hex digits")
    if text.strip("0123456789abcdefABCDEF"):
        raise ValueError(f"difficulty is not hexadecimal: {text!r}")
    return text.lower()


def _work(difficulty: str, algorithm: Algorithm) -> Fraction | None:
    """Expected iterations as an exact fraction; None means no answer exists."""
    if algorithm == "fnv1a":
        digits = min(len(difficulty), 8)  # the hash has 8 hex digits
        return Fraction(16**digits, int(difficulty[:digits], 16) + 1)
    value = int(difficulty, 16)
    return Fraction(16 ** len(difficulty), value) if value else None


def expected_work(difficulty: str, *, algorithm: Algorithm = "sha3") -> float:
    """Expected number of hashes to meet ``difficulty`` (``inf`` if it cannot be met).

    ``000032`` is about 335,000 with SHA3, ``0fffff`` 16.
    """
    work = _work(parse_difficulty(difficulty), algorithm)
    return math.inf if work is None else float(work)


def too_hard(difficulty: str, threshold: str, *, algorithm: Algorithm = "sha3") -> bool:
    """The ``pow_difficulty`` refusal rule: is ``difficulty`` at least as hard as
    ``threshold``?  (docs/sentinel.md#difficulty: a lower hex value is harder.)

    For equal lengths this is upstream's string rule ``difficulty <= threshold``; for
    different lengths it compares expected work exactly (``0000ffff`` is 256 times as
    hard as ``00ffff``), where the string rule would compare unlike things.
    """
    work = _work(parse_difficulty(difficulty), algorithm)
    limit = _work(parse_difficulty(threshold), algorithm)
    if work is None:
        return True
    return limit is not None and work >= limit


def _fnv1a(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK32
    return h


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def verify(answer: str, seed: str, difficulty: str, *, algorithm: Algorithm = "sha3") -> bool:
    """Does ``answer`` (base64 text, no prefix or suffix) meet the challenge?"""
    difficulty = parse_difficulty(difficulty)
    data = (seed + answer).encode()
    if algorithm == "fnv1a":
        return f"{_fmix32(_fnv1a(data)):08x}"[: len(difficulty)] <= difficulty
    digest = hashlib.sha3_512(data).hexdigest()
    return int(digest[: len(difficulty)], 16) < int(difficulty, 16)


# --- the search -----------------------------------------------------------------------


def _percent_escaped(data: bytes) -> bytes:
    return data.replace(b"%", b"%%")


@dataclass
class _Template:
    """A config cut around elements 3 and 9.

    The JSON is ``prefix + str(config[3]) + middle + str(config[9]) + suffix``;
    ``head`` is the base64 of the 3-byte-aligned start of ``prefix`` and ``rest``
    the remaining 0-2 bytes.
    """

    head: bytes
    rest: bytes
    middle: bytes
    suffix: bytes
    _pieces: dict[tuple[int, int], tuple[bytes, bytes, bytes, bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def of(cls, config: Sequence[ConfigValue]) -> _Template:
        if len(config) < 10:
            raise ValueError(f"a proof-of-work config has at least 10 elements, not {len(config)}")
        parts = [_json(v) for v in config]
        prefix = ("[" + ",".join(parts[:3]) + ",").encode()
        middle = ("," + ",".join(parts[4:9]) + ",").encode()
        suffix = "".join("," + p for p in parts[10:]).encode() + b"]"
        cut = len(prefix) - len(prefix) % 3
        return cls(_B2A(prefix[:cut], newline=False), prefix[cut:], middle, suffix)

    def pieces(self, digits3: int, digits9: int) -> tuple[bytes, bytes, bytes, bytes]:
        """``(form3, run3, form9, run9)`` for numbers of the given lengths: the answer's
        tail is ``b64(form3 % n3) + run3 + b64(form9 % n9) + run9``.

        ``form3`` holds element 3 and just enough of ``middle`` to end on a base64
        group; ``run3`` is the precomputed base64 of the aligned run of ``middle`` after
        it, and likewise for element 9 and ``suffix``.
        """
        key = (digits3, digits9)
        cached = self._pieces.get(key)
        if cached is None:
            pad3 = -(len(self.rest) + digits3) % 3
            left = (len(self.middle) - pad3) % 3
            run_end = len(self.middle) - left
            pad9 = -(left + digits9) % 3
            cached = (
                _percent_escaped(self.rest) + b"%d" + _percent_escaped(self.middle[:pad3]),
                _B2A(self.middle[pad3:run_end], newline=False),
                _percent_escaped(self.middle[run_end:])
                + b"%d"
                + _percent_escaped(self.suffix[:pad9]),
                _B2A(self.suffix[pad9:], newline=False),
            )
            self._pieces[key] = cached
        return cached


def _digit_end(n: int) -> int:
    """The first number after ``n`` with more decimal digits."""
    return int(10 ** len(str(n)))


def _blocks(limit: int, first: int, step: int) -> Iterator[range]:
    for start in range(first * _BLOCK, limit, step * _BLOCK):
        yield range(start, min(start + _BLOCK, limit))


def _sha3_search(
    tpl: _Template, seed: bytes, difficulty: str, blocks: Iterator[range], stop: Callable[[], bool]
) -> bytes | None:
    value = int(difficulty, 16)
    if len(difficulty) % 2:  # compare whole bytes: n < D  <=>  16 n + nibble < 16 D
        value <<= 4
    size = (len(difficulty) + 1) // 2
    bound = value.to_bytes(size, "big")
    copy = hashlib.sha3_512(seed + tpl.head).copy
    b2a = _B2A
    for block in blocks:
        if stop():
            return None
        lo, hi = block.start, block.stop
        while lo < hi:
            end = min(hi, _digit_end(lo), 2 * _digit_end(lo >> 1))
            form3, run3, form9, run9 = tpl.pieces(len(str(lo)), len(str(lo >> 1)))
            for i in range(lo, end):
                tail = (
                    b2a(form3 % i, newline=False)
                    + run3
                    + b2a(form9 % (i >> 1), newline=False)
                    + run9
                )
                h = copy()
                h.update(tail)
                if h.digest()[:size] < bound:
                    return tail
            lo = end
    return None


@dataclass(frozen=True)
class _Lanes:
    """Constants for ``count`` FNV states packed 64 bits apart in one integer."""

    count: int
    ones: int  # 1 in every lane
    mask32: int
    high: int  # bit 40 of every lane
    by_byte: tuple[int, ...]  # by_byte[c] = c in every lane (base64 characters only)


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@functools.lru_cache(maxsize=16)
def _lanes(count: int) -> _Lanes:
    ones = int.from_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00" * count, "little")
    by_byte = [0] * 128
    for c in _B64_ALPHABET:
        by_byte[c] = c * ones
    return _Lanes(count, ones, _MASK32 * ones, (1 << 40) * ones, tuple(by_byte))


_MIN_LANES = 16
_MAX_LANES = 1024  # 8 KiB integers: two workers still fit their L1 caches


def _fnv_batch(
    state: int, lanes: _Lanes, varying: bytes, width: int, common: bytes, shift: int, bound: int
) -> int | None:
    """Run FNV-1a over ``varying[k*width:(k+1)*width] + common`` from ``state`` for each
    lane k, finalise, and return the first lane whose value ``>> shift`` is ``<= bound``.
    """
    prime, mask = _FNV_PRIME, lanes.mask32
    spread = bytearray(8 * lanes.count)  # one byte per lane; per call: threads share _lanes
    h = state * lanes.ones
    for column in range(width):
        spread[0::8] = varying[column::width]
        h = ((h ^ int.from_bytes(spread, "little")) * prime) & mask
    by_byte = lanes.by_byte
    for c in common:
        h = ((h ^ by_byte[c]) * prime) & mask
    # MurmurHash3 fmix32, lane by lane: bits shifted in from the lane above land
    # at bit 48 and higher, which the mask clears.
    h = (h ^ (h >> 16)) & mask
    h = (h * 0x85EBCA6B) & mask
    h = (h ^ (h >> 13)) & mask
    h = (h * 0xC2B2AE35) & mask
    h = (h ^ (h >> 16)) & mask
    if shift:
        h = (h >> shift) & ((_MASK32 >> shift) * lanes.ones)
    # Lane value x <= bound  <=>  bit 40 of x + 2**40 - bound - 1 is clear.
    high = lanes.high
    ok = ((h + ((1 << 40) - bound - 1) * lanes.ones) & high) ^ high
    if not ok:
        return None
    return ((ok & -ok).bit_length() - 41) // 64


def _batch_size(nonce: int) -> int:
    """Lanes for the batch starting at ``nonce``: about a quarter of the work done so
    far, so that easy challenges stay cheap, rounded down to a power of two, so that
    few lane layouts are ever built."""
    return min(_MAX_LANES, max(_MIN_LANES, 1 << max((nonce >> 2).bit_length() - 1, 0)))


def _fnv_search(
    tpl: _Template,
    seed: bytes,
    difficulty: str,
    blocks: Iterator[range],
    stop: Callable[[], bool],
    started: float,
) -> bytes | None:
    digits = min(len(difficulty), 8)
    bound = int(difficulty[:digits], 16)
    shift = 4 * (8 - digits)
    state = _fnv1a(seed + tpl.head)
    b2a = _B2A
    for block in blocks:
        if stop():
            return None
        lo, hi = block.start, block.stop
        while lo < hi:
            end = min(hi, _digit_end(lo), lo + _batch_size(lo))
            elapsed = int((_clock() - started) * 1000)
            form3, run3, form9, run9 = tpl.pieces(len(str(lo)), len(str(elapsed)))
            varying = b"".join([b2a(form3 % i, newline=False) for i in range(lo, end)])
            width = len(varying) // (end - lo)
            common = run3 + b2a(form9 % elapsed, newline=False) + run9
            lane = _fnv_batch(state, _lanes(end - lo), varying, width, common, shift, bound)
            if lane is not None:
                return varying[lane * width : (lane + 1) * width] + common
            lo = end
    return None


def _never() -> bool:
    return False


def _search(
    config: Sequence[ConfigValue],
    seed: str,
    difficulty: str,
    algorithm: Algorithm,
    max_iterations: int,
    *,
    first: int = 0,
    step: int = 1,
    stop: Callable[[], bool] = _never,
    started: float | None = None,
) -> str | None:
    """Search blocks ``first, first + step, ...`` of the nonces below ``max_iterations``."""
    tpl = _Template.of(config)
    blocks = _blocks(max_iterations, first, step)
    if algorithm == "fnv1a":
        started = _clock() if started is None else started
        tail = _fnv_search(tpl, seed.encode(), difficulty, blocks, stop, started)
    elif algorithm == "sha3":
        tail = _sha3_search(tpl, seed.encode(), difficulty, blocks, stop)
    else:
        raise ValueError(f"unknown proof-of-work algorithm {algorithm!r}")
    if tail is None:
        return None
    answer = (tpl.head + tail).decode("ascii")
    if not verify(answer, seed, difficulty, algorithm=algorithm):  # cheap, once
        raise RuntimeError("proof-of-work search returned a wrong answer")
    return answer


def _exhausted(difficulty: str, max_iterations: int) -> ProofOfWorkError:
    return ProofOfWorkError(
        f"no proof of work found in {max_iterations} iterations (difficulty {difficulty})"
    )


def solve(
    config: Sequence[ConfigValue],
    seed: str,
    difficulty: str,
    *,
    algorithm: Algorithm = "sha3",
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> str:
    """Find an answer (base64 text, without prefix or suffix) on this thread.

    ``config`` is not modified.  Raises ProofOfWorkError after ``max_iterations``.
    """
    difficulty = parse_difficulty(difficulty)
    if _work(difficulty, algorithm) is None:
        raise _exhausted(difficulty, max_iterations)
    answer = _search(config, seed, difficulty, algorithm, max_iterations)
    if answer is None:
        raise _exhausted(difficulty, max_iterations)
    return answer


def as_proof_token(answer: str, *, algorithm: Algorithm = "sha3") -> str:
    """The ``openai-sentinel-proof-token`` value (2026: ``finalize``'s ``proofofwork``)."""
    return PROOF_PREFIX + answer + (SUFFIX_2026 if algorithm == "fnv1a" else "")


def proof_token(
    config: Sequence[ConfigValue],
    seed: str,
    difficulty: str,
    *,
    algorithm: Algorithm = "sha3",
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> str:
    """Solve the server's challenge and format the proof token."""
    answer = solve(config, seed, difficulty, algorithm=algorithm, max_iterations=max_iterations)
    return as_proof_token(answer, algorithm=algorithm)


def requirements_token(
    config: Sequence[ConfigValue], *, algorithm: Algorithm = "sha3", rng: random.Random
) -> str:
    """The ``p`` of the chat-requirements call.

    Classic: an answer for a local random seed at difficulty ``0fffff`` (docs/sentinel.md#tokens).
    2026: no search; element 3 is 1 and element 9 keeps its ``Math.random()``, then
    ``~S`` (``docs/sentinel.md#tokens``).
    """
    if algorithm == "fnv1a":
        fixed = list(config)
        fixed[3] = 1
        return REQUIREMENTS_PREFIX + encode_config(fixed) + SUFFIX_2026
    answer = solve(config, str(rng.random()), REQUIREMENTS_DIFFICULTY, algorithm=algorithm)
    return REQUIREMENTS_PREFIX + answer


# --- several processes ------------------------------------------------------------------

_SLOTS = 64  # parallel searches that can run at once; more wait on one core
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_flags: Any = None  # multiprocessing RawArray of stop flags, one per running search
_free_slots: list[int] = []
_worker_flags: Any = None  # the same array, in a worker process


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(flags: Any) -> None:
    global _worker_flags
    _worker_flags = flags


def _worker_search(
    config: Sequence[ConfigValue],
    seed: str,
    difficulty: str,
    algorithm: Algorithm,
    max_iterations: int,
    first: int,
    step: int,
    slot: int,
    started: float,
) -> str | None:
    flags = _worker_flags

    def stop() -> bool:
        return bool(flags[slot])

    answer = _search(
        config,
        seed,
        difficulty,
        algorithm,
        max_iterations,
        first=first,
        step=step,
        stop=stop,
        started=started,
    )
    if answer is not None:
        flags[slot] = 1  # the others stop at their next block
    return answer


def _acquire() -> tuple[ProcessPoolExecutor, Any, int] | None:
    """The pool (made on first use) and a free stop-flag slot, or None if none is free."""
    global _pool, _flags
    with _lock:
        if _pool is None:
            # spawn, never fork: mitmproxy's process has threads and an event loop.
            context = multiprocessing.get_context("spawn")
            _flags = context.RawArray("b", _SLOTS)
            _free_slots[:] = range(_SLOTS)
            _pool = ProcessPoolExecutor(
                max_workers=_workers(),
                mp_context=context,
                initializer=_init_worker,
                initargs=(_flags,),
            )
        if not _free_slots:
            return None
        return _pool, _flags, _free_slots.pop()


def _release_after(futures: list[Future[str | None]], flags: Any, slot: int) -> Callable[[], None]:
    """Give the slot back once every task of the search has ended and the caller has
    called the returned function (after raising the flag)."""
    remaining = len(futures) + 1
    count_lock = threading.Lock()

    def done(_: object = None) -> None:
        nonlocal remaining
        with count_lock:
            remaining -= 1
            last = remaining == 0
        if last:
            with _lock:
                if _flags is flags:  # not a pool that was shut down since
                    flags[slot] = 0
                    _free_slots.append(slot)

    for future in futures:
        future.add_done_callback(done)
    return done


def _discard_pool() -> None:
    global _pool, _flags
    with _lock:
        pool, _pool, _flags = _pool, None, None
        _free_slots.clear()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


async def solve_async(
    config: Sequence[ConfigValue],
    seed: str,
    difficulty: str,
    *,
    algorithm: Algorithm = "sha3",
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    parallel_threshold: float = PARALLEL_THRESHOLD,
) -> str:
    """``solve`` without blocking the event loop.

    A challenge whose expected work is at most ``INLINE_THRESHOLD`` iterations is
    solved in place (bounded, see there); one whose expected work is at most
    ``parallel_threshold`` iterations runs on a thread.  A harder one is split over
    one process per core: each takes every n-th block of nonces, so the nonce found
    stays close to the work done; the first answer sets a shared flag and the others
    stop within one block.  Cancelling the caller stops the workers the same way.
    """
    difficulty = parse_difficulty(difficulty)
    config = list(config)
    if _work(difficulty, algorithm) is None:
        raise _exhausted(difficulty, max_iterations)
    work = expected_work(difficulty, algorithm=algorithm)
    if work <= INLINE_THRESHOLD:
        # A thread hand-off costs more than the search (about 16 hashes for the
        # usual 0fffff): solve on the loop, for at most _INLINE_CAP iterations.
        cap = min(max_iterations, _INLINE_CAP)
        answer = _search(config, seed, difficulty, algorithm, cap)
        if answer is not None:
            return answer
        if cap >= max_iterations:
            raise _exhausted(difficulty, max_iterations)
    workers = _workers()
    if workers < 2 or work <= parallel_threshold:
        return await asyncio.to_thread(
            solve, config, seed, difficulty, algorithm=algorithm, max_iterations=max_iterations
        )
    acquired = _acquire()
    if acquired is None:
        log.warning("all %d parallel proof-of-work slots busy; solving on one core", _SLOTS)
        return await asyncio.to_thread(
            solve, config, seed, difficulty, algorithm=algorithm, max_iterations=max_iterations
        )
    pool, flags, slot = acquired
    started = _clock()
    futures = [
        pool.submit(
            _worker_search,
            config,
            seed,
            difficulty,
            algorithm,
            max_iterations,
            index,
            workers,
            slot,
            started,
        )
        for index in range(workers)
    ]
    finished = _release_after(futures, flags, slot)
    tasks = [asyncio.wrap_future(f) for f in futures]
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                answer = task.result()
                if answer is not None:
                    return answer
    except BrokenProcessPool:
        log.warning("proof-of-work worker process died; solving on one core")
        _discard_pool()
        return await asyncio.to_thread(
            solve, config, seed, difficulty, algorithm=algorithm, max_iterations=max_iterations
        )
    finally:
        flags[slot] = 1
        for task in tasks:
            if not task.done():
                task.cancel()  # a task not started yet is dropped from the queue
            elif not task.cancelled():
                task.exception()  # retrieved: a second worker's error is not logged
        finished()
    raise _exhausted(difficulty, max_iterations)


def shutdown() -> None:
    """Stop the worker processes (for the addon's ``done`` hook; safe to call twice)."""
    global _pool, _flags
    with _lock:
        pool, _pool, _flags = _pool, None, None
        _free_slots.clear()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
