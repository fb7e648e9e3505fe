"""The model table: the syntax of the ``models`` setting, parsed once at load.

An entry is exactly one of ``name`` / ``glob`` / ``regex`` / ``contains`` and a ``slug``, with
optional ``reported``, ``system_fingerprint`` (list), ``thinking``, ``image``, ``paid``,
``listed`` and ``created``;
the table adds ``default_slug``, ``gizmo_slug``, ``owned_by`` and ``created``.
:func:`parse_model_table` raises ValueError naming the bad place, which the loader turns into a
:class:`~settings.SettingsError` naming the setting.  How a client's model name is resolved with
the table is :mod:`translator.models`' business.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

#: A fixed ``created`` for ``/v1/models`` (2024-05-13, gpt-4o's release): clients only display it.
DEFAULT_CREATED = 1715558400

#: Where the default table lives: the ``models`` key of the config.yaml that ships with
#: chat2api (documented there entry by entry), for a config file that has none.
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


@functools.lru_cache(maxsize=1)
def shipped_model_table() -> Any:
    """The ``models`` table of the shipped config.yaml, as plain data."""
    try:
        loaded = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(
            f"cannot read the default model table from {SHIPPED_CONFIG}: {e}"
        ) from None
    table = loaded.get("models") if isinstance(loaded, dict) else None
    if table is None:
        raise ValueError(f"{SHIPPED_CONFIG} has no models table")
    return table


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One row of the table: an exact name or a pattern, and what it maps to."""

    kind: Literal["name", "glob", "regex", "contains"]
    key: str  # the name, the glob or the regex source
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


_KINDS: dict[str, Literal["name", "glob", "regex", "contains"]] = {
    "name": "name",
    "glob": "glob",
    "regex": "regex",
    "contains": "contains",
}
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
_TABLE_KEYS = frozenset({"default_slug", "gizmo_slug", "owned_by", "created", "models"})


def parse_model_table(obj: object) -> ModelTable:
    """Validate the table loaded from config.yaml; raise ValueError naming the bad place.

    ``None`` (no ``models`` key configured) gives the default table.
    """
    if obj is None:
        obj = shipped_model_table()
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
