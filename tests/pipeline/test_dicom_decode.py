"""DICOM decoding and identity, as a specification: which files are read and how, which are refused and why;
every test file is built with pydicom and checked with dicom3tools' dciodvfy."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.engine import dicom_decode as dd
from vessel_seg.pipeline.engine import identity as ident
from vessel_seg.pipeline.engine.decode import DecodeError
from vessel_seg.pipeline.proving import dicom_files as dcm

MAX_BYTES, MAX_PIXELS = 64 * 1024 * 1024, 40000000
DCIODVFY = shutil.which("dciodvfy")


def _fundus(w=200, h=180, seed=0):
    return np.asarray(make_fundus(w, h, seed=seed)[0], dtype=np.uint8)


def _write(tmp_path, data, name="x.dcm"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _checked(tmp_path, data, name="x.dcm"):
    """Write a built file and have dciodvfy confirm it is a valid instance of its IOD (when installed)."""
    path = _write(tmp_path, data, name)
    if DCIODVFY:
        out = subprocess.run([DCIODVFY, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=60).stdout
        assert "Error" not in out, out
    return path


VALID = [
    ("OP 8-bit uncompressed", dict(sop_class=dcm.OP8, syntax=dcm.EXPLICIT)),
    ("OP 8-bit implicit VR", dict(sop_class=dcm.OP8, syntax=dcm.IMPLICIT)),
    ("OP 8-bit JPEG baseline", dict(sop_class=dcm.OP8, syntax=dcm.JPEG_BASELINE)),
    ("OP 8-bit JPEG 2000", dict(sop_class=dcm.OP8, syntax=dcm.JPEG2000_LOSSLESS)),
    ("VL photographic JPEG", dict(sop_class=dcm.VL_PHOTO, syntax=dcm.JPEG_BASELINE)),
    ("secondary capture", dict(sop_class=dcm.SECONDARY, syntax=dcm.EXPLICIT)),
]


@pytest.mark.skipif(not DCIODVFY, reason="dicom3tools' dciodvfy not installed (apt-get install dicom3tools)")
def test_the_builder_makes_files_dciodvfy_accepts(tmp_path):
    for n, (_label, kw) in enumerate(VALID):
        _checked(tmp_path, dcm.build_dicom(_fundus(), uid_seed=n, **kw), "v%d.dcm" % n)
    _checked(tmp_path, dcm.build_dicom(_fundus()[:, :, 1].astype(np.uint16) * 257, sop_class=dcm.OP16),
             "op16.dcm")
    _checked(tmp_path, dcm.build_dicom(_fundus(), frames=3), "mf.dcm")


@pytest.mark.parametrize("label,kw", VALID, ids=[v[0] for v in VALID])
def test_colour_photographs_decode_to_the_rgb_they_hold(tmp_path, label, kw):
    rgb = _fundus()
    path = _checked(tmp_path, dcm.build_dicom(rgb, **kw))
    out = dd.decode_input(path, MAX_BYTES, MAX_PIXELS)
    assert out.rgb.shape == rgb.shape and out.rgb.dtype == np.uint8
    lossy = kw["syntax"] == dcm.JPEG_BASELINE
    err = np.abs(out.rgb.astype(int) - rgb.astype(int)).mean()
    assert err < (4.0 if lossy else 0.001), (label, err)
    assert out.format.startswith("DICOM/")


def test_jpeg_baseline_ybr_full_422_comes_out_as_rgb_not_ybr(tmp_path):
    """pydicom 2.4's own Pillow path leaves YBR values; the appliance's decoding gives RGB."""
    rgb = _fundus()
    path = _checked(tmp_path, dcm.build_dicom(rgb, syntax=dcm.JPEG_BASELINE))
    ds = pydicom.dcmread(str(path))
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    ours = dd.decode_input(path, MAX_BYTES, MAX_PIXELS).rgb.astype(int)
    from pydicom.pixel_data_handlers.util import convert_color_space

    pydicom_rgb = convert_color_space(ds.pixel_array, "YBR_FULL", "RGB").astype(int)
    assert np.abs(ours - pydicom_rgb).mean() < 2.0
    ybr_like = np.asarray(ds.pixel_array).astype(int)
    assert np.abs(ours - ybr_like).mean() > 20.0       # so decoding without conversion would be caught


def test_sixteen_bit_gray_is_scaled_to_eight_bits(tmp_path):
    gray16 = (_fundus()[:, :, 1].astype(np.uint16) * 257)
    path = _checked(tmp_path, dcm.build_dicom(gray16, sop_class=dcm.OP16))
    out = dd.decode_input(path, MAX_BYTES, MAX_PIXELS)
    assert np.abs(out.rgb[:, :, 0].astype(int) - _fundus()[:, :, 1].astype(int)).max() <= 1
    assert (out.rgb[:, :, 0] == out.rgb[:, :, 2]).all()


def test_twelve_bits_stored_in_sixteen_are_scaled_by_the_bits_stored(tmp_path):
    gray12 = (_fundus()[:, :, 1].astype(np.uint16) * 16)          # 0..4080: a 12-bit sensor
    path = _write(tmp_path, dcm.build_dicom(gray12, sop_class=dcm.SECONDARY, bits_stored=12))
    out = dd.decode_input(path, MAX_BYTES, MAX_PIXELS)
    assert np.abs(out.rgb[:, :, 0].astype(int) - _fundus()[:, :, 1].astype(int)).max() <= 1


def test_each_frame_of_a_multi_frame_file_decodes_on_its_own(tmp_path):
    rgb = _fundus()
    path = _checked(tmp_path, dcm.build_dicom(rgb, frames=3))
    ds = dd.read_dataset(path, MAX_BYTES, stop_before_pixels=True)
    assert dd.check_header(ds, MAX_PIXELS) == (180, 200, 3)
    frames = [dd.decode_input(path, MAX_BYTES, MAX_PIXELS, frame=i).rgb for i in range(3)]
    assert (frames[0] == rgb).all() and (frames[1] == np.roll(rgb, 3, axis=1)).all()
    with pytest.raises(dd.DicomError) as exc:
        dd.decode_input(path, MAX_BYTES, MAX_PIXELS, frame=3)
    assert exc.value.reason == dd.BAD_FRAME


@pytest.mark.parametrize("case,reason", [
    ("truncated", dd.TRUNCATED),
    ("truncated_jpeg", dd.TRUNCATED),
    ("no_pixels", dd.NO_PIXELS),
    ("jpeg_lossless", dd.UNSUPPORTED_SYNTAX),
    ("ct", dd.UNSUPPORTED_SOP_CLASS),
    ("pixel_bomb", "too_many_pixels"),
    ("frame_bomb", dd.TOO_MANY_FRAMES),
    ("tiny", "image_too_small"),
    ("preamble_only", dd.NOT_DICOM),
])
def test_bad_dicom_is_refused_with_a_reason_before_pixels_are_decoded(tmp_path, case, reason):
    rgb = _fundus()
    good = dcm.build_dicom(rgb)
    data = {
        "truncated": lambda: good[: len(good) // 2],
        "truncated_jpeg": lambda: dcm.build_dicom(rgb, syntax=dcm.JPEG_BASELINE)[:-2000],
        "no_pixels": lambda: dcm.build_dicom(rgb, with_pixels=False),
        "jpeg_lossless": lambda: dcm.build_dicom(rgb, syntax=dcm.JPEG_LOSSLESS),
        "ct": lambda: dcm.build_dicom(rgb, sop_class="1.2.840.10008.5.1.4.1.1.2"),
        "pixel_bomb": lambda: dcm.edited(good, Rows=65000, Columns=65000),
        "frame_bomb": lambda: dcm.edited(good, NumberOfFrames=100000),
        "tiny": lambda: dcm.build_dicom(rgb[:16, :16].copy()),
        "preamble_only": lambda: b"\0" * 128 + b"DICM" + b"\xff\x00garbage" * 50,
    }[case]()
    path = _write(tmp_path, data)
    with pytest.raises(DecodeError) as exc:
        dd.decode_input(path, MAX_BYTES, MAX_PIXELS)
    assert exc.value.reason.startswith(reason), (exc.value.reason, exc.value.detail)
    assert isinstance(exc.value, dd.DicomError)


def test_a_dcm_name_without_dicom_content_is_read_as_what_it_is(tmp_path):
    from PIL import Image

    path = tmp_path / "really_png.dcm"
    Image.fromarray(_fundus()).save(str(path), format="PNG")
    assert dd.decode_input(path, MAX_BYTES, MAX_PIXELS).format == "PNG"


def test_the_dicom_header_gives_the_identity(tmp_path):
    path = _checked(tmp_path, dcm.build_dicom(_fundus(), identity=dict(dcm.DEFAULT_IDENTITY, laterality="L",
                                                                    patient_name="MÜLLER^ANNA^MARIA")))
    found = ident.from_dataset(pydicom.dcmread(str(path), stop_before_pixels=True))
    assert found["laterality"] == "L" and found["patient_name"] == "MÜLLER, ANNA MARIA"
    assert found["acquired"] == "2024-03-15T10:15:30" and found["birth_date"] == "1970-01-31"
    assert set(found) == set(ident.IDENTITY_FIELDS)


def test_an_anonymised_header_gives_no_identity_but_the_instance(tmp_path):
    path = _write(tmp_path, dcm.build_dicom(_fundus(), sop_class=dcm.SECONDARY, identity={}))
    found = ident.from_dataset(pydicom.dcmread(str(path), stop_before_pixels=True))
    assert set(found) == {"study_uid", "series_uid", "sop_uid", "sop_class_uid"}
    assert found["sop_class_uid"] == dcm.SECONDARY


@pytest.mark.parametrize("pattern,name,expected", [
    ("{patient_id}_{laterality}_{date}", "PAT0042_OD_20240315.jpg",
     {"patient_id": "PAT0042", "laterality": "R", "acquired": "2024-03-15"}),
    ("{patient_id}_{laterality}_{date}_{time}", "P-7_l_2024-03-15_101530.png",
     {"patient_id": "P-7", "laterality": "L", "acquired": "2024-03-15T10:15:30"}),
    ("IMG{any}-{patient_id}", "IMG0001-X9.tif", {"patient_id": "X9"}),
    ("{patient_id}_{laterality}_{date}", "holiday.jpg", {}),
    ("{patient_id}_{laterality}_{date}", "P1_X_20240315.jpg", {}),
])
def test_file_name_patterns(pattern, name, expected):
    assert ident.from_filename(name, ident.compile_pattern(pattern)) == expected


@pytest.mark.parametrize("pattern", ["{nope}", "{patient_id}_{patient_id}", "no placeholder"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(ident.PatternError):
        ident.compile_pattern(pattern)


def test_a_damaged_sidecar_is_ignored_and_a_good_one_wins_over_the_name(tmp_path):
    img = tmp_path / "P1_R_20240101.jpg"
    img.write_bytes(b"x")
    pattern = ident.compile_pattern("{patient_id}_{laterality}_{date}")
    (tmp_path / "P1_R_20240101.json").write_text("{broken")
    assert ident.for_plain_image(img, pattern, sidecar=True)["patient_id"] == "P1"
    (tmp_path / "P1_R_20240101.json").write_text('{"patient_id": "P2", "sex": "x", "laterality": "OS"}')
    assert ident.for_plain_image(img, pattern, sidecar=True) == {"patient_id": "P2", "laterality": "L",
                                                                 "acquired": "2024-01-01"}
