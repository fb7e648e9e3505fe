"""What every backend dialect offers chat2api: start a turn, and pick it up again.

The backend has changed its sentinel, proof of work, conversation call and
headers over time (``docs/backend-2026.md``).
Each way of speaking it is one module with one class that satisfies
:class:`Dialect`:

* :mod:`upstream.classic`: one-step sentinel, SHA3 proofs, ``/conversation``;
* :mod:`upstream.d2026`: prepare/finalize sentinel, FNV-1a proofs, conduit,
  ``/f/conversation`` and resumable streams;
* :mod:`upstream.auto`: the newer one first, the older one for upstreams that
  do not speak it, remembered per upstream.

The completion service and the translator see only :class:`Turn`: a stream of
backend SSE bytes, and, where the dialect can do it, a way to resume it from
an event offset. A future dialect is a new module plus a line in
``service.runtime``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from accounts.pool import Outcome
from errors import Chat2ApiError, UpstreamError
from upstream.context import TurnContext
from upstream.failures import NOT_THE_ACCOUNT
from upstream.http import StreamAnswer

#: The request shapes ``translator.backend_body.build_conversation_body`` can write.
Wire = Literal["classic", "2026"]
#: ``client_prepare_state`` of the 2026 conversation body (``docs/backend-2026.md#conversation``).
PrepareState = Literal["success", "failure", "none"]


@dataclass(frozen=True, kw_only=True)
class TurnBodies:
    """How to write one turn's request bodies, for whichever dialect ends up serving it.

    ``conversation(wire, prepare_state)`` is the conversation call's body;
    ``prepare()`` the 2026 ``f/conversation/prepare`` body (the same shape
    without messages). Built lazily because ``auto`` learns the dialect only
    while the turn is under way.
    """

    conversation: Callable[[Wire, PrepareState], dict[str, Any]]
    prepare: Callable[[], dict[str, Any]]
    #: The error for an account whose plan (the sentinel's persona) cannot use the
    #: model, checked before the conversation is posted; None: it can.
    refuse_persona: Callable[[str | None], Chat2ApiError | None] = lambda persona: None


class Resumer(Protocol):
    """Re-open a broken answer stream after its first ``offset`` counted events."""

    async def __call__(self, *, conversation_id: str, offset: int, token: str) -> StreamAnswer: ...


@dataclass(kw_only=True)
class Turn:
    """A started conversation call: its answer stream and, if possible, how to resume it."""

    stream: StreamAnswer
    wire: Wire
    resumer: Resumer | None = None


def check_persona(bodies: TurnBodies, persona: str | None) -> None:
    """Raise the model's 404 for this persona, tagged so that a pool tries another account."""
    error = bodies.refuse_persona(persona)
    if error is not None:
        error.outcome = Outcome.MODEL_NOT_IN_PLAN  # type: ignore[attr-defined]
        raise error


class Dialect(Protocol):
    name: str

    async def open_conversation(
        self, ctx: TurnContext, bodies: TurnBodies, rng: random.Random
    ) -> Turn:
        """Run the sentinel and start the conversation stream (status 200 only)."""
        ...


class DialectNotSpoken(UpstreamError):
    """The upstream answered 404/405 to an endpoint only this dialect uses.

    ``auto`` takes it as "this upstream speaks an older dialect"; with the
    dialect set explicitly it reaches the client as a 502 that names the
    setting. Another account would get the same answer, so it is not retried.
    """

    def __init__(self, dialect: str, what: str, status: int) -> None:
        super().__init__(
            f"the ChatGPT upstream does not speak the {dialect} backend dialect "
            f"(HTTP {status} on {what}); set BACKEND_DIALECT to classic or auto"
        )
        self.dialect = dialect
        self.backend_status = status
        self.outcome = NOT_THE_ACCOUNT


class ResumeRefused(UpstreamError):
    """The backend will not resume this stream (e.g. 404): trying again cannot help."""
