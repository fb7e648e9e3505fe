"""A throwaway ``redis-server`` for the tests: a free port, no persistence unless
asked, its own directory, stopped and restarted at will (:meth:`RedisServer.stop`,
:meth:`RedisServer.start`, :meth:`RedisServer.pause`).

``./run.sh test`` installs Debian's ``redis-server`` (scripts/system-deps.sh);
without it, :func:`require_redis` skips the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.mitm import free_port


def redis_server_path() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def require_redis() -> str:
    path = redis_server_path()
    if path is None:
        pytest.skip("redis-server is not installed (./run.sh test installs it)")
    return path


class RedisServer:
    def __init__(self, binary: str, directory: Path, port: int | None = None) -> None:
        self.binary = binary
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again): an RDB file left by :meth:`stop` is loaded."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--dbfilename",
            "dump.rdb",
            "--daemonize",
            "no",
        ]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the server owns it
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log()}")
            if self._ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer:\n{self.log()}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *parts: str) -> bytes:
        """One command in RESP, its raw answer (for SAVE, FLUSHALL, ...)."""
        payload = f"*{len(parts)}\r\n".encode()
        for part in parts:
            data = part.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload)
            return sock.recv(65536)

    def stop(self, *, keep_data: bool = True) -> None:
        """Stop the server; with ``keep_data`` its data is back after :meth:`start`."""
        if self.proc is None:
            return
        if keep_data and self.proc.poll() is None:
            assert self.command("SAVE").startswith(b"+OK")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    @contextmanager
    def pause(self) -> Iterator[None]:
        """Freeze the server (SIGSTOP): connections hang instead of being refused."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def run_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_redis(), directory)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)  # in case a test left it paused
        server.stop(keep_data=False)
