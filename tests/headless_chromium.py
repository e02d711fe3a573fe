"""A headless Chromium driven over the DevTools protocol, for tests of the report's HTML pages.

The client is aiohttp's websocket (installed with the dev tools through `datasets`); Chromium is the
system's (Debian: `apt-get install chromium`, or HUMPBACK_CHROMIUM names a binary). `chromium_or_skip`
says why a test cannot run where either is missing. Clicks and typing go through Input.* events, as a
user's would, not through element.click() in the page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    if os.environ.get("HUMPBACK_CHROMIUM"):
        return shutil.which(os.environ["HUMPBACK_CHROMIUM"])
    return next((p for p in map(shutil.which, NAMES) if p), None)


def chromium_or_skip() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(f"no Chromium binary found (looked for {', '.join(NAMES)} on PATH, or HUMPBACK_CHROMIUM); "
                    "on Debian: apt-get install chromium")
    pytest.importorskip("aiohttp", reason="aiohttp (the DevTools websocket client) is not installed")
    return binary


class Browser:
    """One headless Chromium with one page; `with Browser(binary) as b: b.open(url); b.eval("...")`."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000, timeout: float = 30):
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self.errors: list[str] = []  # uncaught exceptions and console errors of the page

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="humpback-chromium-")
        args = [self.binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
                f"--window-size={self.width},{self.height}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._connect())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "_session", None) is not None:
            self._loop.run_until_complete(self._session.close())
        self._loop.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._profile.cleanup()

    async def _connect(self) -> None:
        import aiohttp

        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self._proc.returncode} before it listened")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.binary} wrote no DevToolsActivePort in {self.timeout:g} s")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._id = 0
        self._events: list[dict] = []
        for method in ("Page.enable", "Runtime.enable"):
            await self._call(method)
        await self._call("Emulation.setDeviceMetricsOverride",
                         {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    async def _receive(self) -> dict:
        msg = json.loads(await asyncio.wait_for(self._ws.receive_str(), self.timeout))
        if msg.get("method") == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
        elif msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] == "error":
            self.errors.append(json.dumps(msg["params"]["args"])[:500])
        return msg

    async def _call(self, method: str, params: dict | None = None) -> dict:
        self._id += 1
        await self._ws.send_json({"id": self._id, "method": method, "params": params or {}})
        while True:
            msg = await self._receive()
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self._events.append(msg)

    async def _wait_event(self, method: str) -> dict:
        while True:
            for i, msg in enumerate(self._events):
                if msg.get("method") == method:
                    return self._events.pop(i)
            self._events.append(await self._receive())

    def call(self, method: str, params: dict | None = None) -> dict:
        return self._loop.run_until_complete(self._call(method, params))

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event."""
        self._events.clear()
        self.call("Page.navigate", {"url": url})
        self._loop.run_until_complete(self._wait_event("Page.loadEventFired"))

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the first element `selector` matches."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                        "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def type(self, selector: str, text: str) -> None:
        """Focus the element and type `text` into it (input events as from a keyboard)."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
