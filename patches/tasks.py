"""mitmproxy's task labels without an environment look-up (patch ``task_names``).

mitmproxy's ``asyncio_utils.set_task_debug_info`` looks up
``PYTEST_CURRENT_TEST`` in the environment for every task it creates (every
hook of every flow), to label tasks in mitmproxy's own test runs. The lean
launcher rebinds it to :func:`task_debug_info`, which sets the same labels.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import patches


def task_debug_info(task: Any, *, name: str, client: tuple[Any, ...] | None = None) -> None:
    task.created = time.time()
    task.set_name(name)
    if client:
        task.client = client


def fits() -> str | None:
    why = patches.mitmproxy_version_fits()
    if why is not None:
        return why
    from mitmproxy.utils import asyncio_utils

    original = getattr(asyncio_utils, "set_task_debug_info", None)
    if original is None:
        return "mitmproxy.utils.asyncio_utils has no set_task_debug_info"
    params = inspect.signature(original).parameters
    if (
        list(params) != ["task", "name", "client"]
        or params["name"].kind != params["name"].KEYWORD_ONLY
    ):
        return f"set_task_debug_info takes {list(params)}, not (task, *, name, client)"
    return None


def apply() -> None:
    from mitmproxy.utils import asyncio_utils

    asyncio_utils.set_task_debug_info = task_debug_info
