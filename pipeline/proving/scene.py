"""One stress scenario's working area: folders, config, the supervised daemon, waiting, the status API."""
from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from vessel_seg.pipeline.proving.report import ScenarioReport
from vessel_seg.pipeline.proving.supervised import SupervisedDaemon, write_stress_config

log = logging.getLogger(__name__)

_PORT_RE = re.compile(r"status page: http://127\.0\.0\.1:(\d+)/")


class Scene(object):
    """``root/<name>/``: ``data/`` (DATA_DIR), ``staging/`` and ``secret/`` (siblings the daemon must not
    touch), ``daemon-tmp/`` (the daemon's TMPDIR), ``config.yaml`` and ``daemon.log``."""

    def __init__(self, root: Path, name: str, report: ScenarioReport, overrides: Optional[Dict[str, Any]] = None,
                 watchdog_s: float = 5.0, env: Optional[Dict[str, str]] = None, poll_s: float = 0.2) -> None:
        self.dir = Path(root) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.report = report
        self.data = self.dir / "data"
        self.capture = self.data / "capture"
        self.results = self.data / "results"
        self.staging = self.dir / "staging"
        self.secret = self.dir / "secret"
        self.tmp = self.dir / "daemon-tmp"
        for p in (self.data, self.capture, self.staging, self.tmp):
            p.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "config.yaml"
        self.log = self.dir / "daemon.log"
        self.poll_s = poll_s
        base = {"web": {"enabled": True, "host": "127.0.0.1", "port": 0}}
        self.overrides = _merged(base, overrides or {})
        self.write_config()
        denv = {"TMPDIR": str(self.tmp)}
        denv.update(env or {})
        self.daemon = SupervisedDaemon(self.config, self.data, self.log, watchdog_s=watchdog_s, env=denv)
        self._port: Optional[int] = None

    def write_config(self, overrides: Optional[Dict[str, Any]] = None) -> None:
        """(Re)write config.yaml: the scene's overrides, then ``overrides``."""
        write_stress_config(self.config, self.data, _merged(self.overrides, overrides or {}))

    # ------------------------------------------------------------------ waiting
    def wait(self, predicate: Callable[[], bool], timeout: float, what: str,
             before_restart: Optional[Callable[[str], None]] = None) -> bool:
        """Poll ``predicate`` while supervising the daemon; a timeout is a problem of the scenario."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() > deadline:
                self.report.fail("timed out after %.0f s waiting for %s; daemon log tail:\n%s"
                                 % (timeout, what, self.daemon.log_tail(15)))
                return False
            happened = self.daemon.supervise(before_restart)
            if happened:
                self._port = None
                self.report.notes.append("supervisor: %s -> restarted (pid %s)" % (happened, self.daemon.pid))
            time.sleep(self.poll_s)

    def done_ids(self) -> set:
        """Result folders holding result.json (cheap: one stat per folder)."""
        if not self.results.exists():
            return set()
        out = set()
        for p in self.results.iterdir():
            if (p / "result.json").exists():
                out.add(p.name)
        return out

    # ------------------------------------------------------------------ web
    def port(self) -> int:
        """The status page port of the current daemon process (from its log)."""
        if self._port is None:
            found = _PORT_RE.findall(self.daemon.log_text())
            if not found:
                raise RuntimeError("the daemon logged no status page address")
            self._port = int(found[-1])
        return self._port

    def api(self, path: str, token: Optional[str] = None, timeout: float = 10.0) -> Dict[str, Any]:
        """GET a JSON API path of the live daemon."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port(), path))
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read().decode("utf-8") or "{}")

    def status(self, token: Optional[str] = None) -> Dict[str, Any]:
        try:
            return self.api("/api/status", token)
        except (OSError, ValueError, RuntimeError) as exc:
            return {"error": str(exc)}


def _merged(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merged(out[k], v)
        else:
            out[k] = v
    return out
