"""mirror/sentinel.py: the browser's fake answers and the per-account token cache."""

from __future__ import annotations

import asyncio

import pytest

from accounts.pool import Credential, Source
from mirror.sentinel import (
    REQUIREMENTS,
    SentinelFailed,
    ServerSentinel,
    browser_answer,
    with_tokens,
)
from upstream.common import SentinelTokens

ALICE = Credential(source=Source.POOL, access_token="at-a", token="at-a", entry_id="a")
BOB = Credential(source=Source.POOL, access_token="at-b", token="at-b", entry_id="b")


class Runs:
    def __init__(self, *fail: bool) -> None:
        self.calls: list[str | None] = []
        self.fail = list(fail)

    async def __call__(self, credential: Credential) -> SentinelTokens:
        self.calls.append(credential.entry_id)
        await asyncio.sleep(0)
        if self.fail and self.fail.pop(0):
            raise RuntimeError("upstream said no")
        return SentinelTokens(chat_requirements=f"req-{len(self.calls)}", proof="gAAAAABp")


def test_browser_answers() -> None:
    fake = browser_answer(REQUIREMENTS)
    assert fake is not None and fake["proofofwork"]["required"] is False
    assert browser_answer(REQUIREMENTS)["token"] != fake["token"]  # type: ignore[index]
    assert browser_answer(REQUIREMENTS + "/prepare")["prepare_token"]  # type: ignore[index]
    assert browser_answer(REQUIREMENTS + "/finalize")["token"]  # type: ignore[index]
    assert browser_answer("/backend-api/sentinel/ping") is None


def test_with_tokens_replaces_the_browsers_sentinel_headers() -> None:
    headers = [("Accept", "*/*"), ("OpenAI-Sentinel-Proof-Token", "fake"), ("x", "1")]
    out = with_tokens(headers, SentinelTokens(chat_requirements="real", proof=None))
    assert out == [
        ("Accept", "*/*"),
        ("x", "1"),
        ("openai-sentinel-chat-requirements-token", "real"),
    ]


def test_prefetched_tokens_are_used_once_per_account() -> None:
    async def main() -> None:
        runs = Runs()
        s = ServerSentinel(runs)
        s.prefetch(ALICE)
        s.prefetch(ALICE)  # one at a time per account
        assert (await s.tokens(ALICE)).chat_requirements == "req-1"
        assert (await s.tokens(BOB)).chat_requirements == "req-2"  # fresh, its own
        assert (await s.tokens(ALICE)).chat_requirements == "req-3"  # used up: fresh
        assert runs.calls == ["a", "b", "a"]

    asyncio.run(main())


def test_stale_or_failed_prefetches_give_way_to_a_fresh_exchange() -> None:
    async def main() -> None:
        now = [0.0]
        runs = Runs(True)
        s = ServerSentinel(runs, ttl=10, clock=lambda: now[0])
        s.prefetch(ALICE)  # fails
        assert (await s.tokens(ALICE)).chat_requirements == "req-2"
        s.prefetch(ALICE)
        await asyncio.sleep(0.01)
        now[0] = 11.0  # too old
        assert (await s.tokens(ALICE)).chat_requirements == "req-4"
        assert runs.calls == ["a", "a", "a", "a"]

    asyncio.run(main())


def test_no_tokens_is_sentinel_failed() -> None:
    async def main() -> None:
        with pytest.raises(SentinelFailed):
            await ServerSentinel(Runs(True)).tokens(ALICE)

    asyncio.run(main())
