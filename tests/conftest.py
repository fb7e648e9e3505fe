"""Fixtures the end-to-end modules share: the backend emulator, chat2api in a real
mitmdump, and what a client needs.

A module describes its set-up by overriding two small module-scoped fixtures and
leaves the starting and stopping here:

* ``emulator_options``: keyword options of ``run_emulator`` for the module's
  ``emulator`` (``{"refresh_tokens": ...}``, ``{"dialect": ...}``);
* ``chat2api_options``: keyword options of :class:`~tests.support.mitm.MitmFactory`
  for the module's ``mitm`` (``env`` settings, ``dialect``, ``mirror``, ``pool``,
  ``launcher``), which is always pointed at the module's ``emulator``.

Every instance listens both as an HTTPS proxy and as a reverse proxy;
``tests.support.clients.client_env(mitm, "proxy" | "reverse", key)`` sets a client
up for either.  A module that asks for ``dialect`` (here, or through its options)
runs once per backend dialect.  Tests that need an instance of their own start it
with ``mitm_factory`` (or ``mitm_factory.run`` in a ``with`` block, to stop it
early) or ``emulator_factory``; it stops when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    EmulatorFactory,
    mint_access_token,
    reset,
    run_emulator,
)
from tests.support.dialects import DIALECTS
from tests.support.mitm import Mitm, MitmFactory

# -- the backend emulator -------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    """``run_emulator`` options for this module's ``emulator``: override in a module."""
    return {}


@pytest.fixture(scope="module")
def emulator(emulator_options: dict[str, Any]) -> Iterator[Emulator]:
    with run_emulator(**emulator_options) as emu:
        yield emu


@pytest.fixture
def emulator_factory() -> Iterator[EmulatorFactory]:
    """Start emulators of the test's own (``run_emulator`` arguments); stopped after it."""
    with ExitStack() as stack:
        yield lambda *args, **options: stack.enter_context(run_emulator(*args, **options))


@pytest.fixture(autouse=True)
def _fresh_emulator(request: pytest.FixtureRequest) -> None:
    """Each test that uses the module's emulator finds it as new: no plans, no log."""
    if "emulator" in request.fixturenames:
        reset(request.getfixturevalue("emulator").url)


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    """The backend dialect the module runs against, once per dialect."""
    return str(request.param)


# -- chat2api in mitmdump -------------------------------------------------------------


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    """:class:`MitmFactory` options for this module's ``mitm``: override in a module."""
    return {}


@pytest.fixture(scope="module")
def module_mitm_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MitmFactory]:
    """Instances that live as long as the module."""
    with ExitStack() as stack:
        yield MitmFactory(lambda: tmp_path_factory.mktemp("mitm"), stack)


@pytest.fixture
def mitm_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MitmFactory]:
    """Instances of the test's own, stopped when it ends."""
    with ExitStack() as stack:
        yield MitmFactory(lambda: tmp_path_factory.mktemp("mitm"), stack)


@pytest.fixture(scope="module")
def mitm(
    tmp_path_factory: pytest.TempPathFactory, emulator: Emulator, chat2api_options: dict[str, Any]
) -> Iterator[Mitm]:
    """chat2api for the whole module (or dialect), in front of the module's emulator."""
    factory = MitmFactory(lambda: tmp_path_factory.mktemp("mitm"))
    with factory.run(emulator_url=emulator.url, **chat2api_options) as instance:
        yield instance


# -- clients --------------------------------------------------------------------------


@pytest.fixture
def token() -> str:
    """A fresh access token, so a fresh account: rate limits and health are per account."""
    return mint_access_token(exp_in=24 * 3600)
