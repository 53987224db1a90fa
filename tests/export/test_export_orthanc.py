"""Export to a real PACS (Debian's Orthanc): arrival and references, PACS down then up, kill -9 mid-send,
STOW-RS, and rejections that are kept, not retried forever. Arrivals are checked with Orthanc's REST API."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pacs_helpers import DICOMWEB_PLUGIN, REJECTED_PATIENT, export_config, make_result
from pipefakes import wait_until

from vessel_seg.pipeline.export.exporter import Exporter
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.outbox import Outbox
from vessel_seg.pipeline.store.results import ResultStore

IDS = ["%016x" % (0xa000 + i) for i in range(8)]
SOURCE = {"patient_id": "P-17", "patient_name": "Doe^Jane", "birth_date": "19600131", "sex": "F",
          "laterality": "R", "acquired": "20261130081500", "study_uid": "1.2.826.0.1.77",
          "series_uid": "1.2.826.0.1.77.1", "sop_uid": "1.2.826.0.1.77.1.1",
          "accession": "ACC42"}


@pytest.fixture
def data(tmp_path):
    j = Journal(tmp_path / "data" / "state" / "journal.sqlite3")
    store = ResultStore(tmp_path / "data", j)
    yield j, store
    j.close()


def _done(j, store, rid, **kw):
    make_result(store.results_dir, rid, **kw)
    j.add(rid + "0" * 48, rid + ".png", None, 1)
    j.mark(rid, "done")



def _sop_uids(orthanc):
    return sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.find_instances())


def test_seg_and_sc_arrive_by_c_store_in_the_source_study_with_their_references(orthanc, data):
    j, store = data
    _done(j, store, IDS[0])                          # a plain image: a generated study
    _done(j, store, IDS[1], identity=SOURCE)         # a DICOM input: the source study
    ex = Exporter(j, store, export_config(orthanc))
    assert ex.backfill() == 2
    assert ex.run_once() == 4
    assert ex.outbox.counts() == {"pending": 0, "sent": 4, "rejected": 0}

    source_study = orthanc.find_instances(StudyInstanceUID=SOURCE["study_uid"])
    assert len(source_study) == 2
    modalities = {}
    for inst in source_study:
        tags = orthanc.tags(inst["ID"])
        assert tags["PatientID"] == "P-17" and tags["PatientName"] == "Doe^Jane"
        assert tags["SeriesInstanceUID"] != SOURCE["series_uid"]
        modalities[tags["Modality"]] = tags
    seg = modalities["SEG"]
    assert seg["SegmentationType"] == "BINARY"
    assert seg["ReferencedSeriesSequence"][0]["ReferencedInstanceSequence"][0]["ReferencedSOPInstanceUID"] == \
        SOURCE["sop_uid"]

    rows = {r["object"]: r for r in ex.outbox.rows(IDS[0])}
    plain = orthanc.find_instances(StudyInstanceUID=rows["seg"]["study_uid"])
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in plain) == sorted(
        r["sop_instance_uid"] for r in rows.values())
    seg_tags = orthanc.tags([i for i in plain if i["MainDicomTags"]["SOPInstanceUID"] ==
                             rows["seg"]["sop_instance_uid"]][0]["ID"])
    ref = seg_tags["ReferencedSeriesSequence"][0]
    assert ref["SeriesInstanceUID"] == rows["secondary_capture"]["series_uid"]   # the burnt-in SC, also there
    assert ref["ReferencedInstanceSequence"][0]["ReferencedSOPInstanceUID"] == \
        rows["secondary_capture"]["sop_instance_uid"]


def test_pacs_down_then_up_every_result_arrives_exactly_once(orthanc_factory, data):
    j, store = data
    pacs = orthanc_factory(start=False)              # ports chosen, not listening yet
    for rid in IDS[:3]:
        _done(j, store, rid)
    ex = Exporter(j, store, export_config(pacs), backoff_min_s=0.1, backoff_max_s=0.4)
    ex.start()
    try:
        wait_until(lambda: ex.failures >= 2, what="failed attempts while the PACS is down")
        assert ex.outbox.counts()["pending"] == 6 and ex.status()["last_error"]
        pacs.start()
        wait_until(lambda: ex.outbox.counts()["sent"] == 6, what="the outbox to drain")
    finally:
        ex.stop()
    uids = _sop_uids(pacs)
    assert len(uids) == 6 and len(set(uids)) == 6
    assert sorted(uids) == sorted(r["sop_instance_uid"] for r in ex.outbox.listing())


def test_kill_9_mid_send_then_restart_every_object_arrives_exactly_once(orthanc, data, tmp_path):
    j, store = data
    for i, rid in enumerate(IDS):
        _done(j, store, rid, width=900, height=800, seed=i)      # 2 MB SCs: sends take a while
    worker = [sys.executable, str(Path(__file__).with_name("outbox_worker.py")), str(tmp_path / "data"),
              json.dumps(export_config(orthanc))]
    log = open(str(tmp_path / "worker.log"), "ab")
    proc = subprocess.Popen(worker, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(orthanc.find_instances()) >= 3 or proc.poll() is not None, what="first arrivals")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(orthanc.find_instances()) < 16, "the worker finished before it could be killed"
    assert Outbox(j).counts()["pending"] > 0
    rc = subprocess.run(worker, stdout=log, stderr=subprocess.STDOUT, timeout=120).returncode
    log.close()
    assert rc == 0, (tmp_path / "worker.log").read_text()
    uids = _sop_uids(orthanc)
    assert len(uids) == 16 and len(set(uids)) == 16
    assert Outbox(j).counts() == {"pending": 0, "sent": 16, "rejected": 0}


def test_stow_rs_delivers_and_a_refused_instance_is_rejected_with_its_reason(orthanc, data):
    if not os.path.exists(DICOMWEB_PLUGIN):
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)")
    j, store = data
    _done(j, store, IDS[0])
    _done(j, store, IDS[1], identity=dict(SOURCE, patient_id=REJECTED_PATIENT))   # Orthanc's filter refuses it
    ex = Exporter(j, store, export_config(orthanc, protocol="stow"))
    ex.backfill()
    ex.run_once()
    assert {r["object"]: r["state"] for r in ex.outbox.rows(IDS[0])} == {"seg": "sent", "secondary_capture": "sent"}
    rejected = ex.outbox.rows(IDS[1])
    assert [r["state"] for r in rejected] == ["rejected", "rejected"]
    assert "did not store it" in rejected[0]["reason"]
    assert len(orthanc.find_instances()) == 2
    attempts = orthanc.get("/statistics")["CountInstances"]
    ex.run_once()                                                        # not retried on its own
    assert orthanc.get("/statistics")["CountInstances"] == attempts
    assert all(r["attempts"] == 1 for r in ex.outbox.rows(IDS[1]))


def test_a_pacs_that_refuses_the_sop_classes_gives_permanent_rejections_shown_in_the_status(orthanc_factory, data):
    j, store = data
    pacs = orthanc_factory(AcceptedTransferSyntaxes=["1.2.840.10008.1.2.4.50"])   # JPEG only: our objects refused
    _done(j, store, IDS[0])
    ex = Exporter(j, store, export_config(pacs))
    ex.backfill()
    ex.run_once()
    status = ex.status()
    assert status["rejected"] == 2 and status["pending"] == 0
    assert all("presentation context rejected" in r["reason"] for r in status["rejections"])
    assert pacs.find_instances() == []


def test_a_wrong_called_ae_title_is_a_permanent_rejection_and_retry_after_the_fix_delivers(orthanc, data):
    j, store = data
    _done(j, store, IDS[0])
    ex = Exporter(j, store, export_config(orthanc, called_ae_title="NOT-PACS"))
    ex.backfill()
    ex.run_once()
    assert all(r["state"] == "rejected" and "Called AE title not recognised" in r["reason"]
               for r in ex.outbox.rows(IDS[0]))
    fixed = Exporter(j, store, export_config(orthanc))                    # config fixed, daemon restarted
    assert fixed.run_once() == 0                                           # still not retried on its own
    assert fixed.retry(all_rejected=True) == 2
    assert fixed.run_once() == 2
    assert len(orthanc.find_instances()) == 2
