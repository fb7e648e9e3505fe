"""accounts.refresh: single flight, cache, rotation, dead tokens, schedule."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from accounts.filestore import FileStore
from accounts.refresh import (
    AUTH_TOKEN_URL,
    IOS_CLIENT_ID,
    Refresher,
    RefreshSummary,
    Schedule,
    run_schedule,
    start_background,
)
from accounts.store import Health, State
from accounts.tokens import token_id
from errors import AuthenticationFailed, UpstreamError

RT = "Hz4-iJ0pE6rOmpLzBiMNSdbSZrzpT6kS3Q2jEqbUJ1GJC"
RT2 = "rt_second_" + "z" * 40


def make_jwt(exp: float) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': exp})}.sig"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeAuth:
    """A fake OAuth endpoint: answers are queued; calls are recorded."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[tuple[int, dict[str, Any]] | Exception] = []
        self.delay = 0.0

    async def __call__(
        self, url: str, body: Mapping[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        self.calls.append((url, dict(body)))
        await asyncio.sleep(self.delay)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        n = len(self.calls)
        return 200, {"access_token": make_jwt(self.clock.now + 864000 + n)}


def setup(tmp_path: Path, lines: list[str]) -> tuple[FileStore, FakeAuth, Refresher, Clock]:
    clock = Clock()
    store = FileStore(tmp_path, clock=clock)
    auth = FakeAuth(clock)
    refresher = Refresher(store, auth, clock=clock, pause=0)

    async def prepare() -> None:
        await store.open()
        await store.add_tokens(lines)

    asyncio.run(prepare())
    return store, auth, refresher, clock


def test_twenty_concurrent_callers_make_one_post(tmp_path: Path) -> None:
    store, auth, refresher, _ = setup(tmp_path, [RT])
    auth.delay = 0.05

    async def main() -> list[str]:
        return await asyncio.gather(*(refresher.access_token(RT) for _ in range(20)))

    tokens = asyncio.run(main())
    assert len(auth.calls) == 1 and len(set(tokens)) == 1
    url, body = auth.calls[0]
    assert url == "https://auth0.openai.com/oauth/token"
    assert body["client_id"] == IOS_CLIENT_ID and body["grant_type"] == "refresh_token"
    assert body["refresh_token"] == RT and "redirect_uri" in body

    async def forced() -> None:
        await asyncio.gather(*(refresher.access_token(RT, force=True) for _ in range(20)))

    asyncio.run(forced())
    assert len(auth.calls) == 2


def test_cache_until_exp_minus_margin(tmp_path: Path) -> None:
    store, auth, refresher, clock = setup(tmp_path, [RT])

    async def main() -> None:
        first = await refresher.access_token(RT)
        assert await refresher.access_token(RT) == first
        assert len(auth.calls) == 1
        clock.now += 864000 - refresher.margin + 2  # inside the margin now
        assert await refresher.access_token(RT) != first
        assert len(auth.calls) == 2
        stale = await refresher.access_token(RT)
        assert await refresher.access_token(RT, stale=stale) != stale
        assert len(auth.calls) == 3

    asyncio.run(main())
    reopened = FileStore(tmp_path)
    asyncio.run(reopened.open())
    assert asyncio.run(reopened.cached_access(RT)) is not None


def test_rotated_refresh_token_replaces_the_old_one(tmp_path: Path) -> None:
    store, auth, refresher, clock = setup(tmp_path, ["# pool", f"{RT},team-7", RT2])
    asyncio.run(store.set_health(token_id(f"{RT},team-7"), Health(last_error="x")))
    new_rt = "rt_rotated_" + "n" * 40
    auth.answers.append((200, {"access_token": make_jwt(clock.now + 9e5), "refresh_token": new_rt}))

    async def main() -> None:
        at = await refresher.access_token(RT)
        assert await refresher.access_token(RT) == at  # the old one is an alias now
        assert await refresher.current(RT) == new_rt

    asyncio.run(main())
    assert len(auth.calls) == 1
    assert (tmp_path / "token.txt").read_text() == f"# pool\n{new_rt},team-7\n{RT2}\n"
    assert token_id(f"{new_rt},team-7") in json.loads((tmp_path / "health.json").read_text())
    refresh_map = json.loads((tmp_path / "refresh_map.json").read_text())
    assert refresh_map[RT]["rotated_to"] == new_rt and "token" in refresh_map[new_rt]


@pytest.mark.parametrize(
    "answer",
    [
        {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."},
        {"error": "access_denied"},
        {"error": {"code": "refresh_token_reused", "message": "already used"}},
        {"_raw": "<html>refresh_token_expired</html>"},
    ],
)
def test_dead_refresh_token_goes_to_the_error_list(tmp_path: Path, answer: dict[str, Any]) -> None:
    store, auth, refresher, _ = setup(tmp_path, [RT])
    auth.answers.append((400, answer))

    async def main() -> None:
        with pytest.raises(AuthenticationFailed):
            await refresher.access_token(RT)
        with pytest.raises(AuthenticationFailed):
            await refresher.access_token(RT)  # no second post

    asyncio.run(main())
    assert len(auth.calls) == 1
    assert (tmp_path / "error_token.txt").read_text() == f"{RT}\n"


@pytest.mark.parametrize(
    "answer",
    [(500, {"error": "server_error"}), (200, {"no": "token"}), OSError("connection reset")],
)
def test_other_failures_are_upstream_errors(tmp_path: Path, answer: Any) -> None:
    store, auth, refresher, _ = setup(tmp_path, [RT])
    auth.answers.append(answer)
    with pytest.raises(UpstreamError):
        asyncio.run(refresher.access_token(RT))
    assert asyncio.run(store.errors()) == []


def test_configurable_endpoint_without_redirect(tmp_path: Path) -> None:
    store, auth, _, clock = setup(tmp_path, [RT])
    refresher = Refresher(
        store, auth, token_url=AUTH_TOKEN_URL, client_id="app_X", redirect_uri=None, clock=clock
    )
    asyncio.run(refresher.access_token(RT))
    url, body = auth.calls[0]
    assert url == AUTH_TOKEN_URL and body["client_id"] == "app_X" and "redirect_uri" not in body


def test_refresh_all(tmp_path: Path) -> None:
    at = make_jwt(2e9)
    store, auth, refresher, _ = setup(
        tmp_path, [RT, f"{RT},team-2", RT2, at, "rt_dead_" + "d" * 30]
    )
    asyncio.run(store.add_error("rt_dead_" + "d" * 30))
    auth.answers += [(200, {"access_token": make_jwt(2e9)}), (400, {"error": "invalid_grant"})]
    assert asyncio.run(refresher.refresh_all()) == RefreshSummary(ok=1, dead=1)
    assert len(auth.calls) == 2  # RT once, RT2 once; the AT and the error token skipped
    assert asyncio.run(refresher.refresh_all()) == RefreshSummary(ok=1)
    assert len(auth.calls) == 2  # cached, not forced
    assert asyncio.run(refresher.refresh_all(force=True)) == RefreshSummary(ok=1)
    assert len(auth.calls) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every 2 days at 03:00", Schedule(days=2, hour=3, minute=0)),
        ("2d@03:30", Schedule(days=2, hour=3, minute=30)),
        ("4 days 23:59", Schedule(days=4, hour=23, minute=59)),
        ("07:15", Schedule(days=1, hour=7, minute=15)),
    ],
)
def test_schedule_parse(text: str, expected: Schedule) -> None:
    assert Schedule.parse(text) == expected


@pytest.mark.parametrize("text", ["", "every day", "25:00", "0d@03:00", "3:60"])
def test_schedule_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Schedule.parse(text)


def test_schedule_next_run() -> None:
    s = Schedule()
    start = dt.datetime(2025, 1, 1, 12, 0)
    runs = [s.next_run(start)]
    for _ in range(3):
        runs.append(s.next_run(runs[-1]))
    assert all(r.time() == dt.time(3, 0) for r in runs)
    assert all((b - a) == dt.timedelta(days=2) for a, b in zip(runs, runs[1:], strict=False))
    assert runs[0] - start < dt.timedelta(days=2)
    assert runs[0].toordinal() % 2 == 0
    daily = Schedule(days=1, hour=3)
    assert daily.next_run(dt.datetime(2025, 1, 1, 2, 59)) == dt.datetime(2025, 1, 1, 3, 0)
    assert daily.next_run(dt.datetime(2025, 1, 1, 3, 0)) == dt.datetime(2025, 1, 2, 3, 0)
    aware = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert s.next_run(aware).tzinfo is dt.timezone.utc


def test_run_schedule_forces_a_refresh_after_sleeping(tmp_path: Path) -> None:
    store, auth, refresher, _ = setup(tmp_path, [RT])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            raise asyncio.CancelledError

    async def main() -> None:
        now = dt.datetime(2025, 1, 3, 2, 0)  # the ordinal of 2025-01-03 is even
        with pytest.raises(asyncio.CancelledError):
            await run_schedule(refresher, Schedule(), now=lambda: now, sleep=sleep)

    asyncio.run(main())
    assert slept[0] == 3600.0
    assert len(auth.calls) == 1


def test_dead_token_health_unchanged_by_refresher(tmp_path: Path) -> None:
    store, auth, refresher, _ = setup(tmp_path, [RT])
    auth.answers.append((401, {"error": "invalid_grant"}))
    with pytest.raises(AuthenticationFailed):
        asyncio.run(refresher.access_token(RT))
    assert asyncio.run(store.health()).get(token_id(RT), Health()).state is State.HEALTHY


def test_start_background(tmp_path: Path) -> None:
    store, auth, refresher, _ = setup(tmp_path, [RT])

    async def main() -> None:
        tasks = start_background(refresher, Schedule())
        assert await tasks[0] == RefreshSummary(ok=1)
        assert not tasks[1].done()
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]

    asyncio.run(main())
    assert len(auth.calls) == 1
