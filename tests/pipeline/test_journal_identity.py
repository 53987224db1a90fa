"""Journal schema version 2: identities and frames. An old (version 1) journal upgrades in place, keeping its
rows; identities are stored, returned and filtered; the frames of one file are found together."""
from __future__ import annotations

import sqlite3

import pytest

from vessel_seg.pipeline.store import journal as journal_mod
from vessel_seg.pipeline.store.journal import Journal, JournalError
from vessel_seg.vocabulary import DONE, sha256_bytes


def _v1_journal(path):
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in journal_mod._SCHEMA_V1:
        con.execute(statement)
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    sha = sha256_bytes(b"old")
    con.execute("INSERT INTO captures (id, sha256, source, path, state, reason, attempts, created, updated, size, "
                "result_dir) VALUES (?, ?, 'old.png', '/c/old.png', 'done', NULL, 1, '2026-01-01T00:00:00Z', "
                "'2026-01-01T00:00:00Z', 3, '/r/x')", (sha[:16], sha))
    con.close()
    return sha[:16]


def test_a_version_1_journal_upgrades_and_keeps_its_rows(tmp_path):
    path = tmp_path / "journal.sqlite3"
    old_id = _v1_journal(path)
    with Journal(path) as j:
        assert j.schema_version() == 2 == journal_mod.SCHEMA_VERSION
        row = j.get(old_id)
        assert row["source"] == "old.png" and row["state"] == DONE and row["result_dir"] == "/r/x"
        assert row["identity"] == {} and row["frame"] is None and row["file_sha256"] is None
        rid, new = j.add(sha256_bytes(b"new"), "new.dcm", None, 5, identity={"patient_id": "P1"})
        assert new and j.get(rid)["identity"] == {"patient_id": "P1"}
    with Journal(path) as j:                 # opening again migrates nothing more
        assert j.schema_version() == 2 and len(j.list()) == 2


def test_identity_is_stored_with_a_new_row_and_unknown_fields_are_dropped(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as j:
        rid, _ = j.add(sha256_bytes(b"a"), "a.dcm", None, 1,
                       identity={"patient_id": "P1", "laterality": "R", "colour": "blue", "sex": ""})
        assert j.get(rid)["identity"] == {"patient_id": "P1", "laterality": "R"}
        j.set_identity(rid, {"patient_id": "P2"})
        assert j.get(rid)["identity"] == {"patient_id": "P2"}
        assert j.recover()[0]["identity"] == {"patient_id": "P2"}


def test_frames_of_one_file_are_siblings(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as j:
        file_sha = sha256_bytes(b"file")
        for i in (2, 0, 1):
            j.add(sha256_bytes(b"f%d" % i), "mf.dcm", "/c/mf.dcm", 9, frame=i, frames=3, file_sha256=file_sha)
        j.add(sha256_bytes(b"other"), "x.dcm", None, 1)
        assert [r["frame"] for r in j.siblings(file_sha)] == [0, 1, 2]
        assert all(r["frames"] == 3 for r in j.siblings(file_sha))


def test_list_filters(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as j:
        j.add(sha256_bytes(b"1"), "1", None, 1, identity={"patient_id": "A-1", "patient_name": "DOE, JANE",
                                                            "acquired": "2024-03-15T10:00:00"})
        j.add(sha256_bytes(b"2"), "2", None, 1, identity={"patient_id": "B-2", "patient_name": "100% MAX_X",
                                                            "acquired": "2024-04-01"})
        j.add(sha256_bytes(b"3"), "3", None, 1)

        def sources(**f):
            return [r["source"] for r in j.list(filters=f)]

        assert sources(patient_id="a-1") == ["1"]
        assert sources(patient_name="jane") == ["1"]
        assert sources(patient_name="%") == ["2"] and sources(patient_name="_X") == ["2"]
        assert sources(patient_name="0%_") == []
        assert sources(date_from="2024-03-16") == ["2"] and sources(date_to="2024-03-15") == ["1"]
        assert sources(date_from="2024-01-01", date_to="2024-12-31") == ["2", "1"]
        assert sources(patient_id="") == ["3", "2", "1"]
        with pytest.raises(JournalError):
            j.list(filters={"study": "x"})
