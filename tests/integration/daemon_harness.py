"""Run the real daemon (`python -m pipeline.cli run`) as a subprocess on the simulator, and look at its data."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from vessel_seg.pipeline.store.results import is_complete


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(path: Path, data_dir: Path, device_time_ms: float = 5.0, web_port: Optional[int] = None,
                 stable_seconds: float = 0.3, shutdown_timeout_s: float = 20.0, **extra_sim) -> Path:
    sim = {"compute": "surrogate", "device_time_ms": device_time_ms}
    sim.update(extra_sim)
    cfg = {
        "data_dir": str(data_dir),
        "ingest": {"stable_seconds": stable_seconds, "rescan_seconds": 2.0},
        "pipeline": {"shutdown_timeout_s": shutdown_timeout_s, "retry_interval_s": 0.5},
        "device": {"runtime": "sim", "sim": sim},
        "web": {"enabled": web_port is not None, "port": web_port or 8080, "host": "127.0.0.1"},
        "logging": {"level": "INFO"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


class DaemonProcess(object):
    """`python -m pipeline.cli run --config CFG --data-dir DIR --runtime sim` with its log in a file."""

    def __init__(self, config: Path, data_dir: Path, log_path: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 60.0) -> "DaemonProcess":
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        logf = open(str(self.log_path), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vessel_seg.pipeline.cli.main", "run", "--config", str(self.config), "--data-dir",
             str(self.data_dir), "--runtime", "sim"], cwd=str(self.config.parent), env=env, stdout=logf,
            stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            if "running: model" in self.log():
                return self
            time.sleep(0.05)
        raise AssertionError("daemon not ready in %.0f s:\n%s" % (timeout, self.log_tail()))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ------------------------------------------------------------------------------------------ inputs
def drop_by_rename(capture: Path, name: str, data: bytes) -> Path:
    """Write under a temp name, then rename into place (how careful cameras deliver)."""
    tmp = capture / (name + ".part")
    tmp.write_bytes(data)
    os.replace(str(tmp), str(capture / name))
    return capture / name


def slow_chunked_writer(path: Path, data: bytes, chunks: int = 8, delay_s: float = 0.15) -> threading.Thread:
    """Write the final name in slow chunks (a camera streaming over USB), in a thread."""
    def run() -> None:
        step = max(1, len(data) // chunks)
        with open(str(path), "wb") as fh:
            for i in range(0, len(data), step):
                fh.write(data[i:i + step])
                fh.flush()
                time.sleep(delay_s)
    t = threading.Thread(target=run)
    t.start()
    return t


def fundus_bytes(seed: int, ext: str = ".png", size=(320, 300)) -> bytes:
    from vessel_seg.camera.synthetic import encode_image, make_fundus

    rgb, _v, _f = make_fundus(width=size[0], height=size[1], seed=seed)
    return encode_image(rgb, ext)


# ------------------------------------------------------------------------------------------ inspection
def complete_results(data_dir: Path) -> List[str]:
    root = data_dir / "results"
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_complete(p))


def result_dirs(data_dir: Path) -> List[str]:
    root = data_dir / "results"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def reasons(data_dir: Path) -> Dict[str, dict]:
    q = data_dir / "quarantine"
    if not q.exists():
        return {}
    out = {}
    for p in q.glob("*.reason.json"):
        info = json.loads(p.read_text())
        out[info["source"]] = info
    return out


def journal_states(data_dir: Path) -> Dict[str, str]:
    db = data_dir / "state" / "journal.sqlite3"
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        return {row[0]: row[1] for row in con.execute("SELECT id, state FROM captures")}
    finally:
        con.close()


def wait_until(predicate, timeout: float, what: str, daemon: Optional[DaemonProcess] = None, poll: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out after %.0f s waiting for %s\n%s" % (
        timeout, what, daemon.log_tail() if daemon else ""))


def temp_files(data_dir: Path) -> List[str]:
    """Leftover atomic-write temp files outside capture/ (where the test itself may put some)."""
    return [str(p) for p in data_dir.rglob("*") if p.name.endswith(".tmp") and p.parent.name != "capture"]
