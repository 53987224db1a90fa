"""A high-resolution working size for large fields of view: the bundle names it (``hires_size`` from
``hires_from_px`` original pixels), the preprocessed image is that size, it runs as tiles of the model input (one
execute each, through the double-buffered scheduler too), the outputs are blended back seamlessly, and the result
keeps probability.bin's 512x512 format while its images come from the working-size map."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pipefakes import FakeDevice, fundus_like, make_stages, write_image
from test_scheduler_pipeline import Recorder

from vessel_seg.pipeline.engine.binfile import read_probability_bin
from vessel_seg.pipeline.engine.fullsize import FullSizeFiles
from vessel_seg.pipeline.engine.scheduler import Scheduler
from vessel_seg.pipeline.engine.stages import SequentialRunner, WorkItem
from vessel_seg.pipeline.shared.preprocess import PreprocessParams, preprocess
from vessel_seg.pipeline.shared.tiling import TileLayout, tile_starts, working_size
from vessel_seg.pipeline.store.results import is_complete

HIRES = PreprocessParams(hires_size=1024, hires_from_px=300)


# ------------------------------------------------------------------------------------------ layout
def test_tiles_cover_the_working_size_with_the_fewest_executes():
    assert tile_starts(512, 512) == [0]
    assert tile_starts(1024, 512) == [0, 512]                 # 2 x 2 tiles, edge to edge
    assert tile_starts(960, 512) == [0, 448]                  # overlapping by 64
    assert tile_starts(1000, 512, min_overlap=64) == [0, 244, 488]
    assert TileLayout(1024, 512).count == 4 and TileLayout(512, 512).count == 1
    with pytest.raises(ValueError):
        tile_starts(400, 512)


@pytest.mark.parametrize("work,overlap", [(1024, 0), (960, 0), (1100, 100)])
def test_stitching_the_tiles_of_a_map_gives_the_map_back(work, overlap):
    layout = TileLayout(work, 512, min_overlap=overlap)
    truth = np.random.default_rng(1).random((work, work), dtype=np.float32)
    assert np.allclose(layout.stitch(layout.split(truth)), truth, atol=1e-6)


def test_overlapping_tiles_blend_without_a_seam():
    layout = TileLayout(960, 512)                             # tiles at 0 and 448: 64 pixels shared
    outs = [np.full((512, 512), v, np.float32) for v in (0.0, 1.0, 0.0, 1.0)]   # left tiles 0, right tiles 1
    row = layout.stitch(outs)[300]
    assert row[:448].max() == 0.0 and row[512:].min() == 1.0
    ramp = row[448:512]
    assert np.all(np.diff(ramp) > 0)                          # a linear ramp across the overlap, no step
    assert ramp[0] < 0.02 and ramp[-1] > 0.98


# ------------------------------------------------------------------------------------------ choice
def test_the_working_size_is_chosen_on_the_fovs_size_in_original_pixels():
    assert working_size(512, 1024, 1200, 1199) == 512
    assert working_size(512, 1024, 1200, 1200) == 1024
    assert working_size(512, 0, 0, 5000) == 512               # a bundle without hires_size: never
    big = fundus_like(400, 380)
    assert preprocess(big, HIRES).model_rgb.shape == (1024, 1024, 3)
    assert preprocess(big, HIRES).geometry.size == 1024
    assert preprocess(fundus_like(200, 180), HIRES).model_rgb.shape == (512, 512, 3)
    # a reduced decode: 200 decoded pixels stand for 400 original ones
    assert preprocess(fundus_like(200, 180), HIRES, scale=2).geometry.size == 1024


def test_bundle_parameters_round_trip_and_old_bundles_read_as_before():
    assert PreprocessParams.from_mapping(HIRES.to_dict()) == HIRES
    assert "hires_size" not in PreprocessParams().to_dict()


# ------------------------------------------------------------------------------------------ result
def _tiled_result(tmp_path, mode="on_request"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    image = write_image(tmp_path / "eye.png", fundus_like(400, 380))
    stages = make_stages(tmp_path / "results", params=HIRES, full_size_images=mode)
    item = WorkItem.for_file(image)
    dev = FakeDevice()
    job = SequentialRunner(stages, dev).process(item)
    return image, stages, job, dev, tmp_path / "results" / item.id


def test_a_large_fov_runs_as_four_executes_blended_into_one_map(tmp_path):
    _image, _stages, job, dev, _out = _tiled_result(tmp_path)
    assert len(job.model_inputs) == 4 and dev.executes == 4
    assert all(x.shape == (768, 512) for x in job.model_inputs)
    # the fake network answers 1 - Y per tile: the blended map is 1 - Y of the whole working image
    y = cv2.cvtColor(job.pre.model_rgb, cv2.COLOR_RGB2YUV)[:, :, 0].astype(np.float32) / 255.0
    assert job.prob512.shape == (1024, 1024)
    assert np.abs(job.prob512 - (1.0 - y)).max() < 2.0 / 255.0


def test_a_tiled_result_keeps_the_bin_format_and_its_images_come_from_the_working_size_map(tmp_path):
    image, _stages, job, _dev, out = _tiled_result(tmp_path)
    assert is_complete(out)
    meta = json.loads((out / "result.json").read_text())
    assert meta["model_input_size"] == [512, 512] and meta["working_size"] == [1024, 1024]
    assert meta["tiles"]["count"] == 4 and meta["geometry"]["size"] == 1024
    assert read_probability_bin(out / "probability.bin").size == 512 * 512      # the SaveFilePostProcess format
    hires = cv2.imread(str(out / "probability_hires.png"), cv2.IMREAD_GRAYSCALE)
    assert hires.shape == (1024, 1024)
    assert np.abs(hires / 255.0 - job.prob512).max() <= 0.5 / 255.0 + 1e-6
    # made on request == rendered eagerly, byte for byte
    _i2, _s2, _j2, _d2, eager = _tiled_result(tmp_path / "eager", mode="eager")
    for name in ("probability.png", "mask.png", "overlay.png"):
        made = FullSizeFiles(lambda meta: image)(out, name, meta)
        assert made is not None and made.read_bytes() == (eager / name).read_bytes(), name


class FailsOnce(FakeDevice):
    """A FakeDevice whose ``fail_at``-th submit (1-based) raises once."""

    def __init__(self, fail_at: int, **kw) -> None:
        super().__init__(**kw)
        self.fail_at, self.submits = fail_at, 0

    def submit(self, slot, array):
        self.submits += 1
        if self.submits == self.fail_at:
            self.fail_next = 1
        return super().submit(slot, array)


@pytest.mark.parametrize("fail_at", [2, 6, 7])      # a first job's second tile; later jobs' middle tiles
def test_the_scheduler_runs_every_tile_and_redoes_a_job_whose_tile_failed(tmp_path, fail_at):
    items = []
    for i in range(3):
        p = write_image(tmp_path / ("big%d.png" % i), fundus_like(400, 380, seed=i))
        items.append(WorkItem.for_file(p))
    rec, dev = Recorder(), FailsOnce(fail_at, device_time_s=0.01)
    s = Scheduler(make_stages(tmp_path / "results", params=HIRES), dev, rec, pre_workers=2, post_workers=2,
                  queue_size=4, retry_interval_s=0.05)
    s.start()
    for it in items:
        assert s.submit(it)
    assert rec.wait_for(3)
    assert s.stop(5.0)
    assert dev.submits >= fail_at and s.metrics.value("device_errors") == 1
    assert sorted(rec.done) == sorted(i.id for i in items) and rec.rejected == []
    reference = make_stages(tmp_path / "ref", params=HIRES)
    for it in items:
        out = tmp_path / "results" / it.id
        assert is_complete(out)
        SequentialRunner(reference, FakeDevice()).process(it)
        got = read_probability_bin(out / "probability.bin")
        want = read_probability_bin(tmp_path / "ref" / it.id / "probability.bin")
        assert np.array_equal(got, want), it.source


def test_high_resolution_off_runs_every_frame_as_one_execute(tmp_path):
    image = write_image(tmp_path / "eye.png", fundus_like(400, 380))
    stages = make_stages(tmp_path / "results", params=HIRES, high_resolution=False)
    dev = FakeDevice()
    job = SequentialRunner(stages, dev).process(WorkItem.for_file(image))
    assert dev.executes == 1 and job.pre.geometry.size == 512
    assert not (tmp_path / "results" / job.item.id / "probability_hires.png").exists()


def test_a_tiled_result_is_binarised_at_the_bundles_working_size_threshold_unless_one_is_configured(tmp_path):
    params = PreprocessParams(hires_size=1024, hires_from_px=300, hires_threshold=0.8)
    big = write_image(tmp_path / "big.png", fundus_like(400, 380))
    small = write_image(tmp_path / "small.png", fundus_like(200, 180))
    stages = make_stages(tmp_path / "results", params=params)
    runner = SequentialRunner(stages, FakeDevice())
    for image, want in ((big, 0.8), (small, 0.5)):            # the fake bundle's own threshold is 0.5
        job = runner.process(WorkItem.for_file(image))
        assert stages.threshold_for(job) == want
        assert json.loads((tmp_path / "results" / job.item.id / "result.json").read_text())["threshold"] == want
    configured = make_stages(tmp_path / "c", params=params, threshold=0.3)
    job = SequentialRunner(configured, FakeDevice()).process(WorkItem.for_file(big))
    assert configured.threshold_for(job) == 0.3
