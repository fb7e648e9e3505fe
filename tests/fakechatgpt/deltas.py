"""Delta-encoding v1 semantics (docs/backend-protocol.md#delta-encoding-v1): apply ops to message
documents.

The emulator uses it to derive legacy full-state events from the same script as the v1 stream,
and its tests use it to check that a generated stream really yields `expected_answer`.
"""

from __future__ import annotations

import copy
from typing import Any


class DeltaError(Exception):
    pass


def _split(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise DeltaError(f"bad pointer {pointer!r}")
    return [s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/")]


def _index(container: list[Any], key: str, *, allow_end: bool = False) -> int:
    if key == "-" and allow_end:
        return len(container)
    if not key.isdigit():
        raise DeltaError(f"bad list index {key!r}")
    i = int(key)
    if i > len(container) or (i == len(container) and not allow_end):
        raise DeltaError(f"list index {i} out of range")
    return i


def _get(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for key in parts:
        if isinstance(cur, dict):
            if key not in cur:
                raise DeltaError(f"missing key {key!r}")
            cur = cur[key]
        elif isinstance(cur, list):
            cur = cur[_index(cur, key)]
        else:
            raise DeltaError(f"cannot descend into {type(cur).__name__}")
    return cur


def apply_op(doc: Any, path: str, op: str, value: Any = None) -> Any:
    """Apply one op and return the (possibly new) document."""
    parts = _split(path)
    if op == "patch":
        if not isinstance(value, list):
            raise DeltaError("patch needs a list of ops")
        for sub in value:
            doc = apply_op(doc, sub.get("p", ""), sub["o"], sub.get("v"))
        return doc
    if not parts:
        if op in ("add", "replace"):
            return copy.deepcopy(value)
        target = doc
    elif op in ("add", "replace", "remove"):
        target = None
    else:
        target = _get(doc, parts)
    if op == "append":
        if isinstance(target, str):
            new: Any = target + str(value)
        elif isinstance(target, list):
            target.extend(
                copy.deepcopy(value) if isinstance(value, list) else [copy.deepcopy(value)]
            )
            return doc
        elif isinstance(target, dict) and isinstance(value, dict):
            target.update(copy.deepcopy(value))
            return doc
        else:
            raise DeltaError(f"cannot append to {type(target).__name__}")
    elif op == "truncate":
        if not isinstance(target, (str, list)) or not isinstance(value, int):
            raise DeltaError("truncate needs a string or list and an int")
        if isinstance(target, list):
            del target[value:]
            return doc
        new = target[:value]
    elif op in ("add", "replace", "remove"):
        parent = _get(doc, parts[:-1])
        key = parts[-1]
        if isinstance(parent, dict):
            if op == "remove":
                del parent[key]
            else:
                parent[key] = copy.deepcopy(value)
        elif isinstance(parent, list):
            i = _index(parent, key, allow_end=(op == "add"))
            if op == "remove":
                del parent[i]
            elif op == "add":
                parent.insert(i, copy.deepcopy(value))
            else:
                parent[i] = copy.deepcopy(value)
        return doc
    else:
        raise DeltaError(f"unknown op {op!r}")
    if not parts:
        return new
    parent = _get(doc, parts[:-1])
    if isinstance(parent, list):
        parent[_index(parent, parts[-1])] = new
    else:
        parent[parts[-1]] = new
    return doc


class DeltaDecoder:
    """Feeds `event: delta` payloads; keeps documents by `c` plus the last `p`/`o`."""

    def __init__(self) -> None:
        self.docs: dict[int, Any] = {}
        self.current: int | None = None
        self.last_p = ""
        self.last_o = "add"

    def feed(self, payload: dict[str, Any]) -> Any:
        if "c" in payload:
            self.current = int(payload["c"])
            self.last_p = payload.get("p", "")
            self.last_o = payload.get("o", "add")
            self.docs[self.current] = copy.deepcopy(payload["v"])
            return self.docs[self.current]
        if self.current is None:
            raise DeltaError("delta before any document")
        if "p" in payload:
            self.last_p = payload["p"]
        if "o" in payload:
            self.last_o = payload["o"]
        doc = apply_op(self.docs[self.current], self.last_p, self.last_o, payload.get("v"))
        self.docs[self.current] = doc
        return doc
