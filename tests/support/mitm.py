"""Running chat2api the way a user does: a real ``mitmdump`` process.

``start_mitm`` launches ``mitmdump -s addons/chat2api.py`` with an HTTPS-proxy
listener and a reverse listener on free ports, a fresh confdir (so a fresh CA),
its settings in environment variables, and its log in a file (an undrained
pipe would eventually block mitmdump).  :class:`MitmFactory` is what the
``mitm_factory`` fixtures of ``tests/conftest.py`` hand out: chat2api set up
for an emulator, a dialect, the mirror, a seeded pool, run.sh's launcher.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
#: chat2api as run.sh starts it: the lean launcher instead of plain mitmdump.
LAUNCHER = (sys.executable, "-m", "patches.launcher")
#: What a reverse listener points at when nothing should be reached through it.
NOWHERE = "http://127.0.0.1:9"

_LISTEN = re.compile(
    r"(HTTP\(S\) proxy|reverse proxy to \S+) listening at (?:\*|[\d.]+):(\d+)", re.I
)


def free_port() -> int:
    # mitmproxy refuses two listeners on "port 0", so pick free ports here.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mitm:
    proc: subprocess.Popen[bytes]
    proxy_port: int
    reverse_port: int
    confdir: Path
    log_path: Path
    data_dir: Path

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.reverse_port}/v1"

    @property
    def ca_path(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def start_mitm(
    tmp: Path,
    env: Mapping[str, str],
    *,
    scripts: tuple[str, ...] = ("addons/chat2api.py",),
    extra_args: tuple[str, ...] = (),
    reverse_target: str = NOWHERE,
    command: tuple[str, ...] = (str(MITMDUMP),),
    flow_detail: int = 0,
) -> Iterator[Mitm]:
    """``command`` is what runs mitmdump: its path, or run.sh's launcher
    (``(sys.executable, "-m", "patches.launcher")``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    confdir = tmp / "confdir"
    data_dir = tmp / "data"
    log_path = tmp / "mitmdump.log"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(data_dir),
        "PORT": "0",
        "PROXY_PORT": "0",
        **env,
    }
    full_env.pop("HTTPS_PROXY", None)
    full_env.pop("HTTP_PROXY", None)
    args = [
        *command,
        "--mode",
        f"regular@127.0.0.1:{free_port()}",
        "--mode",
        f"reverse:{reverse_target}@127.0.0.1:{free_port()}",
        "--set",
        f"confdir={confdir}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"flow_detail={flow_detail}",  # 1 is mitmdump's default, as run.sh leaves it
    ]
    for script in scripts:
        args += ["-s", str(ROOT / script)]
    args += list(extra_args)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        ports = _wait_ports(proc, log_path)
        yield Mitm(
            proc=proc,
            proxy_port=ports["proxy"],
            reverse_port=ports["reverse"],
            confdir=confdir,
            log_path=log_path,
            data_dir=data_dir,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_ports(
    proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 20.0
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        ports: dict[str, int] = {}
        for kind, port in _LISTEN.findall(text):
            ports["proxy" if kind.startswith("HTTP") else "reverse"] = int(port)
        if len(ports) == 2:
            return ports
        if proc.poll() is not None:
            raise RuntimeError(f"mitmdump exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    raise RuntimeError(f"mitmdump did not start listening:\n{log_path.read_text()}")


class MitmFactory:
    """Starts chat2api in mitmdump, each instance stopped when ``stack`` closes.

    ``emulator_url`` points ``CHATGPT_BASE_URL`` there (settings in ``env`` win);
    ``dialect`` sets ``BACKEND_DIALECT``; ``mirror`` loads ``addons/mirror.py``
    with the reverse listener and every mirror upstream on the emulator;
    ``pool`` is written to ``data/token.txt`` before start-up, as a user's old
    data folder; ``launcher`` runs run.sh's launcher instead of plain mitmdump.
    """

    def __init__(self, make_tmp: Callable[[], Path], stack: ExitStack | None = None) -> None:
        self._make_tmp = make_tmp
        self._stack = stack

    def __call__(self, env: Mapping[str, str] | None = None, **options: Any) -> Mitm:
        """An instance that runs until the fixture ends (the test or the module)."""
        if self._stack is None:
            raise TypeError("this factory has no lifetime of its own: use run() in a with block")
        return self._stack.enter_context(self.run(env, **options))

    @contextmanager
    def run(
        self,
        env: Mapping[str, str] | None = None,
        *,
        emulator_url: str | None = None,
        dialect: str | None = None,
        mirror: bool = False,
        pool: Sequence[str] = (),
        launcher: bool = False,
        tmp: Path | None = None,
        scripts: tuple[str, ...] = ("addons/chat2api.py",),
        flow_detail: int = 0,
    ) -> Iterator[Mitm]:
        """An instance for a ``with`` block: for a test that stops and starts again."""
        tmp = tmp if tmp is not None else self._make_tmp()
        full: dict[str, str] = {}
        reverse_target = NOWHERE
        if emulator_url is not None:
            full["CHATGPT_BASE_URL"] = emulator_url
        if dialect is not None:
            full["BACKEND_DIALECT"] = dialect
        if mirror:
            if emulator_url is None:
                raise ValueError("the mirror needs an upstream: pass emulator_url")
            scripts = (*scripts, "addons/mirror.py")
            reverse_target = emulator_url
            full["ENABLE_GATEWAY"] = "true"
            for name in ("ASSETS", "FILES", "SANDBOX", "STATSIG"):
                full[f"GATEWAY_{name}_URL"] = emulator_url
        full.update(env or {})
        if pool:
            data = tmp / "data"
            data.mkdir(parents=True, exist_ok=True)
            (data / "token.txt").write_text("".join(line + "\n" for line in pool))
        with start_mitm(
            tmp,
            full,
            scripts=scripts,
            reverse_target=reverse_target,
            command=LAUNCHER if launcher else (str(MITMDUMP),),
            flow_detail=flow_detail,
        ) as mitm:
            yield mitm
