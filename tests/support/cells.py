"""Many SDK calls in one client process, each after its own backend set-up.

Starting the clients' Python and importing ``openai`` costs a second or more, so
fault and timeout tests run a list of *cells* in one process. Per cell the
script, in order: resets the emulator and queues the cell's fault plan; resets
the token pool through the admin API (when the cell has pool tokens); makes
one chat completion with the official SDK (streamed cells through the
HTTPS-proxy listener, the others through the reverse listener, so both set-ups
users have are covered); and records what the SDK produced plus what the
emulator saw (its conversation calls).

``run_cells(mitm, cells, emulator_url=..., admin_key=...)`` returns one result
dict per cell: ``text``, ``reasoning``, ``finish_reason``, ``chunks``,
``error`` (``error_class``, ``status``, ``message``) or None, ``elapsed`` and
``calls`` (``authorization``, ``ended``, ``events_sent``, ``client_disconnected``
of each conversation call the emulator got).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tests.support.clients import proxy_env, run_client

SCRIPT = r"""
import os, urllib.request, openai, httpx
spec = json.loads(os.environ["C2A_CELLS"])
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def call(method, url, body=None, headers=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"content-type": content_type, **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    with direct.open(req, timeout=20) as resp:
        raw = resp.read()
        return json.loads(raw) if raw.strip() else None

emu = spec["emulator"]
admin = {"authorization": "Bearer " + spec["admin_key"]} if spec.get("admin_key") else {}
tokens_url = spec["reverse_root"] + "/tokens/api/tokens"
through_proxy = openai.OpenAI(
    api_key="unset", max_retries=0, base_url=spec["proxy_base_url"],
    http_client=openai.DefaultHttpxClient(proxy=spec["proxy_url"], verify=spec["ca_bundle"]),
)
direct_client = openai.OpenAI(api_key="unset", base_url=spec["base_url"], max_retries=0)

for cell in spec["cells"]:
    if emu:
        call("POST", emu + "/_fake/reset", {})
        if cell.get("plan"):
            call("POST", emu + "/_fake/next", cell["plan"])
    if cell.get("pool") is not None:
        call("DELETE", tokens_url, headers=admin)
        call("POST", tokens_url, "\n".join(cell["pool"]).encode(), admin, "text/plain")
    client = (through_proxy if cell["stream"] else direct_client).with_options(
        api_key=cell["key"], timeout=cell.get("timeout", 30))
    out = {"name": cell["name"], "text": "", "reasoning": "", "finish_reason": None,
           "chunks": 0, "error": None}
    messages = [{"role": "user", "content": cell["prompt"]}]
    t0 = time.monotonic()
    try:
        if cell["stream"]:
            for chunk in client.chat.completions.create(
                    model=cell.get("model", "gpt-4o"), messages=messages, stream=True):
                out["chunks"] += 1
                for choice in chunk.choices:
                    if choice.delta.content:
                        out["text"] += choice.delta.content
                    extra = choice.delta.model_extra or {}
                    if extra.get("reasoning_content"):
                        out["reasoning"] += extra["reasoning_content"]
                    if choice.finish_reason:
                        out["finish_reason"] = choice.finish_reason
        else:
            resp = client.chat.completions.create(
                model=cell.get("model", "gpt-4o"), messages=messages)
            out["text"] = resp.choices[0].message.content
            out["finish_reason"] = resp.choices[0].finish_reason
    except Exception as e:
        out["error"] = describe_error(e)
    out["elapsed"] = time.monotonic() - t0
    if emu:
        time.sleep(cell.get("settle", 0))
        seen = call("GET", emu + "/_fake/requests")
        out["calls"] = [
            {"authorization": {k.lower(): v for k, v in r["headers"].items()}.get("authorization"),
             "ended": r.get("ended"), "events_sent": r.get("events_sent"),
             "client_disconnected": r.get("client_disconnected")}
            for r in seen if r["path"].endswith("/conversation")]
    else:
        out["calls"] = []
    emit(out)
"""


def run_cells(
    mitm: Any,
    cells: Sequence[dict[str, Any]],
    *,
    emulator_url: str | None,
    admin_key: str | None = None,
    api_prefix: str | None = None,
    timeout: float = 240.0,
) -> dict[str, dict[str, Any]]:
    """Run ``cells`` in order in one client process; results by cell name."""
    env = proxy_env(mitm, "unset")
    root = f"/{api_prefix}/v1" if api_prefix else "/v1"
    spec = {
        "proxy_base_url": f"https://api.openai.com{root}",
        "emulator": emulator_url,
        "admin_key": admin_key,
        "reverse_root": f"http://127.0.0.1:{mitm.reverse_port}",
        "base_url": f"http://127.0.0.1:{mitm.reverse_port}{root}",
        "proxy_url": mitm.proxy_url,
        "ca_bundle": env["SSL_CERT_FILE"],
        "cells": list(cells),
    }
    # The script sets its proxy per client; the environment must not add one.
    full_env = {"C2A_CELLS": json.dumps(spec), "SSL_CERT_FILE": env["SSL_CERT_FILE"]}
    results = run_client(SCRIPT, full_env, timeout=timeout)
    return {r["name"]: r for r in results}
