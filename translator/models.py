"""Client model names → ChatGPT model slugs, from a table.

The original matched substrings in a fixed order (docs/original-behaviour.md#model-names), so
``gpt-4.1``
became ``gpt-4``, ``o4-mini`` became ``o1``-something and a GPT whose id contained ``o3`` was sent
as ``o3``.  Here the mapping is data, resolved in this order, first hit wins:

1. **exact** names (``name:`` entries), case-sensitive like OpenAI's own model ids;
2. **GPTs**: ``g-<id>`` or ``gpt-4-gizmo-g-<id>`` (any ``gpt-*-gizmo-`` prefix) →
   ``conversation_mode: gizmo_interaction`` with that id and the table's ``gizmo_slug``;
3. **image suffix**: ``<base>-image`` (for example ``gpt-4o-image``) → the slug of ``<base>``
   (resolved by these same rules) with ``image=True``, so the request carries the
   ``picture_v2`` system hint;
4. **patterns** (``glob:``, ``regex:`` or ``contains:`` entries) in table order.  A regex must
   match the *whole* name (``re.fullmatch``) and its slug may use group references (``\\1``,
   ``\\g<name>``); a ``contains:`` entry matches when its text occurs anywhere in the name, case
   sensitive, which is how the original matched every name (docs/model-names.md);
5. **unknown** names: the ``unknown_model`` setting (a top-level setting, passed to
   :func:`resolve_model` as ``unknown``) decides.  ``"default"`` (the default) sends them to
   ``default_slug`` and reports the default entry's name (the model that answered), not the
   invented one; ``"reject"`` answers
   404 ``model_not_found`` as OpenAI does.  Rejecting is the honest choice for deployments whose
   clients pick models from ``GET /v1/models``; ``default`` keeps clients with hard-coded odd
   names working.

Whatever rule matched, ``image`` anywhere in the client's name asks for image generation (the
``picture_v2`` system hint), as in the original.

The reported model (the ``model`` field of every answer) is the entry's ``reported`` name, or the
client's own name when the entry has none (docs/original-behaviour.md#model-names).
``system_fingerprint`` is picked by
the response side from the entry's list, if any.

The table itself is a setting: :mod:`settings.model_table` holds its syntax, its parser and the
default table, and the settings hand the parsed :class:`~settings.model_table.ModelTable` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from errors import ModelNotFound
from settings.model_table import ModelEntry, ModelTable


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    """What one client model name means upstream."""

    requested: str  # the client's name, verbatim
    slug: str  # ChatGPT ``model`` field
    reported: str  # the ``model`` of every answer
    gizmo_id: str | None = None  # set: conversation_mode gizmo_interaction
    image: bool = False  # picture_v2 system hint
    thinking: bool = False  # thinking model: thinking_effort applies
    system_fingerprint: tuple[str, ...] = ()
    unknown: bool = False  # not in the table: sent to the default slug (unknown_model: default)
    paid: bool = False  # free and anonymous accounts get 404 model_not_found

    def refused_for(self, persona: str | None) -> ModelNotFound | None:
        """The 404 for an account whose plan (persona) cannot use this model, as the
        original answered; None when it can. Unknown personas are let through."""
        if self.paid and persona in FREE_PERSONAS:
            return _not_found(self.requested)
        return None


_GIZMO = re.compile(r"(?:gpt-[A-Za-z0-9.]+-gizmo-)?(g-[A-Za-z0-9]+)")
_IMAGE_SUFFIX = "-image"
_IMAGE_WORD = "image"
#: chat-requirements personas of accounts without a paid plan.
FREE_PERSONAS = frozenset({"chatgpt-noauth", "chatgpt-freeaccount"})


def resolve_model(table: ModelTable, name: str, *, unknown: str = "default") -> ResolvedModel:
    """Map a client's model name.

    ``unknown`` is the ``unknown_model`` setting: ``"default"`` maps unknown names to the
    table's default slug, ``"reject"`` raises ModelNotFound (404) for them.
    """
    if unknown not in ("default", "reject"):
        raise ValueError(f"unknown_model must be 'default' or 'reject', got {unknown!r}")
    resolved = _resolve_known(table, name)
    if resolved is not None:
        return resolved
    if unknown == "reject":
        raise _not_found(name)
    image = _IMAGE_WORD in name
    # The answer names the model that answered, never the invented name.
    default = next((e for e in table.exact.values() if e.slug == table.default_slug), None)
    reported = (default.reported or default.key) if default is not None else table.default_slug
    return ResolvedModel(
        requested=name, slug=table.default_slug, reported=reported, image=image, unknown=True
    )


def switched_model(asked: str, answered: str | None, adjustments: tuple[str, ...]) -> str | None:
    """The slug that answered when ChatGPT used another model than ``asked`` (the slug
    the request was sent with), else None.

    ``auto`` lets ChatGPT choose, so an ``auto`` answer counts as switched only
    when the backend says it adjusted the choice (``model_adjustments``, e.g.
    ``auto:smaller_model:reached_message_cap``).
    """
    if not answered:
        return None
    if asked == "auto":
        return answered if adjustments else None
    return answered if answered != asked else None


def list_models(table: ModelTable) -> list[dict[str, Any]]:
    """The ``data`` of ``GET /v1/models``: every listed exact name, in table order."""
    return [_model_object(table, e) for e in table.exact.values() if e.listed]


def get_model(table: ModelTable, model_id: str) -> dict[str, Any]:
    """``GET /v1/models/{id}``: any name the table serves (exact, GPT, image, pattern), else 404.

    Unknown names are 404 even in ``default`` mode: that mode is a fallback for chat requests,
    not a claim that every name exists.
    """
    entry = table.exact.get(model_id)
    if entry is not None:
        return _model_object(table, entry)
    if _resolve_known(table, model_id) is None:
        raise _not_found(model_id)
    return {"id": model_id, "object": "model", "created": table.created, "owned_by": table.owned_by}


def _not_found(name: str) -> ModelNotFound:
    return ModelNotFound(f"The model `{name}` does not exist or you do not have access to it.")


def _model_object(table: ModelTable, entry: ModelEntry) -> dict[str, Any]:
    created = entry.created if entry.created is not None else table.created
    return {"id": entry.key, "object": "model", "created": created, "owned_by": table.owned_by}


def _from_entry(entry: ModelEntry, name: str, slug: str) -> ResolvedModel:
    return ResolvedModel(
        requested=name,
        slug=slug,
        reported=entry.reported or name,
        image=entry.image or _IMAGE_WORD in name,
        thinking=entry.thinking,
        paid=entry.paid,
        system_fingerprint=entry.system_fingerprint,
    )


def _resolve_known(table: ModelTable, name: str) -> ResolvedModel | None:
    entry = table.exact.get(name)
    if entry is not None:
        return _from_entry(entry, name, entry.slug)
    gizmo = _GIZMO.fullmatch(name)
    if gizmo:
        return ResolvedModel(
            requested=name, slug=table.gizmo_slug, reported=name, gizmo_id=gizmo.group(1)
        )
    if name.endswith(_IMAGE_SUFFIX) and len(name) > len(_IMAGE_SUFFIX):
        known = _resolve_known(table, name[: -len(_IMAGE_SUFFIX)])
        if known is not None:
            return ResolvedModel(
                requested=name,
                slug=known.slug,
                reported=name,
                gizmo_id=known.gizmo_id,
                image=True,
                thinking=known.thinking,
                paid=known.paid,
            )
    for pattern in table.patterns:
        if pattern.kind == "contains":
            if pattern.key in name:
                return _from_entry(pattern, name, pattern.slug)
            continue
        assert pattern.regex is not None
        match = pattern.regex.fullmatch(name)
        if match:
            slug = match.expand(pattern.slug) if pattern.kind == "regex" else pattern.slug
            return _from_entry(pattern, name, slug)
    return None
