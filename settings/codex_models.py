"""The Codex backend's model table (``CODEX_MODELS`` / ``codex_models`` in config.yaml).

Same format and resolution as the web table (:mod:`settings.model_table`). The
slugs are those the Codex backend listed for ChatGPT accounts in late 2026
(``docs/codex-backend.md``, "Models"); which of them an account may use depends
on its plan.
"""

from __future__ import annotations

from typing import Any

from settings.model_table import DEFAULT_CREATED, ModelTable, parse_model_table

CODEX_SLUGS = (
    "gpt-5.5",
    "gpt-5.6-sol",
    "gpt-5.6-terra",
    "gpt-5.6-luna",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.3-codex-spark",
    "gpt-6-sol",
    "gpt-6-luna",
    "gpt-6-astra",
)

DEFAULT_CODEX_MODEL_TABLE: dict[str, Any] = {
    "default_slug": "gpt-5.5",
    "gizmo_slug": "gpt-5.5",
    "owned_by": "openai",
    "created": DEFAULT_CREATED,
    "models": [{"name": slug, "slug": slug} for slug in CODEX_SLUGS],
}


def parse_codex_model_table(value: object) -> ModelTable:
    """``codex_models`` from config.yaml; empty gives :data:`DEFAULT_CODEX_MODEL_TABLE`."""
    return parse_model_table(DEFAULT_CODEX_MODEL_TABLE if value is None else value)
