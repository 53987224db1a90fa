"""`vessel-seg bench` runs every measurement in one go and reports consistent medians and ratios."""
from __future__ import annotations

import json

import pytest
from pipefakes import tiny_bundle

import vessel_seg.camera.ingest  # noqa: E402,F401  (the bench runs the real daemon)
import vessel_seg.pipeline.store.journal  # noqa: E402,F401
from vessel_seg.pipeline.cli.main import main


def test_bench_json_report_has_every_measurement_and_same_run_ratios(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path / "b")
    code = main(["bench", "--json", "--count", "4", "--repeats", "2", "--modes", "npu", "--device-time-ms", "5",
                 "--idle-seconds", "0.5", "--model", str(bundle)])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    npu = rep["modes"]["npu"]
    assert npu["device"]["device_time_ms"] == 5.0 and npu["device"]["compute"] == "surrogate"
    for key in ("execute_only", "end_to_end", "sequential"):
        assert len(npu["runs"][key]) == 2 and all(v > 0 for v in npu["runs"][key])
        assert npu[key + "_ips"] == pytest.approx(sum(npu["runs"][key]) / 2, abs=2e-3)   # median of two
    assert npu["e2e_vs_execute_only"] == pytest.approx(npu["end_to_end_ips"] / npu["execute_only_ips"], abs=2e-3)
    assert npu["double_buffered_vs_sequential"] == pytest.approx(npu["end_to_end_ips"] / npu["sequential_ips"],
                                                                 abs=2e-3)
    assert rep["peak_rss_mb"] > 10 and 0 <= rep["idle_cpu_fraction"] < 1
    assert set(rep["targets"]) == {"idle_cpu_about_zero", "e2e_ge_0.90x_execute_only",
                                   "double_buffered_ge_1.4x_sequential"}


def test_bench_rejects_unknown_modes(capsys):
    assert main(["bench", "--modes", "gpu", "--count", "3"]) == 1
    assert "unknown mode" in capsys.readouterr().err
