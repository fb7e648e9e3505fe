"""The model table: the syntax of the ``models`` setting, parsed once at load.

An entry is exactly one of ``name`` / ``glob`` / ``regex`` and a ``slug``, with optional
``reported``, ``system_fingerprint`` (list), ``thinking``, ``image``, ``listed`` and ``created``;
the table adds ``default_slug``, ``gizmo_slug``, ``owned_by`` and ``created``.
:func:`parse_model_table` raises ValueError naming the bad place, which the loader turns into a
:class:`~settings.SettingsError` naming the setting.  How a client's model name is resolved with
the table is :mod:`translator.models`' business.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

#: A fixed ``created`` for ``/v1/models`` (2024-05-13, gpt-4o's release): clients only display it.
DEFAULT_CREATED = 1715558400

#: The default table.  Keys of an entry: exactly one of ``name`` / ``glob`` / ``regex``, then
#: ``slug`` (required), ``reported``, ``system_fingerprint`` (list), ``thinking``, ``image``,
#: ``listed`` (shown by ``GET /v1/models``, exact names only, default true) and ``created``.
DEFAULT_MODEL_TABLE: dict[str, Any] = {
    "default_slug": "auto",
    "gizmo_slug": "auto",
    "owned_by": "openai",
    "created": DEFAULT_CREATED,
    "models": [
        {"name": "auto", "slug": "auto"},
        # GPT-3.5 runs on the old web slug (docs/original-behaviour.md#model-names).
        {
            "name": "gpt-3.5-turbo",
            "slug": "text-davinci-002-render-sha",
            "reported": "gpt-3.5-turbo-0125",
            "system_fingerprint": ["fp_b28b39ffa8"],
        },
        {
            "name": "gpt-3.5-turbo-16k",
            "slug": "text-davinci-002-render-sha",
            "reported": "gpt-3.5-turbo-16k-0613",
        },
        {"name": "gpt-4", "slug": "gpt-4", "reported": "gpt-4-0613"},
        {"name": "gpt-4-32k", "slug": "gpt-4", "reported": "gpt-4-32k-0613"},
        {
            "name": "gpt-4-turbo-preview",
            "slug": "gpt-4",
            "reported": "gpt-4-0125-preview",
            "system_fingerprint": [
                "fp_f38f4d6482",
                "fp_2f57f81c11",
                "fp_a7daf7c51e",
                "fp_a865e8ede4",
                "fp_13c70b9f70",
                "fp_b77cb481ed",
            ],
        },
        {"name": "gpt-4-vision-preview", "slug": "gpt-4", "reported": "gpt-4-1106-vision-preview"},
        {
            "name": "gpt-4-turbo",
            "slug": "gpt-4",
            "reported": "gpt-4-turbo-2024-04-09",
            "system_fingerprint": ["fp_d1bac968b4"],
        },
        {"name": "gpt-4-mobile", "slug": "gpt-4-mobile"},
        {"name": "gpt-4o", "slug": "gpt-4o", "reported": "gpt-4o-2024-08-06"},
        {
            "name": "gpt-4o-mini",
            "slug": "gpt-4o-mini",
            "reported": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": ["fp_c9aa9c0491"],
        },
        {"name": "gpt-4o-canmore", "slug": "gpt-4o-canmore"},
        # ChatGPT spells dotted versions with hyphens.
        {"name": "gpt-4.1", "slug": "gpt-4-1"},
        {"name": "gpt-4.1-mini", "slug": "gpt-4-1-mini"},
        {"name": "gpt-4.5", "slug": "gpt-4-5"},
        {"name": "gpt-4.5-preview", "slug": "gpt-4-5"},
        {"name": "o1", "slug": "o1", "reported": "o1-2024-12-18", "thinking": True},
        {
            "name": "o1-preview",
            "slug": "o1-preview",
            "reported": "o1-preview-2024-09-12",
            "thinking": True,
        },
        {"name": "o1-mini", "slug": "o1-mini", "reported": "o1-mini-2024-09-12", "thinking": True},
        {"name": "o1-pro", "slug": "o1-pro", "thinking": True},
        {"name": "o3", "slug": "o3", "thinking": True},
        {"name": "o3-pro", "slug": "o3-pro", "thinking": True},
        {"name": "o3-mini", "slug": "o3-mini", "reported": "o3-mini-2025-01-31", "thinking": True},
        {
            "name": "o3-mini-high",
            "slug": "o3-mini-high",
            "reported": "o3-mini-high-2025-01-31",
            "thinking": True,
        },
        {"name": "o3-mini-medium", "slug": "o3-mini-medium", "thinking": True},
        {"name": "o3-mini-low", "slug": "o3-mini-low", "thinking": True},
        {"name": "o4-mini", "slug": "o4-mini", "thinking": True},
        {"name": "o4-mini-high", "slug": "o4-mini-high", "thinking": True},
        {"name": "gpt-5", "slug": "gpt-5"},
        {"name": "gpt-5-thinking", "slug": "gpt-5-thinking", "thinking": True},
        {"name": "gpt-5-mini", "slug": "gpt-5-t-mini", "thinking": True},
        # Later GPT-5 point releases (docs/backend-2026.md#thinking-models-and-effort): gpt-5.2 →
        # gpt-5-2,
        # gpt-5.5-thinking → gpt-5-5-thinking, gpt-5.6-pro → gpt-5-6-pro.
        {"regex": r"gpt-5\.(\d+)", "slug": r"gpt-5-\1"},
        {"regex": r"gpt-5\.(\d+)-(thinking|pro|t-mini)", "slug": r"gpt-5-\1-\2", "thinking": True},
        # Dated snapshots of known models, e.g. gpt-4o-2024-11-20 or o3-mini-2025-01-31.
        {"regex": r"gpt-4o-\d{4}-\d{2}-\d{2}", "slug": "gpt-4o"},
        {"regex": r"gpt-4o-mini-\d{4}-\d{2}-\d{2}", "slug": "gpt-4o-mini"},
        {"regex": r"o3-mini-\d{4}-\d{2}-\d{2}", "slug": "o3-mini", "thinking": True},
        {"regex": r"o1-\d{4}-\d{2}-\d{2}", "slug": "o1", "thinking": True},
    ],
}


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One row of the table: an exact name or a pattern, and what it maps to."""

    kind: Literal["name", "glob", "regex"]
    key: str  # the name, the glob or the regex source
    slug: str
    reported: str | None = None  # None: echo the client's name
    system_fingerprint: tuple[str, ...] = ()
    thinking: bool = False
    image: bool = False
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


_ENTRY_KEYS = frozenset(
    {
        "name",
        "glob",
        "regex",
        "slug",
        "reported",
        "system_fingerprint",
        "thinking",
        "image",
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
        obj = DEFAULT_MODEL_TABLE
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
    kinds = [k for k in ("name", "glob", "regex") if k in raw]
    if len(kinds) != 1:
        raise ValueError(f"{where}: needs exactly one of 'name', 'glob' or 'regex'")
    kind: Literal["name", "glob", "regex"] = (
        "name" if kinds[0] == "name" else "glob" if kinds[0] == "glob" else "regex"
    )
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
