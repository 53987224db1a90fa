"""A small thread-safe metrics registry (``daemon.metrics``): counters, gauges, per-stage latency histograms.

``web`` renders it as Prometheus text from ``snapshot()`` (the interface documented in web/metrics.py)::

    {"counters": {"processed": 12, "failed": 1, ...},
     "gauges": {"queue_depth": 3, ...},
     "histograms": {"decode": {"buckets": [1, 5, ...] (ms, ascending), "counts": [per bucket, not cumulative],
                               "sum": ms, "count": n (observations above the last bound only here)}, ...}}

Besides the cumulative histograms it keeps short rolling windows for the status page: the median latency
per stage over the last samples and the completion rate over the last minutes.
"""
from __future__ import annotations

import bisect
import collections
import threading
import time
from typing import Callable, Deque, Dict, Optional, Sequence, Union

DEFAULT_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


class _Histogram(object):
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)   # first bound >= value
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1


class Metrics(object):
    """Counters, gauges (values or callables) and a per-stage latency histogram (milliseconds)."""

    def __init__(self, buckets_ms: Sequence[float] = DEFAULT_BUCKETS_MS, window: int = 256) -> None:
        self._lock = threading.Lock()
        self._counters: Dict[str, float] = collections.OrderedDict()
        self._gauges: Dict[str, Union[float, Callable[[], float]]] = collections.OrderedDict()
        self._buckets = tuple(buckets_ms)
        self._hists: Dict[str, _Histogram] = collections.OrderedDict()
        self._recent: Dict[str, Deque[float]] = {}
        self._window = window
        self._events: Dict[str, Deque[float]] = {}

    def inc(self, name: str, amount: float = 1.0) -> None:
        """Add to a counter (created at 0 on first use)."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0.0) + amount

    def declare(self, *names: str) -> None:
        """Make counters visible at 0 before their first increment."""
        with self._lock:
            for name in names:
                self._counters.setdefault(name, 0.0)

    def gauge(self, name: str, value: Union[float, Callable[[], float]]) -> None:
        """Set a gauge to a number or to a callable evaluated at read time."""
        with self._lock:
            self._gauges[name] = value

    def observe(self, stage: str, ms: float) -> None:
        """Record one stage latency in milliseconds."""
        with self._lock:
            hist = self._hists.get(stage)
            if hist is None:
                hist = self._hists[stage] = _Histogram(self._buckets)
            hist.observe(ms)
            recent = self._recent.get(stage)
            if recent is None:
                recent = self._recent[stage] = collections.deque(maxlen=self._window)
            recent.append(ms)

    def event(self, name: str, when: Optional[float] = None) -> None:
        """Record a timestamped event (e.g. "completed") for rate computations."""
        with self._lock:
            q = self._events.get(name)
            if q is None:
                q = self._events[name] = collections.deque(maxlen=100000)
            q.append(time.monotonic() if when is None else when)

    def value(self, name: str) -> float:
        """Current value of a counter (0 if never touched)."""
        with self._lock:
            return self._counters.get(name, 0.0)

    def count_since(self, name: str, window_s: float, now: Optional[float] = None) -> int:
        """Events of ``name`` in the last ``window_s`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.get(name)
            if not q:
                return 0
            return sum(1 for t in q if t >= now - window_s)

    def rate_per_minute(self, name: str, window_s: float = 300.0, now: Optional[float] = None,
                        since: Optional[float] = None) -> float:
        """Events per minute over the last ``window_s`` seconds (a shorter window if ``since`` is later)."""
        now = time.monotonic() if now is None else now
        span = window_s if since is None else min(window_s, max(now - since, 1.0))
        return self.count_since(name, span, now) * 60.0 / span

    def median_ms(self) -> Dict[str, float]:
        """Median of the recent latencies per stage, in milliseconds."""
        with self._lock:
            items = {k: sorted(v) for k, v in self._recent.items() if v}
        return {k: round(v[len(v) // 2], 3) for k, v in items.items()}

    def snapshot(self) -> Dict[str, object]:
        """Everything as plain data (see the module docstring)."""
        with self._lock:
            gauges = list(self._gauges.items())
            out = {
                "counters": dict(self._counters),
                "histograms": {stage: {"buckets": list(h.buckets), "counts": list(h.counts), "sum": h.sum,
                                       "count": h.count} for stage, h in self._hists.items()},
            }
        values: Dict[str, float] = {}
        for name, value in gauges:
            try:
                values[name] = float(value() if callable(value) else value)
            except Exception:  # a broken gauge callback must not break /metrics
                values[name] = float("nan")
        out["gauges"] = values
        return out
