"""Drive headless Chromium through the Chrome DevTools Protocol with only the standard library.

A tiny RFC 6455 websocket client (client frames masked, fragmentation, ping/pong) plus a CDP session that
collects console errors, uncaught exceptions and browser log errors (CSP violations, failed loads).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from typing import Any, Dict, List
from urllib.parse import urlsplit
from urllib.request import urlopen

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", "--disable-extensions", "--mute-audio",
         "--password-store=basic", "--remote-debugging-port=0"]
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket(object):
    """Minimal blocking websocket client (text frames)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        path = parts.path + ("?" + parts.query if parts.query else "")
        request = ("GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n").format(
                       path, parts.hostname, parts.port, key)
        self.sock.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        status_line = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status_line + b" ":
            raise ConnectionError("websocket handshake refused: {!r}".format(head[:200]))
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode("ascii")).digest())
        if expected not in head:
            raise ConnectionError("websocket handshake: bad Sec-WebSocket-Accept")

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8"))

    def recv_text(self) -> str:
        """Next complete text message (answers pings, reassembles fragments)."""
        parts = []  # type: List[bytes]
        while True:
            b0, b1 = self._recv_exact(2)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            mask = self._recv_exact(4) if b1 & 0x80 else None
            payload = self._recv_exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("websocket closed by peer")
            if opcode in (0x1, 0x2, 0x0):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode("utf-8")

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Browser(object):
    """A headless Chromium process with one page attached over CDP."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self.profile = tempfile.mkdtemp(prefix="vs-chromium-")
        self.proc = subprocess.Popen([CHROMIUM] + FLAGS + ["--user-data-dir=" + self.profile,
                                                           "--window-size={},{}".format(width, height),
                                                           "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.events = []  # type: List[Dict[str, Any]]
        self._next_id = 0
        try:
            port = self._wait_for_port(30.0)
            self.ws = WebSocket(self._page_ws_url(port))
            for domain in ("Page", "Runtime", "Log", "DOM", "Network"):
                self.call(domain + ".enable")
            self.set_viewport(width, height)
        except Exception:
            self.close()
            raise

    def _wait_for_port(self, timeout: float) -> int:
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited with code {}".format(self.proc.returncode))
            try:
                with open(path) as fh:
                    first = fh.readline().strip()
                if first:
                    return int(first)
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("chromium did not write DevToolsActivePort within {} s".format(timeout))

    @staticmethod
    def _page_ws_url(port: int) -> str:
        deadline = time.time() + 15
        while time.time() < deadline:
            with urlopen("http://127.0.0.1:{}/json/list".format(port), timeout=5) as resp:
                targets = json.loads(resp.read().decode("utf-8"))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("no page target in chromium")

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        """Send a CDP command and return its result (events seen meanwhile are kept in ``events``)."""
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send_text(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv_text())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError("{} failed: {}".format(method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def set_viewport(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its (JSON) value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError("JS error: {}".format(result["exceptionDetails"]))
        return result.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 20.0) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout)

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1) -> Any:
        """Poll a JS expression until truthy; return its value or raise TimeoutError."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.evaluate(expression)
            except RuntimeError:
                last = None  # navigation in progress: the context was destroyed
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError("timed out waiting for: {} (last value {!r})".format(expression, last))

    def set_file_input(self, selector: str, path: str) -> None:
        root = self.call("DOM.getDocument", depth=1)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError("no element matches {}".format(selector))
        self.call("DOM.setFileInputFiles", nodeId=node, files=[path])

    def screenshot(self, path: str, full_page: bool = True) -> None:
        params = {"format": "png"}  # type: Dict[str, Any]
        if full_page:
            params["captureBeyondViewport"] = True
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))

    def drain_events(self, seconds: float = 0.3) -> None:
        """Read pending events for a moment (a cheap round trip collects what arrived meanwhile)."""
        end = time.time() + seconds
        while time.time() < end:
            self.evaluate("1")
            time.sleep(0.05)

    def console_errors(self) -> List[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        errors = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console.{}: {}".format(params["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", []))))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append("exception: {}".format(details.get("exception", {}).get("description")
                                                     or details.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append("log[{}]: {} {}".format(entry.get("source"), entry.get("text"), entry.get("url", "")))
        return errors

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)
