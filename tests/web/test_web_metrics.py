"""/metrics: Prometheus text format 0.0.4 from daemon.metrics.snapshot() and daemon.status()."""
from __future__ import annotations

import re

import pytest

from vessel_seg.web.metrics import format_value, render_prometheus

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')


def parse(text):
    """{(name, labels-string): value} and the TYPE declarations; asserts every line is well-formed."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, "duplicate TYPE for " + name
            types[name] = kind
        elif line.startswith("# HELP ") or not line:
            continue
        else:
            m = SAMPLE_RE.match(line)
            assert m, "malformed sample line: " + line
            samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types


def test_metrics_are_prometheus_text_0_0_4(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert resp.get_data(as_text=True).endswith("\n")
    parse(resp.get_data(as_text=True))


def test_counters_of_processed_and_failed_come_from_the_metrics_snapshot(client, daemon):
    daemon.metrics.data["counters"] = {"processed": 12, "failed": 3, "retries": 1}
    samples, types = parse(client.get("/metrics").get_data(as_text=True))
    assert samples[("vessel_seg_processed_total", "")] == 12
    assert samples[("vessel_seg_failed_total", "")] == 3
    assert samples[("vessel_seg_retries_total", "")] == 1
    assert types["vessel_seg_processed_total"] == "counter"


def test_per_stage_latency_is_a_cumulative_histogram_in_seconds(client, daemon):
    samples, types = parse(client.get("/metrics").get_data(as_text=True))
    name = "vessel_seg_stage_latency_seconds"
    assert types[name] == "histogram"
    ex = lambda le: samples[(name + "_bucket", '{stage="execute",le="%s"}' % le)]  # noqa: E731
    assert [ex("0.01"), ex("0.05"), ex("0.1"), ex("+Inf")] == [1, 3, 3, 4]
    assert samples[(name + "_sum", '{stage="execute"}')] == pytest.approx(0.095)
    assert samples[(name + "_count", '{stage="execute"}')] == 4
    assert samples[(name + "_count", '{stage="decode"}')] == 3


def test_queue_depth_and_device_state_gauges_come_from_status(client, daemon):
    daemon.state.update(queued=7, device_state="recovering")
    samples, types = parse(client.get("/metrics").get_data(as_text=True))
    assert samples[("vessel_seg_queue_depth", "")] == 7
    assert types["vessel_seg_queue_depth"] == "gauge"
    assert samples[("vessel_seg_device_state", '{state="recovering"}')] == 1
    assert samples[("vessel_seg_device_state", '{state="ready"}')] == 0
    assert types["vessel_seg_device_state"] == "gauge"


def test_without_a_metrics_object_counters_fall_back_to_status(client, daemon):
    daemon.metrics = None
    daemon.state.update(processed=5, failed=1)
    samples, types = parse(client.get("/metrics").get_data(as_text=True))
    assert samples[("vessel_seg_processed_total", "")] == 5
    assert samples[("vessel_seg_failed_total", "")] == 1
    assert "vessel_seg_stage_latency_seconds" not in types


def test_a_broken_snapshot_or_malformed_histogram_does_not_break_the_endpoint(client, daemon):
    daemon.metrics.data["histograms"]["bad"] = {"buckets": [1, 2], "counts": [1]}
    daemon.metrics.data["gauges"] = {"temp c": 3, "ok_gauge": float("nan")}
    samples, _ = parse(client.get("/metrics").get_data(as_text=True))
    assert not any('stage="bad"' in labels for _, labels in samples)
    assert ("vessel_seg_ok_gauge", "") in samples
    daemon.metrics.snapshot = lambda: 1 / 0
    assert client.get("/metrics").status_code == 200


def test_metrics_render_from_the_pipeline_telemetry_registry():
    import vessel_seg.pipeline.engine.telemetry as telemetry
    registry = telemetry.Metrics()
    registry.inc("processed", 2)
    registry.observe("execute", 30.0)
    registry.observe("execute", 7000.0)
    registry.gauge("queue_depth", lambda: 4)

    class Daemon(object):
        metrics = registry

    samples, _ = parse(render_prometheus(Daemon(), {"device_state": "ready"}))
    assert samples[("vessel_seg_processed_total", "")] == 2
    assert samples[("vessel_seg_stage_latency_seconds_count", '{stage="execute"}')] == 2
    assert samples[("vessel_seg_stage_latency_seconds_bucket", '{stage="execute",le="+Inf"}')] == 2
    assert samples[("vessel_seg_stage_latency_seconds_bucket", '{stage="execute",le="0.05"}')] == 1
    assert samples[("vessel_seg_queue_depth", "")] == 4


@pytest.mark.parametrize("value,text", [(1, "1"), (0.25, "0.25"), (float("inf"), "+Inf"), (float("nan"), "NaN"),
                                        (1e-05, "1e-05"), (3.0, "3")])
def test_values_are_formatted_the_prometheus_way(value, text):
    assert format_value(value) == text


def test_label_values_are_escaped():
    class Daemon(object):
        class metrics(object):
            @staticmethod
            def snapshot():
                return {"histograms": {'we"ird\\stage': {"buckets": [1], "counts": [1], "sum": 1, "count": 1}}}

    text = render_prometheus(Daemon(), {})
    assert 'stage="we\\"ird\\\\stage"' in text
