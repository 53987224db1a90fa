"""The web against the real appliance Daemon object (constructed, not started: no device, no journal).

Checks the contract of docs/ARCHITECTURE.md from the web's side with the daemon's own status(), metrics,
results and submit_upload — the browser test covers the started daemon end to end.
"""
from __future__ import annotations

import io

import pytest
from web_fakes import image_bytes

import vessel_seg.pipeline.appliance.config as config_module  # noqa: E402
import vessel_seg.pipeline.appliance.daemon as daemon_module  # noqa: E402
from vessel_seg.web import create_app


@pytest.fixture
def real(tmp_path):
    cfg = config_module.default_config()
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["device"]["runtime"] = "sim"
    daemon = daemon_module.Daemon(cfg, systemd=False)
    daemon.paths.create(archive=False)
    return daemon, create_app(daemon, dict(cfg["web"])).test_client()


def test_status_of_the_real_daemon_meets_the_api_contract(real):
    _, client = real
    body = client.get("/api/status").get_json()
    for key in ("processed", "failed", "queued"):
        assert isinstance(body[key], int)
    for key in ("runtime", "runtime_info", "model", "health", "health_reason", "device_state", "throughput_ipm",
                "stage_latency_ms", "last_hour", "pipeline_state"):
        assert key in body, key
    assert "data_dir" not in body          # no filesystem paths on the wire


def test_a_daemon_that_has_not_started_is_not_healthy(real):
    _, client = real
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["reason"] == "starting"


def test_metrics_of_the_real_daemon_render_as_prometheus_text(real):
    daemon, client = real
    daemon.metrics.observe("execute", 12.0)
    text = client.get("/metrics").get_data(as_text=True)
    assert "vessel_seg_processed_total 0" in text
    assert 'vessel_seg_stage_latency_seconds_count{stage="execute"} 1' in text
    assert 'vessel_seg_device_state{state="starting"} 1' in text


def test_an_upload_lands_in_the_real_capture_folder_and_reports_queued(real):
    daemon, client = real
    data = image_bytes("PNG")
    resp = client.post("/api/upload", data={"image": (io.BytesIO(data), "../x/eye.png")},
                       headers={"Origin": "http://localhost"}, content_type="multipart/form-data")
    assert resp.status_code == 202
    rid = resp.get_json()["id"]
    stored = [p for p in daemon.paths.capture.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in stored] == ["eye.png"] and stored[0].read_bytes() == data
    assert client.get("/api/results/" + rid).get_json()["state"] == "queued"
