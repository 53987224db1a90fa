"""`vessel-seg bench` runs every measurement in one go and reports consistent medians and ratios, per frame size."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pipefakes import tiny_bundle

import vessel_seg.camera.ingest  # noqa: E402,F401  (the bench runs the real daemon)
import vessel_seg.pipeline.store.journal  # noqa: E402,F401
from vessel_seg.pipeline.cli.bench import _percentile, _synthetic_images, parse_sizes
from vessel_seg.pipeline.cli.main import main
from vessel_seg.pipeline.shared.preprocess import PreprocessParams


def test_bench_json_report_has_every_measurement_and_same_run_ratios(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path / "b")
    code = main(["bench", "--json", "--count", "4", "--repeats", "2", "--modes", "npu", "--device-time-ms", "5",
                 "--idle-seconds", "0.5", "--model", str(bundle), "--sizes", "565x584,800x600",
                 "--latency-count", "3"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert [e["size"] for e in rep["sizes"]] == ["565x584", "800x600"]
    for entry in rep["sizes"]:
        npu = entry["modes"]["npu"]
        assert npu["device"]["device_time_ms"] == 5.0 and npu["device"]["compute"] == "surrogate"
        assert npu["executes_per_image"] == 1               # the tiny bundle has no high-resolution size
        for key in ("execute_only", "end_to_end", "sequential"):
            assert len(npu["runs"][key]) == 2 and all(v > 0 for v in npu["runs"][key])
            assert npu[key + "_ips"] == pytest.approx(sum(npu["runs"][key]) / 2, abs=2e-3)   # median of two
        assert npu["e2e_vs_execute_only"] == pytest.approx(npu["end_to_end_ips"] / npu["execute_only_ips"], abs=2e-3)
        assert npu["double_buffered_vs_sequential"] == pytest.approx(npu["end_to_end_ips"] / npu["sequential_ips"],
                                                                     abs=2e-3)
        # per size: host stages, CPU, latency of frames dropped one at a time, peak RSS, bytes per result
        assert {"decode", "preprocess", "resize", "write_bin", "render"} <= set(entry["stages_ms"])
        assert entry["host_cpu_ms_per_image"] > 0 and entry["peak_rss_mb"] > 10
        lat = entry["latency_s"]
        assert lat["count"] == 3 and 0 < lat["median"] <= lat["p95"] < 60
        assert 1e6 < entry["bytes_per_result"] < 1.2e6      # probability.bin (1 MiB) + thumb, fov.png, result.json
    assert rep["modes"] == rep["sizes"][0]["modes"]
    assert 0 <= rep["idle_cpu_fraction"] < 1
    assert set(rep["targets"]) == {"idle_cpu_about_zero", "565x584 e2e_ge_0.95x_execute_only",
                                   "565x584 double_buffered_ge_1.4x_sequential", "565x584 host_cpu_le_30_ms",
                                   "800x600 e2e_ge_0.95x_execute_only", "800x600 double_buffered_ge_1.4x_sequential"}


def test_camera_frames_are_jpegs_of_the_size_all_distinct_with_a_black_surround():
    frames = _synthetic_images(6, (640, 480))
    assert len({data for _, data in frames}) == 6
    for name, data in frames:
        assert name.endswith(".jpg") and data[:2] == b"\xff\xd8"
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (480, 640, 3)
        assert img[:, :8].max() < 12 and img[:40, :40].max() < 12      # the canvas corner stays black


def test_the_camera_preset_covers_the_drive_and_camera_sizes():
    assert parse_sizes("camera") == [(565, 584), (2592, 1944), (3504, 2336)]
    assert parse_sizes("640x480, 800x600") == [(640, 480), (800, 600)]
    with pytest.raises(ValueError):
        parse_sizes("big")


def test_p95_interpolates_between_ranks():
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert _percentile([], 0.95) == 0.0


def test_bench_rejects_unknown_modes(capsys):
    assert main(["bench", "--modes", "gpu", "--count", "3"]) == 1
    assert "unknown mode" in capsys.readouterr().err


def test_bench_counts_every_tile_of_a_high_resolution_frame_as_an_execute(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path / "b", params=PreprocessParams(hires_size=1024, hires_from_px=300))
    code = main(["bench", "--json", "--count", "3", "--repeats", "1", "--modes", "npu", "--device-time-ms", "20",
                 "--idle-seconds", "0.2", "--model", str(bundle), "--sizes", "565x584", "--latency-count", "1"])
    assert code == 0
    npu = json.loads(capsys.readouterr().out)["sizes"][0]["modes"]["npu"]
    assert npu["executes_per_image"] == 4
    assert npu["execute_only_ips"] < 1000.0 / (4 * 20.0) * 1.05      # four emulated executes per image
