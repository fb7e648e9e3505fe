"""Typed events → what a ``/v1/responses`` client gets (``docs/responses-api.md``).

:class:`ResponseEncoder` re-emits events as the client's SSE stream: every event
numbered (``sequence_number`` from 0, contiguous), the ``response`` objects
rewritten to chat2api's id, the client's model name and the request's echoed
fields, usage details as integers, ``response.completed`` carrying the output
rebuilt from ``output_item.done`` (the Codex backend sends ``output: []``), an
``error`` event turned into ``response.failed``, and exactly one terminal
event: nothing after it is sent. :meth:`ResponseEncoder.final` is the whole
``Response`` object for a non-streamed client.
"""

from __future__ import annotations

import json
import random
import string
import time
from typing import Any

from translator.responses.events import (
    Collector,
    Completed,
    Created,
    Event,
    Failed,
    Terminal,
)

_ALPHABET = string.ascii_lowercase + string.digits
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


# Ids are not secrets (a stored response is guarded by its owner's key), so no
# system call per id: reading the system's random source costs milliseconds on
# some machines. random.Random() seeds itself from it once.
_RNG = random.Random()


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``rs_…``: 48 random characters after the prefix."""
    return prefix + "".join(_RNG.choices(_ALPHABET, k=48))


def normal_usage(usage: Any) -> dict[str, Any] | None:
    """Usage with integer counts and both detail objects filled (Codex CLI cannot
    parse ``{}`` details, ``docs/responses-api.md``)."""
    if not isinstance(usage, dict):
        return None

    def count(obj: Any, key: str) -> int:
        value = obj.get(key) if isinstance(obj, dict) else None
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    out = dict(usage)
    inputs, outputs = count(usage, "input_tokens"), count(usage, "output_tokens")
    out["input_tokens"], out["output_tokens"] = inputs, outputs
    total = usage.get("total_tokens")
    out["total_tokens"] = count(usage, "total_tokens") if total is not None else inputs + outputs
    in_details = usage.get("input_tokens_details")
    out["input_tokens_details"] = {
        **(in_details if isinstance(in_details, dict) else {}),
        "cached_tokens": count(in_details, "cached_tokens"),
    }
    out_details = usage.get("output_tokens_details")
    out["output_tokens_details"] = {
        **(out_details if isinstance(out_details, dict) else {}),
        "reasoning_tokens": count(out_details, "reasoning_tokens"),
    }
    return out


def sse(event_type: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + _dumps(payload).encode() + b"\n\n"


class ResponseEncoder:
    """One response's events for the client; see the module docstring.

    ``echo`` holds the request fields the ``Response`` object repeats
    (``instructions``, ``tools``, ``metadata``, ``store``, ...); they replace the
    backend's, which describe the body chat2api built, not the client's.
    """

    def __init__(
        self,
        *,
        response_id: str,
        model: str,
        echo: dict[str, Any],
        created_at: int | None = None,
    ) -> None:
        self.response_id = response_id
        self.model = model
        self.echo = echo
        self.created_at = created_at if created_at is not None else int(time.time())
        self.collector = Collector()
        self.sequence = 0
        self.ended = False

    # -- the Response object -------------------------------------------------------------

    def response_object(self, base: dict[str, Any] | None, status: str) -> dict[str, Any]:
        """The client's ``Response``: the backend's fields, then ours over them."""
        obj: dict[str, Any] = dict(base) if base else {}
        obj.update(
            id=self.response_id,
            object="response",
            created_at=self.created_at,
            status=obj.get("status") or status,
            model=self.model,
        )
        obj.setdefault("error", None)
        obj.setdefault("incomplete_details", None)
        obj.update(self.echo)
        if status == "in_progress":
            obj["output"] = []
            obj["usage"] = None
        else:
            output = obj.get("output")
            collected = self.collector.output()
            if not isinstance(output, list) or len(output) < len(collected):
                obj["output"] = collected
            obj["usage"] = normal_usage(obj.get("usage"))
        obj.setdefault("parallel_tool_calls", True)
        obj.setdefault("tool_choice", "auto")
        obj.setdefault("tools", [])
        return obj

    def final(self) -> dict[str, Any]:
        """The whole ``Response`` after the stream (for a non-streamed client)."""
        terminal = self.collector.terminal
        base = terminal.response if terminal is not None else self.collector.response
        status = {"response.completed": "completed", "response.incomplete": "incomplete"}.get(
            terminal.type if terminal is not None else "", "failed"
        )
        obj = self.response_object(base, status)
        obj["status"] = status
        return obj

    # -- the stream ----------------------------------------------------------------------

    def event(self, event: Event) -> bytes:
        """One backend event as client bytes; b"" for events the client does not get."""
        if self.ended:
            return b""
        kind = event.type
        if not kind.startswith("response.") and kind != "error":
            return b""  # e.g. codex.rate_limits: the backend's own business
        self.collector.feed(event)
        payload: dict[str, Any]
        if isinstance(event, Failed) and kind == "error":
            return self.fail(event.error.get("code"), event.error.get("message"))
        if isinstance(event, Created):
            payload = dict(event.data)
            payload["response"] = self.response_object(event.response, "in_progress")
        elif isinstance(event, Terminal):
            self.ended = True
            payload = dict(event.data)
            payload["response"] = self.final()
        else:
            payload = event.data.copy()
        payload["sequence_number"] = self.sequence
        self.sequence += 1
        return sse(kind, payload)

    def fail(self, code: Any, message: Any, *, status_hint: str = "failed") -> bytes:
        """A ``response.failed`` of our own (the backend broke, or sent ``error``)."""
        if self.ended:
            return b""
        error = {
            "code": code if isinstance(code, str) and code else "server_error",
            "message": message if isinstance(message, str) and message else "the answer failed",
        }
        base = dict(self.collector.response or {})
        base.update(status=status_hint, error=error)
        terminal = Failed("response.failed", {"type": "response.failed", "response": base})
        self.collector.feed(terminal)
        self.ended = True
        payload = {
            "type": "response.failed",
            "response": self.final(),
            "sequence_number": self.sequence,
        }
        self.sequence += 1
        return sse("response.failed", payload)

    @property
    def completed(self) -> bool:
        return isinstance(self.collector.terminal, Completed)
