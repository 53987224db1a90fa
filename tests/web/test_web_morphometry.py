"""The result page's morphometry section (values + width-distribution SVG), the API and the CSV download."""
from __future__ import annotations

import csv
import io
import json

from web_fakes import add_result

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.engine.morphometry import measure
from vessel_seg.pipeline.store.atomic import atomic_write_json
from vessel_seg.pipeline.store.measurements import CSV_COLUMNS


def add_measured_result(daemon, identity=None, seed=0):
    rid = add_result(daemon, source="eye%d.png" % seed, seed=seed)
    path = daemon.results.result_dir(rid) / "result.json"
    meta = json.loads(path.read_text())
    rgb, vessels, fov = make_fundus(500, 480, seed=seed)
    meta["morphometry"] = measure(vessels, fov, rgb)
    if identity:
        meta["identity"] = identity
    atomic_write_json(path, meta)
    return rid, meta


def test_the_result_page_shows_the_measurements_and_a_width_plot(client, daemon):
    rid, meta = add_measured_result(daemon)
    html = client.get("/results/" + rid).get_data(as_text=True)
    assert 'id="morphometry"' in html and "Fractal dimension" in html and "Tortuosity, arc / chord" in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="width-plot"' in html and "<rect" in html
    assert "%.2f %%" % (100 * meta["morphometry"]["density"]["fov"]) in html
    assert "style=" not in html.split('id="morphometry"')[1].split("</section>")[0]   # CSP: no inline styles


def test_a_result_without_a_disc_says_why_its_zones_are_empty(client, daemon):
    rid, meta = add_measured_result(daemon)
    meta["morphometry"]["optic_disc"] = {"found": False, "reason": "no region clearly brighter", "contrast": 0.3}
    meta["morphometry"]["density"].update(zone_b=None, zone_c=None,
                                          zone_reason="optic disc not found: no region clearly brighter")
    atomic_write_json(daemon.results.result_dir(rid) / "result.json", meta)
    html = client.get("/results/" + rid).get_data(as_text=True)
    assert "Zones B and C: optic disc not found: no region clearly brighter" in html


def test_a_result_from_before_morphometry_still_renders(client, daemon):
    rid = add_result(daemon)
    resp = client.get("/results/" + rid)
    assert resp.status_code == 200 and 'id="morphometry"' not in resp.get_data(as_text=True)


def test_the_api_returns_the_morphometry_object(client, daemon):
    rid, meta = add_measured_result(daemon)
    body = client.get("/api/results/" + rid).get_json()
    assert body["morphometry"]["fractal_dimension"] == meta["morphometry"]["fractal_dimension"]
    assert body["morphometry"]["width"]["histogram"]["fraction"] == meta["morphometry"]["width"]["histogram"][
        "fraction"]


def test_the_results_list_links_the_csv_with_patient_eye_and_date(client, daemon):
    add_measured_result(daemon, seed=1)
    rid, _ = add_measured_result(daemon, seed=2, identity={"patient_id": "P9", "laterality": "OS",
                                                          "acquisition_datetime": "2025-01-01T00:00:00Z"})
    assert 'href="/results.csv"' in client.get("/results").get_data(as_text=True)
    resp = client.get("/results.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert list(table[0]) == list(CSV_COLUMNS) and len(table) == 2
    row = [r for r in table if r["id"] == rid][0]
    assert (row["patient_id"], row["laterality"], row["acquisition_datetime"]) == ("P9", "OS", "2025-01-01T00:00:00Z")
