"""Request ids: one per request, in its answer, its log lines and its 5xx errors.

The id lives in a context variable set by ``addons/ops.py`` at the start of the
``request`` hook; every later addon hook of that request and every task started
from it (the answer's body, backend calls) copy the context, so a log record
made there carries the id without anyone passing it along. A client's own
``x-request-id`` is kept when it is short and plain (it is echoed in headers
and logs, so nothing else is trusted).
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(slots=True)
class RequestInfo:
    """What one request's log lines and metrics need; mutable so that tasks
    started from the request (which copy the context, not the object) can add
    what they learn (the account, the backend)."""

    request_id: str
    route: str = "other"
    account: str | None = None
    backend: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


CURRENT: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "chat2api_request", default=None
)


# Ids need to be unique, not unguessable: no system call per request
# (random.Random() seeds itself from os.urandom once).
_rng = random.Random()


def new_id() -> str:
    return f"req_{_rng.getrandbits(96):024x}"


def accept(incoming: str | None) -> str:
    """The client's id when it is sane, else a new one."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return new_id()


def current_id() -> str | None:
    info = CURRENT.get()
    return info.request_id if info is not None else None


def note(**values: Any) -> None:
    """Record ``account=`` or ``backend=`` (or anything else) for the current request."""
    info = CURRENT.get()
    if info is None:
        return
    for key, value in values.items():
        if key in ("account", "backend", "route"):
            setattr(info, key, value)
        else:
            info.extra[key] = value


_installed = False


def install_record_factory() -> None:
    """Every log record gets ``request_id`` (None outside a request), taken
    where it is made, so it is right whichever handler prints it later."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        info = CURRENT.get()
        record.request_id = info.request_id if info is not None else None
        return record

    logging.setLogRecordFactory(factory)
