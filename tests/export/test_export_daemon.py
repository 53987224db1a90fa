"""The daemon with dicom.export on, against a real Orthanc: captures become SEG + SC in the PACS; the page,
/api/export and /metrics show the outbox; a rejection is shown and retried from the page and the CLI."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from pacs_helpers import export_config
from pipefakes import InProcessDaemons, daemon_config, fundus_like, tiny_bundle, wait_until, write_image

from vessel_seg.pipeline.cli.main import main as cli
from vessel_seg.web import create_app


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


def _cfg(tmp_path, bundle, export):
    c = daemon_config(tmp_path / "data", bundle)
    c["dicom"]["export"].update(export)
    return c


@pytest.fixture
def daemons():
    started = InProcessDaemons()
    yield started.start
    started.stop_all()



def test_captures_arrive_in_the_pacs_as_seg_and_sc_and_page_api_metrics_show_the_outbox(orthanc, bundle, tmp_path,
                                                                                        daemons):
    d = daemons(_cfg(tmp_path, bundle, export_config(orthanc)))
    for i in range(2):
        write_image(d.paths.capture / ("eye%d.png" % i), fundus_like(180, 160, seed=i))
    wait_until(lambda: d.export_status().get("sent") == 4, what="4 objects sent")
    found = orthanc.find_instances()
    assert sorted(i["MainDicomTags"].get("SOPInstanceUID") for i in found) == sorted(
        r["sop_instance_uid"] for r in d.exporter.outbox.listing())
    modalities = sorted(orthanc.tags(i["ID"])["Modality"] for i in found)
    assert modalities == ["OP", "OP", "SEG", "SEG"]

    client = create_app(d, dict(d.config["web"])).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "PACS export" in page and 'id="export-sent">4<' in page and 'id="export-pending">0<' in page
    body = client.get("/api/export").get_json()
    assert body["enabled"] is True and body["sent"] == 4 and body["pending"] == 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "vessel_seg_export_sent_total 4" in metrics
    assert "vessel_seg_export_outbox_depth 0" in metrics
    assert "vessel_seg_export_rejected_total 0" in metrics
    rid = d.exporter.outbox.listing()[0]["result_id"]
    result_page = client.get("/results/%s" % rid).get_data(as_text=True)
    assert "PACS export" in result_page and "sent" in result_page


def test_a_rejection_is_shown_and_retried_from_the_page_and_the_cli(orthanc, bundle, tmp_path, daemons, capsys):
    wrong = _cfg(tmp_path, bundle, export_config(orthanc, called_ae_title="NOT-PACS"))
    d = daemons(wrong)
    write_image(d.paths.capture / "eye.png", fundus_like(180, 160, seed=3))
    wait_until(lambda: d.export_status().get("rejected") == 2, what="2 rejections")
    client = create_app(d, dict(d.config["web"])).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "Called AE title not recognised" in page and "Retry rejected exports" in page

    resp = client.post("/export/retry", data={"all_rejected": "1"}, headers={"Origin": "http://localhost"})
    assert resp.status_code == 303
    wait_until(lambda: d.export_status().get("rejected") == 2, what="rejected again (the AE title is still wrong)")
    assert client.post("/export/retry", data={"all_rejected": "1"}).status_code == 403   # cross-site guard
    d.stop(10.0)

    fixed = _cfg(tmp_path, bundle, export_config(orthanc))
    d2 = daemons(fixed)
    time.sleep(0.5)
    assert d2.export_status()["rejected"] == 2                     # a restart does not retry rejections
    assert cli(["export-status", "--data-dir", fixed["data_dir"]]) == 0
    out = capsys.readouterr().out
    assert "rejected 2" in out and "Called AE title not recognised" in out
    assert cli(["export-retry", "--all-rejected", "--data-dir", fixed["data_dir"]]) == 0
    assert "2 export(s) pending again" in capsys.readouterr().out
    wait_until(lambda: d2.export_status().get("sent") == 2, timeout=20, what="the CLI retry to be sent")
    assert len(orthanc.find_instances()) == 2


def test_retention_prunes_a_result_only_after_its_export_was_sent_and_the_page_says_so(orthanc_factory, bundle,
                                                                                       tmp_path, daemons):
    pacs = orthanc_factory(start=False)                       # down: the export stays pending
    cfg = _cfg(tmp_path, bundle, export_config(pacs))
    cfg["retention"]["max_age_days"] = 1e-6                  # everything is "old" at once
    d = daemons(cfg)
    d.exporter.backoff_min_s, d.exporter.backoff_max_s = 0.1, 0.3
    # Journal times have second resolution: retention's clock runs 5 s ahead, so a result is "old" even when
    # its export is sent within the second it was made (else the age test waits for the next hourly pass).
    d.retention.now = lambda: datetime.now(timezone.utc) + timedelta(seconds=5)
    write_image(d.paths.capture / "eye.png", fundus_like(180, 160, seed=5))
    wait_until(lambda: d.export_status().get("pending") == 2 and d.exporter.failures >= 1, what="a pending export")
    rid = d.exporter.outbox.listing()[0]["result_id"]
    d.retention.apply()
    assert d.results.is_complete(rid)                         # kept: its export is pending
    pacs.start()
    wait_until(lambda: not (d.paths.results / rid).exists(), what="the pruning after the send")
    assert len(pacs.find_instances()) == 2
    page = create_app(d, dict(d.config["web"])).test_client().get("/").get_data(as_text=True)
    assert 'id="pruned-list"' in page and rid in page and "older than" in page


def test_a_dicom_capture_comes_back_from_the_pacs_in_its_own_study_referencing_the_source(orthanc, bundle,
                                                                                          tmp_path, daemons):
    """DICOM in -> identity -> export: the SEG and the SC join the source's study and patient, and the SEG
    references the source instance with the source's own SOP class."""
    from vessel_seg.pipeline.proving import dicom_files as dcm

    d = daemons(_cfg(tmp_path, bundle, export_config(orthanc)))
    data = dcm.build_dicom(fundus_like(180, 160, seed=7), sop_class=dcm.OP8, uid_seed=77)
    (d.paths.capture / "IM0077").write_bytes(data)
    wait_until(lambda: d.export_status().get("sent") == 2, what="2 objects sent")
    source = "1.2.826.0.1.3680043.10.1234.77"
    arrived = [orthanc.tags(i["ID"]) for i in orthanc.find_instances()]
    assert sorted(t["Modality"] for t in arrived) == ["OP", "SEG"]
    for tags in arrived:
        assert tags["StudyInstanceUID"] == source + ".1"
        assert tags["PatientID"] == dcm.DEFAULT_IDENTITY["patient_id"]
        assert tags["SeriesInstanceUID"] != source + ".2"
    seg = [i for i in orthanc.find_instances() if orthanc.tags(i["ID"])["Modality"] == "SEG"][0]
    full = orthanc.get("/instances/%s/tags?simplify" % seg["ID"])
    ref = full["ReferencedSeriesSequence"][0]["ReferencedInstanceSequence"][0]
    assert ref["ReferencedSOPInstanceUID"] == source + ".3.1"
    assert ref["ReferencedSOPClassUID"] == dcm.OP8
