"""A real headless Chromium, driven over the DevTools protocol, for page tests.

``start_browser(tmp)`` runs Debian's ``/usr/bin/chromium`` (``run.sh test``
installs it when missing, ``scripts/system-deps.sh``) headless with a fresh
profile, and gives a :class:`Browser`; ``browser.new_page()`` opens a tab and
returns a :class:`Page` with the few things a test needs: ``goto``,
``evaluate``, ``wait_for``, ``type_into`` (real key input) and ``click`` (a
real mouse click at the element's centre). JavaScript dialogs (``confirm``)
are accepted and recorded in ``page.dialogs``.

The DevTools client is tiny and synchronous: one WebSocket to the browser
endpoint (``wsproto``, which mitmproxy already depends on), with tabs attached
as flat sessions. No other dependency.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

CHROMIUM = os.environ.get("CHAT2API_CHROMIUM", "/usr/bin/chromium")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


class CdpError(RuntimeError):
    pass


class Cdp:
    """One DevTools WebSocket: commands by id, events queued, dialogs accepted."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(ws_url)
        assert parts.hostname and parts.port
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.timeout = timeout
        self._next_id = 0
        self._text = ""
        self.events: list[dict[str, Any]] = []
        self.dialogs: list[str] = []
        self._send(Request(host=f"{parts.hostname}:{parts.port}", target=parts.path))
        if not isinstance(self._event(), AcceptConnection):
            raise CdpError("the DevTools endpoint refused the WebSocket")

    def _send(self, event: Any) -> None:
        self.sock.sendall(self.ws.send(event))

    def _event(self) -> Any:
        while True:
            for event in self.ws.events():
                return event
            data = self.sock.recv(1 << 16)
            self.ws.receive_data(data or None)
            if not data:
                raise CdpError("the DevTools connection closed")

    def _message(self, deadline: float) -> dict[str, Any]:
        while True:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                event = self._event()
            except TimeoutError:
                raise CdpError("no answer from the browser in time") from None
            if isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, (CloseConnection, RejectConnection)):
                raise CdpError("the DevTools connection closed")
            elif isinstance(event, Message):
                self._text += str(event.data)
                if event.message_finished:
                    text, self._text = self._text, ""
                    parsed: dict[str, Any] = json.loads(text)
                    return parsed

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Run one command and return its result; events meanwhile are queued."""
        self._next_id += 1
        msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        self._send(TextMessage(data=json.dumps(msg)))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if reply.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(str(reply["params"].get("message", "")))
                # Answer from here: the command we wait for is blocked by the dialog.
                self._next_id += 1
                accept = {
                    "id": self._next_id,
                    "method": "Page.handleJavaScriptDialog",
                    "params": {"accept": True},
                    "sessionId": reply.get("sessionId"),
                }
                self._send(TextMessage(data=json.dumps(accept)))
            elif "method" in reply:
                self.events.append(reply)

    def close(self) -> None:
        try:
            self._send(CloseConnection(code=1000))
        except OSError:
            pass
        self.sock.close()


class Page:
    def __init__(self, cdp: Cdp, session: str) -> None:
        self.cdp = cdp
        self.session = session

    @property
    def dialogs(self) -> list[str]:
        return self.cdp.dialogs

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.cdp.send(method, params, self.session)

    def goto(self, url: str, timeout: float = 20.0) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'", timeout
        )

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll until the expression is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CdpError:
                # Mid-navigation (a redirect after a form post) the old document is
                # gone and the new one has no body yet: ask again, until the deadline.
                if time.monotonic() > deadline:
                    raise
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real left click at the centre of the (visible) element."""
        box = self.wait_for(
            f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e || e.offsetParent === null) return null;
            e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()"""
        )
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params: dict[str, Any] = {"type": kind, "x": x, "y": y}
            if kind != "mouseMoved":
                params.update(button="left", clickCount=1)
            self.send("Input.dispatchMouseEvent", params)

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type ``text`` as keyboard input (newlines included)."""
        self.click(selector)
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if line:
                self.send("Input.insertText", {"text": line})
            if i < len(lines) - 1:
                for kind in ("keyDown", "keyUp"):
                    self.send(
                        "Input.dispatchKeyEvent",
                        {
                            "type": kind,
                            "key": "Enter",
                            "code": "Enter",
                            "windowsVirtualKeyCode": 13,
                            **({"text": "\r"} if kind == "keyDown" else {}),
                        },
                    )

    def text(self, selector: str) -> str:
        value = self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
        )
        return str(value)


class Browser:
    def __init__(self, proc: subprocess.Popen[bytes], cdp: Cdp) -> None:
        self.proc = proc
        self.cdp = cdp

    def new_page(self) -> Page:
        target = self.cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self.cdp, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        return page


@contextmanager
def start_browser(tmp: Path, *, timeout: float = 30.0) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile under ``tmp``; killed on exit."""
    binary = chromium_path()
    if binary is None:
        raise RuntimeError(f"Chromium not found at {CHROMIUM}; run scripts/system-deps.sh")
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "chromium.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cdp: Cdp | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        cdp = Cdp(f"ws://127.0.0.1:{port}{path}", timeout=timeout)
        yield Browser(proc, cdp)
    finally:
        if cdp is not None:
            cdp.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
