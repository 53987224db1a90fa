"""The daemon under test for ``vessel-seg stress``: a real ``vessel-seg run`` process, supervised like systemd.

:class:`SupervisedDaemon` starts ``python -m vessel_seg run --config CFG`` with ``NOTIFY_SOCKET`` bound to a
datagram socket it reads itself and ``WATCHDOG_USEC`` set, as ``Type=notify`` + ``WatchdogSec=`` would. It
records READY=1, STATUS= and WATCHDOG=1 messages; :meth:`SupervisedDaemon.supervise` does what systemd does
with ``Restart=on-failure``: when the process died, or its WATCHDOG=1 pings stopped for longer than the
watchdog period, it is killed with SIGKILL and started again. A sampler thread records the process's VmRSS and
open file descriptors (``/proc/<pid>/status`` and ``/proc/<pid>/fd``) for the soak figures.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

log = logging.getLogger(__name__)


class DaemonDied(RuntimeError):
    """The daemon exited or could not start."""


def write_stress_config(path: Path, data_dir: Path, overrides: Optional[Dict[str, Any]] = None) -> Path:
    """A configuration for a stress run: simulator with timing-emulation compute, fast rescans, no web.

    ``overrides`` is merged section by section (``{"device": {"sim": {"faults": [...]}}}``).
    """
    cfg: Dict[str, Any] = {
        "data_dir": str(data_dir),
        "ingest": {"stable_seconds": 1.0, "rescan_seconds": 2.0},
        "pipeline": {"shutdown_timeout_s": 10.0, "retry_interval_s": 0.3},
        "device": {"runtime": "sim", "hang_timeout_s": 2.0,
                   "sim": {"compute": "surrogate", "device_time_ms": 2.0}},
        "web": {"enabled": False, "host": "127.0.0.1", "port": 0},
        "logging": {"level": "INFO"},
    }
    _merge(cfg, overrides or {})
    path.write_text(yaml.safe_dump(cfg, default_flow_style=False), encoding="utf-8")
    return path


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def proc_sample(pid: int) -> Optional[Tuple[int, int]]:
    """(VmRSS in KiB, number of open file descriptors) of a live process, or None when it is gone (a killed,
    not yet reaped process has no VmRSS)."""
    try:
        with open("/proc/%d/status" % pid) as fh:
            rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), None)
        nfds = len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, ValueError, IndexError):
        return None
    if rss is None or nfds == 0:
        return None
    return rss, nfds


class _NotifySocket(object):
    """An AF_UNIX datagram socket standing in for systemd's notify socket; a thread records what arrives."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="vsn")     # short path: sun_path holds at most 107 bytes
        self.address = os.path.join(self._dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.last_ready = 0.0
        self.last_watchdog = 0.0
        self.watchdog_pings = 0
        self.statuses: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stress-notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self.lock:
                for line in data.decode("utf-8", "replace").split("\n"):
                    key, _, value = line.partition("=")
                    if key == "READY" and value == "1":
                        self.last_ready = now
                    elif key == "WATCHDOG" and value == "1":
                        self.last_watchdog = now
                        self.watchdog_pings += 1
                    elif key == "STATUS":
                        self.statuses.append(value)
                        del self.statuses[:-200]

    def reset(self) -> None:
        with self.lock:
            self.last_ready = 0.0
            self.last_watchdog = 0.0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             daemon: Optional["SupervisedDaemon"] = None, poll_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` passes (TimeoutError,
    with the daemon's log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s\n%s"
                               % (timeout, what, daemon.log_tail() if daemon is not None else ""))
        time.sleep(poll_s)


class SupervisedDaemon(object):
    """``vessel-seg run`` under an emulated systemd (module docstring).

    Args:
        config: configuration file; ``data_dir``: the daemon's data directory; ``log_path``: its output.
        watchdog_s: WatchdogSec (the daemon pings every half of it).
        env: extra environment (e.g. ``TMPDIR``, the ENOSPC test hook).
        sample_s: RSS/fd sampling period.
        command: the program to run (default ``python -m vessel_seg run --config CONFIG``).
    """

    def __init__(self, config: Path, data_dir: Path, log_path: Path, watchdog_s: float = 2.0,
                 env: Optional[Dict[str, str]] = None, sample_s: float = 0.5,
                 start_timeout_s: float = 90.0, command: Optional[List[str]] = None) -> None:
        self.config = Path(config)
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.watchdog_s = float(watchdog_s)
        self.extra_env = dict(env or {})
        self.sample_s = float(sample_s)
        self.start_timeout_s = float(start_timeout_s)
        self.command = list(command) if command else [sys.executable, "-m", "vessel_seg", "run", "--config",
                                                      str(self.config)]
        self.proc: Optional[subprocess.Popen] = None
        self.notify = _NotifySocket()
        self.pids: List[int] = []
        self.kills = 0               # SIGKILLs sent by the stress run (crash scenario)
        self.watchdog_restarts = 0   # SIGKILL + restart because the pings stopped
        self.unexpected_exits: List[str] = []
        self.samples: List[Tuple[float, int, int, int]] = []   # (t, pid, rss_kib, fds)
        self._sample_stop = threading.Event()
        self._sampler: Optional[threading.Thread] = None
        self._started_at = 0.0

    # ------------------------------------------------------------------ life cycle
    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "SupervisedDaemon":
        """Start the process and wait for READY=1 (raises ``DaemonDied`` when it exits or never gets ready)."""
        env = dict(os.environ)
        env.pop("WATCHDOG_PID", None)
        env.update(self.extra_env)
        env["NOTIFY_SOCKET"] = self.notify.address
        env["WATCHDOG_USEC"] = str(int(self.watchdog_s * 1e6))
        self.notify.reset()
        with open(str(self.log_path), "ab") as logf:
            logf.write(("\n----- stress: starting the daemon (%s)\n" % time.strftime("%H:%M:%S")).encode())
            logf.flush()
            self.proc = subprocess.Popen(self.command, cwd=str(self.config.parent), env=env, stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pids.append(self.proc.pid)
        self._started_at = time.monotonic()
        deadline = self._started_at + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonDied("the daemon exited with %s during start:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
            if self.notify.last_ready:
                self._start_sampler()
                return self
            time.sleep(0.02)
        raise DaemonDied("no READY=1 within %.0f s:\n%s" % (self.start_timeout_s, self.log_tail()))

    def kill9(self) -> None:
        """SIGKILL (a crash, a power cut of the process) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def crash_and_restart(self) -> None:
        """kill -9, then start again at once (what Restart=on-failure does after a crash)."""
        self.kills += 1
        self.kill9()
        self.start()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit status (SIGKILL after ``timeout``: returns -9)."""
        self._stop_sampler()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return -9

    def close(self) -> None:
        """Kill the process if still running and release the notify socket."""
        self._stop_sampler()
        if self.alive():
            self.kill9()
        self.notify.close()

    # ------------------------------------------------------------------ systemd emulation
    def watchdog_overdue(self) -> bool:
        """True when READY=1 came and no WATCHDOG=1 arrived for longer than WatchdogSec."""
        with self.notify.lock:
            ready, ping = self.notify.last_ready, self.notify.last_watchdog
        if not ready:
            return False
        return time.monotonic() - max(ready, ping) > self.watchdog_s

    def supervise(self, before_restart: Optional[Callable[[str], None]] = None) -> Optional[str]:
        """One systemd round: restart a dead process or one whose watchdog expired; returns what happened.

        ``before_restart(what)`` runs between the kill and the new start (e.g. to change the config file)."""
        if self.proc is None:
            return None
        what = None
        if self.proc.poll() is not None:
            what = "exited with %s" % self.proc.returncode
            self.unexpected_exits.append(what)
            log.warning("stress: daemon %s; restarting", what)
        elif self.watchdog_overdue():
            what = "watchdog"
            self.watchdog_restarts += 1
            log.warning("stress: no WATCHDOG=1 for > %.1f s: kill -9 and restart (as systemd would)",
                        self.watchdog_s)
            self.kill9()
        if what is None:
            return None
        if before_restart is not None:
            before_restart(what)
        self.start()
        return what

    # ------------------------------------------------------------------ observation
    def _start_sampler(self) -> None:
        if self._sampler is not None and self._sampler.is_alive():
            return
        self._sample_stop.clear()
        self._sampler = threading.Thread(target=self._sample_loop, name="stress-sampler", daemon=True)
        self._sampler.start()

    def _stop_sampler(self) -> None:
        self._sample_stop.set()
        if self._sampler is not None:
            self._sampler.join(2.0)
            self._sampler = None

    def _sample_loop(self) -> None:
        while not self._sample_stop.is_set():
            self.sample_now()
            self._sample_stop.wait(self.sample_s)

    def sample_now(self) -> Optional[Tuple[int, int]]:
        """Record and return (rss_kib, fds) of the current process."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None
        got = proc_sample(proc.pid)
        if got is not None:
            self.samples.append((time.monotonic(), proc.pid, got[0], got[1]))
        return got

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])
