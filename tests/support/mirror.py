"""Talking to the mirror as the site's front-end does, on one raw HTTP connection."""

from __future__ import annotations

import http.client
import json
import random
import re
import uuid
from typing import Any

import pow
from tests.fakechatgpt import site as fake_site
from tests.support.mitm import Mitm


class Client:
    """Raw HTTP/1.1 on one keep-alive connection: the path goes out exactly as given."""

    def __init__(self, mitm: Mitm) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", mitm.reverse_port, timeout=30)

    def call(
        self, method: str, target: str, body: Any = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        self.conn.request(method, target, body=data, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload

    def close(self) -> None:
        self.conn.close()


def bearer(seed: str) -> dict[str, str]:
    return {"authorization": f"Bearer {seed}"}


def start_conversation(client: Client, seed: str) -> str:
    """A new conversation through the mirror, as the site's front-end makes one."""
    rng = random.Random(7)
    profile = pow.pick_profile(rng)
    # The script and deployment id of the site's page, as its probe reports them.
    config = pow.classic_config(
        profile, script_src=fake_site.SCRIPTS[0], build_id=fake_site.DPL, rng=rng
    )
    p = pow.requirements_token(config, rng=rng)
    ua = {"user-agent": profile.user_agent}
    status, _, body = client.call(
        "POST", "/backend-api/sentinel/chat-requirements", {"p": p}, **bearer(seed), **ua
    )
    assert status == 200, body
    req = json.loads(body)
    work = req["proofofwork"]
    proof = pow.as_proof_token(pow.solve(config, work["seed"], work["difficulty"]))
    message = {
        "id": str(uuid.uuid4()),
        "author": {"role": "user"},
        "content": {"content_type": "text", "parts": ["Hello from a seed"]},
    }
    status, headers, body = client.call(
        "POST",
        "/backend-api/conversation",
        {
            "action": "next",
            "messages": [message],
            "parent_message_id": str(uuid.uuid4()),
            "model": "auto",
        },
        **bearer(seed),
        **ua,
        accept="text/event-stream",
        **{
            "oai-device-id": str(uuid.uuid4()),
            "openai-sentinel-chat-requirements-token": req["token"],
            "openai-sentinel-proof-token": proof,
        },
    )
    assert status == 200, body
    assert headers["content-type"].startswith("text/event-stream")
    m = re.search(rb'"conversation_id"\s*:\s*"([0-9a-f-]{36})"', body)
    assert m, body[:500]
    return m.group(1).decode()


def listed(client: Client, seed: str) -> list[str]:
    status, _, body = client.call(
        "GET", "/backend-api/conversations?offset=0&limit=28", **bearer(seed)
    )
    assert status == 200, body
    return [item["id"] for item in json.loads(body)["items"]]
