"""JSON API: /api/status, /api/results, /api/results/<id>, /api/failures, /healthz."""
from __future__ import annotations

import pytest
from web_fakes import add_result


def test_status_has_integer_counters_runtime_model_and_health(client, daemon):
    daemon.state.update(processed=5, failed=2, queued=3)
    body = client.get("/api/status").get_json()
    assert (body["processed"], body["failed"], body["queued"]) == (5, 2, 3)
    assert all(isinstance(body[k], int) for k in ("processed", "failed", "queued"))
    assert body["runtime"] == "sim"
    assert body["model"] == {"name": "vessel-unet", "version": "1.0.0"}
    assert body["health"] == "ok"
    assert body["runtime_info"]["soc"] == "Ascend310 (simulated)"


def test_status_coerces_numpy_like_and_missing_counters_to_int(client, daemon):
    import numpy as np
    daemon.state.update(processed=np.int64(9), queued=None)
    del daemon.state["failed"]
    body = client.get("/api/status").get_json()
    assert (body["processed"], body["failed"], body["queued"]) == (9, 0, 0)


def test_status_answers_503_json_when_the_daemon_cannot_report(client, daemon):
    def broken():
        raise RuntimeError("journal locked at /secret/path")
    daemon.status = broken
    resp = client.get("/api/status")
    assert resp.status_code == 503
    assert "daemon status unavailable" in resp.get_json()["error"]
    assert b"/secret/path" not in resp.data


def test_results_are_newest_first_with_required_fields(client, daemon):
    first = add_result(daemon, source="a.jpg", seed=1)
    second = add_result(daemon, source="b.jpg", seed=2)
    daemon.journal.upsert("00000000000000aa", source="c.jpg", state="queued")
    items = client.get("/api/results").get_json()["items"]
    assert [i["id"] for i in items] == ["00000000000000aa", second, first]
    for item in items:
        assert set(("id", "source", "state", "created")) <= set(item)
        assert item["state"] in ("queued", "processing", "done", "failed")
        assert item["url"] == "/results/" + item["id"]
    assert items[0]["thumb_url"] is None
    assert items[1]["thumb_url"] == "/results/{}/thumb.jpg".format(second)


def test_results_never_expose_filesystem_paths(client, daemon):
    daemon.journal.upsert("00000000000000ab", source="c.jpg", state="queued", path="/data/capture/c.jpg")
    resp = client.get("/api/results")
    assert b"/data/capture" not in resp.data
    assert "path" not in resp.get_json()["items"][0]


@pytest.mark.parametrize("query,expected", [
    ("?page=1&per_page=2", ["0000000000000004", "0000000000000003"]),
    ("?page=2&per_page=2", ["0000000000000002", "0000000000000001"]),
    ("?page=3&per_page=2", ["0000000000000000"]),
    ("?offset=1&limit=3", ["0000000000000003", "0000000000000002", "0000000000000001"]),
    ("?offset=5", []),
])
def test_results_paginate_by_page_or_offset(client, daemon, query, expected):
    for i in range(5):
        daemon.journal.upsert("%016x" % i, source="%d.jpg" % i, state="queued")
    body = client.get("/api/results" + query).get_json()
    assert [i["id"] for i in body["items"]] == expected


def test_results_report_whether_more_pages_exist(client, daemon):
    for i in range(3):
        daemon.journal.upsert("%016x" % i, source="%d.jpg" % i, state="queued")
    assert client.get("/api/results?per_page=2").get_json()["has_more"] is True
    assert client.get("/api/results?page=2&per_page=2").get_json()["has_more"] is False
    assert client.get("/api/results").get_json()["counts"]["queued"] == 3


@pytest.mark.parametrize("query", ["?page=0", "?page=x", "?per_page=0", "?per_page=100000", "?limit=-1",
                                   "?offset=-5", "?offset=1&page=2"])
def test_results_reject_bad_pagination_with_400_json(client, query):
    resp = client.get("/api/results" + query)
    assert resp.status_code == 400
    assert resp.is_json and resp.get_json()["error"]


def test_result_detail_has_metadata_timings_and_download_urls(client, daemon):
    rid = add_result(daemon, source="eye.png")
    body = client.get("/api/results/" + rid).get_json()
    assert body["id"] == rid and body["state"] == "done" and body["source"] == "eye.png"
    assert body["timings_ms"]["execute"] == 30.0
    assert [s["stage"] for s in body["stages"]] == ["decode", "preprocess", "resize", "execute", "write_bin",
                                                     "render", "total"]
    names = {d["name"]: d for d in body["downloads"]}
    assert set(names) == {"probability.bin", "probability.png", "mask.png", "overlay.png", "thumb.jpg",
                          "result.json"}
    assert names["probability.bin"]["download_url"] == "/results/{}/probability.bin?download=1".format(rid)


def test_result_detail_of_a_failed_capture_carries_its_reason(client, daemon):
    daemon.add_failed("00000000000000f1", "bad.jpg", "no field of view detected")
    body = client.get("/api/results/00000000000000f1").get_json()
    assert body["state"] == "failed"
    assert body["reason"] == "no field of view detected"
    assert body["downloads"] == []


@pytest.mark.parametrize("bad", ["0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0",
                                 "..%2f..%2fetc", "0123456789abcdef%0a"])
def test_result_detail_of_a_malformed_id_is_404_json(client, bad):
    resp = client.get("/api/results/" + bad)
    assert resp.status_code == 404
    assert resp.is_json


def test_result_detail_of_an_unknown_id_is_404(client):
    resp = client.get("/api/results/0123456789abcdef")
    assert resp.status_code == 404 and resp.get_json()["error"] == "no such result"


def test_failures_list_quarantined_inputs_with_reasons_without_paths(client, daemon):
    from vessel_seg.pipeline.store.quarantine import quarantine_file
    src = daemon.capture_dir / "junk.jpg"
    src.write_bytes(b"junk")
    quarantine_file(src, daemon.data_dir / "quarantine", "decode_error", "cannot identify image file")
    resp = client.get("/api/failures")
    items = resp.get_json()["items"]
    assert [(i["source"], i["reason"]) for i in items] == [("junk.jpg", "decode_error")]
    assert str(daemon.data_dir).encode() not in resp.data


def test_healthz_is_200_when_pipeline_and_device_are_healthy(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"


@pytest.mark.parametrize("change,reason", [
    ({"health": "degraded", "health_reason": "disk nearly full"}, "disk nearly full"),
    ({"health": "failed", "health_reason": ""}, "health is failed"),
    ({"device_state": "recovering"}, "device is recovering"),
    ({"device_state": "failed"}, "device is failed"),
    ({"pipeline_state": "stopped"}, "pipeline is stopped"),
])
def test_healthz_is_503_with_a_reason_otherwise(client, daemon, change, reason):
    daemon.state.update(change)
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["reason"] == reason


def test_healthz_is_503_when_status_raises(client, daemon):
    daemon.status = lambda: 1 / 0
    resp = client.get("/healthz")
    assert resp.status_code == 503 and "unavailable" in resp.get_json()["reason"]
