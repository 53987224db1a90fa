"""DICOM files in capture/ through the real daemon (simulator, tiny bundle): found by content, one result per
frame, identity in result.json and the journal, bad DICOM quarantined with a reason while the daemon lives;
plain photographs get their identity from a file-name pattern or a sidecar."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipefakes import InProcessDaemons, daemon_config, fundus_like, tiny_bundle, wait_until, write_image

from vessel_seg.pipeline.appliance.config import default_config
from vessel_seg.pipeline.appliance.daemon import Daemon
from vessel_seg.pipeline.appliance.intake import frame_key
from vessel_seg.pipeline.proving import dicom_files as dcm
from vessel_seg.vocabulary import result_id, sha256_file


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def cfg(tmp_path, bundle):
    c = daemon_config(tmp_path / "data", bundle)
    return c


@pytest.fixture
def running(cfg):
    daemons = InProcessDaemons(cfg)
    yield daemons.start
    daemons.stop_all()



def _drop(folder: Path, name: str, data: bytes) -> Path:
    tmp = folder / (name + ".part")
    tmp.write_bytes(data)
    tmp.rename(folder / name)
    return folder / name


def _result(d, rid):
    return json.loads((d.paths.results / rid / "result.json").read_text())


def _quarantine_reasons(d):
    return {p.name: json.loads(p.read_text()) for p in d.paths.quarantine.glob("*.reason.json")}


def test_a_dicom_file_without_extension_is_found_by_content_and_carries_its_identity(running):
    d = running()
    path = _drop(d.paths.capture, "IM000001", dcm.build_dicom(fundus_like(180, 160), syntax=dcm.JPEG_BASELINE))
    rid = result_id(sha256_file(path))
    wait_until(lambda: d.results.is_complete(rid), what="the DICOM result")
    meta = _result(d, rid)
    assert meta["identity"] == {
        "patient_id": "PAT-0042", "patient_name": "DOE, JANE", "birth_date": "1970-01-31", "sex": "F",
        "laterality": "R", "acquired": "2024-03-15T10:15:30", "study_uid": "1.2.826.0.1.3680043.10.1234.1.1",
        "series_uid": "1.2.826.0.1.3680043.10.1234.1.2", "sop_uid": "1.2.826.0.1.3680043.10.1234.1.3.1",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.77.1.5.1", "accession": "ACC123",
        "manufacturer": "Carl Zeiss Meditec", "model": "VISUCAM 500"}
    assert meta["input"]["format"] == "DICOM/JPEG Baseline"
    assert meta["original_size"] == [180, 160]
    assert d.journal.get(rid)["identity"]["patient_id"] == "PAT-0042"


def test_a_multi_frame_file_gives_one_result_per_frame_then_is_archived(running, cfg):
    cfg["ingest"]["after"] = "archive"
    d = running(cfg)
    path = _drop(d.paths.capture, "series.dcm", dcm.build_dicom(fundus_like(180, 160), frames=3, uid_seed=7))
    sha = sha256_file(path)
    ids = [result_id(frame_key(sha, i)) for i in range(3)]
    wait_until(lambda: all(d.results.is_complete(r) for r in ids), what="three frame results")
    for i, rid in enumerate(ids):
        meta = _result(d, rid)
        assert meta["frame"] == {"index": i, "count": 3, "file_sha256": sha}
        assert meta["identity"]["sop_uid"].endswith(".7.3.1")
        assert d.journal.get(rid)["frame"] == i
    wait_until(lambda: not path.exists(), what="the file archived once every frame is done")
    assert (d.paths.archive / ("%s__series.dcm" % result_id(sha))).is_file()


@pytest.mark.parametrize("case,reason", [
    ("truncated", "dicom_"),
    ("no_pixels", "dicom_no_pixel_data"),
    ("unsupported_syntax", "dicom_unsupported_transfer_syntax"),
    ("oversized", "too_many_pixels"),
])
def test_bad_dicom_is_quarantined_with_a_reason_and_the_daemon_lives(running, cfg, case, reason):
    cfg["ingest"]["max_pixels"] = 100000
    d = running(cfg)
    img = fundus_like(180, 160)
    if case == "truncated":
        data = dcm.build_dicom(img)
        data = data[: len(data) - 20000]
    elif case == "no_pixels":
        data = dcm.build_dicom(img, with_pixels=False)
    elif case == "unsupported_syntax":
        data = dcm.build_dicom(img, syntax=dcm.JPEG_LOSSLESS)
    else:
        data = dcm.build_dicom(fundus_like(400, 300))
    _drop(d.paths.capture, "bad.dcm", data)
    wait_until(lambda: _quarantine_reasons(d), what="the quarantine")
    (info,) = _quarantine_reasons(d).values()
    assert info["reason"].startswith(reason), info
    good = _drop(d.paths.capture, "good.dcm", dcm.build_dicom(img, uid_seed=2))
    wait_until(lambda: d.results.is_complete(result_id(sha256_file(good))), what="the next good file")


def test_a_file_without_extension_that_is_not_dicom_is_left_alone(running):
    d = running()
    (d.paths.capture / "README").write_text("notes of the technician\n")
    good = _drop(d.paths.capture, "x.dcm", dcm.build_dicom(fundus_like(180, 160)))
    wait_until(lambda: d.results.is_complete(result_id(sha256_file(good))), what="the DICOM result")
    assert (d.paths.capture / "README").is_file()
    assert not _quarantine_reasons(d)
    assert d.journal.counts()["failed"] == 0


def test_a_plain_image_takes_its_identity_from_the_name_pattern_and_the_sidecar(running, cfg):
    cfg["ingest"]["identity_pattern"] = "{patient_id}_{laterality}_{date}"
    cfg["ingest"]["identity_sidecar"] = True
    d = running(cfg)
    (d.paths.capture / "P77_OS_20240102.json").write_text(json.dumps({"patient_name": "ROE, RICHARD"}))
    named = write_image(d.paths.capture / "P77_OS_20240102.png", fundus_like(180, 160, seed=1))
    anonymous = write_image(d.paths.capture / "img.png", fundus_like(180, 160, seed=2))
    rid, anon = result_id(sha256_file(named)), result_id(sha256_file(anonymous))
    wait_until(lambda: d.results.is_complete(rid) and d.results.is_complete(anon), what="two results")
    assert _result(d, rid)["identity"] == {"patient_id": "P77", "patient_name": "ROE, RICHARD",
                                           "laterality": "L", "acquired": "2024-01-02"}
    assert "identity" not in _result(d, anon)
    assert d.journal.get(anon)["identity"] == {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not __import__("shutil").which("storescu"), reason="dcmtk's storescu not installed "
                    "(apt-get install dcmtk)")
def test_an_instance_sent_by_storescu_becomes_a_result_with_its_identity(running, cfg, tmp_path):
    import subprocess

    port = _free_port()
    cfg["dicom"]["receiver"].update(enabled=True, port=port, allowed_ae_titles=["VISUCAM"])
    d = running(cfg)
    src = tmp_path / "send.dcm"
    src.write_bytes(dcm.build_dicom(fundus_like(180, 160), syntax=dcm.JPEG_BASELINE, uid_seed=11))
    out = subprocess.run(["storescu", "-xy", "-aet", "VISUCAM", "-aec", "VESSELSEG", "127.0.0.1", str(port),
                          str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert out.returncode == 0, out.stdout
    wait_until(lambda: d.journal.counts()["done"] == 1, what="the received instance processed")
    (row,) = d.journal.list()
    assert row["source"].startswith("rx_") and row["identity"]["sop_uid"].endswith(".11.3.1")
    assert _result(d, row["id"])["identity"]["patient_id"] == "PAT-0042"


def test_an_enabled_receiver_without_allowed_ae_titles_stops_the_start_with_the_reason(cfg):
    from vessel_seg.pipeline.appliance.daemon import DaemonError

    cfg["dicom"]["receiver"].update(enabled=True, port=_free_port())
    d = Daemon(cfg, systemd=False)
    try:
        with pytest.raises(DaemonError, match="allowed_ae_titles"):
            d.start()
    finally:
        d.stop(1.0)


@pytest.mark.parametrize("host,token,refused", [("0.0.0.0", None, True), ("192.168.1.20", None, True),
                                                 ("0.0.0.0", "s3cret-token", False), ("127.0.0.1", None, False),
                                                 ("::1", None, False), ("localhost", None, False)])
def test_listening_beyond_loopback_needs_a_token(host, token, refused):
    from vessel_seg.pipeline.appliance.config import exposure_problem

    c = default_config()
    c["web"]["host"], c["web"]["token"] = host, token
    problem = exposure_problem(c)
    assert (problem is not None) == refused
    if refused:
        assert "web.token" in problem and "patient data" in problem


def test_the_daemon_refuses_to_start_on_the_network_without_a_token(cfg):
    from vessel_seg.pipeline.appliance.daemon import DaemonError

    cfg["web"].update(enabled=True, host="0.0.0.0", token=None)
    d = Daemon(cfg, systemd=False)
    with pytest.raises(DaemonError, match="needs an access token"):
        d.start()
    d.stop(0.0)


def test_no_patient_data_reaches_the_info_log(running, cfg, caplog):
    import logging

    cfg["ingest"]["identity_pattern"] = "{patient_id}_{laterality}_{date}"
    caplog.set_level(logging.INFO, logger="vessel_seg")
    d = running(cfg)
    dicom = _drop(d.paths.capture, "scan.dcm", dcm.build_dicom(fundus_like(180, 160), uid_seed=21))
    named = write_image(d.paths.capture / "SECRET42_OD_20240102.png", fundus_like(180, 160, seed=4))
    ids = [result_id(sha256_file(p)) for p in (dicom, named)]
    wait_until(lambda: all(d.results.is_complete(r) for r in ids), what="two results")
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno <= logging.INFO)
    for secret in ("PAT-0042", "DOE", "JANE", "SECRET42", "1.2.826.0.1.3680043.10.1234.21"):
        assert secret not in text, secret


def test_queued_frames_left_in_the_journal_are_redone_after_a_restart(running, cfg):
    from vessel_seg.pipeline.store.journal import Journal

    data = Path(cfg["data_dir"])
    (data / "capture").mkdir(parents=True)
    path = _drop(data / "capture", "left.dcm", dcm.build_dicom(fundus_like(180, 160), frames=2, uid_seed=31))
    sha = sha256_file(path)
    identity = {"patient_id": "PAT-0042", "laterality": "R"}
    with Journal(data / "state" / "journal.sqlite3") as j:      # as a daemon killed after journaling left it
        ids = [j.add(frame_key(sha, i), "left.dcm", str(path), path.stat().st_size, frame=i, frames=2,
                     file_sha256=sha, identity=identity)[0] for i in range(2)]
        j.start(ids[1])
    d = running()
    wait_until(lambda: all(d.results.is_complete(r) for r in ids), what="both frames redone")
    assert [_result(d, r)["frame"]["index"] for r in ids] == [0, 1]
    assert _result(d, ids[1])["identity"] == identity


def test_a_bad_frame_fails_alone_and_the_file_is_quarantined_once_every_frame_settled(running):
    import io

    import pydicom
    from pydicom.encaps import encapsulate

    d = running()
    data = dcm.build_dicom(fundus_like(180, 160), frames=3, syntax=dcm.JPEG_BASELINE, uid_seed=41)
    ds = pydicom.dcmread(io.BytesIO(data))
    from pydicom.encaps import generate_pixel_data_frame

    frames = list(generate_pixel_data_frame(ds.PixelData, 3))
    ds.PixelData = encapsulate([frames[0], b"\xff\xd8\xff\xe0broken" * 10, frames[2]])
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    path = _drop(d.paths.capture, "partly.dcm", buf.getvalue())
    sha = sha256_file(path)
    ids = [result_id(frame_key(sha, i)) for i in range(3)]
    wait_until(lambda: _quarantine_reasons(d), what="the file quarantined")
    assert d.results.is_complete(ids[0]) and d.results.is_complete(ids[2])
    assert d.journal.get(ids[1])["state"] == "failed"
    (info,) = _quarantine_reasons(d).values()
    assert info["failed_frames"] == [1] and info["frames"] == 3 and info["reason"] == "dicom_truncated"
    assert not path.exists()
