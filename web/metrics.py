"""Prometheus text exposition (format 0.0.4) of the daemon's metrics.

Interface the daemon must provide (``daemon.metrics``)::

    daemon.metrics.snapshot() -> {
        "counters":   {"processed": 12, "failed": 1, "retries": 0, ...},   # monotonically increasing ints
        "gauges":     {"queue_depth": 3, ...},                             # current numeric values
        "histograms": {                                                    # per-stage latency, MILLISECONDS
            "decode":  {"buckets": [1, 5, 10, 50, 100, 500, 1000],         # ascending upper bounds (ms)
                        "counts":  [0, 3, 5, 2, 0, 0, 0],                  # per bucket, NOT cumulative
                        "sum": 123.4,                                      # sum of observations (ms)
                        "count": 10},                                      # all observations (incl. > last bound)
            "execute": {...}, ...
        },
    }

``counts[i]`` is the number of observations ``> buckets[i-1]`` and ``<= buckets[i]``; observations above the
last bound are only in ``count``. The renderer converts to seconds and cumulative ``_bucket{le=..}`` series.
Every key is optional. ``processed``/``failed`` counters, the queue depth and the device state fall back to
``daemon.status()`` when the snapshot lacks them (or when the daemon has no ``metrics`` at all), so /metrics
always carries them. Names must match ``[a-zA-Z_][a-zA-Z0-9_]*`` (others are skipped with a warning).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any, Dict, Mapping, Optional

log = logging.getLogger(__name__)

PREFIX = "vessel_seg_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEVICE_STATES = ("starting", "ready", "recovering", "failed")
PIPELINE_STATES = ("starting", "running", "paused", "draining", "stopped")
HEALTH_STATES = ("ok", "degraded", "failed")

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def format_value(value: float) -> str:
    """Format a sample value the way Prometheus expects (+Inf, -Inf, NaN, shortest float)."""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Optional[Mapping[str, str]]) -> str:
    if not labels:
        return ""
    inner = ",".join('{}="{}"'.format(k, _escape_label(v)) for k, v in labels.items())
    return "{" + inner + "}"


class _Writer:
    """Accumulates metric families; each family gets one HELP and one TYPE line."""

    def __init__(self) -> None:
        self.lines = []  # type: List[str]

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append("# HELP {} {}".format(name, help_text.replace("\\", "\\\\").replace("\n", " ")))
        self.lines.append("# TYPE {} {}".format(name, kind))

    def sample(self, name: str, value: float, labels: Optional[Mapping[str, str]] = None) -> None:
        self.lines.append("{}{} {}".format(name, _labels(labels), format_value(value)))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _snapshot(daemon: Any) -> Dict[str, Any]:
    metrics = getattr(daemon, "metrics", None)
    if metrics is None or not hasattr(metrics, "snapshot"):
        return {}
    try:
        snap = metrics.snapshot()
    except Exception:  # the page must keep working even if metrics collection breaks
        log.exception("daemon.metrics.snapshot() failed")
        return {}
    return snap if isinstance(snap, dict) else {}


def _write_histograms(w: _Writer, histograms: Mapping[str, Any]) -> None:
    name = PREFIX + "stage_latency_seconds"
    valid = []
    for stage, h in sorted(histograms.items()):
        try:
            bounds = [float(b) for b in h["buckets"]]
            counts = [float(c) for c in h["counts"]]
            total = float(h["count"])
            total_sum = float(h["sum"])
        except (KeyError, TypeError, ValueError):
            log.warning("skipping malformed histogram for stage %r", stage)
            continue
        if len(bounds) != len(counts) or bounds != sorted(bounds):
            log.warning("skipping histogram for stage %r: buckets/counts mismatch", stage)
            continue
        valid.append((str(stage), bounds, counts, total, total_sum))
    if not valid:
        return
    w.family(name, "histogram", "Per-stage processing latency in seconds.")
    for stage, bounds, counts, total, total_sum in valid:
        cumulative = 0.0
        for bound, count in zip(bounds, counts):
            cumulative += count
            w.sample(name + "_bucket", cumulative, {"stage": stage, "le": format_value(bound / 1000.0)})
        w.sample(name + "_bucket", max(total, cumulative), {"stage": stage, "le": "+Inf"})
        w.sample(name + "_sum", total_sum / 1000.0, {"stage": stage})
        w.sample(name + "_count", max(total, cumulative), {"stage": stage})


def _write_stateset(w: _Writer, name: str, help_text: str, states: tuple, current: Any) -> None:
    w.family(name, "gauge", help_text)
    known = list(states)
    if current is not None and str(current) not in known:
        known.append(str(current))
    for state in known:
        w.sample(name, 1 if str(current) == state else 0, {"state": state})


def render_prometheus(daemon: Any, status: Optional[Mapping[str, Any]]) -> str:
    """Render counters, per-stage latency histograms and gauges as Prometheus text format 0.0.4."""
    status = status or {}
    snap = _snapshot(daemon)
    counters = dict(snap.get("counters") or {})
    gauges = dict(snap.get("gauges") or {})
    histograms = snap.get("histograms") or {}

    for key in ("processed", "failed"):
        if _number(counters.get(key)) is None and _number(status.get(key)) is not None:
            counters[key] = status[key]
    if _number(gauges.get("queue_depth")) is None and _number(status.get("queued")) is not None:
        gauges["queue_depth"] = status["queued"]

    w = _Writer()
    helps = {"processed": "Images processed successfully.", "failed": "Images that failed or were quarantined."}
    for key in sorted(counters):
        value = _number(counters[key])
        if value is None or not _NAME_RE.match(key):
            log.warning("skipping counter %r", key)
            continue
        name = PREFIX + (key if key.endswith("_total") else key + "_total")
        w.family(name, "counter", helps.get(key, "Counter {}.".format(key)))
        w.sample(name, value)

    if isinstance(histograms, Mapping):
        _write_histograms(w, histograms)

    for key in sorted(gauges):
        value = _number(gauges[key])
        if value is None or not _NAME_RE.match(key):
            log.warning("skipping gauge %r", key)
            continue
        help_text = "Images waiting to be processed." if key == "queue_depth" else "Gauge {}.".format(key)
        w.family(PREFIX + key, "gauge", help_text)
        w.sample(PREFIX + key, value)

    _write_stateset(w, PREFIX + "device_state", "Device state (1 for the current state).",
                    DEVICE_STATES, status.get("device_state"))
    _write_stateset(w, PREFIX + "pipeline_state", "Pipeline state (1 for the current state).",
                    PIPELINE_STATES, status.get("pipeline_state"))
    _write_stateset(w, PREFIX + "health", "Overall health (1 for the current state).",
                    HEALTH_STATES, status.get("health"))
    return w.text()
