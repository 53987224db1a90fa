"""The host stages end to end with a fake device: model input format, result folder contract, retry safety."""
from __future__ import annotations

import errno
import json

import cv2
import numpy as np
import pytest
from pipefakes import FakeDevice, fake_output, fundus_like, make_stages, write_image

from vessel_seg.pipeline.engine.binfile import PROB_NBYTES, read_probability_bin
from vessel_seg.pipeline.engine.decode import DecodeError
from vessel_seg.pipeline.engine.stages import SequentialRunner, WorkItem
from vessel_seg.pipeline.store import results as results_mod
from vessel_seg.pipeline.store.results import is_complete
from vessel_seg.vocabulary import RESULT_FILES, STAGE_NAMES

RESULT_KEYS = {"id", "source", "sha256", "created", "original_size", "model_input_size", "model", "runtime",
               "precision", "threshold", "vessel_density_fov", "fov_fraction", "timings_ms", "files"}


@pytest.fixture
def image(tmp_path):
    return write_image(tmp_path / "eye one.png", fundus_like(200, 180))


def test_nv12_bundles_get_nv12_and_others_nchw_float(tmp_path, image):
    job = make_stages(tmp_path, nv12=True).prepare(WorkItem.for_file(image))
    assert job.model_input.dtype == np.uint8 and job.model_input.shape == (768, 512)
    job = make_stages(tmp_path, nv12=False).prepare(WorkItem.for_file(image))
    assert job.model_input.dtype == np.float32 and job.model_input.shape == (1, 3, 512, 512)
    assert 0.0 <= job.model_input.min() and job.model_input.max() <= 1.0


def test_sequential_run_writes_the_complete_result_folder(tmp_path, image):
    stages = make_stages(tmp_path / "results")
    device = FakeDevice()
    item = WorkItem.for_file(image)
    job = SequentialRunner(stages, device).process(item)
    out = tmp_path / "results" / item.id
    assert is_complete(out)
    names = list(RESULT_FILES.values()) + ["input.jpg", "fov.png", "result.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    meta = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(meta)
    assert meta["source"] == "eye one.png" and meta["sha256"] == item.sha256 and meta["id"] == item.id
    assert meta["original_size"] == [200, 180] and meta["model_input_size"] == [512, 512]
    assert meta["model"] == {"name": "fake-net", "version": "0.0.1"} and meta["threshold"] == 0.5
    assert set(meta["timings_ms"]) == set(STAGE_NAMES) | {"total"}
    assert all(v >= 0 for v in meta["timings_ms"].values())
    assert meta["timings_ms"]["total"] >= meta["timings_ms"]["decode"] + meta["timings_ms"]["render"]
    # probability.bin is exactly the device output
    assert (out / "probability.bin").stat().st_size == PROB_NBYTES
    expected = fake_output(device.inputs[0]).reshape(512, 512)
    assert np.array_equal(read_probability_bin(out / "probability.bin"), expected)
    # images at the original size; mask binary; density agrees with the mask inside the FOV
    mask = cv2.imread(str(out / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (180, 200) and set(np.unique(mask)) <= {0, 255}
    assert cv2.imread(str(out / "probability.png"), cv2.IMREAD_UNCHANGED).shape == (180, 200)
    assert cv2.imread(str(out / "overlay.png")).shape == (180, 200, 3)
    fov = job.pre.fov_original
    assert abs(meta["vessel_density_fov"] - ((mask > 0) & fov).sum() / float(fov.sum())) < 1e-5


def test_threshold_setting_overrides_the_model_threshold(tmp_path, image):
    stages = make_stages(tmp_path, threshold=0.9)
    job = SequentialRunner(stages, FakeDevice()).process(WorkItem.for_file(image))
    assert json.loads(job.result_path.read_text())["threshold"] == 0.9


def test_stem_naming_for_one_shot_segment(tmp_path, image):
    stages = make_stages(tmp_path / "out")
    stages.name_by = "stem"
    SequentialRunner(stages, FakeDevice()).process(WorkItem.for_file(image))
    assert is_complete(tmp_path / "out" / "eye one")


def test_bad_input_raises_decode_error_before_the_device(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    device = FakeDevice()
    with pytest.raises(DecodeError):
        SequentialRunner(make_stages(tmp_path), device).process(WorkItem.for_file(bad))
    assert device.executes == 0


def test_finish_after_disk_full_leaves_no_result_json_then_completes(tmp_path, image, monkeypatch):
    stages = make_stages(tmp_path / "results")
    runner = SequentialRunner(stages, FakeDevice())
    item = WorkItem.for_file(image)
    job = stages.prepare(item)
    runner.execute(job)
    real = results_mod.atomic_write_bytes
    calls = {"n": 0}

    def flaky(path, data, *a, **k):
        calls["n"] += 1
        if path.name == "overlay.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, *a, **k)

    monkeypatch.setattr(results_mod, "atomic_write_bytes", flaky)
    with pytest.raises(OSError):
        stages.finish(job)
    out = tmp_path / "results" / item.id
    assert not (out / "result.json").exists() and not is_complete(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(results_mod, "atomic_write_bytes", real)
    stages.finish(job)
    assert is_complete(out)
