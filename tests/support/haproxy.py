"""HAProxy for the scale-out test: the shipped ``deploy/haproxy.cfg`` with its
listeners on free loopback ports, its replicas replaced by the test's
instances, and its error files read from the repository.

``./run.sh test`` installs Debian's ``haproxy`` (scripts/system-deps.sh).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.mitm import ROOT, free_port

CONFIG = ROOT / "deploy" / "haproxy.cfg"


def haproxy_path() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(path).exists():
        raise RuntimeError("haproxy is not installed (scripts/system-deps.sh installs it)")
    return path


@dataclass(frozen=True)
class Backend:
    """One chat2api instance: its reverse (API) and HTTPS-proxy ports."""

    name: str
    reverse_port: int
    proxy_port: int


def render(backends: Sequence[Backend], api_port: int, proxy_port: int) -> str:
    text = CONFIG.read_text()
    text = text.replace("bind :5005", f"bind 127.0.0.1:{api_port}")
    text = text.replace("bind :8080", f"bind 127.0.0.1:{proxy_port}")
    text = text.replace("/usr/local/etc/haproxy/errors", str(ROOT / "deploy" / "errors"))
    # No Docker DNS here: the resolvers section goes, the template lines become servers.
    text = re.sub(r"\nresolvers docker\n(?:    .*\n)+", "\n", text)
    api = "\n".join(f"    server {b.name} 127.0.0.1:{b.reverse_port} check" for b in backends)
    proxy = "\n".join(
        f"    server {b.name} 127.0.0.1:{b.proxy_port} check port {b.reverse_port}"
        for b in backends
    )
    text, n1 = re.subn(r"    server-template \S+ \d+ \S+:5005 .*", api, text)
    text, n2 = re.subn(r"    server-template \S+ \d+ \S+:8080 .*", proxy, text)
    assert n1 == n2 == 1, "deploy/haproxy.cfg changed shape"
    return text


@dataclass
class HAProxy:
    proc: subprocess.Popen[bytes]
    api_port: int
    proxy_port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v1"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_haproxy(directory: Path, backends: Sequence[Backend]) -> Iterator[HAProxy]:
    directory.mkdir(parents=True, exist_ok=True)
    api_port, proxy_port = free_port(), free_port()
    config = directory / "haproxy.cfg"
    config.write_text(render(backends, api_port, proxy_port))
    binary = haproxy_path()
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy rejects the config:\n{check.stdout}{check.stderr}")
    log_path = directory / "haproxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while not _listening(api_port) or not _listening(proxy_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield HAProxy(proc, api_port, proxy_port, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
