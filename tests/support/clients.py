"""Driving the real client programs users run, from their own virtual environment.

The newest ``openai`` SDK cannot share a venv with mitmproxy 11 (h11 pins,
``docs/mitmproxy.md#the-clients-environment``), so client code runs in ``.venv-clients`` as a
subprocess: the test passes a small script and gets back the JSON it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PYTHON = Path(
    os.environ.get("CHAT2API_CLIENT_PYTHON", str(ROOT / ".venv-clients" / "bin" / "python"))
)

# Helpers available to every client script.
PRELUDE = """
import json, sys, time, traceback
def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\\n")
    sys.stdout.flush()
def describe_error(e):
    return {"error_class": type(e).__name__, "status": getattr(e, "status_code", None),
            "message": str(e)[:500]}
"""


class ClientFailed(AssertionError):
    pass


def run_client(
    script: str, env: Mapping[str, str] | None = None, *, timeout: float = 60.0
) -> list[Any]:
    """Run ``script`` with the clients' Python; returns every JSON line it emitted."""
    code = PRELUDE + textwrap.dedent(script)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HTTP"))}
    full_env.pop("SSL_CERT_FILE", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [str(CLIENT_PYTHON), "-c", code],
        env=full_env,
        capture_output=True,
        timeout=timeout,
        text=True,
    )
    if proc.returncode != 0:
        raise ClientFailed(
            f"client exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(("{", "["))]


def proxy_env(mitm: Any, api_key: str) -> dict[str, str]:
    """A client set up for the HTTPS-proxy mode, exactly as the README says."""
    bundle = mitm.confdir / "client-ca-bundle.pem"
    if not bundle.exists():
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle.write_bytes(
            (system.read_bytes() if system.exists() else b"") + mitm.ca_path.read_bytes()
        )
    return {
        "HTTPS_PROXY": mitm.proxy_url,
        "SSL_CERT_FILE": str(bundle),
        "OPENAI_API_KEY": api_key,
    }


def reverse_env(mitm: Any, api_key: str) -> dict[str, str]:
    """A client set up for the reverse (base URL) mode."""
    return {"OPENAI_BASE_URL": mitm.base_url, "OPENAI_API_KEY": api_key}


def client_env(mitm: Any, mode: str, api_key: str) -> dict[str, str]:
    """A client of ``mode`` ``"proxy"`` (HTTPS proxy) or ``"reverse"`` (base URL)."""
    if mode == "proxy":
        return proxy_env(mitm, api_key)
    if mode == "reverse":
        return reverse_env(mitm, api_key)
    raise ValueError(f"mode is 'proxy' or 'reverse', not {mode!r}")
