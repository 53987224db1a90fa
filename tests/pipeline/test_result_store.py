"""Result store and quarantine: complete-or-absent results, validated ids and names, listings."""
from __future__ import annotations

import json
import os

import pytest

from vessel_seg.pipeline.engine.binfile import PROB_NBYTES
from vessel_seg.pipeline.store.quarantine import quarantine_file
from vessel_seg.pipeline.store.results import ResultStore, is_complete, write_result
from vessel_seg.vocabulary import RESULT_FILES

RID = "0123456789abcdef"


def _files():
    return {name: (b"\0" * PROB_NBYTES if name == "probability.bin" else b"data-" + name.encode())
            for name in RESULT_FILES.values()}


def _write(store, rid=RID, source="a.png"):
    return write_result(store.results_dir / rid, _files(), {"id": rid, "source": source, "created": "t",
                                                            "vessel_density_fov": 0.1, "timings_ms": {"total": 5}})


class FakeJournal(object):
    def __init__(self, rows):
        self.rows = rows

    def get(self, rid):
        return next((r for r in self.rows if r["id"] == rid), None)

    def list(self, offset, limit, state=None):
        return self.rows[offset:offset + limit]

    def counts(self):
        out = {}
        for r in self.rows:
            out[r["state"]] = out.get(r["state"], 0) + 1
        return out


def test_written_result_is_complete_and_lists_its_files(tmp_path):
    store = ResultStore(tmp_path)
    _write(store)
    assert store.is_complete(RID)
    meta = store.get(RID)
    assert meta["state"] == "done" and meta["files"] == RESULT_FILES
    assert [i["id"] for i in store.list()] == [RID]


def test_folder_without_result_json_is_not_a_result(tmp_path):
    store = ResultStore(tmp_path)
    _write(store)
    os.remove(str(store.results_dir / RID / "result.json"))
    assert not store.is_complete(RID) and store.get(RID) is None and store.list() == []


def test_short_probability_bin_makes_a_result_incomplete(tmp_path):
    store = ResultStore(tmp_path)
    _write(store)
    (store.results_dir / RID / "probability.bin").write_bytes(b"\0" * 10)
    assert not is_complete(store.results_dir / RID)


def test_rewriting_drops_the_stale_result_json_first(tmp_path):
    store = ResultStore(tmp_path)
    _write(store)
    files = _files()
    files["bogus.txt"] = b"x"
    with pytest.raises(ValueError):
        write_result(store.results_dir / RID, files, {})
    assert store.file_path(RID, "result.json") is not None  # refused before touching anything


def test_redoing_a_result_removes_temp_files_of_a_write_killed_midway(tmp_path):
    from vessel_seg.pipeline.store.results import begin_result

    folder = tmp_path / "results" / RID
    folder.mkdir(parents=True)
    (folder / ".thumb.jpg.0123456789ab.tmp").write_bytes(b"half a thumbnail")
    (folder / ".result.json.a1b2c3d4e5f6.tmp").write_bytes(b"{")
    (folder / "probability.bin").write_bytes(b"\0" * PROB_NBYTES)
    begin_result(folder)
    assert sorted(os.listdir(str(folder))) == ["probability.bin"]


@pytest.mark.parametrize("rid,name", [
    ("../../etc", "passwd"), (RID, "../result.json"), (RID, "input.png"), ("0123456789ABCDEF", "mask.png"),
    ("0123", "mask.png"), (None, "mask.png"),
])
def test_file_path_only_serves_known_names_of_valid_ids(tmp_path, rid, name):
    store = ResultStore(tmp_path)
    _write(store)
    assert store.file_path(rid, name) is None


def test_file_path_returns_existing_allowed_files(tmp_path):
    store = ResultStore(tmp_path)
    _write(store)
    assert store.file_path(RID, "mask.png") == store.results_dir / RID / "mask.png"


def test_with_a_journal_listing_includes_pending_and_failed_items(tmp_path):
    rows = [{"id": "1" * 16, "source": "q.png", "state": "queued", "created": "c2"},
            {"id": RID, "source": "a.png", "state": "done", "created": "c1"},
            {"id": "2" * 16, "source": "bad.png", "state": "failed", "created": "c0", "reason": "not_an_image"}]
    store = ResultStore(tmp_path, FakeJournal(rows))
    _write(store)
    items = store.list(0, 10)
    assert [(i["id"], i["state"]) for i in items] == [(r["id"], r["state"]) for r in rows]
    assert items[1]["vessel_density_fov"] == 0.1
    assert store.get("2" * 16)["reason"] == "not_an_image"
    counts = store.counts()
    assert counts["queued"] == 1 and counts["done"] == 1 and counts["failed"] == 1 and counts["processing"] == 0


def test_quarantine_moves_the_file_and_writes_a_reason(tmp_path):
    src = tmp_path / "capture" / "bad name.jpg"
    src.parent.mkdir()
    src.write_bytes(b"not a jpeg")
    qdir = tmp_path / "quarantine"
    target = quarantine_file(src, qdir, "not_an_image", "content is not an image", sha256="ab" * 32,
                             result_id=RID)
    assert not src.exists() and target.read_bytes() == b"not a jpeg"
    assert target.name == RID + "__bad name.jpg"
    info = json.loads((qdir / (target.name + ".reason.json")).read_text())
    assert info["reason"] == "not_an_image" and info["sha256"] == "ab" * 32 and info["time"].endswith("Z")
    store = ResultStore(tmp_path)
    assert store.quarantined()[0]["file"] == target.name and store.counts()["quarantined"] == 1


def test_quarantining_the_same_name_twice_keeps_both(tmp_path):
    qdir = tmp_path / "q"
    for _ in range(2):
        src = tmp_path / "x.png"
        src.write_bytes(b"x")
        quarantine_file(src, qdir, "r", "d", result_id=RID)
    assert len([p for p in os.listdir(str(qdir)) if p.endswith(".reason.json")]) == 2


def test_quarantine_of_a_vanished_file_still_records_the_reason(tmp_path):
    target = quarantine_file(tmp_path / "gone.png", tmp_path / "q", "empty_file", "0 bytes")
    info = json.loads((tmp_path / "q" / (target.name + ".reason.json")).read_text())
    assert info["missing"] is True
