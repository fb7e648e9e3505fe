"""The backend dialects as a test parameter: every API-path test can run in each.

An end-to-end module parametrises its module-scoped fixtures with :data:`DIALECTS`
and starts the emulator and mitmdump with what the dialect needs::

    @pytest.fixture(scope="module", params=DIALECTS)
    def dialect(request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture(scope="module")
    def emulator(dialect: str) -> Iterator[Emulator]:
        with run_emulator(**emulator_options(dialect)) as emu:
            yield emu

    @pytest.fixture(scope="module")
    def mitm(emulator, dialect, tmp_path_factory) -> Iterator[Mitm]:
        env = {"CHATGPT_BASE_URL": emulator.url, **mitm_env(dialect)}
        ...

The emulator then speaks only that dialect (the other one's endpoints answer 404),
so a test cannot pass by quietly using the wrong flow.
"""

from __future__ import annotations

from typing import Any

DIALECTS = ["classic", "2026"]

#: The conversation call of each dialect, as a path under ``/backend-api``.
CONVERSATION_PATH = {"classic": "/conversation", "2026": "/f/conversation"}


def emulator_options(dialect: str) -> dict[str, Any]:
    """Keyword options of ``run_emulator`` for a backend that speaks only ``dialect``."""
    return {"dialect": dialect}


def mitm_env(dialect: str) -> dict[str, str]:
    """chat2api's settings (environment) for ``dialect``: classic, 2026 or auto."""
    return {"BACKEND_DIALECT": dialect}


def is_conversation_call(dialect: str, path: str) -> bool:
    """Is ``path`` (as the emulator logs it) the conversation call of ``dialect``?"""
    return path.endswith("/backend-api" + CONVERSATION_PATH[dialect]) or path.endswith(
        "/backend-anon" + CONVERSATION_PATH[dialect]
    )
