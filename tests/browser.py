"""A headless Chromium driven over the Chrome DevTools Protocol (websocket-client), for page tests.

Uses the system's ``chromium`` (Debian package; ``$CHROMIUM`` overrides the executable); never
downloads a browser. :func:`chromium_or_skip_reason` says why a test cannot run here.

    with Chromium() as page:
        page.open("file:///.../report.html")
        page.eval("document.title")
        page.screenshot(path)
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*")


def chromium_path() -> str | None:
    """The Chromium executable: ``$CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_or_skip_reason() -> str | None:
    """None when a page test can run; else why not."""
    if chromium_path() is None:
        return "no chromium here (apt-get install chromium, or `nox -s browser`, or set $CHROMIUM)"
    if importlib.util.find_spec("websocket") is None:
        return "websocket-client is not installed (pip install websocket-client)"
    return None


class Chromium:
    """One headless browser with one page; a context manager that always ends the browser it started."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 60.0) -> None:
        self.width, self.height, self.timeout = width, height, timeout
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        import websocket

        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        exe = chromium_path()
        if exe is None:
            raise RuntimeError(chromium_or_skip_reason() or "no chromium")
        self._proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={self._profile.name}", f"--window-size={self.width},{self.height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"chromium did not start ({exe}, exit code {self._proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                pages = [t for t in json.load(resp) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not pages:
            self.__exit__(None, None, None)
            raise RuntimeError("chromium has no page target")
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc: object) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._profile.cleanup()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result (events in between are ignored)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if "method" in msg and "id" not in msg:
                self.events.append(msg)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); page errors raise."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r}: {res['exceptionDetails'].get('exception', res['exceptionDetails'])}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; raise TimeoutError with the expression otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"page never satisfied {expression!r}")

    def errors(self) -> list[str]:
        """Uncaught exceptions the page has thrown so far (``Runtime.exceptionThrown`` events)."""
        return [str(e["params"]["exceptionDetails"].get("exception", {}).get("description")
                    or e["params"]["exceptionDetails"].get("text"))
                for e in self.events if e.get("method") == "Runtime.exceptionThrown"]

    def open(self, url: str) -> None:
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or of the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            h = int(self.eval("document.documentElement.scrollHeight"))
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": h, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
