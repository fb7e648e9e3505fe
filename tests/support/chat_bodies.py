"""Chat-completions request bodies for the translator's unit tests, and their parsing."""

from __future__ import annotations

import json
from typing import Any

from settings.model_table import parse_model_table, shipped_model_table
from translator.request import ChatRequest, parse_chat_request

LIMIT = 1 << 20
USER = {"role": "user", "content": "hi"}
TABLE = parse_model_table(shipped_model_table())

#: A field value that leaves the field out of :func:`body`.
DROP = object()


def body(**fields: Any) -> bytes:
    """A JSON body: gpt-4o and one user message, with ``fields`` set (or dropped)."""
    data: dict[str, Any] = {"model": "gpt-4o", "messages": [USER]}
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not DROP}).encode()


def parse(raw: bytes) -> ChatRequest:
    return parse_chat_request(raw, max_body_bytes=LIMIT)


def msg(**fields: Any) -> bytes:
    """A body whose only message has ``fields``."""
    return body(messages=[fields])
