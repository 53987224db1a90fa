"""Morphometry in the product: result.json ``morphometry``, the ``measure`` stage time, the CSV (store and
``vessel-seg measurements``), dataset pairing for STARE / HRF and ``vessel-seg morphometry-check``."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipefakes import FakeDevice, fundus_like, make_stages, write_image

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.cli.main import main
from vessel_seg.pipeline.cli.morphometry_check import pearson, run_check, summarise
from vessel_seg.pipeline.engine import morphometry as M
from vessel_seg.pipeline.engine import stages as stages_mod
from vessel_seg.pipeline.engine.stages import SequentialRunner, WorkItem
from vessel_seg.pipeline.shared.datasets import find_samples
from vessel_seg.pipeline.store.measurements import CSV_COLUMNS, MEASUREMENT_NAMES, measurements_csv, rows
from vessel_seg.pipeline.store.results import ResultStore, write_result

MORPH_KEYS = {"version", "working_fov_diameter_px", "fov_diameter_px", "optic_disc", "density",
              "fractal_dimension", "tortuosity", "width", "length", "branch_points", "end_points"}
OLD_KEYS = {"id", "source", "sha256", "created", "original_size", "model_input_size", "model", "runtime",
            "precision", "threshold", "vessel_density_fov", "fov_fraction", "timings_ms", "files"}


def run_one(tmp_path: Path, rgb: np.ndarray) -> dict:
    image = write_image(tmp_path / "eye.png", rgb)
    item = WorkItem.for_file(image)
    SequentialRunner(make_stages(tmp_path / "results"), FakeDevice()).process(item)
    return json.loads((tmp_path / "results" / item.id / "result.json").read_text())


# ------------------------------------------------------------------------------------------- result.json
def test_every_result_carries_its_morphometry_and_the_measure_time(tmp_path):
    meta = run_one(tmp_path, fundus_like(400, 380))
    assert OLD_KEYS <= set(meta)                            # nothing that was there is gone
    assert MORPH_KEYS <= set(meta["morphometry"])
    assert meta["timings_ms"]["measure"] > 0
    d = meta["morphometry"]["density"]
    assert 0 < d["fov"] < 1 and set(d) >= {"zone_b", "zone_c", "zone_reason"}
    assert d["fov"] == pytest.approx(meta["vessel_density_fov"], abs=0.02)   # same mask, working grid
    assert len(meta["morphometry"]["width"]["histogram"]["fraction"]) == M.WIDTH_BINS


def test_a_failing_measurement_is_recorded_and_the_result_still_completes(tmp_path, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(stages_mod, "measure_probability", broken)
    meta = run_one(tmp_path, fundus_like(200, 180))
    assert meta["morphometry"] == {"version": M.VERSION, "error": "RuntimeError: boom"}
    assert OLD_KEYS <= set(meta)


def test_measuring_the_probability_equals_measuring_its_mask():
    rgb, vessels, fov = make_fundus(700, 600, seed=4)
    prob = vessels.astype(np.float32) * 0.9
    assert M.measure_probability(prob, fov, 0.5, rgb) == M.measure(prob >= 0.5, fov, rgb)


def test_the_measurements_of_a_synthetic_fundus_are_plausible():
    rgb, vessels, fov = make_fundus(1200, 1000, seed=7)
    m = M.measure(vessels, fov, rgb)
    assert m["optic_disc"]["found"] and m["density"]["zone_b"] is not None
    assert 1.0 < m["fractal_dimension"]["skeleton"] < m["fractal_dimension"]["mask"] < 2.0
    assert 1.0 <= m["tortuosity"]["arc_chord"] < 1.5 and m["branch_points"] > 0 and m["end_points"] > 0
    assert m["width"]["mean_px"] == pytest.approx(m["width"]["mean_fovd"] * m["fov_diameter_px"], rel=0.01)


# ------------------------------------------------------------------------------------------- CSV
def _store_with_results(tmp_path: Path) -> ResultStore:
    store = ResultStore(tmp_path / "data")
    files = {"probability.bin": b"\0" * (512 * 512 * 4), "probability.png": b"p", "mask.png": b"m",
             "overlay.png": b"o", "thumb.jpg": b"t"}
    _rgb, vessels, fov = make_fundus(300, 300, seed=2)
    morph = M.measure(vessels, fov)
    base = {"source": "a.png", "created": "2026-01-02T03:04:05Z", "morphometry": morph}
    write_result(store.result_dir("a" * 16), files, dict(base, id="a" * 16))
    identity = {"patient_id": "P-17", "patient_name": "=HYPERLINK(\"x\")", "laterality": "R",
                "acquired": "2025-12-24T09:00:00"}      # as pipeline.engine.identity writes them
    write_result(store.result_dir("b" * 16), files, dict(base, id="b" * 16, source="b.png", identity=identity))
    return store


def test_the_csv_has_one_row_per_result_with_patient_eye_and_date(tmp_path):
    store = _store_with_results(tmp_path)
    table = list(csv.DictReader(io.StringIO(measurements_csv(store))))
    assert [r["id"] for r in sorted(table, key=lambda r: r["id"])] == ["a" * 16, "b" * 16]
    assert list(table[0]) == list(CSV_COLUMNS)
    by_id = {r["id"]: r for r in table}
    assert by_id["a" * 16]["patient_id"] == "" and by_id["a" * 16]["laterality"] == ""
    b = by_id["b" * 16]
    assert b["patient_id"] == "P-17" and b["laterality"] == "R" and b["acquisition_datetime"] == "2025-12-24T09:00:00"
    assert b["patient_name"] == "'=HYPERLINK(\"x\")"          # not a formula in a spreadsheet
    assert float(b["density_fov"]) > 0 and b["optic_disc_found"] in ("true", "false")
    assert set(MEASUREMENT_NAMES) <= set(b)
    assert rows(store)[0]["fd_mask"] is not None


def test_vessel_seg_measurements_writes_the_same_csv(tmp_path, capsys):
    store = _store_with_results(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["measurements", "--data-dir", str(store.data_dir), "--csv", str(out)]) == 0
    assert out.read_text() == measurements_csv(store)
    assert "2 results" in capsys.readouterr().out
    assert main(["measurements", "--data-dir", str(tmp_path / "nothing"), "--csv", "-"]) == 2


# ------------------------------------------------------------------------------------------- validation
def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_stare_and_hrf_files_pair_by_their_stems_and_drive_by_number(tmp_path):
    for name in ("images/im0001.png", "images/im0002.png", "1st_manual/im0001.ah.png", "1st_manual/im0002.ah.png",
                 "mask/im0001_mask.png", "mask/im0002_mask.png"):
        _touch(tmp_path / "STARE" / "test" / name)
    for stem in ("01_dr", "01_g", "01_h"):
        for name in ("images/%s.jpg", "1st_manual/%s_vessels.png", "mask/%s_mask.png"):
            _touch(tmp_path / "HRF" / "test" / (name % stem))
    for name in ("images/01_test.tif", "1st_manual/01_manual1.gif", "mask/01_test_mask.gif"):
        _touch(tmp_path / "DRIVE" / "test" / name)
    stare = find_samples(tmp_path / "STARE")
    assert [(s.label.name, s.fov.name) for s in stare] == [("im0001.ah.png", "im0001_mask.png"),
                                                           ("im0002.ah.png", "im0002_mask.png")]
    hrf = find_samples(tmp_path / "HRF")
    assert [(s.image.name, s.label.name, s.fov.name) for s in hrf] == [
        ("01_dr.jpg", "01_dr_vessels.png", "01_dr_mask.png"), ("01_g.jpg", "01_g_vessels.png", "01_g_mask.png"),
        ("01_h.jpg", "01_h_vessels.png", "01_h_mask.png")]
    drive = find_samples(tmp_path / "DRIVE")
    assert [(s.label.name, s.fov.name) for s in drive] == [("01_manual1.gif", "01_test_mask.gif")]


def test_pearson_and_the_summary_of_paired_measurements():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2], [1, 2]) is None and pearson([1, 1, 1], [1, 2, 3]) is None
    per_image = [{"ours": {"x": o}, "manual": {"x": m}} for o, m in ((1.1, 1.0), (2.1, 2.0), (3.1, 3.0), (None, 9))]
    s = summarise(per_image, ["x"])["x"]
    assert s["n"] == 3 and s["r"] == pytest.approx(1.0) and s["bias"] == pytest.approx(0.1)
    assert s["manual_mean"] == pytest.approx(2.0)


def test_morphometry_check_runs_the_product_path_on_a_labelled_dataset(tmp_path):
    root = tmp_path / "SYN"
    for sub in ("images", "1st_manual", "mask"):
        (root / "test" / sub).mkdir(parents=True)
    for i in range(3):
        rgb, vessels, fov = make_fundus(320, 300, seed=20 + i)
        cv2.imwrite(str(root / "test" / "images" / ("%02d_test.png" % i)), np.ascontiguousarray(rgb[..., ::-1]))
        cv2.imwrite(str(root / "test" / "1st_manual" / ("%02d_manual1.png" % i)), vessels.astype(np.uint8) * 255)
        cv2.imwrite(str(root / "test" / "mask" / ("%02d_test_mask.png" % i)), fov.astype(np.uint8) * 255)
    from vessel_seg.pipeline.cli.evaluate import default_bundle_dir

    res = run_check([root], default_bundle_dir(), precision="fp32")
    ds = res["datasets"][0]
    assert ds["images"] == 3 and set(ds["summary"]) == set(MEASUREMENT_NAMES)
    assert ds["summary"]["density_fov"]["n"] == 3
    assert all(r["ours"]["density_fov"] > 0 and r["manual"]["density_fov"] > 0 for r in ds["per_image"])


def test_morphometry_switched_off_leaves_it_out_of_the_result(tmp_path):
    image = write_image(tmp_path / "eye.png", fundus_like(200, 180))
    stages = make_stages(tmp_path / "results", morphometry=False)
    job = SequentialRunner(stages, FakeDevice()).process(WorkItem.for_file(image))
    meta = json.loads((tmp_path / "results" / job.item.id / "result.json").read_text())
    assert "morphometry" not in meta and "measure" not in job.timings_ms
    assert meta["vessel_density_fov"] >= 0.0                  # the segmentation itself is whole
