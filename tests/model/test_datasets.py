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
