"""Prometheus metrics, one registry per :class:`Metrics` (never the library's
global one, so tests can run several side by side).

The process's instance is :data:`METRICS`; code on the request path calls its
methods directly. Each call is one or two dict lookups and the library's
per-value lock; every label set is bounded (routes are normalised by
:func:`route_label`, statuses are HTTP codes, kinds come from fixed lists).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_POW = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The API routes chat2api serves, as labels; anything else is "other".
API_ROUTES = (
    "/chat/completions",
    "/responses",
    "/models",
    "/images/generations",
)
POOL_STATES = ("healthy", "cooling", "bad")


def route_label(path: str, api_root: str) -> str:
    """A bounded label for an API path (``/v1/models/gpt-4o`` → ``/v1/models/{id}``)."""
    if not (path == api_root or path.startswith(api_root + "/")):
        return "other"
    rest = path[len(api_root) :].rstrip("/")
    for route in API_ROUTES:
        if rest == route:
            return "/v1" + route
        if rest.startswith(route + "/"):
            return "/v1" + route + "/{id}"
    return "/v1/other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "chat2api_requests",
            "Requests answered, by route, HTTP status and backend.",
            ("route", "status", "backend"),
            registry=r,
        )
        self.ttfb = Histogram(
            "chat2api_time_to_first_byte_seconds",
            "From the request to its answer's head (a stream's first content).",
            ("route",),
            buckets=_LATENCY,
            registry=r,
        )
        self.duration = Histogram(
            "chat2api_request_duration_seconds",
            "From the request to the end of its answer.",
            ("route",),
            buckets=_LATENCY,
            registry=r,
        )
        self.backend_errors = Counter(
            "chat2api_backend_errors",
            "Failed backend attempts, by kind.",
            ("kind",),
            registry=r,
        )
        self.retries = Counter(
            "chat2api_retries", "Backend attempts after the first of a request.", registry=r
        )
        self.pool_accounts = Gauge(
            "chat2api_pool_accounts",
            "Pool accounts by state, as of the last scrape.",
            ("state",),
            registry=r,
        )
        self.pow_seconds = Histogram(
            "chat2api_pow_solve_seconds",
            "Time to solve a proof-of-work challenge.",
            buckets=_POW,
            registry=r,
        )
        self.active_streams = Gauge(
            "chat2api_active_streams", "Streamed answers being sent now.", registry=r
        )
        self.prompt_tokens = Counter(
            "chat2api_prompt_tokens", "Prompt tokens of answered requests.", registry=r
        )
        self.completion_tokens = Counter(
            "chat2api_completion_tokens", "Completion tokens of answered requests.", registry=r
        )

        # Label children by key: a plain dict lookup per request instead of the
        # library's labels() (which validates, builds a key and takes a lock).
        self._by_request: dict[tuple[str, int, str], Any] = {}
        self._by_route: dict[str, tuple[Any, Any]] = {}

    # -- called on the request path -----------------------------------------------
    def request_done(
        self, route: str, status: int, backend: str, ttfb: float | None, duration: float
    ) -> None:
        key = (route, status, backend)
        counter = self._by_request.get(key)
        if counter is None:
            counter = self._by_request[key] = self.requests.labels(route, str(status), backend)
        counter.inc()
        pair = self._by_route.get(route)
        if pair is None:
            pair = self._by_route[route] = (self.ttfb.labels(route), self.duration.labels(route))
        if ttfb is not None:
            pair[0].observe(ttfb)
        pair[1].observe(duration)

    def backend_error(self, kind: str) -> None:
        self.backend_errors.labels(kind).inc()

    def tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens.inc(prompt)
        self.completion_tokens.inc(completion)

    # -- at scrape time ------------------------------------------------------------
    def set_pool(self, states: Iterable[str]) -> None:
        counts = dict.fromkeys(POOL_STATES, 0)
        for state in states:
            counts[state if state in counts else "bad"] += 1
        for state, n in counts.items():
            self.pool_accounts.labels(state).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = Metrics()
