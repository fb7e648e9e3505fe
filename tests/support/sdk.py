"""One chat completion with the official ``openai`` SDK, as a user's program makes it.

``chat(env, **spec)`` runs :data:`SCRIPT` in the clients' venv with the client
set up by ``env`` (``proxy_env`` or ``reverse_env``) and returns what the SDK
produced: the assembled text and reasoning, the chunks' ids, usage, finish
reason, arrival times, or the exception class it raised.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.clients import run_client

SCRIPT = r"""
import os, openai
spec = json.loads(os.environ["C2A_SPEC"])
client = openai.OpenAI(max_retries=spec.get("max_retries", 0), timeout=spec.get("timeout", 60))
kwargs = dict(model=spec["model"], messages=spec["messages"], **spec.get("extra", {}))
out = {"text": "", "reasoning": "", "ids": [], "times": [], "finish_reason": None,
       "usage": None, "chunks": 0, "models": []}
t0 = time.monotonic()
try:
    if spec.get("stream"):
        stream = client.chat.completions.create(stream=True, **kwargs)
        for chunk in stream:
            out["chunks"] += 1
            out["ids"].append(chunk.id)
            out["models"].append(chunk.model)
            if chunk.usage is not None:
                out["usage"] = chunk.usage.model_dump()
            for choice in chunk.choices:
                delta = choice.delta
                extra = delta.model_extra or {}
                if delta.content:
                    out["text"] += delta.content
                    out["times"].append(time.monotonic() - t0)
                if extra.get("reasoning_content"):
                    out["reasoning"] += extra["reasoning_content"]
                if choice.finish_reason:
                    out["finish_reason"] = choice.finish_reason
    else:
        resp = client.chat.completions.create(**kwargs)
        message = resp.choices[0].message
        out["text"] = message.content
        out["reasoning"] = (message.model_extra or {}).get("reasoning_content") or ""
        out["finish_reason"] = resp.choices[0].finish_reason
        out["usage"] = resp.usage.model_dump() if resp.usage else None
        out["ids"] = [resp.id]
        out["models"] = [resp.model]
except Exception as e:
    out["error"] = describe_error(e)
out["elapsed"] = time.monotonic() - t0
emit(out)
"""


def chat(env: dict[str, str], *, timeout: float = 90.0, **spec: Any) -> dict[str, Any]:
    full = {**env, "C2A_SPEC": json.dumps(spec)}
    (result,) = run_client(SCRIPT, full, timeout=timeout)
    assert isinstance(result, dict)
    return result


def ask(prompt: str, model: str = "gpt-4o", **spec: Any) -> dict[str, Any]:
    """A spec for a one-message conversation."""
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **spec}
