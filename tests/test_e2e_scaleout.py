"""Scale-out (issue 17, item 7): two chat2api instances over one Redis behind
HAProxy with the shipped ``deploy/haproxy.cfg``, both listeners load-balanced
(HTTP for the reverse listener, TCP for the HTTPS proxy), the official openai
SDK as the client. One instance is stopped in the middle of a load: what it
was answering ends with a clean error (never a hang, never a truncated answer
passed off as complete), every later request is answered by the other, and the
shared pool stays as it was.

Debian's ``haproxy`` and ``redis-server`` run on free loopback ports
(scripts/system-deps.sh installs both).
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import Emulator, mint_access_token, next_plan, reset
from tests.support.admin import tokens_view, wait_until
from tests.support.clients import run_client
from tests.support.haproxy import Backend, HAProxy, run_haproxy
from tests.support.http import call
from tests.support.mitm import Mitm, MitmFactory
from tests.support.redis import RedisServer, run_redis

CODE = "pool-code-0123456789"
ADMIN_KEY = "admin-key-0123456789abcdef"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


CALLS = r"""
import os, concurrent.futures, openai
spec = json.loads(os.environ["C2A_CALLS"])

def client_for(c):
    if c["via"] == "proxy":  # HTTPS_PROXY set-up: the real api.openai.com base URL
        http = openai.DefaultHttpxClient(proxy=spec["proxy_url"], verify=spec["ca_bundle"])
        return openai.OpenAI(api_key=spec["key"], max_retries=0, timeout=60, http_client=http)
    return openai.OpenAI(api_key=spec["key"], base_url=spec["base_url"], max_retries=0,
                         timeout=60)

def one(c):
    out = {"via": c["via"], "text": "", "finish_reason": None}
    t0 = time.monotonic()
    try:
        kwargs = dict(model="gpt-4o", messages=[{"role": "user", "content": c["prompt"]}])
        if c["stream"]:
            for chunk in client_for(c).chat.completions.create(stream=True, **kwargs):
                for choice in chunk.choices:
                    out["text"] += choice.delta.content or ""
                    out["finish_reason"] = choice.finish_reason or out["finish_reason"]
        else:
            choice = client_for(c).chat.completions.create(**kwargs).choices[0]
            out["text"], out["finish_reason"] = choice.message.content, choice.finish_reason
        out["status"] = 200
    except openai.APIStatusError as e:
        out["status"], out["body"] = e.status_code, e.response.text
    except Exception as e:
        out["error"] = describe_error(e)
    out["elapsed"] = time.monotonic() - t0
    return out

with concurrent.futures.ThreadPoolExecutor(len(spec["calls"])) as ex:
    emit(list(ex.map(one, spec["calls"])))
"""


def drive(lb: HAProxy, ca_bundle: Path, calls: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = {
        "calls": list(calls),
        "key": CODE,
        "base_url": lb.base_url,
        "proxy_url": lb.proxy_url,
        "ca_bundle": str(ca_bundle),
    }
    (results,) = run_client(CALLS, {"C2A_CALLS": json.dumps(spec)}, timeout=180)
    assert isinstance(results, list)
    return results


def mixed(n: int, tag: str, *, stream: bool | None = None) -> list[dict[str, Any]]:
    """``n`` calls alternating between the two listeners (and stream or not)."""
    return [
        {
            "via": "api" if i % 2 == 0 else "proxy",
            "prompt": f"{tag} {i}",
            "stream": (i % 4 < 2) if stream is None else stream,
        }
        for i in range(n)
    ]


def complete(result: dict[str, Any]) -> bool:
    return (
        result.get("status") == 200
        and result.get("finish_reason") == "stop"
        and str(result.get("text", "")).endswith("done.")
    )


def answered(m: Mitm) -> int:
    """Chat completions this instance answered with 200, from its access lines."""
    return sum("POST /v1/chat/completions -> 200" in line for line in m.log().splitlines())


def test_two_instances_behind_haproxy(
    mitm_factory: MitmFactory, tmp_path: Path, emulator: Emulator, redis_server: RedisServer
) -> None:
    reset(emulator.url)
    pool = [mint_access_token(account_id=f"acct-{n}") for n in range(4)]
    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "AUTHORIZATION": CODE,
        "ADMIN_KEY": ADMIN_KEY,
        "RANDOM_TOKEN": "false",
        "ALLOW_ANONYMOUS": "false",
        "REDIS_URL": redis_server.url,
        "REDIS_PREFIX": "scaleout-" + tmp_path.name,
        "TIMEOUT_IDLE": "20",
        "TIMEOUT_FIRST_BYTE": "20",
    }
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "a" / "data" / "token.txt").write_text("".join(t + "\n" for t in pool))
    with mitm_factory.run(tmp=tmp_path / "a", env=env) as a:
        # One CA for both, as docker-compose.yml's `ca` service makes it.
        wait_until(lambda: a.ca_path.exists())
        shutil.copytree(a.confdir, tmp_path / "b" / "confdir")
        with mitm_factory.run(tmp=tmp_path / "b", env=env) as b:
            for m in (a, b):
                root = f"http://127.0.0.1:{m.reverse_port}"
                wait_until(lambda root=root: call(root + "/ready").status == 200)
            bundle = tmp_path / "ca-bundle.pem"
            bundle.write_bytes(a.ca_path.read_bytes())
            backends = [
                Backend(name, m.reverse_port, m.proxy_port) for name, m in (("a", a), ("b", b))
            ]
            with run_haproxy(tmp_path / "lb", backends) as lb:
                lb_root = f"http://127.0.0.1:{lb.api_port}"
                wait_until(lambda: call(lb_root + "/ready").status == 200)
                spread_over_both(lb, bundle, a, b)
                stop_one_mid_load(lb, bundle, a, b, emulator)
                later_requests_go_to_the_other(lb, bundle, a)
                pool_is_consistent(a, pool)


def spread_over_both(lb: HAProxy, bundle: Path, a: Mitm, b: Mitm) -> None:
    results = drive(lb, bundle, mixed(12, "warm-up"))
    assert all(complete(r) for r in results), results
    assert {r["via"] for r in results} == {"api", "proxy"}
    # Both instances answered some, through the HTTP and the TCP frontend alike.
    assert answered(a) > 0 and answered(b) > 0
    assert answered(a) + answered(b) == 12


def stop_one_mid_load(lb: HAProxy, bundle: Path, a: Mitm, b: Mitm, emulator: Emulator) -> None:
    # Slow answers (a pause between events), so that B is mid-answer when it stops.
    reset(emulator.url)
    next_plan(emulator.url, delay_ms=250, count=100)
    a_before, b_before = answered(a), answered(b)
    results: list[list[dict[str, Any]]] = []
    calls = mixed(8, "under load", stream=True)
    worker = threading.Thread(target=lambda: results.append(drive(lb, bundle, calls)))
    worker.start()
    # Wait until B is streaming (its access line is written only at the end).
    wait_until(lambda: _streams_started(emulator) >= len(calls), 30)
    time.sleep(0.5)
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(20)
    worker.join(120)
    assert not worker.is_alive(), "a client hung after its instance stopped"
    (out,) = results
    finished = [r for r in out if complete(r)]
    failed = [r for r in out if not complete(r)]
    # What B was answering broke off with an error the client sees as one ...
    assert failed, out
    for r in failed:
        assert r.get("error") or r.get("status", 200) >= 500, r
        assert r.get("finish_reason") != "stop", r  # never a cut answer passed off as whole
    # ... and what A was answering finished.
    assert len(finished) == answered(a) - a_before
    assert answered(b) == b_before  # B finished none of them


def _streams_started(emulator: Emulator) -> int:
    from tests.fakechatgpt.harness import received

    return sum(r["path"].endswith("/conversation") for r in received(emulator.url))


def later_requests_go_to_the_other(lb: HAProxy, bundle: Path, a: Mitm) -> None:
    before = answered(a)
    results = drive(lb, bundle, mixed(12, "after the stop"))
    assert all(complete(r) for r in results), results
    assert answered(a) - before == 12


def pool_is_consistent(a: Mitm, pool: Sequence[str]) -> None:
    view = tokens_view(a)
    assert view["count"] == len(pool)
    assert [t["state"] for t in view["tokens"]] == ["healthy"] * len(pool), view
    root = f"http://127.0.0.1:{a.reverse_port}"
    errors = call(root + "/tokens/api/errors", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert errors.json()["count"] == 0
    assert call(root + "/ready").status == 200


def test_shipped_deployment_files_fit_together(tmp_path: Path) -> None:
    """docker-compose.yml and deploy/haproxy.cfg as shipped: HAProxy accepts the
    config (the Docker DNS resolver and server templates included), and the
    compose file mounts what the config reads and checks what HAProxy checks."""
    import subprocess

    import yaml

    from tests.support.haproxy import CONFIG, haproxy_path
    from tests.support.mitm import ROOT

    config = CONFIG.read_text().replace(
        "/usr/local/etc/haproxy/errors", str(ROOT / "deploy" / "errors")
    )
    (tmp_path / "haproxy.cfg").write_text(config)
    check = subprocess.run(
        [haproxy_path(), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "ca", "chat2api", "haproxy"} <= set(services)
    assert services["chat2api"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["chat2api"]  # only HAProxy is published
    mounts = services["haproxy"]["volumes"]
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in mounts
    assert "./deploy/errors:/usr/local/etc/haproxy/errors:ro" in mounts
    assert "/ready" in " ".join(services["chat2api"]["healthcheck"]["test"])
    assert CONFIG.read_text().count("option httpchk GET /ready") == 2
    for code in (502, 503, 504):
        raw = (ROOT / "deploy" / "errors" / f"{code}.http").read_bytes()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {code} ".encode())
        assert json.loads(body)["error"]["type"] == "server_error"
        assert f"Content-Length: {len(body)}".encode() in head
