"""Health and status: what the status page, systemd's STATUS= line and the watchdog are told.

Reads the daemon's parts (journal, device, scheduler, metrics); changes nothing.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

from vessel_seg import __version__
from vessel_seg.vocabulary import CAPTURE_STATES, DONE, FAILED, PROCESSING, QUEUED, utc_iso

log = logging.getLogger(__name__)


class HealthMonitor(object):
    """Status and health of a running daemon (docs/ARCHITECTURE.md "Daemon state")."""

    def __init__(self, daemon: Any) -> None:
        self.d = daemon
        self._last_hour_cache = (0.0, {})  # type: Any

    # ------------------------------------------------------------------ the parts
    def device_state(self) -> str:
        """The device state as a string ("starting", "ready", "recovering", "failed")."""
        device = self.d.device
        if device is None:
            return "starting"
        return device.state.value

    def hang_seconds(self) -> float:
        """How long the current execute has been in flight (0 when none)."""
        busy = self.d.device.busy_since if self.d.device is not None else None
        if busy is None:
            return 0.0
        return max(0.0, time.monotonic() - float(busy))

    def dead_pipeline_threads(self) -> List[str]:
        """Names of scheduler threads (pre workers, device thread, post workers) that have died although
        the pipeline is running or paused (they only end while draining or stopped)."""
        sched = self.d.scheduler
        if sched is None or sched.state.value not in ("running", "paused"):
            return []
        return sched.dead_threads()

    # ------------------------------------------------------------------ verdicts
    def is_progressing(self) -> bool:
        """For the systemd watchdog: False when an execute hangs, the device failed or the pipeline died."""
        d = self.d
        if d.scheduler is None or d.device is None:
            return False
        if self.hang_seconds() > d.config["device"]["hang_timeout_s"]:
            return False
        if self.device_state() == "failed":
            return False
        if self.dead_pipeline_threads():
            return False
        return not (d.scheduler.state.value == "stopped" and not d.stopped)

    def health(self) -> Dict[str, str]:
        """{"health": ok|degraded|failed, "health_reason": text}."""
        d = self.d
        if d.scheduler is None or d.device is None:
            return {"health": "degraded", "health_reason": "starting"}
        hang = self.hang_seconds()
        if hang > d.config["device"]["hang_timeout_s"]:
            return {"health": "failed", "health_reason": "device execute in flight for %.0f s (hung)" % hang}
        dstate = self.device_state()
        if dstate == "failed":
            return {"health": "failed", "health_reason": "device failed: %s" % (d.device.last_error or "unknown")}
        pstate = d.scheduler.state.value
        if pstate == "stopped":
            return {"health": "failed", "health_reason": "pipeline stopped"}
        dead = self.dead_pipeline_threads()
        if dead:
            return {"health": "failed", "health_reason": "pipeline thread(s) died: %s" % ", ".join(dead)}
        if pstate == "paused":
            return {"health": "degraded", "health_reason": d.scheduler.paused_reason or "paused"}
        if pstate in ("draining", "starting"):
            return {"health": "degraded", "health_reason": "pipeline %s" % pstate}
        if dstate == "recovering":
            return {"health": "degraded", "health_reason": "device recovering: %s" % (d.device.last_error or "")}
        return {"health": "ok", "health_reason": ""}

    # ------------------------------------------------------------------ status
    def _journal_counts(self) -> Dict[str, int]:
        counts = {s: 0 for s in CAPTURE_STATES}
        if self.d.journal is not None:
            try:
                counts.update({str(k): int(v) for k, v in self.d.journal.counts().items()})
            except Exception:
                log.exception("journal.counts failed")
        return counts

    def last_hour(self) -> Dict[str, int]:
        """Items done and failed in the last hour (from the journal, cached for 5 s)."""
        now = time.monotonic()
        cached_at, cached = self._last_hour_cache
        if now - cached_at < 5.0 and cached:
            return dict(cached)
        counts = {DONE: 0, FAILED: 0}
        if self.d.journal is not None:
            try:
                got = self.d.journal.counts_since(utc_iso(time.time() - 3600))
                counts.update({str(k): int(v) for k, v in got.items()})
            except Exception:
                log.exception("journal.counts_since failed")
        self._last_hour_cache = (now, dict(counts))
        return counts

    def status(self) -> Dict[str, Any]:
        """The state handed to the web page (ARCHITECTURE.md "Daemon state")."""
        d = self.d
        counts = self._journal_counts()
        health = self.health()
        sched = d.scheduler
        started_mono: Optional[float] = d.started_mono
        return {
            "version": __version__,
            "processed": counts[DONE],
            "failed": counts[FAILED],
            "queued": counts[QUEUED] + counts[PROCESSING],
            "processing": counts[PROCESSING],
            "duplicates": int(d.metrics.value("duplicates")),
            "runtime": d.runtime,
            "runtime_info": dict(d.device.runtime_info or {}) if d.device is not None else {},
            "precision": d.precision,
            "model": {"name": getattr(d.bundle, "name", None), "version": getattr(d.bundle, "version", None)},
            "health": health["health"],
            "health_reason": health["health_reason"],
            "device_state": self.device_state(),
            "device_error": d.device.last_error if d.device is not None else None,
            "throughput_ipm": round(d.metrics.rate_per_minute("completed", 300.0, since=started_mono), 2),
            "stage_latency_ms": d.metrics.median_ms(),
            "last_hour": self.last_hour(),
            "pipeline_state": sched.state.value if sched is not None else "starting",
            "paused_reason": sched.paused_reason if sched is not None else "",
            "queue_depths": sched.depths() if sched is not None else {},
            "uptime_s": round(time.monotonic() - started_mono, 1) if started_mono else 0.0,
            "started": utc_iso(d.started_wall) if d.started_wall else None,
            "data_dir": str(d.paths.root),
        }

    def status_line(self) -> str:
        """One human line for systemd's STATUS=."""
        s = self.status()
        state = "ready" if s["pipeline_state"] == "running" else s["pipeline_state"]
        line = "%s: %d processed, %d failed, queue %d, device %s" % (
            state, s["processed"], s["failed"], s["queued"], s["device_state"])
        if s["paused_reason"]:
            line += " (%s)" % s["paused_reason"]
        if s.get("health") not in (None, "ok") and s.get("health_reason") and s["health_reason"] != s["paused_reason"]:
            line += "; %s: %s" % (s["health"], s["health_reason"])
        return line
