"""Readable logs: a short start-up summary, the request id on every line of a
request, one access line per request, and ``log_format: json`` (one object a line).

mitmproxy prints log records through its own handlers on the root logger;
:func:`install` wraps their formatters, so mitmproxy's own lines follow the
format too.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from settings import Settings

log = logging.getLogger("chat2api.access")

# Fields an access record carries (``extra={"access": {...}}``), in JSON order.
ACCESS_FIELDS = (
    "method",
    "path",
    "route",
    "status",
    "backend",
    "account",
    "ttfb_ms",
    "duration_ms",
)


class TextFormatter(logging.Formatter):
    """Puts ``[request id]`` before the message of a request's records."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        if rid:
            record = copy.copy(record)
            record.msg = f"[{rid}] {record.getMessage()}"
            record.args = None
        return self.inner.format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update((k, access[k]) for k in ACCESS_FIELDS if access.get(k) is not None)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def install(log_format: str, handlers: Sequence[logging.Handler] | None = None) -> None:
    """Wrap the formatters of the root logger's handlers (idempotent; a later
    call with another format switches)."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        current = handler.formatter
        inner = getattr(current, "chat2api_inner", current)
        if log_format == "json":
            wrapped: logging.Formatter = JsonFormatter()
        else:
            wrapped = TextFormatter(inner)
        wrapped.chat2api_inner = inner  # type: ignore[attr-defined]
        handler.setFormatter(wrapped)


def access_line(
    *,
    method: str,
    path: str,
    route: str,
    status: int,
    backend: str,
    account: str | None,
    ttfb: float | None,
    duration: float,
    note: str = "",
) -> None:
    fields = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "backend": backend,
        "account": account,
        "ttfb_ms": None if ttfb is None else round(ttfb * 1000, 1),
        "duration_ms": round(duration * 1000, 1),
    }
    first = "" if ttfb is None else f", first byte {ttfb * 1000:.0f} ms"
    log.info(
        "%s %s -> %d%s in %.0f ms%s%s",
        method,
        path,
        status,
        f" as {account}" if account else "",
        duration * 1000,
        first,
        f" ({note})" if note else "",
        extra={"access": fields},
    )


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def summary(
    settings: Settings, *, listeners: Sequence[str], ca_path: str, pool_size: int | None
) -> list[str]:
    """A few lines saying how this instance runs; nothing secret."""
    s = settings
    if s.redis_url:
        from accounts.redisstore import safe_url

        storage = f"Redis {safe_url(s.redis_url)} (prefix {s.redis_prefix})"
    else:
        storage = f"files in {s.data_dir}"
    pool = "unknown (storage unreachable)" if pool_size is None else f"{pool_size} token(s)"
    return [
        "chat2api " + ("; ".join(listeners) or "no listeners"),
        f"  CA certificate: {ca_path}",
        f"  pool: {pool} in {storage}; access codes: {len(s.authorization)}; "
        f"anonymous use {_on(s.allow_anonymous)}",
        f"  backend: {', '.join(s.chatgpt_base_url)} ({s.backend_dialect} dialect"
        f"{', via ' + str(len(s.proxy_url)) + ' proxies' if s.proxy_url else ''})",
        f"  API under {'/<api_prefix>/v1' if s.api_prefix else '/v1'}; "
        f"admin key {'set' if s.admin_key else 'not set'}; "
        f"metrics key {'set' if s.metrics_key else 'not set'}; "
        f"CORS {', '.join(s.cors_origins) if s.cors_origins else 'off'}",
        f"  mirror {_on(s.enable_gateway)}; history {_on(not s.history_disabled)}; "
        f"scheduled refresh {_on(s.scheduled_refresh)}; "
        f"/auth/refresh {'open' if s.auth_refresh_open else 'keyed'}; log format {s.log_format}",
    ]
