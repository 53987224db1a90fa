"""Original-size images on request: a finished result stores probability.bin, thumb.jpg, fov.png and
result.json; probability.png, mask.png, overlay.png and input.jpg are made when first asked for, kept, and are
the same bytes as an eager render. Camera-size JPEGs are decoded reduced (DCT scaling) for the model."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipefakes import FakeDevice, fundus_like, make_stages, write_image

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.engine.decode import decode_image
from vessel_seg.pipeline.engine.fullsize import FullSizeFiles
from vessel_seg.pipeline.engine.render import render_outputs
from vessel_seg.pipeline.engine.stages import SequentialRunner, WorkItem
from vessel_seg.pipeline.shared.preprocess import restore_to_original
from vessel_seg.pipeline.store.results import ResultStore, is_complete
from vessel_seg.vocabulary import DEFERRABLE_RESULT_FILES, RESULT_FILES

ON_REQUEST = "on_request"


def _jpeg(path: Path, width: int, height: int, fov_fraction: float = 0.92, seed: int = 3) -> Path:
    rgb = make_fundus(width, height, seed=seed, fov_fraction=fov_fraction)[0]
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def _run(tmp_path: Path, image: Path, mode: str, name: str):
    stages = make_stages(tmp_path / name, full_size_images=mode)
    item = WorkItem.for_file(image)
    job = SequentialRunner(stages, FakeDevice()).process(item)
    return job, tmp_path / name / item.id


def _store(folder: Path, image: Path) -> ResultStore:
    store = ResultStore(folder.parent.parent)
    store.results_dir = folder.parent
    store.producer = FullSizeFiles(lambda meta: image)
    return store


@pytest.fixture
def png(tmp_path):
    return write_image(tmp_path / "eye.png", fundus_like(200, 180))


def test_a_finished_result_holds_only_what_the_images_are_made_from(tmp_path, png):
    _job, out = _run(tmp_path, png, ON_REQUEST, "r")
    assert sorted(p.name for p in out.iterdir()) == ["fov.png", "probability.bin", "result.json", "thumb.jpg"]
    meta = json.loads((out / "result.json").read_text())
    assert meta["deferred"] == sorted(DEFERRABLE_RESULT_FILES)
    assert set(RESULT_FILES.values()) | {"input.jpg", "fov.png"} == set(meta["files"].values())
    assert is_complete(out)
    (out / "probability.bin").unlink()
    assert not is_complete(out)                         # what they are made from must be there


def test_images_made_on_request_are_the_bytes_of_the_eager_render(tmp_path, png):
    job, eager = _run(tmp_path, png, "eager", "eager")
    _job, lazy = _run(tmp_path, png, ON_REQUEST, "lazy")
    store = _store(lazy, png)
    for name in DEFERRABLE_RESULT_FILES:
        assert store.has_file(lazy.name, name)
        path = store.file_path(lazy.name, name)
        assert path == lazy / name and path.read_bytes() == (eager / name).read_bytes(), name
    assert is_complete(lazy)
    # ... and the eager render is the one before this change: render_outputs on the full-size decode
    prob = restore_to_original(job.prob512.reshape(512, 512), job.pre.geometry, job.pre.fov_original)
    before = render_outputs(decode_image(png, 1 << 30, 1 << 30).rgb, prob, job.pre.fov_original, 0.5, 0.6, 256)
    for name in DEFERRABLE_RESULT_FILES:
        assert before.files[name] == (lazy / name).read_bytes(), name
    assert before.files["thumb.jpg"] == (eager / "thumb.jpg").read_bytes()


def test_camera_jpegs_are_decoded_reduced_and_their_images_come_back_at_the_original_size(tmp_path):
    image = _jpeg(tmp_path / "cam.jpg", 2048, 1536)
    job, lazy = _run(tmp_path, image, ON_REQUEST, "lazy")
    assert job.decoded.scale == 2 and job.decoded.size == (1024, 768) and job.decoded.full_size == (2048, 1536)
    meta = json.loads((lazy / "result.json").read_text())
    assert meta["original_size"] == [2048, 1536] and meta["input"]["decode_scale"] == 2
    assert meta["geometry"]["width"] == 2048 and meta["geometry"]["side"] == 2 * job.pre.geometry.side
    assert meta["measured_at"] == [1024, 768]
    _job, eager = _run(tmp_path, image, "eager", "eager")
    store = _store(lazy, image)
    for name in DEFERRABLE_RESULT_FILES:
        assert store.file_path(lazy.name, name).read_bytes() == (eager / name).read_bytes(), name
    mask = cv2.imread(str(lazy / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (1536, 2048) and set(np.unique(mask)) <= {0, 255}
    assert cv2.imread(str(lazy / "overlay.png")).shape == (1536, 2048, 3)


def test_a_small_field_of_view_in_a_large_frame_is_decoded_finer_never_upscaled(tmp_path):
    image = _jpeg(tmp_path / "small-fov.jpg", 2048, 2048, fov_fraction=0.3)
    job, _out = _run(tmp_path, image, ON_REQUEST, "r")
    assert job.decoded.scale == 1 and job.pre.geometry.side >= 512


def test_a_made_image_is_kept_and_not_made_again(tmp_path, png):
    _job, lazy = _run(tmp_path, png, ON_REQUEST, "lazy")
    store = _store(lazy, png)
    calls = []
    render = store.producer.render
    store.producer.render = lambda *a: calls.append(a[1]) or render(*a)
    first = store.file_path(lazy.name, "mask.png")
    assert store.file_path(lazy.name, "mask.png") == first and calls == ["mask.png"]


def test_without_the_input_only_the_images_of_the_probability_can_be_made(tmp_path, png):
    _job, lazy = _run(tmp_path, png, ON_REQUEST, "lazy")
    store = _store(lazy, png)
    store.producer.find_input = lambda meta: None
    assert store.file_path(lazy.name, "overlay.png") is None and store.file_path(lazy.name, "input.jpg") is None
    assert store.file_path(lazy.name, "probability.png") is not None and store.file_path(lazy.name, "mask.png")
    other = write_image(tmp_path / "other.png", fundus_like(200, 180, seed=5))
    store.producer.find_input = lambda meta: other          # a file with other content is not the input
    assert store.file_path(lazy.name, "overlay.png") is None


def test_without_a_producer_deferred_images_are_not_offered(tmp_path, png):
    _job, lazy = _run(tmp_path, png, ON_REQUEST, "lazy")
    store = _store(lazy, png)
    store.producer = None
    assert not store.has_file(lazy.name, "overlay.png") and store.file_path(lazy.name, "overlay.png") is None
    assert store.has_file(lazy.name, "thumb.jpg") and store.is_complete(lazy.name)


def test_decode_reduces_only_jpegs_and_keeps_the_shorter_side(tmp_path, png):
    image = _jpeg(tmp_path / "cam.jpg", 3504, 2336)
    d = decode_image(image, 1 << 30, 1 << 30, min_side=512)
    assert d.scale == 4 and d.size == (876, 584) and d.full_size == (3504, 2336)
    assert decode_image(image, 1 << 30, 1 << 30, min_side=512, max_scale=2).scale == 2
    assert decode_image(image, 1 << 30, 1 << 30).scale == 1
    assert decode_image(png, 1 << 30, 1 << 30, min_side=32).scale == 1


def test_redoing_a_result_drops_the_images_made_for_its_previous_run(tmp_path, png):
    _job, lazy = _run(tmp_path, png, ON_REQUEST, "lazy")
    assert _store(lazy, png).file_path(lazy.name, "mask.png") is not None
    _run(tmp_path, png, ON_REQUEST, "lazy")
    assert not (lazy / "mask.png").exists() and is_complete(lazy)
