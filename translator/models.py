"""Client model names → ChatGPT model slugs, from a table.

The original matched substrings in a fixed order (reference-chat2api.md §2.5), so ``gpt-4.1``
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
   ``default_slug`` and echoes the client's name back; ``"reject"`` answers
   404 ``model_not_found`` as OpenAI does.  Rejecting is the honest choice for deployments whose
   clients pick models from ``GET /v1/models``; ``default`` keeps clients with hard-coded odd
   names working.

Whatever rule matched, ``image`` anywhere in the client's name asks for image generation (the
``picture_v2`` system hint), as in the original.

The reported model (the ``model`` field of every answer) is the entry's ``reported`` name, or the
client's own name when the entry has none (reference §2.6).  ``system_fingerprint`` is picked by
the response side from the entry's list, if any.

The table itself is data in ``config.yaml`` (key ``models``, documented entry by entry); the
settings layer reads it and validates it with :func:`parse_model_table`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from errors import ModelNotFound

#: A fixed ``created`` for ``/v1/models`` (2024-05-13, gpt-4o's release): clients only display it.
DEFAULT_CREATED = 1715558400


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One row of the table: an exact name or a pattern, and what it maps to."""

    kind: Literal["name", "glob", "regex", "contains"]
    key: str  # the name, the glob, the regex source or the text to look for
    slug: str
    reported: str | None = None  # None: echo the client's name
    system_fingerprint: tuple[str, ...] = ()
    thinking: bool = False
    image: bool = False
    paid: bool = False  # only paid plans may use it (the chat-requirements persona)
    listed: bool = True
    created: int | None = None
    regex: re.Pattern[str] | None = None  # compiled form of a glob or regex entry


@dataclass(frozen=True, kw_only=True)
class ModelTable:
    exact: Mapping[str, ModelEntry]  # insertion order is the /v1/models order
    patterns: tuple[ModelEntry, ...]
    default_slug: str
    gizmo_slug: str
    owned_by: str
    created: int


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    """What one client model name means upstream."""

    requested: str  # the client's name, verbatim
    slug: str  # ChatGPT ``model`` field
    reported: str  # the ``model`` of every answer
    gizmo_id: str | None = None  # set: conversation_mode gizmo_interaction
    image: bool = False  # picture_v2 system hint
    thinking: bool = False  # thinking model: thinking_effort applies
    paid: bool = False  # free and anonymous accounts get 404 model_not_found
    system_fingerprint: tuple[str, ...] = ()

    def refused_for(self, persona: str | None) -> ModelNotFound | None:
        """The 404 for an account whose plan (persona) cannot use this model, as the
        original answered; None when it can. Unknown personas are let through."""
        if self.paid and persona in FREE_PERSONAS:
            return _not_found(self.requested)
        return None


#: chat-requirements personas of accounts without a paid plan.
FREE_PERSONAS = frozenset({"chatgpt-noauth", "chatgpt-freeaccount"})

_GIZMO = re.compile(r"(?:gpt-[A-Za-z0-9.]+-gizmo-)?(g-[A-Za-z0-9]+)")
_IMAGE_SUFFIX = "-image"
_IMAGE_WORD = "image"
_ENTRY_KEYS = frozenset(
    {
        "name",
        "glob",
        "regex",
        "contains",
        "slug",
        "reported",
        "system_fingerprint",
        "thinking",
        "image",
        "paid",
        "listed",
        "created",
    }
)
_KINDS: dict[str, Literal["name", "glob", "regex", "contains"]] = {
    "name": "name",
    "glob": "glob",
    "regex": "regex",
    "contains": "contains",
}
_TABLE_KEYS = frozenset({"default_slug", "gizmo_slug", "owned_by", "created", "models"})


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
    return ResolvedModel(
        requested=name, slug=table.default_slug, reported=name, image=_IMAGE_WORD in name
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
        paid=entry.paid,
        thinking=entry.thinking,
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


# --- parsing the table ---------------------------------------------------------------------


def parse_model_table(obj: object) -> ModelTable:
    """Validate the table loaded from config.yaml; raise ValueError naming the bad place."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"model table: expected a mapping, got {_kind(obj)}")
    unknown = sorted(str(k) for k in obj if k not in _TABLE_KEYS)
    if unknown:
        raise ValueError(
            f"model table: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_TABLE_KEYS))}"
        )
    default_slug = _str(obj, "default_slug", "model table", required=True)
    assert default_slug is not None
    gizmo_slug = _str(obj, "gizmo_slug", "model table") or default_slug
    owned_by = _str(obj, "owned_by", "model table") or "openai"
    created = _int(obj, "created", "model table")
    models = obj.get("models", [])
    if not isinstance(models, Sequence) or isinstance(models, (str, bytes)):
        raise ValueError(f"model table.models: expected a list, got {_kind(models)}")
    exact: dict[str, ModelEntry] = {}
    patterns: list[ModelEntry] = []
    for i, raw in enumerate(models):
        entry = _parse_entry(raw, f"model table.models[{i}]")
        if entry.kind == "name":
            if entry.key in exact:
                raise ValueError(f"model table.models[{i}]: duplicate name {entry.key!r}")
            exact[entry.key] = entry
        else:
            patterns.append(entry)
    return ModelTable(
        exact=exact,
        patterns=tuple(patterns),
        default_slug=default_slug,
        gizmo_slug=gizmo_slug,
        owned_by=owned_by,
        created=created if created is not None else DEFAULT_CREATED,
    )


def _parse_entry(raw: object, where: str) -> ModelEntry:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {_kind(raw)}")
    unknown = sorted(str(k) for k in raw if k not in _ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kinds = [k for k in _KINDS if k in raw]
    if len(kinds) != 1:
        raise ValueError(f"{where}: needs exactly one of 'name', 'glob', 'regex' or 'contains'")
    kind = _KINDS[kinds[0]]
    key = _str(raw, kind, where, required=True)
    slug = _str(raw, "slug", where, required=True)
    assert key is not None and slug is not None
    compiled: re.Pattern[str] | None = None
    if kind == "glob":
        compiled = re.compile(fnmatch.translate(key))
    elif kind == "regex":
        try:
            compiled = re.compile(key)
        except re.error as exc:
            raise ValueError(f"{where}.regex: invalid regular expression {key!r}: {exc}") from None
        try:
            # Catch bad group references now rather than on the first request.
            _check_template(compiled, slug)
        except (re.error, IndexError) as exc:
            raise ValueError(f"{where}.slug: bad group reference in {slug!r}: {exc}") from None
    fingerprints = raw.get("system_fingerprint", [])
    if isinstance(fingerprints, str):
        fingerprints = [fingerprints]
    if not isinstance(fingerprints, Sequence) or not all(
        isinstance(f, str) and f for f in fingerprints
    ):
        raise ValueError(f"{where}.system_fingerprint: expected a list of non-empty strings")
    return ModelEntry(
        kind=kind,
        key=key,
        slug=slug,
        reported=_str(raw, "reported", where),
        system_fingerprint=tuple(fingerprints),
        thinking=_bool(raw, "thinking", where, False),
        image=_bool(raw, "image", where, False),
        paid=_bool(raw, "paid", where, False),
        listed=_bool(raw, "listed", where, kind == "name") and kind == "name",
        created=_int(raw, "created", where),
        regex=compiled,
    )


def _check_template(regex: re.Pattern[str], template: str) -> None:
    """Expand ``template`` against an empty match with the same groups, to check references."""
    names = {idx: name for name, idx in regex.groupindex.items()}
    fake_source = "".join(
        f"(?P<{names[i]}>)" if i in names else "()" for i in range(1, regex.groups + 1)
    )
    fake = re.fullmatch(fake_source, "")
    assert fake is not None
    fake.expand(template)


def _str(obj: Mapping[Any, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}.{key}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.{key}: expected a non-empty string, got {_kind(value)}")
    return value


def _bool(obj: Mapping[Any, Any], key: str, where: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}.{key}: expected true or false, got {_kind(value)}")
    return value


def _int(obj: Mapping[Any, Any], key: str, where: str) -> int | None:
    value: object = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}.{key}: expected a non-negative integer, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"[:80]
