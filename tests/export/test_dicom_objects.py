"""The DICOM objects of a result: a SEG (BINARY, one vessel segment) and a burnt-in Secondary Capture, valid
under dciodvfy, in the source study with the source's patient, with UIDs fixed by the result id."""
from __future__ import annotations

import shutil
import subprocess
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixel_data_handlers.numpy_handler import unpack_bits

from vessel_seg.pipeline.export import dicom_objects as d

RID = "0123456789abcdef"
META = {"id": RID, "created": "2026-12-01T09:30:00.000000Z", "threshold": 0.6,
        "model": {"name": "vessel-unet", "version": "1.3.0"}}
IDENTITY = {"patient_id": "P-17", "patient_name": "Doe^Jane", "birth_date": "1960-01-31", "sex": "F",
            "laterality": "L", "acquired": "2026-11-30T08:15:00", "study_uid": "1.2.826.0.1.1",
            "series_uid": "1.2.826.0.1.1.2", "sop_uid": "1.2.826.0.1.1.2.3",
            "accession": "ACC42", "manufacturer": "Topcon", "model": "TRC-NW400"}


def _mask(h=57, w=63):
    m = np.zeros((h, w), bool)
    m[10:20, 5:40] = True
    m[30, :] = True
    return m


def _objects(meta):
    uids = d.plan_uids(RID, meta)
    rgb = np.random.RandomState(0).randint(0, 255, (57, 63, 3)).astype(np.uint8)
    seg = d.encode(d.build_seg(RID, meta, _mask(), uids))
    sc = d.encode(d.build_sc(RID, meta, rgb, uids))
    return uids, seg, sc, rgb


def _dciodvfy(tmp_path, name, data):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (apt-get install -y dicom3tools; .ci/run does it as root)")
    path = tmp_path / name
    path.write_bytes(data)
    out = subprocess.run(["dciodvfy", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=60).stdout
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    return errors, out


@pytest.mark.parametrize("identity", [None, IDENTITY], ids=["plain-image", "dicom-input"])
def test_seg_and_sc_have_no_dciodvfy_errors(tmp_path, identity):
    meta = dict(META, identity=identity) if identity else dict(META)
    _uids, seg, sc, _rgb = _objects(meta)
    for name, data in (("seg.dcm", seg), ("sc.dcm", sc)):
        errors, out = _dciodvfy(tmp_path, name, data)
        assert errors == [], out


def test_seg_is_binary_one_segment_of_retinal_vessels_with_the_mask_bit_packed():
    _uids, seg, _sc, _rgb = _objects(dict(META))
    ds = dcmread(BytesIO(seg))
    assert ds.SOPClassUID == d.SEG_SOP_CLASS and ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.BitsAllocated == 1 and ds.NumberOfFrames == 1 and (ds.Rows, ds.Columns) == (57, 63)
    (segment,) = ds.SegmentSequence
    assert segment.SegmentNumber == 1 and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Blood vessel"
    assert segment.AnatomicRegionSequence[0].CodeMeaning == "Retina"
    bits = unpack_bits(ds.PixelData)[:57 * 63].reshape(57, 63).astype(bool)
    assert np.array_equal(bits, _mask())


def test_sc_carries_the_overlay_pixels_unchanged():
    _uids, _seg, sc, rgb = _objects(dict(META))
    ds = dcmread(BytesIO(sc))
    assert ds.SOPClassUID == d.SC_SOP_CLASS and ds.PhotometricInterpretation == "RGB"
    assert np.array_equal(ds.pixel_array, rgb)


def test_a_plain_image_gets_an_anonymous_study_and_its_seg_references_the_burnt_in_sc():
    uids, seg, sc, _rgb = _objects(dict(META))
    s, c = dcmread(BytesIO(seg)), dcmread(BytesIO(sc))
    assert uids.generated_study
    assert s.StudyInstanceUID == c.StudyInstanceUID == uids.study
    assert s.SeriesInstanceUID != c.SeriesInstanceUID                 # a new series per object
    assert s.PatientID == c.PatientID == "VESSELSEG-" + RID and str(s.PatientName) == "ANONYMOUS^"
    ref = s.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == c.SeriesInstanceUID
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == c.SOPInstanceUID
    source = s.SharedFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == c.SOPInstanceUID
    assert d.objects_for(["seg"], META) == ["secondary_capture", "seg"]   # the SC it refers to goes too


def test_a_dicom_input_puts_both_objects_in_the_source_study_with_its_patient_and_references_the_source():
    meta = dict(META, identity=IDENTITY)
    _uids, seg, sc, _rgb = _objects(meta)
    for ds in (dcmread(BytesIO(seg)), dcmread(BytesIO(sc))):
        assert ds.StudyInstanceUID == IDENTITY["study_uid"]
        assert ds.SeriesInstanceUID != IDENTITY["series_uid"]
        assert ds.PatientID == "P-17" and str(ds.PatientName) == "Doe^Jane"
        assert ds.PatientBirthDate == "19600131" and ds.PatientSex == "F" and ds.AccessionNumber == "ACC42"
        assert ds.StudyDate == "20261130" and ds.ImageLaterality == "L"
    s = dcmread(BytesIO(seg))
    ref = s.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == IDENTITY["series_uid"]
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == IDENTITY["sop_uid"]
    assert dcmread(BytesIO(sc)).SourceImageSequence[0].ReferencedSOPInstanceUID == IDENTITY["sop_uid"]
    assert d.objects_for(["seg"], meta) == ["seg"]


def test_uids_and_bytes_are_a_function_of_the_result_so_a_resend_is_the_same_instance():
    a, b = d.plan_uids(RID, META), d.plan_uids(RID, dict(META))
    assert a == b
    assert d.plan_uids("fedcba9876543210", META).study != a.study
    assert len({a.study, a.seg_series, a.seg_instance, a.sc_series, a.sc_instance}) == 5
    assert _objects(dict(META))[1] == _objects(dict(META))[1]
