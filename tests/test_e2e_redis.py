"""Several instances, one account pool: two real mitmdumps over one Redis (a
throwaway ``redis-server``), the backend emulator, the official openai SDK and
curl, as a user deploys them (README, "Deployment").

Each test has its own ``REDIS_PREFIX``, so the instances of one test share
everything and the tests share nothing. The first instance of a test starts
with ``token.txt`` in its DATA_DIR and imports it into the empty shared pool;
the second starts with no files at all.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    add_refresh_tokens,
    fake_state,
    mint_access_token,
    next_plan,
    received,
    reset,
)
from tests.support.admin import ADMIN_KEY, admin, bearers, tokens_view, wait_until
from tests.support.clients import run_client
from tests.support.http import call
from tests.support.mirror import Client, bearer, listed, start_conversation
from tests.support.mitm import Mitm, MitmFactory
from tests.support.redis import RedisServer, require_redis, run_redis

CODE = "pool-code-0123456789"


def started(ready_url: str) -> bool:
    """Start-up is done: /ready says more than that its settings are not loaded."""
    checks = call(ready_url).json().get("checks", {})
    return bool(checks.get("settings") == "ok")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@contextmanager
def two_instances(
    factory: MitmFactory,
    emulator: Emulator,
    server: RedisServer,
    pool: Sequence[str] = (),
    *,
    mirror: bool = False,
    **extra: str,
) -> Iterator[tuple[Mitm, Mitm]]:
    """Instances A and B over one Redis; A's DATA_DIR holds ``pool`` as token.txt."""
    env = {
        "AUTHORIZATION": CODE,
        "ADMIN_KEY": ADMIN_KEY,
        "REFRESH_URL": emulator.url + "/oauth/token",
        "TIMEOUT_IDLE": "10",
        "TIMEOUT_FIRST_BYTE": "10",
        "REDIS_URL": server.url,
        "REDIS_PREFIX": "e2e-" + secrets.token_hex(4),
        **extra,
    }
    if mirror:
        env["AUTO_SEED"] = "true"
    with (
        factory.run(env, emulator_url=emulator.url, mirror=mirror, pool=pool) as a,
        factory.run(env, emulator_url=emulator.url, mirror=mirror) as b,
    ):
        # Listening comes before start-up is done (the admin API answers 503 till then).
        for m in (a, b):
            ready = f"http://127.0.0.1:{m.reverse_port}/ready"
            wait_until(lambda ready=ready: started(ready))
        if pool:  # A imports its token.txt into the empty shared pool at start-up
            wait_until(lambda: len(tokens_view(b)["tokens"]) == len(pool))
        yield a, b


CALLS = r"""
import os, concurrent.futures, openai
spec = json.loads(os.environ["C2A_CALLS"])

def one(c):
    client = openai.OpenAI(base_url=c["base_url"], api_key=c["key"], max_retries=0, timeout=60)
    try:
        kwargs = dict(model="gpt-4o", messages=[{"role": "user", "content": c["prompt"]}])
        if c.get("stream"):
            text = ""
            for chunk in client.chat.completions.create(stream=True, **kwargs):
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
        else:
            text = client.chat.completions.create(**kwargs).choices[0].message.content
        return {"status": 200, "text": text}
    except openai.APIStatusError as e:
        return {"status": e.status_code, "body": e.response.text}
    except Exception as e:
        return {"error": describe_error(e)}

calls = spec["calls"]
if spec["parallel"]:
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as ex:
        emit(list(ex.map(one, calls)))
else:
    emit([one(c) for c in calls])
"""


def sdk(calls: Sequence[Mapping[str, Any]], *, parallel: bool = False) -> list[dict[str, Any]]:
    """Chat completions with the openai SDK; each call names its instance's base URL."""
    spec = json.dumps({"calls": list(calls), "parallel": parallel})
    (results,) = run_client(CALLS, {"C2A_CALLS": spec}, timeout=120)
    assert isinstance(results, list)
    return results


def ask(mitm: Mitm, prompt: str, key: str = CODE, **extra: Any) -> dict[str, Any]:
    return {"base_url": mitm.base_url, "key": key, "prompt": prompt, **extra}


# -- the pool across instances -------------------------------------------------------------


def test_round_robin_is_global_across_instances(
    mitm_factory: MitmFactory, emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(3)]
    with two_instances(mitm_factory, emulator, redis_server, ats, RANDOM_TOKEN="false") as (a, b):
        assert "imported 3 token(s)" in a.log()
        results = sdk([ask((a, b)[i % 2], f"alternating {i}") for i in range(6)])
        assert [r["status"] for r in results] == [200] * 6, results
        used = [ats.index(x) for x in bearers(emulator)]
        assert used == [0, 1, 2, 0, 1, 2]  # each pooled token exactly twice, in order
        assert not (b.data_dir / "token.txt").exists()  # B never wrote files


def test_a_token_failing_on_one_instance_is_skipped_by_the_other(
    mitm_factory: MitmFactory, emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(3)]
    with two_instances(mitm_factory, emulator, redis_server, ats, RANDOM_TOKEN="false") as (a, b):
        next_plan(emulator.url, preset="unauthorized")
        (first,) = sdk([ask(a, "A meets a 401")])
        assert first["status"] == 200, first
        assert [ats.index(x) for x in bearers(emulator)] == [0, 1]  # A moved on
        view = {t["token"][-4:]: t for t in tokens_view(b)["tokens"]}
        assert view[ats[0][-4:]]["state"] == "bad"  # B sees the mark at once

        reset(emulator.url)
        later = sdk([ask(b, f"B after the 401 {i}") for i in range(4)])
        assert [r["status"] for r in later] == [200] * 4, later
        assert 0 not in {ats.index(x) for x in bearers(emulator)}


def test_twenty_concurrent_requests_on_two_instances_refresh_once(
    mitm_factory: MitmFactory, emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    token = "rt_" + "r" * 40
    add_refresh_tokens(emulator.url, [token])
    with two_instances(mitm_factory, emulator, redis_server) as (a, b):
        calls = [ask((a, b)[i % 2], f"both {i}", key=token, stream=i % 4 < 2) for i in range(20)]
        results = sdk(calls, parallel=True)
        assert [r["status"] for r in results] == [200] * 20, results
        assert fake_state(emulator.url)["refresh_calls"] == 1
        assert len(set(bearers(emulator))) == 1  # every request used the one access token
        (later,) = sdk([ask(b, "later", key=token)])  # the rotated token is shared too
        assert later["status"] == 200 and fake_state(emulator.url)["refresh_calls"] == 1


def test_a_seed_made_on_one_instance_works_on_the_other(
    mitm_factory: MitmFactory, emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    pool = [mint_access_token(exp_in=86400)]
    with two_instances(mitm_factory, emulator, redis_server, pool, mirror=True) as (a, b):
        on_a, on_b = Client(a), Client(b)
        try:
            status, _, body = on_a.call("POST", "/seedtoken", {}, **bearer(ADMIN_KEY))
            assert status == 200, body
            seed = json.loads(body)["seed"]
            status, _, body = on_b.call("GET", "/seedtoken", **bearer(ADMIN_KEY))
            assert json.loads(body)["seeds"], body  # B lists A's seed
            status, _, _ = on_b.call("GET", "/backend-api/me", **bearer(seed))
            assert status == 200

            other = "seed-made-on-b-5e1f0a"  # an auto seed, created through B
            cid = start_conversation(on_b, seed)
            mine = start_conversation(on_b, other)
            wait_until(lambda: cid in listed(on_a, seed))  # ownership is shared
            assert cid not in listed(on_a, other) and mine not in listed(on_a, seed)
            before = len(received(emulator.url))
            status, _, _ = on_a.call("GET", f"/backend-api/conversation/{cid}", **bearer(other))
            assert status == 404  # isolated on every instance
            assert len(received(emulator.url)) == before
            status, _, body = on_a.call("GET", f"/backend-api/conversation/{cid}", **bearer(seed))
            assert status == 200 and json.loads(body)["conversation_id"] == cid
        finally:
            on_a.close()
            on_b.close()


# -- Redis going away ------------------------------------------------------------------------


def test_redis_stopped_mid_run_and_restarted(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(2)]
    new = mint_access_token(exp_in=86400)
    with (
        run_redis(tmp_path / "redis") as server,
        two_instances(mitm_factory, emulator, server, ats) as (a, b),
    ):
        warm = sdk([ask(a, "warm A"), ask(b, "warm B")])
        assert [r["status"] for r in warm] == [200, 200], warm

        server.stop()  # data kept for the restart
        started = time.monotonic()
        reads = sdk([ask(a, "A without Redis"), ask(b, "B without Redis", stream=True)])
        assert [r["status"] for r in reads] == [200, 200], reads  # from the local copy
        status, _, data = admin(
            b, "POST", "/tokens/api/tokens", body=new.encode(), content_type="text/plain"
        )
        assert status == 503, data
        assert "shared state (Redis) is unreachable" in json.dumps(data)
        assert time.monotonic() - started < 20  # no hang
        for mitm in (a, b):
            assert mitm.log().count("is unreachable:") == 1, mitm.log()[-3000:]

        server.start()

        def added() -> bool:
            status, _, _ = admin(
                b, "POST", "/tokens/api/tokens", body=new.encode(), content_type="text/plain"
            )
            return status == 200

        wait_until(added, timeout=10)
        assert len(tokens_view(a)["tokens"]) == 3  # A reads the shared pool again
        assert "reachable again" in b.log()
        again = sdk([ask(a, "A after the restart")])
        assert again[0]["status"] == 200, again


def test_starting_while_redis_is_down(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400)]
    server = RedisServer(require_redis(), tmp_path / "redis")  # not started yet
    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "AUTHORIZATION": CODE,
        "ADMIN_KEY": ADMIN_KEY,
        "ALLOW_ANONYMOUS": "false",
        "REDIS_URL": server.url,
    }
    with mitm_factory.run(env, pool=[ats[0]]) as mitm:
        (down,) = sdk([ask(mitm, "no Redis yet")])
        assert down["status"] == 503 and "Redis" in down["body"], down
        assert "is unreachable" in mitm.log()
        server.start()
        try:
            # The start-up import is retried until Redis answers.
            wait_until(lambda: "imported 1 token(s)" in mitm.log(), timeout=15)
            (up,) = sdk([ask(mitm, "Redis is back")])
            assert up["status"] == 200, up
            assert bearers(emulator) == ats
        finally:
            server.stop(keep_data=False)
