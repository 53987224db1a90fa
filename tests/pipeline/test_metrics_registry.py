"""The metrics registry behind /metrics and the status page."""
from __future__ import annotations

from vessel_seg.pipeline.engine.telemetry import Metrics


def test_counters_gauges_and_histograms_in_the_web_snapshot_format():
    m = Metrics(buckets_ms=(1, 10, 100))
    m.declare("processed", "failed")
    m.inc("processed")
    m.inc("processed")
    m.gauge("queue_depth", lambda: 3)
    for ms in (0.5, 5, 5, 50, 500):
        m.observe("decode", ms)
    snap = m.snapshot()
    assert snap["counters"] == {"processed": 2.0, "failed": 0.0}
    assert snap["gauges"] == {"queue_depth": 3.0}
    h = snap["histograms"]["decode"]
    assert h["buckets"] == [1.0, 10.0, 100.0]
    assert h["counts"] == [1, 2, 1]          # per bucket, not cumulative; 500 only in count
    assert h["count"] == 5 and h["sum"] == 560.5


def test_broken_gauge_callback_does_not_break_the_snapshot():
    m = Metrics()
    m.gauge("bad", lambda: 1 / 0)
    assert m.snapshot()["gauges"]["bad"] != m.snapshot()["gauges"]["bad"]  # NaN


def test_median_per_stage_over_recent_samples():
    m = Metrics(window=3)
    for ms in (100, 1, 2, 3):
        m.observe("execute", ms)
    assert m.median_ms() == {"execute": 2.0}


def test_rate_per_minute_counts_events_in_the_window():
    m = Metrics()
    for t in (0.0, 10.0, 20.0, 290.0):
        m.event("completed", when=t)
    assert m.rate_per_minute("completed", window_s=300.0, now=300.0) == 4 * 60.0 / 300.0
    assert m.count_since("completed", 100.0, now=300.0) == 1
    assert m.rate_per_minute("completed", window_s=300.0, now=300.0, since=240.0) == 1.0
