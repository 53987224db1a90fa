"""camera.synthetic: deterministic fundus-like images whose vessel and FOV masks are known."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from vessel_seg.camera.synthetic import encode_image, make_fundus, write_fundus


def test_same_seed_gives_identical_images_and_masks():
    a = make_fundus(seed=5)
    b = make_fundus(seed=5)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_different_seeds_give_different_vessel_trees():
    _, v1, _ = make_fundus(seed=1)
    _, v2, _ = make_fundus(seed=2)
    assert not np.array_equal(v1, v2)


def test_shapes_and_dtypes_follow_width_and_height():
    rgb, vessels, fov = make_fundus(width=300, height=200, seed=0)
    assert rgb.shape == (200, 300, 3) and rgb.dtype == np.uint8
    assert vessels.shape == (200, 300) and vessels.dtype == bool
    assert fov.shape == (200, 300) and fov.dtype == bool


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_vessels_lie_inside_the_fov_and_cover_a_plausible_fraction(seed):
    _, vessels, fov = make_fundus(seed=seed)
    assert not (vessels & ~fov).any()
    density = vessels[fov].mean()
    assert 0.02 < density < 0.25


def test_fov_is_a_centred_disc_of_the_requested_diameter():
    _, _, fov = make_fundus(width=565, height=584, seed=0, fov_fraction=0.9)
    expected_area = np.pi * (0.9 * 565 / 2) ** 2
    assert abs(fov.sum() - expected_area) / expected_area < 0.03
    ys, xs = np.nonzero(fov)
    assert abs(xs.mean() - 282) < 10 and abs(ys.mean() - 291.5) < 10


def test_background_is_dark_and_vessels_are_darker_than_the_retina_in_green():
    rgb, vessels, fov = make_fundus(seed=4)
    assert rgb[~fov].mean() < 15
    retina = fov & ~vessels
    assert rgb[..., 1][vessels].mean() < rgb[..., 1][retina].mean() - 8
    # orange/red retina: red dominates green dominates blue
    r, g, b = (rgb[..., c][retina].mean() for c in range(3))
    assert r > g > b


def test_vessels_range_from_thin_to_thick():
    _, vessels, _ = make_fundus(seed=6)
    v = vessels.astype(np.uint8)
    survives_opening = cv2.morphologyEx(v, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    thin_fraction = 1.0 - survives_opening.sum() / float(vessels.sum())
    assert 0.1 < thin_fraction < 0.95          # both thin (< 3 px) and thick vessels exist
    dist = cv2.distanceTransform(v, cv2.DIST_L2, 3)
    assert dist.max() >= 2.5                    # some vessel is at least ~5 px wide
    # wider than ~9 px only where vessels meet (at the disc and at crossings)
    assert (dist > 4.5).sum() < 0.06 * vessels.sum()


def test_fov_fraction_above_one_clips_the_fov_at_the_image_border():
    _, vessels, fov = make_fundus(width=400, height=300, seed=0, fov_fraction=1.2)
    assert fov[0].any() and fov[-1].any()
    assert not (vessels & ~fov).any()


def test_jpeg_option_adds_compression_artefacts_but_keeps_masks():
    plain = make_fundus(seed=9)
    jpeg = make_fundus(seed=9, jpeg=True)
    assert np.array_equal(plain[1], jpeg[1]) and np.array_equal(plain[2], jpeg[2])
    diff = np.abs(plain[0].astype(int) - jpeg[0].astype(int))
    assert 0 < diff.mean() < 5


@pytest.mark.parametrize("kwargs", [{"width": 10}, {"height": 0}, {"width": 100.5}, {"fov_fraction": 0.0},
                                    {"n_vessels": -1}])
def test_invalid_arguments_raise_a_clear_error(kwargs):
    with pytest.raises((ValueError, TypeError)):
        make_fundus(**kwargs)


def test_generation_at_drive_size_takes_less_than_0_2_s():
    make_fundus(seed=0)   # warm up OpenCV
    best = float("inf")
    for seed in range(3):
        t0 = time.perf_counter()
        make_fundus(seed=seed)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.2


def test_write_fundus_png_round_trips_exactly(tmp_path):
    path = tmp_path / "f.png"
    rgb, _, _ = write_fundus(path, 200, 180, seed=2)
    back = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, rgb)
    assert np.array_equal(rgb, make_fundus(200, 180, seed=2)[0])


@pytest.mark.parametrize("name, magic", [("f.jpg", b"\xff\xd8"), ("f.jpeg", b"\xff\xd8"), ("f.tif", b"II"),
                                         ("F.TIFF", b"II")])
def test_write_fundus_chooses_the_format_from_the_extension(tmp_path, name, magic):
    path = tmp_path / name
    rgb, _, _ = write_fundus(path, 160, 120, seed=1)
    data = path.read_bytes()
    assert data[:2] == magic
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert back.shape == (120, 160, 3)
    assert np.abs(back[..., ::-1].astype(int) - rgb.astype(int)).mean() < 4


def test_write_fundus_refuses_an_unknown_extension_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="unsupported image extension"):
        write_fundus(tmp_path / "f.gif", 100, 100)
    assert list(tmp_path.iterdir()) == []


def test_encode_image_rejects_non_rgb_arrays():
    with pytest.raises(ValueError):
        encode_image(np.zeros((10, 10), np.uint8), ".png")
