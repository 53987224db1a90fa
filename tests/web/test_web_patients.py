"""Patients on the page: the results list shows patient id and name, eye and acquisition date and filters by
patient id, name and date range (page and API); the result page shows the DICOM details; /metrics never
carries patient data. A real journal and result store behind the app."""
from __future__ import annotations

import pytest
from web_fakes import FakeDaemon

from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.results import ResultStore
from vessel_seg.vocabulary import DONE, sha256_bytes
from vessel_seg.web import create_app

PATIENTS = [
    ("a", {"patient_id": "PAT-1", "patient_name": "DOE, JANE", "laterality": "R", "acquired": "2024-03-15T10:15:30",
           "sop_uid": "1.2.3.4.5.1", "study_uid": "1.2.3.4", "manufacturer": "Carl Zeiss Meditec",
           "model": "VISUCAM 500", "birth_date": "1970-01-31", "sex": "F", "accession": "ACC9"}),
    ("b", {"patient_id": "PAT-1", "patient_name": "DOE, JANE", "laterality": "L", "acquired": "2024-03-15T10:16:00"}),
    ("c", {"patient_id": "PAT-2", "patient_name": "ROE, RICHARD", "laterality": "R",
           "acquired": "2024-05-01T08:00:00"}),
    ("d", {}),
]


@pytest.fixture
def setup(tmp_path):
    daemon = FakeDaemon(tmp_path / "data")
    journal = Journal(tmp_path / "data" / "state" / "journal.sqlite3")
    daemon.journal = journal
    daemon.results = ResultStore(tmp_path / "data", journal=journal)
    ids = {}
    for name, identity in PATIENTS:
        rid, _ = journal.add(sha256_bytes(name.encode()), name + ".dcm", None, 10, identity=identity)
        ids[name] = rid
    journal.mark(ids["a"], DONE)   # done but no result folder: the journal row still shows
    yield daemon, ids
    journal.close()


@pytest.fixture
def client(setup):
    return create_app(setup[0], {}).test_client()


def _ids(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [item["id"] for item in resp.get_json()["items"]]


def test_api_items_carry_identity_eye_and_acquisition_date(client, setup):
    _daemon, ids = setup
    items = {i["id"]: i for i in client.get("/api/results").get_json()["items"]}
    c = items[ids["c"]]
    assert c["identity"]["patient_id"] == "PAT-2" and c["identity"]["patient_name"] == "ROE, RICHARD"
    assert c["eye"] == "OD" and items[ids["b"]]["eye"] == "OS"
    assert c["acquired_date"] == "2024-05-01"
    assert items[ids["d"]]["identity"] == {} and items[ids["d"]]["eye"] is None


@pytest.mark.parametrize("query,expected", [
    ("patient_id=pat-1", ["b", "a"]),
    ("patient_name=roe", ["c"]),
    ("date_from=2024-04-01", ["c"]),
    ("date_to=2024-03-15", ["b", "a"]),
    ("date_from=2024-03-15&date_to=2024-03-15&patient_name=jane", ["b", "a"]),
    ("patient_name=%25", []),
])
def test_api_filters_by_patient_id_name_and_date_range(client, setup, query, expected):
    _daemon, ids = setup
    assert _ids(client.get("/api/results?" + query)) == [ids[n] for n in expected]


@pytest.mark.parametrize("query", ["date_from=15.03.2024", "date_from=2024-05-01&date_to=2024-01-01",
                                   "patient_id=" + "x" * 65])
def test_bad_filters_are_a_400_with_a_reason(client, query):
    resp = client.get("/api/results?" + query)
    assert resp.status_code == 400
    assert client.get("/results?" + query).status_code == 400


def test_the_results_page_lists_patients_and_keeps_the_filter(client):
    html = client.get("/results?patient_id=PAT-2").get_data(as_text=True)
    assert "ROE, RICHARD" in html and "PAT-2" in html and "OD" in html and "acquired 2024-05-01" in html
    assert "DOE, JANE" not in html
    assert 'value="PAT-2"' in html


def test_the_result_page_shows_the_dicom_details(client, setup):
    _daemon, ids = setup
    html = client.get("/results/" + ids["c"]).get_data(as_text=True)
    assert "Patient and acquisition" in html and "ROE, RICHARD" in html
    html = client.get("/results/" + ids["d"]).get_data(as_text=True)
    assert "Patient and acquisition" not in html


def test_metrics_carry_no_patient_data(client):
    text = client.get("/metrics").get_data(as_text=True)
    for secret in ("PAT-1", "PAT-2", "DOE", "ROE", "1.2.3.4"):
        assert secret not in text
