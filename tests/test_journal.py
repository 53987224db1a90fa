"""pipeline.journal: the durable SQLite captures journal that makes the daemon restartable."""
from __future__ import annotations

import hashlib
import sqlite3
import threading

import pytest

from vessel_seg.pipeline.store import journal as journal_mod
from vessel_seg.pipeline.store.journal import Journal, JournalError, UnknownCaptureError
from vessel_seg.vocabulary import sha256_file


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "state" / "journal.sqlite3"


@pytest.fixture
def j(db):
    jr = Journal(db)
    yield jr
    jr.close()


def test_creates_the_database_in_wal_mode_with_its_parent_folder(db, j):
    assert db.is_file()
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    assert {"captures", "schema_version"} <= tables
    assert j.schema_version() == journal_mod.SCHEMA_VERSION


def test_add_records_a_queued_row_whose_id_is_the_first_16_hex_of_the_sha(j):
    s = sha("a")
    rid, is_new = j.add(s, "a.png", "/data/capture/a.png", 123)
    assert (rid, is_new) == (s[:16], True)
    row = j.get(rid)
    assert row["sha256"] == s and row["source"] == "a.png" and row["path"] == "/data/capture/a.png"
    assert row["state"] == "queued" and row["attempts"] == 0 and row["size"] == 123 and row["reason"] is None
    assert row["created"].endswith("Z") and row["created"] == row["updated"]


def test_the_same_content_under_another_name_is_not_new_and_keeps_the_first_row(j):
    s = sha("same")
    first = j.add(s, "one.png", "/c/one.png", 10)
    second = j.add(s.upper(), "two.jpg", "/c/two.jpg", 10)
    assert first == (s[:16], True) and second == (s[:16], False)
    assert j.get(s[:16])["source"] == "one.png"
    assert j.counts()["queued"] == 1


@pytest.mark.parametrize("bad_sha", ["", "xyz", "0" * 63, "g" * 64, None])
def test_add_rejects_a_malformed_sha256_and_records_nothing(j, bad_sha):
    with pytest.raises(JournalError, match="sha256"):
        j.add(bad_sha, "a.png", "/c/a.png", 1)
    assert sum(j.counts().values()) == 0


def test_start_marks_processing_and_counts_attempts(j):
    rid, _ = j.add(sha("s"), "s.png", "/c/s.png", 1)
    assert j.start(rid) == 1
    assert j.start(rid) == 2
    row = j.get(rid)
    assert row["state"] == "processing" and row["attempts"] == 2


def test_mark_sets_state_and_reason_and_a_later_mark_clears_the_reason(j):
    rid, _ = j.add(sha("m"), "m.png", "/c/m.png", 1)
    j.mark(rid, "failed", "decode_error: truncated PNG")
    assert j.get(rid)["state"] == "failed" and j.get(rid)["reason"] == "decode_error: truncated PNG"
    j.mark(rid, "done", result_dir="/data/results/" + rid)
    row = j.get(rid)
    assert row["state"] == "done" and row["reason"] is None and row["result_dir"] == "/data/results/" + rid


def test_mark_with_an_invalid_state_raises_and_changes_nothing(j):
    rid, _ = j.add(sha("x"), "x.png", "/c/x.png", 1)
    with pytest.raises(JournalError, match="invalid state"):
        j.mark(rid, "finished")
    assert j.get(rid)["state"] == "queued"


def test_mark_and_start_of_an_unknown_id_raise_a_key_error(j):
    with pytest.raises(UnknownCaptureError):
        j.mark("0123456789abcdef", "done")
    with pytest.raises(KeyError):
        j.start("0123456789abcdef")


def test_get_returns_none_for_unknown_or_malformed_ids(j):
    assert j.get("0123456789abcdef") is None
    assert j.get("../etc/passwd") is None


def test_the_schema_refuses_unknown_states(db, j):
    con = sqlite3.connect(str(db))
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO captures (id, sha256, source, state, attempts, created, updated) "
                        "VALUES ('aaaaaaaaaaaaaaaa', 'x', 's', 'lost', 0, 't', 't')")
    finally:
        con.close()


def test_recover_requeues_interrupted_items_and_returns_the_queue_oldest_first(j, monkeypatch):
    clock = iter(["2026-01-01T00:00:0%dZ" % i for i in range(10)])
    monkeypatch.setattr(journal_mod, "_now_iso", lambda: next(clock))
    ids = [j.add(sha(n), n, "/c/" + n, 1)[0] for n in ("q1", "p2", "d3", "f4", "q5")]
    j.start(ids[1])
    j.mark(ids[2], "done")
    j.mark(ids[3], "failed", "bad")
    rows = j.recover()
    assert [r["id"] for r in rows] == [ids[0], ids[1], ids[4]]
    assert all(r["state"] == "queued" for r in rows)
    assert j.get(ids[1])["attempts"] == 1          # the interrupted attempt is still counted
    assert j.get(ids[2])["state"] == "done" and j.get(ids[3])["state"] == "failed"


def test_rows_survive_close_and_reopen(db):
    first = Journal(db)
    rid, _ = first.add(sha("persist"), "p.png", "/c/p.png", 7)
    first.start(rid)
    first.close()
    again = Journal(db)
    try:
        assert again.get(rid)["state"] == "processing"
        assert again.add(sha("persist"), "other.png", "/c/other.png", 7) == (rid, False)
        assert [r["id"] for r in again.recover()] == [rid]
    finally:
        again.close()


def test_list_is_newest_first_with_paging_and_state_filter(j, monkeypatch):
    clock = iter(["2026-01-01T00:00:%02dZ" % i for i in range(20)])
    monkeypatch.setattr(journal_mod, "_now_iso", lambda: next(clock))
    ids = [j.add(sha(str(i)), "%d.png" % i, None, i)[0] for i in range(5)]
    j.mark(ids[1], "done")
    j.mark(ids[3], "done")
    assert [r["id"] for r in j.list(0, 10)] == ids[::-1]
    assert [r["id"] for r in j.list(1, 2)] == [ids[3], ids[2]]
    assert [r["id"] for r in j.list(0, 10, state="done")] == [ids[3], ids[1]]
    assert j.list(10, 5) == []


def test_list_orders_rows_created_in_the_same_second_by_insertion(j):
    ids = [j.add(sha("s%d" % i), "s%d.png" % i, None, 1)[0] for i in range(4)]
    assert [r["id"] for r in j.list(0, 4)] == ids[::-1]


@pytest.mark.parametrize("offset, limit", [(-1, 5), (0, -1), ("0", 5)])
def test_list_rejects_bad_paging(j, offset, limit):
    with pytest.raises(JournalError):
        j.list(offset, limit)


def test_counts_report_every_state(j):
    a, _ = j.add(sha("a"), "a.png", None, 1)
    b, _ = j.add(sha("b"), "b.png", None, 1)
    j.add(sha("c"), "c.png", None, 1)
    j.start(a)
    j.mark(b, "failed", "x")
    assert j.counts() == {"queued": 1, "processing": 1, "done": 0, "failed": 1}


def test_counts_since_counts_only_rows_updated_at_or_after_the_timestamp(j, monkeypatch):
    times = {"now": "2026-03-01T09:00:00Z"}
    monkeypatch.setattr(journal_mod, "_now_iso", lambda: times["now"])
    old, _ = j.add(sha("old"), "old.png", None, 1)
    j.mark(old, "done")
    times["now"] = "2026-03-01T10:30:00Z"
    new, _ = j.add(sha("new"), "new.png", None, 1)
    j.mark(new, "done")
    failed, _ = j.add(sha("bad"), "bad.png", None, 1)
    j.mark(failed, "failed", "decode")
    assert j.counts_since("2026-03-01T10:00:00Z") == {"queued": 0, "processing": 0, "done": 1, "failed": 1}
    assert j.counts_since("2026-03-01T10:30:00Z")["done"] == 1
    assert j.counts_since("2026-03-01T11:30:00+01:00")["done"] == 1      # same instant, other zone
    assert j.counts_since("2026-03-01T08:00:00")["done"] == 2             # naive = UTC
    with pytest.raises(JournalError, match="ISO-8601"):
        j.counts_since("yesterday")


def test_concurrent_threads_add_and_update_without_losing_or_duplicating_rows(j):
    shared = sha("shared")
    new_flags = []
    errors = []
    lock = threading.Lock()

    def worker(t):
        try:
            for i in range(40):
                rid, is_new = j.add(sha("t%d-%d" % (t, i)), "t%d-%d.png" % (t, i), None, i)
                assert is_new
                j.start(rid)
                j.mark(rid, "done" if i % 2 else "failed", None if i % 2 else "x")
                _rid, shared_new = j.add(shared, "shared-%d-%d.png" % (t, i), None, 1)
                with lock:
                    new_flags.append(shared_new)
                j.counts()
                j.list(0, 5)
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert new_flags.count(True) == 1 and len(new_flags) == 240
    assert j.counts() == {"queued": 1, "processing": 0, "done": 120, "failed": 120}


def test_another_connection_reads_while_the_journal_is_open(db, j):
    rid, _ = j.add(sha("r"), "r.png", None, 1)
    j.mark(rid, "done")
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
    try:
        assert con.execute("SELECT state FROM captures WHERE id = ?", (rid,)).fetchone()[0] == "done"
    finally:
        con.close()


def test_a_closed_journal_refuses_use_and_close_is_idempotent(j):
    j.close()
    j.close()
    assert j.closed
    with pytest.raises(JournalError, match="closed"):
        j.counts()
    with pytest.raises(JournalError, match="closed"):
        j.add(sha("late"), "late.png", None, 1)


def test_a_file_that_is_not_a_database_gives_a_clear_error_and_is_left_untouched(tmp_path):
    path = tmp_path / "journal.sqlite3"
    garbage = b"this is not sqlite" * 100
    path.write_bytes(garbage)
    with pytest.raises(JournalError, match="cannot use the journal"):
        Journal(path)
    assert path.read_bytes() == garbage


def test_a_journal_from_newer_software_is_refused(db):
    Journal(db).close()
    con = sqlite3.connect(str(db))
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(JournalError, match="newer than this software"):
        Journal(db)


def test_sha256_file_hashes_the_content_in_chunks(tmp_path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError):
        sha256_file(path, chunk=0)
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing.bin")
