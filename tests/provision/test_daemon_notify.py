"""The real daemon process speaks the systemd notify protocol (Type=notify, WatchdogSec).

Runs ``python -m vessel_seg run --runtime sim`` with NOTIFY_SOCKET pointing at a datagram socket bound
here and WATCHDOG_USEC=1000000, as systemd would start it, and checks READY=1, STATUS=, periodic
WATCHDOG=1, and that the pings stop when the simulated NPU hangs in execute.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Iterator, List, Optional, Sequence

import pytest
import yaml
from notify_helpers import NotifyReceiver, fields

HERE = os.path.dirname(os.path.abspath(__file__))
MDWE_RUN = os.path.join(HERE, "mdwe_run.py")

STARTUP_TIMEOUT_S = 90.0      # imports numpy/OpenCV on a loaded 2-core CI box
WATCHDOG_USEC = 1000000       # pings expected every 0.5 s


def _write_config(path: str, data_dir: str, hang_execute: bool, web_port: Optional[int] = None) -> str:
    cfg = {
        "data_dir": data_dir,
        "ingest": {"stable_seconds": 0.2, "rescan_seconds": 1.0},
        "pipeline": {"shutdown_timeout_s": 2.0, "retry_interval_s": 0.5},
        "device": {"runtime": "sim", "hang_timeout_s": 1.0,
                   "sim": {"compute": "surrogate", "device_time_ms": 5.0, "hang_execute": hang_execute}},
        "web": {"enabled": web_port is not None, "host": "127.0.0.1", "port": web_port or 8080},
        "logging": {"level": "INFO"},
    }
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    return path


def _fundus_png() -> bytes:
    from vessel_seg.camera.synthetic import encode_image, make_fundus

    rgb, _vessels, _fov = make_fundus(width=256, height=240, seed=7)
    return encode_image(rgb, ".png")


def _drop(capture: str, name: str, data: bytes) -> None:
    tmp = os.path.join(capture, name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, os.path.join(capture, name))


class NotifyDaemon(object):
    """The daemon as a subprocess under a fake systemd notify socket."""

    def __init__(self, receiver: NotifyReceiver, workdir: str, hang_execute: bool,
                 web_port: Optional[int] = None, wrapper: Sequence[str] = ()) -> None:
        self.receiver = receiver
        self.data_dir = os.path.join(workdir, "data")
        self.config = _write_config(os.path.join(workdir, "config.yaml"), self.data_dir, hang_execute, web_port)
        self.wrapper = list(wrapper)    # e.g. mdwe_run.py: run the daemon as MemoryDenyWriteExecute would
        self.log_path = os.path.join(workdir, "daemon.log")
        self.proc = None  # type: Optional[subprocess.Popen]

    def start(self) -> "NotifyDaemon":
        env = dict(os.environ)
        env.update({"NOTIFY_SOCKET": self.receiver.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        env.pop("WATCHDOG_PID", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable] + (self.wrapper or ["-m"]) + ["vessel_seg", "run", "--config", self.config,
                 "--data-dir", self.data_dir, "--runtime", "sim"],
                cwd=os.path.dirname(self.config), env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    def wait_message(self, predicate, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail("daemon exited with %s while waiting for %s:\n%s" % (
                    self.proc.returncode, what, self.log_tail()))
            msg = self.receiver.wait_for(predicate, timeout=min(1.0, deadline - time.monotonic()))
            if msg is not None:
                return msg
        pytest.fail("no %s within %.0f s; got %r\n%s" % (what, timeout, self.receiver.messages[-10:], self.log_tail()))

    def collect(self, seconds: float) -> List[str]:
        """Every datagram arriving during the next ``seconds``."""
        out = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            msg = self.receiver.receive(timeout=left)
            if msg is not None:
                out.append(msg)

    def stop(self) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


def _is_ready(msg: str) -> bool:
    return fields(msg).get("READY") == "1"


def _is_ping(msg: str) -> bool:
    return fields(msg).get("WATCHDOG") == "1"


@pytest.fixture
def daemon_factory(notify_receiver, short_tmp) -> Iterator:
    started = []

    def make(hang_execute: bool, **kwargs) -> NotifyDaemon:
        d = NotifyDaemon(notify_receiver, short_tmp, hang_execute, **kwargs).start()
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


def test_daemon_reports_ready_status_and_pings_while_idle_and_processing(daemon_factory):
    daemon = daemon_factory(hang_execute=False)
    ready = daemon.wait_message(_is_ready, STARTUP_TIMEOUT_S, "READY=1")
    before_ready = daemon.receiver.messages[:-1]
    assert not any(_is_ping(m) for m in before_ready), "no watchdog pings before READY=1"
    statuses = [fields(m)["STATUS"] for m in daemon.receiver.messages if "STATUS" in fields(m)]
    assert statuses, "STATUS= lines for systemctl status"
    assert any(s.startswith("starting") for s in statuses), statuses
    assert "processed" in fields(ready).get("STATUS", "") or any("processed" in s for s in statuses)

    idle = daemon.collect(2.6)
    assert sum(map(_is_ping, idle)) >= 3, idle        # every 0.5 s while idle and healthy

    _drop(os.path.join(daemon.data_dir, "capture"), "eye1.png", _fundus_png())
    processed = daemon.wait_message(lambda m: "1 processed" in fields(m).get("STATUS", ""), 60.0,
                                    "STATUS= saying 1 processed")
    assert "0 failed" in fields(processed)["STATUS"]
    after = daemon.collect(1.6)
    assert sum(map(_is_ping, after)) >= 2, after      # still healthy after real work

    assert daemon.stop() == 0
    rest = daemon.receiver.drain()
    assert any(fields(m).get("STOPPING") == "1" for m in rest), rest


def test_watchdog_pings_stop_when_execute_hangs(daemon_factory):
    daemon = daemon_factory(hang_execute=True)
    daemon.wait_message(_is_ready, STARTUP_TIMEOUT_S, "READY=1")
    daemon.wait_message(_is_ping, 5.0, "a first WATCHDOG=1 while idle")

    _drop(os.path.join(daemon.data_dir, "capture"), "eye2.png", _fundus_png())
    # hang_timeout_s is 1 s: once the execute has hung that long the pings must stop for good,
    # so systemd (WatchdogSec) would kill and restart the service.
    deadline = time.monotonic() + 60.0
    silent_window = 3.0
    while time.monotonic() < deadline:
        window = daemon.collect(silent_window)
        if not any(_is_ping(m) for m in window):
            break
    else:
        pytest.fail("watchdog pings never stopped while execute hung:\n%s" % daemon.log_tail())
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon itself stays up; systemd kills it"
    assert not any(_is_ping(m) for m in daemon.collect(1.5))


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _mdwe_supported() -> bool:
    proc = subprocess.run([sys.executable, MDWE_RUN, "json.tool", "--help"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    return proc.returncode != 77


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _mdwe_supported(),
                    reason="kernel without prctl(PR_SET_MDWE) (Linux >= 6.3) to emulate MemoryDenyWriteExecute=yes")
def test_daemon_with_status_page_works_under_memory_deny_write_execute(daemon_factory):
    """The unit sets MemoryDenyWriteExecute=yes: numpy, OpenCV, Flask/waitress and watchdog must cope."""
    port = _free_port()
    daemon = daemon_factory(hang_execute=False, web_port=port, wrapper=[MDWE_RUN])
    daemon.wait_message(_is_ready, STARTUP_TIMEOUT_S, "READY=1 under MDWE")
    _drop(os.path.join(daemon.data_dir, "capture"), "eye3.png", _fundus_png())
    daemon.wait_message(lambda m: "1 processed" in fields(m).get("STATUS", ""), 60.0, "1 processed under MDWE")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5) as resp:
                assert resp.status == 200
                break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert daemon.stop() == 0
