"""The token pool end to end: a running mitmdump, the backend emulator, the
official openai SDK (from ``.venv-clients``) and curl, as users run them.

What the emulator received shows which account each conversation used (its
``authorization`` and ``chatgpt-account-id`` headers), its OAuth endpoint does
the refreshes (rotating refresh tokens, ``invalid_grant`` for unknown ones),
and the admin API (``/tokens/api/…``) shows each token's health.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import (
    Emulator,
    add_refresh_tokens,
    fake_state,
    mint_access_token,
    next_plan,
    received,
    reset,
)
from tests.support.admin import ADMIN_KEY, admin, bearers, conversations, tokens_view, wait_until
from tests.support.clients import proxy_env, reverse_env, run_client
from tests.support.mitm import MitmFactory

CODE = "pool-code-0123456789"  # an AUTHORIZATION code
OTHER_CODE = "pool-code-second-abcdef"


def base_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    return {
        "CHATGPT_BASE_URL": emulator.url,
        "AUTHORIZATION": CODE,
        "ADMIN_KEY": ADMIN_KEY,
        "REFRESH_URL": emulator.url + "/oauth/token",
        "TIMEOUT_IDLE": "10",
        "TIMEOUT_FIRST_BYTE": "10",
        **extra,
    }


def seed_pool(tmp: Path, lines: Sequence[str]) -> None:
    """Write ``token.txt`` before start-up, as a user copying an old data/ folder does."""
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    (tmp / "data" / "token.txt").write_text("".join(line + "\n" for line in lines))


def rt(letter: str) -> str:
    """A refresh token in the newer ``rt_…`` form."""
    return "rt_" + letter * 40


# -- clients ---------------------------------------------------------------------

CALLS = r"""
import os, concurrent.futures, openai
spec = json.loads(os.environ["C2A_CALLS"])

def one(c):
    client = openai.OpenAI(api_key=c["key"], max_retries=0, timeout=60)
    kwargs = dict(model=c.get("model", "gpt-4o"),
                  messages=[{"role": "user", "content": c["prompt"]}])
    if c.get("headers"):
        kwargs["extra_headers"] = c["headers"]
    if c.get("body"):
        kwargs["extra_body"] = c["body"]
    text = ""
    try:
        if c.get("stream"):
            for chunk in client.chat.completions.create(stream=True, **kwargs):
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
        else:
            text = client.chat.completions.create(**kwargs).choices[0].message.content
        return {"status": 200, "text": text}
    except openai.APIStatusError as e:
        return {"status": e.status_code, "retry_after": e.response.headers.get("retry-after"),
                "body": e.response.text}
    except Exception as e:
        return {"error": describe_error(e), "text": text}

calls = spec["calls"]
if spec.get("parallel"):
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as ex:
        emit(list(ex.map(one, calls)))
else:
    emit([one(c) for c in calls])
"""


def sdk_calls(
    env: Mapping[str, str], calls: Sequence[Mapping[str, Any]], *, parallel: bool = False
) -> list[dict[str, Any]]:
    """Chat completions with the openai SDK, one per spec (key, prompt, headers, body)."""
    spec = {"calls": list(calls), "parallel": parallel}
    (results,) = run_client(CALLS, {**env, "C2A_CALLS": json.dumps(spec)}, timeout=120)
    assert isinstance(results, list)
    return results


def ask(key: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "prompt": prompt, **extra}


def assert_no_secret(secrets: Sequence[str], *texts: str) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"a raw secret ({secret[:6]}…) leaked"


# -- selection ----------------------------------------------------------------------


def test_round_robin_follows_the_exact_order_per_code(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(4)]
    seed_pool(tmp_path, ["# my accounts", ats[0], ats[1], ats[2]])
    env = base_env(emulator, AUTHORIZATION=f"{CODE},{OTHER_CODE}", RANDOM_TOKEN="false")
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        # The fourth arrives through the admin API (JSON form) and goes last.
        status, _, added = admin(
            mitm,
            "POST",
            "/tokens/api/tokens",
            body=json.dumps({"tokens": [ats[3]]}).encode(),
            content_type="application/json",
        )
        assert status == 200 and added["added"] == 1 and added["count"] == 4
        codes = [CODE] * 5 + [OTHER_CODE, CODE, OTHER_CODE, CODE, CODE]
        results = sdk_calls(
            reverse_env(mitm, "unused"),
            [ask(code, f"round robin {i}", stream=i % 2 == 0) for i, code in enumerate(codes)],
        )
        assert [r["status"] for r in results] == [200] * len(codes), results
        assert results[1]["text"] == expected_answer("round robin 1", "gpt-4o")
        order = [ats.index(b) for b in bearers(emulator)]
        # One counter per code, over the stable order of token.txt.
        assert order == [0, 1, 2, 3, 0, 0, 1, 1, 2, 3]
        # token.txt keeps the comment and holds the uploaded token at the end.
        lines = (mitm.data_dir / "token.txt").read_text().splitlines()
        assert lines == ["# my accounts", *ats]


def test_round_robin_through_the_https_proxy(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(3)]
    seed_pool(tmp_path, ats)
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, RANDOM_TOKEN="false")) as mitm:
        results = sdk_calls(
            proxy_env(mitm, "unused"), [ask(CODE, f"via proxy {i}") for i in range(4)]
        )
        assert [r["status"] for r in results] == [200] * 4, results
        assert [ats.index(b) for b in bearers(emulator)] == [0, 1, 2, 0]


def test_random_token_spreads_over_the_pool(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(4)]
    seed_pool(tmp_path, ats)
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, RANDOM_TOKEN="true")) as mitm:
        results = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, f"r{i}") for i in range(40)])
        assert all(r["status"] == 200 for r in results), results
        order = [ats.index(b) for b in bearers(emulator)]
        assert len(order) == 40
        assert set(order) == {0, 1, 2, 3}  # misses one with probability 4·(3/4)^40 ≈ 4e-5
        assert order != [i % 4 for i in range(40)]  # not round robin in disguise


# -- failures and retries ----------------------------------------------------------

RETRY_CASES: dict[str, tuple[dict[str, Any], str, bool]] = {
    # preset: (plan, state of the failed token afterwards, may it be picked again?)
    "unauthorized": ({"preset": "unauthorized"}, "bad", False),
    "unusual_activity": ({"preset": "unusual_activity"}, "cooling", False),
    "cloudflare": ({"preset": "cloudflare"}, "cooling", False),
    "rate_limit": ({"preset": "rate_limit"}, "healthy", False),  # limited for this model
    "server_error": ({"preset": "server_error"}, "healthy", True),
    "bad_gateway": ({"preset": "bad_gateway"}, "healthy", True),
    "first_byte_timeout": ({"stall_ms": 8000}, "healthy", True),
    "idle_timeout": ({"stall_ms": 8000, "stall_after_events": 2}, "healthy", True),
}


@pytest.mark.parametrize("case", list(RETRY_CASES))
def test_a_failed_attempt_moves_on_to_another_token(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path, case: str
) -> None:
    plan, state, reused = RETRY_CASES[case]
    ats = [mint_access_token(exp_in=86400) for _ in range(3)]
    seed_pool(tmp_path, ats)
    env = base_env(emulator, RANDOM_TOKEN="false", TIMEOUT_IDLE="2", TIMEOUT_FIRST_BYTE="2")
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        next_plan(emulator.url, **plan)
        first = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, f"retry {case}")])
        assert first[0]["status"] == 200, first
        assert first[0]["text"] == expected_answer(f"retry {case}", "gpt-4o")
        assert [ats.index(b) for b in bearers(emulator)] == [0, 1]  # the retry moved on

        view = {t["id"]: t for t in tokens_view(mitm)["tokens"]}
        failed = next(t for t in view.values() if ats[0].endswith(t["token"][-4:]))
        assert failed["state"] == state, failed
        assert failed["last_error"], failed
        if state == "cooling":
            assert failed["until"] > time.time() + 60
        if case == "rate_limit":
            (until,) = failed["limits"].values()
            assert 20 < until - time.time() <= 31  # clears_in 30
        others = [t for t in view.values() if t is not failed]
        assert all(t["state"] == "healthy" for t in others)

        reset(emulator.url)
        later = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, f"later {i}") for i in range(4)])
        assert [r["status"] for r in later] == [200] * 4
        used = {ats.index(b) for b in bearers(emulator)}
        assert (0 in used) is reused, used
        assert_no_secret(ats, mitm.log(), json.dumps(view))


def test_retries_stop_after_retry_times(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(5)]
    seed_pool(tmp_path, ats)
    with mitm_factory.run(
        tmp=tmp_path, env=base_env(emulator, RANDOM_TOKEN="false", RETRY_TIMES="2")
    ) as mitm:
        next_plan(emulator.url, preset="server_error", count=10)
        (result,) = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, "all fail")])
        assert result["status"] == 502, result
        assert [ats.index(b) for b in bearers(emulator)] == [0, 1, 2]  # 1 + RETRY_TIMES


def test_no_retry_once_the_first_byte_has_been_sent(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(2)]
    seed_pool(tmp_path, ats)
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, RANDOM_TOKEN="false")) as mitm:
        answer = " ".join(f"word{i}" for i in range(300))
        next_plan(emulator.url, answer=answer, drop_after_events=40)
        (result,) = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, "dropped", stream=True)])
        assert len(conversations(emulator)) == 1  # text had reached the client: no retry
        # The client got the first part, then an error: never a second answer.
        assert result["text"].startswith("word0 word1") and len(result["text"]) < len(answer)
        assert "error" in result, result


def test_enable_limit_answers_429_at_once(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    at = mint_access_token(exp_in=86400)
    seed_pool(tmp_path, [at])
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, ENABLE_LIMIT="true")) as mitm:
        next_plan(emulator.url, preset="rate_limit")
        first, second = sdk_calls(
            reverse_env(mitm, "unused"), [ask(CODE, "limited"), ask(CODE, "again")]
        )
        assert first["status"] == 429 and first["retry_after"] == "30", first
        assert second["status"] == 429, second
        assert 1 <= float(second["retry_after"]) <= 30
        assert "Request limit exceeded" in second["body"]
        assert len(conversations(emulator)) == 1  # the second was never sent
        # The direct use of the same token is limited too (its memory is per token).
        (direct,) = sdk_calls(reverse_env(mitm, "unused"), [ask(at, "direct")])
        assert direct["status"] == 429 and len(conversations(emulator)) == 1
        # Another model is not limited.
        (other,) = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, "mini", model="gpt-4o-mini")])
        assert other["status"] == 200, other


def test_without_enable_limit_the_request_is_sent(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    seed_pool(tmp_path, [mint_access_token(exp_in=86400)])
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, ENABLE_LIMIT="false")) as mitm:
        next_plan(emulator.url, preset="rate_limit")
        first, second = sdk_calls(
            reverse_env(mitm, "unused"), [ask(CODE, "limited"), ask(CODE, "again")]
        )
        assert first["status"] == 429
        assert second["status"] == 200, second
        assert len(conversations(emulator)) == 2


# -- refresh tokens -------------------------------------------------------------------


def test_pool_refresh_tokens_are_refreshed_and_rotated(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    rts = [rt("a"), rt("b")]
    add_refresh_tokens(emulator.url, rts)
    seed_pool(tmp_path, ["# team first", f"{rts[0]},acct-team-1", rts[1]])
    env = base_env(emulator, RANDOM_TOKEN="false", REFRESH_CLIENT_ID="test-client-id")
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        # The non-forced refresh of all at start-up.
        wait_until(lambda: fake_state(emulator.url)["refresh_calls"] == 2)
        oauth = [r for r in received(emulator.url) if r["path"] == "/oauth/token"]
        sent = json.loads(oauth[0]["body"])
        assert sent["client_id"] == "test-client-id"
        assert sent["grant_type"] == "refresh_token" and sent["refresh_token"] == rts[0]

        def rotated() -> list[str] | None:
            lines = (mitm.data_dir / "token.txt").read_text().splitlines()
            return lines if rts[0] not in "".join(lines) and rts[1] not in "".join(lines) else None

        lines = wait_until(rotated)
        live = {t for t, s in fake_state(emulator.url)["refresh_tokens"].items() if s == "live"}
        assert lines[0] == "# team first"
        new0, account = lines[1].split(",")
        assert account == "acct-team-1" and new0 in live and lines[2] in live

        results = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, f"rt {i}") for i in range(2)])
        assert [r["status"] for r in results] == [200, 200], results
        calls = conversations(emulator)
        assert [c["headers"].get("chatgpt-account-id") for c in calls] == ["acct-team-1", None]
        assert all(b.startswith("eyJ") for b in bearers(emulator))
        assert fake_state(emulator.url)["refresh_calls"] == 2  # cached until exp - margin
        view = tokens_view(mitm)
        assert [t["kind"] for t in view["tokens"]] == ["refresh", "refresh"]
        log = mitm.log()
        secrets = [*rts, *live, *bearers(emulator)]
        assert_no_secret(secrets, log, json.dumps(view))

    # After a restart the cached access tokens are used: no refresh at all.
    reset(emulator.url)
    add_refresh_tokens(emulator.url, sorted(live))
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        (again,) = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, "after restart")])
        assert again["status"] == 200, again
        time.sleep(0.5)
        assert fake_state(emulator.url)["refresh_calls"] == 0


def test_twenty_concurrent_requests_cause_one_refresh(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    token = rt("c")
    add_refresh_tokens(emulator.url, [token])
    # mitmdump's own default flow log (run.sh leaves flow_detail at 1) shows no token either.
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator), flow_detail=1) as mitm:
        calls = [ask(token, f"concurrent {i}", stream=i % 2 == 0) for i in range(20)]
        results = sdk_calls(reverse_env(mitm, "unused"), calls, parallel=True)
        assert [r["status"] for r in results] == [200] * 20, results
        assert fake_state(emulator.url)["refresh_calls"] == 1
        assert len(set(bearers(emulator))) == 1  # every request used the one access token
        # The rotated refresh token is stored; the old one keeps working as an alias.
        refresh_map = json.loads((mitm.data_dir / "refresh_map.json").read_text())
        new = refresh_map[token]["rotated_to"]
        assert fake_state(emulator.url)["refresh_tokens"][new] == "live"
        assert "token" in refresh_map[new]
        (later,) = sdk_calls(reverse_env(mitm, "unused"), [ask(token, "later")])
        assert later["status"] == 200 and fake_state(emulator.url)["refresh_calls"] == 1
        assert_no_secret([token, new, *bearers(emulator)], mitm.log())


def test_invalid_grant_puts_the_token_on_the_error_list(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    dead, at = rt("d"), mint_access_token(exp_in=86400)  # the emulator does not know `dead`
    seed_pool(tmp_path, [dead, at])
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, RANDOM_TOKEN="false")) as mitm:
        wait_until(lambda: (mitm.data_dir / "error_token.txt").exists())
        assert (mitm.data_dir / "error_token.txt").read_text().split() == [dead]
        status, _, errors = admin(mitm, "GET", "/tokens/api/errors")
        assert status == 200 and errors["count"] == 1
        assert errors["errors"][0]["token"] == dead[:6] + "…" + dead[-4:]
        view = tokens_view(mitm)
        assert view["count"] == 2 and view["usable"] == 1
        assert view["tokens"][0]["state"] == "bad"
        assert view["tokens"][0]["reason"] == "on the error list"

        results = sdk_calls(
            reverse_env(mitm, "unused"), [ask(CODE, "pool"), ask(CODE, "pool 2"), ask(dead, "x")]
        )
        assert [r["status"] for r in results] == [200, 200, 401], results
        assert "invalid" in results[2]["body"] or "error list" in results[2]["body"]
        assert bearers(emulator) == [at, at]
        # A dead token cannot be uploaded again.
        status, _, answer = admin(
            mitm, "POST", "/tokens/api/tokens", body=dead.encode(), content_type="text/plain"
        )
        assert answer["added"] == 0 and answer["rejected"][0]["reason"] == "on the error list"
        assert_no_secret([dead, at], mitm.log(), json.dumps(view), json.dumps(errors))
        assert_no_secret([dead], json.dumps(answer))


# -- Team account ids -------------------------------------------------------------------


def test_team_account_id_reaches_the_backend(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    at = mint_access_token(exp_in=86400)
    pooled = mint_access_token(exp_in=86400)
    seed_pool(tmp_path, [f"{pooled},acct-from-pool"])
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator)) as mitm:
        header = {"ChatGPT-Account-ID": "acct-from-header"}
        body = {"Chatgpt-Account-Id": "acct-from-body"}
        calls = [
            ask(f"{at},acct-from-bearer", "bearer suffix"),
            ask(at, "header", headers=header),
            ask(at, "body key", body=body),
            ask(
                f"{at},acct-from-bearer", "body beats header and bearer", headers=header, body=body
            ),
            ask(f"{at},acct-from-bearer", "header beats bearer", headers=header),
            ask(CODE, "pool line"),
            ask(CODE, "header beats pool line", headers=header),
            ask(at, "none"),
        ]
        results = sdk_calls(reverse_env(mitm, "unused"), calls)
        assert [r["status"] for r in results] == [200] * len(calls), results
        got = [c["headers"].get("chatgpt-account-id") for c in conversations(emulator)]
        assert got == [
            "acct-from-bearer",
            "acct-from-header",
            "acct-from-body",
            "acct-from-body",
            "acct-from-header",
            "acct-from-pool",
            "acct-from-header",
            None,
        ]
        assert bearers(emulator)[5] == pooled
        # The body key is ours to read: it does not travel on as a field.
        assert all("acct-from-body" not in (c.get("body") or "") for c in conversations(emulator))
        (bad,) = sdk_calls(
            reverse_env(mitm, "unused"), [ask(at, "bad", headers={"ChatGPT-Account-ID": "a b"})]
        )
        assert bad["status"] == 400, bad


# -- the admin API ------------------------------------------------------------------------


def test_admin_api_with_curl(mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(2)]
    env = base_env(emulator, ADMIN_KEY=ADMIN_KEY, API_PREFIX="c2a")
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        # Without a key, with a wrong one: 401, and the token list is not shown.
        for key in (None, "wrong-key", CODE + "x"):
            status, headers, data = admin(mitm, "GET", "/tokens/api/tokens", key=key)
            assert status == 401 and headers["www-authenticate"] == "Bearer", data
            assert data["error"]["code"] == "invalid_api_key"
        # Both the admin key and an AUTHORIZATION code open it.
        for key in (ADMIN_KEY, CODE):
            assert admin(mitm, "GET", "/tokens/api/tokens", key=key)[0] == 200
        upload = "\n".join(["# comment", ats[0], f"{ats[1]} , acct-9", "", "sk-notachatgpttoken"])
        status, _, added = admin(
            mitm, "POST", "/tokens/api/tokens", body=upload.encode(), content_type="text/plain"
        )
        assert status == 200 and added["added"] == 2 and added["count"] == 2
        assert added["rejected"][0]["reason"].startswith("an OpenAI API key")
        view = tokens_view(mitm)
        assert [t["account_id"] for t in view["tokens"]] == [None, "acct-9"]
        assert (mitm.data_dir / "token.txt").read_text() == f"{ats[0]}\n{ats[1]},acct-9\n"
        # The same API under /<API_PREFIX>/tokens.
        status, _, prefixed = admin(mitm, "GET", "/c2a/tokens/api/tokens")
        assert status == 200 and prefixed["count"] == 2
        page = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", f"http://127.0.0.1:{mitm.reverse_port}/c2a/tokens"],
            capture_output=True,
            check=True,
        ).stdout
        assert b"<title>chat2api tokens</title>" in page
        # The prefixed API path serves completions too.
        (served,) = sdk_calls(
            {"OPENAI_BASE_URL": f"http://127.0.0.1:{mitm.reverse_port}/c2a/v1"},
            [ask(CODE, "prefixed")],
        )
        assert served["status"] == 200, served
        # Delete one by its id, then clear.
        first = view["tokens"][0]["id"]
        status, _, deleted = admin(mitm, "DELETE", f"/tokens/api/tokens/{first}")
        assert status == 200 and deleted == {"deleted": first, "count": 1}
        assert admin(mitm, "DELETE", f"/tokens/api/tokens/{first}")[0] == 404
        status, _, cleared = admin(mitm, "DELETE", "/tokens/api/tokens")
        assert status == 200 and cleared == {"count": 0}
        assert (mitm.data_dir / "token.txt").read_text() == ""
        assert_no_secret([*ats, ADMIN_KEY, CODE], mitm.log(), json.dumps(view), json.dumps(added))


def test_admin_routes_are_not_on_the_proxy_listener(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    seed_pool(tmp_path, [mint_access_token(exp_in=86400)])
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, ADMIN_KEY=ADMIN_KEY)) as mitm:
        bundle = proxy_env(mitm, "x")["SSL_CERT_FILE"]
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-w",
                "\n%{http_code}",
                "--proxy",
                mitm.proxy_url,
                "--cacert",
                bundle,
                "-H",
                f"Authorization: Bearer {ADMIN_KEY}",
                "https://api.openai.com/tokens/api/tokens",
            ],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        body, status = out.rsplit("\n", 1)
        assert status == "404" and '"count"' not in body


def test_run_sh_script_list_starts(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    """``-s addons/chat2api.py -s addons/admin.py`` (as run.sh had it) must start."""
    scripts = ("addons/chat2api.py", "addons/admin.py")
    with mitm_factory.run(
        tmp=tmp_path, env=base_env(emulator, ADMIN_KEY=ADMIN_KEY), scripts=scripts
    ) as mitm:
        time.sleep(0.5)
        assert mitm.proc.poll() is None, mitm.log()
        assert tokens_view(mitm)["count"] == 0
        assert "already exists" not in mitm.log()
    run_sh = (Path(__file__).resolve().parents[1] / "run.sh").read_text()
    assert 'addons/admin.py")' not in run_sh


# -- crash safety ---------------------------------------------------------------------------


def test_sigkill_during_uploads_keeps_every_acknowledged_token(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, ADMIN_KEY=ADMIN_KEY)) as mitm:
        url = f"http://127.0.0.1:{mitm.reverse_port}/tokens/api/tokens"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def uploader(n: int) -> None:
            i = 0
            while not stop.is_set():
                token = mint_access_token(exp_in=86400, account_id=f"w{n}-{i}")
                req = urllib.request.Request(
                    url,
                    data=f"{token},acct-{n}-{i}".encode(),
                    method="POST",
                    headers={"authorization": f"Bearer {ADMIN_KEY}"},
                )
                try:
                    with opener.open(req, timeout=10) as resp:
                        if resp.status == 200 and json.loads(resp.read())["added"] == 1:
                            with lock:
                                acknowledged.append(f"{token},acct-{n}-{i}")
                except (OSError, urllib.error.URLError, ValueError):
                    return  # the process is gone
                i += 1

        threads = [threading.Thread(target=uploader, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acknowledged) >= 150, timeout=60)
        os.kill(mitm.proc.pid, signal.SIGKILL)
        mitm.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
        with lock:
            done = list(acknowledged)
    text = (tmp_path / "data" / "token.txt").read_text()
    stored = text.splitlines()
    assert text.endswith("\n") and all(line.count(",") == 1 for line in stored)
    missing = set(done) - set(stored)
    assert not missing, f"{len(missing)} acknowledged tokens lost"
    for name in ("health.json", "refresh_map.json"):
        path = tmp_path / "data" / name
        if path.exists() and path.read_text().strip():
            json.loads(path.read_text())
    # And the restarted proxy serves them all.
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, ADMIN_KEY=ADMIN_KEY)) as mitm:
        assert tokens_view(mitm)["count"] == len(stored) >= len(done)
        assert not list(mitm.data_dir.glob(".*.tmp"))


def test_the_last_pool_token_failing_is_not_retried_anonymously(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    seed_pool(tmp_path, [mint_access_token(exp_in=86400)])
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator)) as mitm:
        next_plan(emulator.url, preset="unauthorized")
        failed, anonymous = sdk_calls(
            reverse_env(mitm, "unused"), [ask(CODE, "one token"), ask(CODE, "pool now empty")]
        )
        assert failed["status"] == 401, failed
        paths = [r["path"] for r in received(emulator.url) if r["path"].endswith("/conversation")]
        # The failed request stayed on its account; the next one, with the pool
        # empty, is anonymous (ALLOW_ANONYMOUS defaults to true).
        assert paths == ["/backend-api/conversation", "/backend-anon/conversation"]
        assert anonymous["status"] == 200, anonymous


def test_allow_anonymous_off(mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path) -> None:
    with mitm_factory.run(tmp=tmp_path, env=base_env(emulator, ALLOW_ANONYMOUS="false")) as mitm:
        (empty,) = sdk_calls(reverse_env(mitm, "unused"), [ask(CODE, "empty pool")])
        assert empty["status"] == 503 and "anonymous use is off" in empty["body"], empty
        assert conversations(emulator) == []
