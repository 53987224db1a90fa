"""Dataset discovery: DRIVE's layout out of the box, other layouts by folder names."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vessel_seg.pipeline.shared.datasets import find_samples


def _img(path, shape=(20, 24), rgb=True):
    a = np.zeros(shape + ((3,) if rgb else ()), np.uint8)
    Image.fromarray(a).save(str(path))


def test_drive_layout_is_recognised_and_matched_by_number(tmp_path):
    for sub in ("test/images", "test/1st_manual", "test/2nd_manual", "test/mask"):
        (tmp_path / sub).mkdir(parents=True)
    for n in ("01", "02"):
        _img(tmp_path / "test/images" / ("%s_test.tif" % n))
        _img(tmp_path / "test/1st_manual" / ("%s_manual1.gif" % n), rgb=False)
        _img(tmp_path / "test/2nd_manual" / ("%s_manual2.gif" % n), rgb=False)
        _img(tmp_path / "test/mask" / ("%s_test_mask.gif" % n), rgb=False)
    s = find_samples(tmp_path)
    assert [x.name for x in s] == ["01_test", "02_test"]
    assert s[0].label.name == "01_manual1.gif" and s[0].fov.name == "01_test_mask.gif"
    assert find_samples(tmp_path, observer=2)[1].label.name == "02_manual2.gif"
    rgb, lab, fov = s[0].load()
    assert rgb.shape == (20, 24, 3) and lab.dtype == bool and fov.shape == (20, 24)


def test_generic_layout_pairs_by_stem_and_fov_is_optional(tmp_path):
    for sub in ("imgs", "gt"):
        (tmp_path / sub).mkdir()
    _img(tmp_path / "imgs/a.png")
    _img(tmp_path / "gt/a.png", rgb=False)
    _img(tmp_path / "imgs/b.png")          # no label: skipped
    s = find_samples(tmp_path, images="imgs", labels="gt")
    assert [x.name for x in s] == ["a"] and s[0].fov is None


def test_an_empty_or_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_samples(tmp_path)


def _drive_like(root, images, labels, masks=()):
    for sub in ("test/images", "test/1st_manual", "test/mask"):
        (root / sub).mkdir(parents=True)
    for n in images:
        _img(root / "test/images" / n)
    for n in labels:
        _img(root / "test/1st_manual" / n, rgb=False)
    for n in masks:
        _img(root / "test/mask" / n, rgb=False)


def test_stare_names_pair_by_stem_prefix(tmp_path):
    _drive_like(tmp_path, ["im0001.png", "im0002.png"], ["im0001.ah.png", "im0002.ah.png"],
                ["im0001_mask.png", "im0002_mask.png"])
    s = find_samples(tmp_path)
    assert [(x.name, x.label.name, x.fov.name) for x in s] == [
        ("im0001", "im0001.ah.png", "im0001_mask.png"), ("im0002", "im0002.ah.png", "im0002_mask.png")]


def test_hrf_names_sharing_a_number_never_cross_pair(tmp_path):
    """HRF: 01_dr, 01_g and 01_h share the number 01; each takes its own label and mask."""
    kinds = ("dr", "g", "h")
    _drive_like(tmp_path, ["01_%s.jpg" % k for k in kinds], ["01_%s_vessels.png" % k for k in kinds],
                ["01_%s_mask.png" % k for k in kinds])
    s = find_samples(tmp_path)
    assert [(x.name, x.label.name, x.fov.name) for x in s] == [
        ("01_%s" % k, "01_%s_vessels.png" % k, "01_%s_mask.png" % k) for k in kinds]


def test_a_longer_image_stem_keeps_its_own_label(tmp_path):
    _drive_like(tmp_path, ["01_h.png", "01_h_2.png"], ["01_h_vessels.png", "01_h_2_vessels.png"])
    s = find_samples(tmp_path)
    assert [(x.name, x.label.name) for x in s] == [("01_h", "01_h_vessels.png"), ("01_h_2", "01_h_2_vessels.png")]


def test_an_image_with_two_equally_good_labels_gets_none(tmp_path):
    _drive_like(tmp_path, ["a.png", "b.png"], ["a_1.png", "a_2.png", "b_1.png"])
    assert [(x.name, x.label.name) for x in find_samples(tmp_path)] == [("b", "b_1.png")]


def test_a_number_shared_by_several_images_is_no_pairing(tmp_path):
    """Only a number that one image and one label carry pairs them (DRIVE's 01_test / 01_manual1)."""
    _drive_like(tmp_path, ["01_a.png", "01_b.png", "02_test.png"], ["01_manual1.png", "02_manual1.png"])
    assert [(x.name, x.label.name) for x in find_samples(tmp_path)] == [("02_test", "02_manual1.png")]
