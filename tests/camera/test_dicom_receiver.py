"""The C-STORE receiver against a real peer (dcmtk's storescu / echoscu) and pynetdicom as an SCU: instances
land in capture/ durably before success is answered, unknown AEs are refused, C-ECHO answers, malformed
associations are survived, associations are bounded."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from vessel_seg.camera.dicom_receiver import OUT_OF_RESOURCES, DicomReceiver, ReceiverError
from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.proving import dicom_files as dcm

DCMTK = shutil.which("storescu") and shutil.which("echoscu")
needs_dcmtk = pytest.mark.skipif(not DCMTK, reason="dcmtk's storescu/echoscu not installed (apt-get install dcmtk)")


@pytest.fixture
def receiver(tmp_path):
    rx = DicomReceiver(tmp_path / "capture", "VESSELSEG", 0, ["CAMERA1"], host="127.0.0.1", max_associations=2,
                       timeout_s=5.0)
    rx.start()
    yield rx
    rx.stop()


def _image() -> np.ndarray:
    return np.asarray(make_fundus(200, 180, seed=3)[0], dtype=np.uint8)


def _file(tmp_path: Path, name: str, **kw) -> Path:
    path = tmp_path / name
    path.write_bytes(dcm.build_dicom(_image(), **kw))
    return path


def _dcmtk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                          universal_newlines=True)


def _received(rx: DicomReceiver):
    return sorted(p for p in rx.capture_dir.iterdir() if p.suffix == ".dcm")


@needs_dcmtk
def test_echoscu_gets_an_answer(receiver):
    out = _dcmtk("echoscu", "-aet", "CAMERA1", "-aec", "VESSELSEG", "127.0.0.1", str(receiver.port))
    assert out.returncode == 0, out.stdout


@needs_dcmtk
@pytest.mark.parametrize("syntax,flag", [(dcm.EXPLICIT, "-x="), (dcm.JPEG_BASELINE, "-xy"),
                                         (dcm.JPEG2000_LOSSLESS, "-xv")])
def test_storescu_instances_land_in_capture_whole_and_without_patient_data_in_the_name(receiver, tmp_path,
                                                                                        syntax, flag):
    src = _file(tmp_path, "src.dcm", syntax=syntax)
    out = _dcmtk("storescu", flag, "-aet", "CAMERA1", "-aec", "VESSELSEG", "127.0.0.1", str(receiver.port), str(src))
    assert out.returncode == 0, out.stdout
    (got,) = _received(receiver)
    assert got.name.startswith("rx_") and "PAT" not in got.name
    sent, stored = pydicom.dcmread(str(src)), pydicom.dcmread(str(got))
    assert stored.file_meta.TransferSyntaxUID == syntax
    assert stored.SOPInstanceUID == sent.SOPInstanceUID and stored.PatientID == sent.PatientID
    assert stored.PixelData == sent.PixelData
    assert not [p for p in receiver.capture_dir.iterdir() if p.name.startswith(".")]   # no temp file left
    if shutil.which("dciodvfy"):
        check = _dcmtk("dciodvfy", str(got))
        assert "Error" not in check.stdout, check.stdout


@needs_dcmtk
def test_an_unknown_calling_ae_is_refused_and_nothing_is_written(receiver, tmp_path):
    src = _file(tmp_path, "src.dcm")
    out = _dcmtk("storescu", "-aet", "INTRUDER", "-aec", "VESSELSEG", "127.0.0.1", str(receiver.port), str(src))
    assert out.returncode != 0
    assert "Calling AE Title Not Recognized" in out.stdout
    assert _received(receiver) == []
    assert receiver.refused == 1


@needs_dcmtk
def test_malformed_associations_are_survived(receiver):
    for payload in (b"\x01\x00\x00\x00\x00\x10garbagegarbage!!", b"\xff" * 64, b""):
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as s:
            s.sendall(payload)
    deadline = time.time() + 20.0     # a broken peer holds its slot at most until the network timeout
    while True:
        out = _dcmtk("echoscu", "-aet", "CAMERA1", "-aec", "VESSELSEG", "127.0.0.1", str(receiver.port))
        if out.returncode == 0 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert out.returncode == 0, out.stdout


def _scu(port: int):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="CAMERA1")
    ae.add_requested_context(Verification)
    ae.add_requested_context(dcm.OP8, [dcm.EXPLICIT])
    return ae.associate("127.0.0.1", port, ae_title="VESSELSEG")


def test_concurrent_associations_are_bounded(receiver):
    held = [_scu(receiver.port) for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        extra = _scu(receiver.port)
        assert not extra.is_established
    finally:
        for a in held:
            a.release()
    time.sleep(0.3)
    again = _scu(receiver.port)
    assert again.is_established
    again.release()


def test_success_is_answered_only_once_the_file_is_complete_on_disk(receiver, tmp_path):
    src = pydicom.dcmread(str(_file(tmp_path, "src.dcm")))
    assoc = _scu(receiver.port)
    status = assoc.send_c_store(src)
    assoc.release()
    assert status.Status == 0x0000
    (got,) = _received(receiver)          # at the moment success arrived, the file is there and whole
    assert pydicom.dcmread(str(got)).PixelData == src.PixelData


def test_a_write_failure_is_answered_out_of_resources(receiver, tmp_path, monkeypatch):
    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(receiver, "_write", full)
    src = pydicom.dcmread(str(_file(tmp_path, "src.dcm")))
    assoc = _scu(receiver.port)
    status = assoc.send_c_store(src)
    assoc.release()
    assert status.Status == OUT_OF_RESOURCES
    assert _received(receiver) == []


def test_a_receiver_without_allowed_ae_titles_refuses_to_start(tmp_path):
    with pytest.raises(ReceiverError, match="allowed_ae_titles"):
        DicomReceiver(tmp_path, "VESSELSEG", 0, [])
