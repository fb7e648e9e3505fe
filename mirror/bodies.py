"""The conversation ids a seed's request body names, read as a backend would read it.

Python's ``json.loads`` on bytes, which Starlette and Flask both use, accepts a
UTF-8 BOM and UTF-16/32 with or without a BOM; a decoded ``Content-Encoding``
(gzip, …) is what reaches the parser. The ownership check reads the body the same
way, and it sees every ``conversation_id`` at the top level, so a duplicate key
cannot show one id here and another to a parser that keeps the first
(docs/mirror-security.md). A body that cannot be read is :class:`Unreadable`; the
router then refuses it on paths about conversations (failing closed).
"""

from __future__ import annotations

import json
from typing import Any

KEY = "conversation_id"


class Unreadable(ValueError):
    """The body is not JSON this module can read; the message is safe to show."""


class _Object(dict[str, Any]):
    ids: list[Any]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.ids = [value for key, value in pairs if key == KEY]
    return obj


def conversation_ids(body: bytes) -> list[str]:
    """Every ``conversation_id`` of the top-level object (or of the objects in a
    top-level list) that names a conversation; [] for an empty body or one that
    names none. Raises Unreadable."""
    if not body.strip():
        return []
    try:
        data = json.loads(body, object_pairs_hook=_pairs)
    except ValueError:  # UnicodeDecodeError included
        raise Unreadable("The request body is not readable JSON.") from None
    except RecursionError:
        raise Unreadable("The request body is nested too deeply.") from None
    objects = [data] if isinstance(data, _Object) else []
    if isinstance(data, list):  # a batch: each item may name one
        objects = [item for item in data if isinstance(item, _Object)]
    out = []
    for value in (v for obj in objects for v in obj.ids):
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise Unreadable("conversation_id must be a string.")
        out.append(value)
    return out
