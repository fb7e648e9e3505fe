"""accounts.pool: resolution, rotation, retries, health, limits, management."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from accounts.filestore import FileStore
from accounts.pool import Credential, Outcome, Pool, Source
from accounts.refresh import Refresher
from accounts.tokens import token_id
from errors import (
    AuthenticationFailed,
    InvalidRequest,
    RateLimited,
    UpstreamUnavailable,
)

NOW = 1_000_000.0


def make_jwt(exp: float = 2e9) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': exp})}.sig"


ATS = [make_jwt(2e9 + i) for i in range(4)]
A, B, C, D = (token_id(t) for t in ATS)
RT = "rt_pool_" + "r" * 40


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Auth:
    def __init__(self) -> None:
        self.calls = 0
        self.dead = False
        self.down = False

    async def __call__(
        self, url: str, body: Mapping[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        if self.dead:
            return 400, {"error": "invalid_grant"}
        if self.down:
            return 503, {}
        return 200, {"access_token": make_jwt(NOW + 864000 + self.calls)}


def make_pool(tmp_path: Path, lines: list[str], **kw: Any) -> tuple[Pool, Clock, Auth]:
    clock = Clock()
    store = FileStore(tmp_path, clock=clock)
    auth = Auth()
    refresher = Refresher(store, auth, clock=clock, pause=0)
    kw.setdefault("codes", ["code-1", "code-2"])
    pool = Pool(store, refresher=refresher, clock=clock, rng=random.Random(7), **kw)

    async def prepare() -> None:
        await store.open()
        await store.add_tokens(lines)

    asyncio.run(prepare())
    return pool, clock, auth


def picks(pool: Pool, n: int, code: str = "code-1", model: str | None = None) -> list[str]:
    async def main() -> list[str]:
        out = []
        for _ in range(n):
            cred = await pool.resolve(code, model=model)
            out.append(cred.entry_id or "anon")
        return out

    return asyncio.run(main())


def test_random_spreads_over_the_pool(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, ATS)
    counts = Counter(picks(pool, 400))
    assert set(counts) == {A, B, C, D}
    assert all(70 <= n <= 130 for n in counts.values()), counts


def test_round_robin_follows_the_file_order_per_code(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, ATS[:3], random_token=False)
    assert picks(pool, 4, "code-1") == [A, B, C, A]
    assert picks(pool, 2, "code-2") == [A, B]  # its own counter
    assert picks(pool, 1, "code-1") == [B]


@pytest.mark.parametrize("random_token", [True, False])
def test_a_retry_moves_on_and_never_repeats(tmp_path: Path, random_token: bool) -> None:
    pool, _, _ = make_pool(tmp_path, ATS[:3], random_token=random_token, retry_times=10)

    async def main() -> list[str]:
        session = pool.session("code-1")
        seen = []
        while (cred := await session.next()) is not None:
            assert cred.entry_id is not None and cred.access_token in ATS
            seen.append(cred.entry_id)
            await session.report(Outcome.SERVER_ERROR)
        return seen

    seen = asyncio.run(main())
    assert sorted(seen) == sorted([A, B, C])
    if not random_token:
        assert seen == [A, B, C]


def test_retries_are_bounded_by_retry_times(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, ATS, random_token=False, retry_times=2)

    async def main() -> list[str | None]:
        session = pool.session("code-1")
        out = []
        for _ in range(5):
            cred = await session.next()
            out.append(cred.entry_id if cred else None)
            if cred:
                await session.report(Outcome.TIMEOUT)
        return out

    assert asyncio.run(main()) == [A, B, C, None, None]


def test_round_robin_retry_starts_after_the_last_one_tried(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, ATS, random_token=False)
    picks(pool, 2)  # A, B: the counter is now at C

    async def main() -> list[str]:
        session = pool.session("code-1")
        out = []
        for _ in range(4):
            cred = await session.next()
            assert cred is not None and cred.entry_id
            out.append(cred.entry_id)
            await session.report(Outcome.SERVER_ERROR)
        return out

    assert asyncio.run(main()) == [C, D, A, B]


def test_cooled_and_bad_tokens_are_never_picked(tmp_path: Path) -> None:
    pool, clock, _ = make_pool(tmp_path, ATS[:3])

    async def report(entry: str, outcome: Outcome) -> None:
        await pool.report(
            Credential(source=Source.POOL, token=ATS[[A, B, C].index(entry)], entry_id=entry),
            outcome,
        )

    asyncio.run(report(A, Outcome.FORBIDDEN_UNUSUAL))
    asyncio.run(report(B, Outcome.UNAUTHORIZED))  # an access token: bad at once
    assert set(picks(pool, 50)) == {C}
    views = {v.id: v for v in asyncio.run(pool.views())}
    assert views[A].state == "cooling" and views[A].reason == "403 unusual activity"
    assert views[B].state == "bad" and views[B].reason == "401 unauthorized"
    assert views[C].state == "healthy"

    clock.now += pool.cooldowns.unusual + 1  # the cooldown runs out
    assert set(picks(pool, 50)) == {A, C}
    assert {v.id: v.state for v in asyncio.run(pool.views())}[A] == "healthy"


def test_cloudflare_and_429_without_model_cool_the_token(tmp_path: Path) -> None:
    pool, clock, _ = make_pool(tmp_path, ATS[:2])
    cred_a = Credential(source=Source.POOL, token=ATS[0], entry_id=A)
    asyncio.run(pool.report(cred_a, Outcome.FORBIDDEN_CLOUDFLARE))
    assert set(picks(pool, 20)) == {B}
    clock.now += pool.cooldowns.cloudflare + 1
    asyncio.run(pool.report(cred_a, Outcome.RATE_LIMITED, clears_in=50))
    assert set(picks(pool, 20)) == {B}
    clock.now += 51
    assert set(picks(pool, 40)) == {A, B}


def test_everything_cooling_answers_429_with_retry_after(tmp_path: Path) -> None:
    pool, clock, _ = make_pool(tmp_path, ATS[:1])
    cred = Credential(source=Source.POOL, token=ATS[0], entry_id=A)
    asyncio.run(pool.report(cred, Outcome.RATE_LIMITED, clears_in=120))
    with pytest.raises(RateLimited) as info:
        picks(pool, 1)
    assert info.value.retry_after == 120 and info.value.headers() == {"retry-after": "120"}


def test_empty_or_dead_pool_is_anonymous(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, [])
    assert asyncio.run(pool.resolve("code-1")).source is Source.ANONYMOUS
    asyncio.run(pool.add([ATS[0]]))
    cred = asyncio.run(pool.resolve("code-1"))
    asyncio.run(pool.report(cred, Outcome.UNAUTHORIZED))
    anon = asyncio.run(pool.resolve("code-1"))
    assert anon.source is Source.ANONYMOUS and anon.access_token is None


def test_a_retry_never_falls_back_to_anonymous(tmp_path: Path) -> None:
    """The only pool token fails with 401: the request ends with that error instead
    of a silent second attempt without an account; the next request is anonymous."""
    pool, _, _ = make_pool(tmp_path, [ATS[0]])

    async def main() -> tuple[Credential | None, Credential]:
        session = pool.session("code-1")
        first = await session.next()
        assert first is not None and first.entry_id == A
        await session.report(Outcome.UNAUTHORIZED)
        return await session.next(), await pool.resolve("code-1")

    retry, later = asyncio.run(main())
    assert retry is None
    assert later.source is Source.ANONYMOUS


def test_allow_anonymous_off(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, [], allow_anonymous=False)
    with pytest.raises(UpstreamUnavailable):
        asyncio.run(pool.resolve("code-1"))
    bare, _, _ = make_pool(tmp_path / "bare", [], codes=[], allow_anonymous=False)
    with pytest.raises(AuthenticationFailed):
        asyncio.run(bare.resolve(None))
    assert asyncio.run(bare.resolve(ATS[0])).source is Source.DIRECT
    on, _, _ = make_pool(tmp_path / "on", [], codes=[])
    assert asyncio.run(on.resolve(None)).source is Source.ANONYMOUS


def test_expired_access_tokens_are_skipped(tmp_path: Path) -> None:
    old = make_jwt(NOW - 1)
    pool, _, _ = make_pool(tmp_path, [old, ATS[0]])
    assert set(picks(pool, 20)) == {A}
    with pytest.raises(AuthenticationFailed, match="expired"):
        asyncio.run(pool.resolve(old))


def test_rate_limit_memory_per_token_and_model(tmp_path: Path) -> None:
    pool, clock, _ = make_pool(tmp_path, ATS[:2])

    async def limit(entry: str, token: str) -> None:
        cred = Credential(source=Source.POOL, token=token, entry_id=entry)
        await pool.report(cred, Outcome.RATE_LIMITED, model="gpt-4o", clears_in=100)

    asyncio.run(limit(A, ATS[0]))
    assert set(picks(pool, 20, model="gpt-4o")) == {B}
    assert set(picks(pool, 40, model="gpt-4o-mini")) == {A, B}
    asyncio.run(limit(B, ATS[1]))
    with pytest.raises(RateLimited, match="Request limit exceeded") as info:
        picks(pool, 1, model="gpt-4o")
    assert info.value.retry_after == 100
    views = {v.id: v for v in asyncio.run(pool.views())}
    assert views[A].limits == {"gpt-4o": NOW + 100}

    pool.enable_limit = False  # sent anyway
    assert set(picks(pool, 20, model="gpt-4o")) <= {A, B}
    pool.enable_limit = True
    clock.now += 101
    assert set(picks(pool, 40, model="gpt-4o")) == {A, B}


def test_rate_limit_memory_for_a_direct_token(tmp_path: Path) -> None:
    pool, clock, _ = make_pool(tmp_path, [])

    async def main() -> None:
        cred = await pool.resolve(ATS[0], model="o3")
        assert cred.source is Source.DIRECT and cred.access_token == ATS[0]
        await pool.report(cred, Outcome.RATE_LIMITED, model="o3", clears_in=30)
        with pytest.raises(RateLimited):
            await pool.resolve(ATS[0], model="o3")
        assert (await pool.resolve(ATS[0], model="gpt-4o")).access_token == ATS[0]

    asyncio.run(main())


def test_bearer_resolution(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, [f"{ATS[0]},team-pool"])

    async def main() -> None:
        assert pool.match_code("code-2") == "code-2" and pool.match_code("code-") is None
        cred = await pool.resolve("code-1")
        assert cred.source is Source.POOL and cred.account_id == "team-pool"
        assert (await pool.resolve("code-1", "hdr")).account_id == "hdr"
        assert (await pool.resolve("code-1", "hdr", "body")).account_id == "body"
        direct = await pool.resolve(f"{ATS[1]},team-b")
        assert direct.source is Source.DIRECT and direct.account_id == "team-b"
        assert (await pool.resolve(f"{ATS[1]},team-b", "hdr")).account_id == "hdr"
        with pytest.raises(AuthenticationFailed):
            await pool.resolve("")
        with pytest.raises(AuthenticationFailed):
            await pool.resolve("sk-not-a-chatgpt-token-at-all")
        with pytest.raises(InvalidRequest):
            await pool.resolve("code-1", "bad id!")
        pool.codes = []
        assert (await pool.resolve(None)).source is Source.ANONYMOUS

    asyncio.run(main())


def test_401_on_a_pooled_refresh_token_refreshes_once_then_marks_bad(tmp_path: Path) -> None:
    pool, _, auth = make_pool(tmp_path, [RT])
    rid = token_id(RT)

    async def main() -> None:
        cred = await pool.resolve("code-1")
        assert cred.kind is not None and cred.kind.value == "refresh" and auth.calls == 1
        await pool.report(cred, Outcome.UNAUTHORIZED)  # refreshed, still healthy
        assert auth.calls == 2
        fresh = await pool.resolve("code-1")
        assert fresh.access_token != cred.access_token
        await pool.report(fresh, Outcome.UNAUTHORIZED)  # the refreshed one fails too
        assert auth.calls == 2
        views = await pool.views()
        assert views[0].state == "bad" and views[0].id == rid

    asyncio.run(main())
    assert asyncio.run(pool.resolve("code-1")).source is Source.ANONYMOUS


def test_ok_clears_the_401_memory(tmp_path: Path) -> None:
    pool, _, auth = make_pool(tmp_path, [RT])

    async def main() -> None:
        cred = await pool.resolve("code-1")
        await pool.report(cred, Outcome.UNAUTHORIZED)
        fresh = await pool.resolve("code-1")
        await pool.report(fresh, Outcome.OK)
        assert (await pool.store.health())[token_id(RT)].unauth_at is None

    asyncio.run(main())


def test_dead_pooled_refresh_token_is_skipped(tmp_path: Path) -> None:
    pool, _, auth = make_pool(tmp_path, [RT, ATS[0]], random_token=False)
    auth.dead = True
    assert picks(pool, 3) == [A, A, A]
    assert asyncio.run(pool.store.errors()) == [RT]
    assert {v.id: v.state for v in asyncio.run(pool.views())}[token_id(RT)] == "bad"


def test_direct_refresh_token_gets_one_more_try_after_401(tmp_path: Path) -> None:
    pool, _, auth = make_pool(tmp_path, [])

    async def main() -> list[str | None]:
        session = pool.session(RT, model="auto")
        out = []
        for _ in range(4):
            cred = await session.next()
            out.append(cred.access_token if cred else None)
            if cred:
                await session.report(Outcome.UNAUTHORIZED)
        return out

    ats = asyncio.run(main())
    assert ats[0] and ats[1] and ats[0] != ats[1] and ats[2:] == [None, None]


def test_direct_access_token_is_not_retried(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, [])

    async def main() -> Credential | None:
        session = pool.session(ATS[0])
        assert await session.next() is not None
        await session.report(Outcome.SERVER_ERROR)
        return await session.next()

    assert asyncio.run(main()) is None


def test_add_remove_clear(tmp_path: Path) -> None:
    pool, _, _ = make_pool(tmp_path, [])

    async def main() -> None:
        await pool.store.add_error("rt_dead_" + "d" * 30)
        result = await pool.add(
            ["# comment", "", ATS[0], ATS[0], "garbage", "rt_dead_" + "d" * 30, f"{RT} , team"]
        )
        assert result.added == [A, token_id(f"{RT},team")] and result.count == 2
        reasons = [r.reason for r in result.rejected]
        assert reasons == ["too short for a refresh token", "on the error list", "duplicate"]
        assert all(ATS[0] not in r.line for r in result.rejected)
        assert await pool.remove(A) and not await pool.remove(A)
        assert await pool.store.tokens() == [f"{RT},team"]
        await pool.clear()
        assert await pool.store.tokens() == [] and await pool.store.errors() == []

    asyncio.run(main())


def test_credential_repr_is_masked() -> None:
    cred = Credential(source=Source.DIRECT, token=RT, access_token=ATS[0], entry_id="x")
    assert RT not in repr(cred) and ATS[0] not in repr(cred)


def test_refresh_endpoint_down(tmp_path: Path) -> None:
    pool, clock, auth = make_pool(tmp_path, [RT])
    auth.down = True
    with pytest.raises(UpstreamUnavailable):
        picks(pool, 1)
    assert {v.id: v.reason for v in asyncio.run(pool.views())}[token_id(RT)] == "refresh failed"
    asyncio.run(pool.add([ATS[0]]))
    cred = Credential(source=Source.POOL, token=ATS[0], entry_id=A)
    asyncio.run(pool.report(cred, Outcome.FORBIDDEN_CLOUDFLARE))
    with pytest.raises(RateLimited):
        picks(pool, 1)  # everything is resting: 429 with retry-after
    clock.now += pool.cooldowns.cloudflare + 1
    auth.down = False
    assert set(picks(pool, 30)) == {A, token_id(RT)}
