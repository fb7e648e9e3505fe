"""The backend dialects as a test parameter: every API-path test can run in each.

``tests/conftest.py`` has a module-scoped ``dialect`` fixture over :data:`DIALECTS`;
a module that runs in each dialect hands it to its emulator and to chat2api::

    @pytest.fixture(scope="module")
    def emulator_options(dialect: str) -> dict[str, Any]:
        return {"dialect": dialect}

    @pytest.fixture(scope="module")
    def chat2api_options(dialect: str) -> dict[str, Any]:
        return {"dialect": dialect}

The emulator then speaks only that dialect (the other one's endpoints answer 404),
so a test cannot pass by quietly using the wrong flow.
"""

from __future__ import annotations

DIALECTS = ["classic", "2026"]

#: The conversation call of each dialect, as a path under ``/backend-api``.
CONVERSATION_PATH = {"classic": "/conversation", "2026": "/f/conversation"}


def is_conversation_call(dialect: str, path: str) -> bool:
    """Is ``path`` (as the emulator logs it) the conversation call of ``dialect``?"""
    return path.endswith("/backend-api" + CONVERSATION_PATH[dialect]) or path.endswith(
        "/backend-anon" + CONVERSATION_PATH[dialect]
    )
