"""The outbox (journal schema 2) and its worker, with a fake PACS: durable states, backoff while the PACS is
down, permanent rejections kept and shown, the retry action, and nothing lost across restarts."""
from __future__ import annotations

import sqlite3

import pytest
from pacs_helpers import make_result

from vessel_seg.pipeline.export.exporter import Exporter, backoff_s
from vessel_seg.pipeline.export.transport import PermanentRejection, TransientError
from vessel_seg.pipeline.store import journal as journal_mod
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.outbox import Outbox
from vessel_seg.pipeline.store.results import ResultStore

A, B = "00000000000000a0", "00000000000000b0"
CFG = {"enabled": True, "protocol": "dimse", "host": "127.0.0.1", "port": 1, "called_ae_title": "PACS",
       "calling_ae_title": "VESSELSEG", "url": None, "objects": ["seg", "secondary_capture"]}


class FakePacs(object):
    """A transport: ``down`` raises TransientError, ``refuse`` (a set of names) raises PermanentRejection."""

    def __init__(self):
        self.down = False
        self.refuse = set()
        self.received = []
        self.attempts = 0

    def describe(self):
        return "fake PACS"

    def send(self, name, data):
        self.attempts += 1
        if self.down:
            raise TransientError("connection refused")
        if name in self.refuse:
            raise PermanentRejection("status 0xA900")
        self.received.append((name, data))


class Clock(object):
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def env(tmp_path):
    j = Journal(tmp_path / "state" / "journal.sqlite3")
    store = ResultStore(tmp_path, j)
    pacs, clock = FakePacs(), Clock()
    for rid in (A, B):
        make_result(store.results_dir, rid)
        j.add(rid + "0" * 48, rid + ".png", None, 1)
        j.mark(rid, "done")
    ex = Exporter(j, store, CFG, transport=pacs, clock=clock)
    yield j, store, ex, pacs, clock
    j.close()


def test_a_version_1_journal_is_upgraded_with_an_empty_outbox_and_its_rows_kept(tmp_path):
    path = tmp_path / "journal.sqlite3"
    con = sqlite3.connect(str(path))
    for statement in journal_mod._SCHEMA_V1:
        con.execute(statement)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO captures (id, sha256, source, state, attempts, created, updated) VALUES "
                "(?, ?, 'old.png', 'done', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')", (A, A + "0" * 48))
    con.commit()
    con.close()
    j = Journal(path)
    try:
        assert j.schema_version() == 3 == journal_mod.SCHEMA_VERSION
        assert j.get(A)["source"] == "old.png"
        assert Outbox(j).counts() == {"pending": 0, "sent": 0, "rejected": 0}
        assert Outbox(j).unexported_results() == [A]
    finally:
        j.close()


def test_uids_are_recorded_pending_before_the_first_send_and_enqueueing_again_changes_nothing(env):
    j, _store, ex, pacs, _clock = env
    assert ex.enqueue(A) == 2 and pacs.attempts == 0
    rows = ex.outbox.rows(A)
    assert [r["object"] for r in rows] == ["secondary_capture", "seg"]
    assert all(r["state"] == "pending" and r["sop_instance_uid"].startswith("1.2.") for r in rows)
    assert ex.enqueue(A) == 0
    assert ex.outbox.rows(A) == rows


def test_due_rows_are_sent_and_marked_sent(env):
    _j, _store, ex, pacs, _clock = env
    ex.enqueue(A)
    ex.enqueue(B)
    assert ex.run_once() == 4
    assert ex.outbox.counts() == {"pending": 0, "sent": 4, "rejected": 0}
    assert [n for n, _ in pacs.received] == [A + "/secondary_capture", A + "/seg", B + "/secondary_capture",
                                             B + "/seg"]


def test_while_the_pacs_is_down_the_outbox_is_held_back_with_doubling_backoff_then_drains_once(env):
    _j, _store, ex, pacs, clock = env
    ex.enqueue(A)
    ex.enqueue(B)
    pacs.down = True
    assert ex.run_once() == 0 and pacs.attempts == 1          # one try per backoff, not one per object
    assert ex.run_once() == 0 and pacs.attempts == 1          # held back
    clock.t += backoff_s(1)
    ex.run_once()
    assert pacs.attempts == 2 and ex.hold_until - clock.t == backoff_s(2) == 2 * backoff_s(1)
    assert ex.outbox.counts()["pending"] == 4
    assert "connection refused" in ex.outbox.rows(A)[0]["reason"]
    pacs.down = False
    clock.t += backoff_s(2)
    assert ex.run_once() == 4
    assert sorted(n for n, _ in pacs.received) == sorted(
        [A + "/secondary_capture", A + "/seg", B + "/secondary_capture", B + "/seg"])   # each exactly once


def test_backoff_doubles_from_2_s_and_is_capped_at_5_minutes():
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(30) == 300.0


def test_a_permanent_rejection_is_kept_with_its_reason_and_not_retried_until_asked(env):
    _j, _store, ex, pacs, _clock = env
    pacs.refuse = {A + "/seg"}
    ex.enqueue(A)
    ex.run_once()
    row = ex.outbox.get(A, "seg")
    assert row["state"] == "rejected" and "0xA900" in row["reason"]
    before = pacs.attempts
    ex.run_once()
    assert pacs.attempts == before                               # not retried on its own
    st = ex.status()
    assert st["rejected"] == 1 and st["rejections"][0]["result_id"] == A
    pacs.refuse = set()
    assert ex.retry(all_rejected=True) == 1
    ex.run_once()
    assert ex.outbox.get(A, "seg")["state"] == "sent"


def test_a_missing_result_file_is_a_rejection_with_the_reason(env):
    _j, store, ex, _pacs, _clock = env
    ex.enqueue(A)
    (store.results_dir / A / "mask.png").unlink()
    ex.run_once()
    assert "mask.png" in ex.outbox.get(A, "seg")["reason"]
    assert ex.outbox.get(A, "secondary_capture")["state"] == "sent"


def test_a_restart_resends_what_was_pending_with_the_same_instance_and_backfills_done_results(env, tmp_path):
    j, store, ex, pacs, clock = env
    ex.enqueue(A)
    uids = [r["sop_instance_uid"] for r in ex.outbox.rows(A)]
    j.close()                                                   # "kill": nothing was sent
    j2 = Journal(tmp_path / "state" / "journal.sqlite3")
    try:
        ex2 = Exporter(j2, ResultStore(tmp_path, j2), CFG, transport=pacs, clock=clock)
        assert ex2.backfill() == 1                              # B was done but never queued
        ex2.run_once()
        assert [r["sop_instance_uid"] for r in ex2.outbox.rows(A)] == uids
        assert ex2.outbox.counts() == {"pending": 0, "sent": 4, "rejected": 0}
    finally:
        j2.close()


def test_retry_of_one_result_makes_its_rejected_and_pending_rows_due_now(env):
    _j, _store, ex, pacs, clock = env
    ex.enqueue(A)
    pacs.down = True
    assert ex.run_once() == 0 and ex.hold_until > clock.t
    pacs.down = False
    assert ex.retry(A) == 2
    assert ex.run_once() == 2


def test_an_object_that_keeps_failing_while_others_go_through_backs_off_on_its_own(env):
    _j, _store, ex, pacs, clock = env

    class Flaky(FakePacs):
        def send(self, name, data):
            if name == A + "/seg":
                self.seg_tries = getattr(self, "seg_tries", 0) + 1
                raise TransientError("status 0xA700")
            FakePacs.send(self, name, data)

    ex.transport = flaky = Flaky()
    ex.enqueue(A)
    ex.enqueue(B)
    for _ in range(6):
        ex.run_once()
        clock.t += backoff_s(1)
    row = ex.outbox.get(A, "seg")
    assert row["state"] == "pending" and flaky.seg_tries == 3        # at 0, 2 and 6 s: its own backoff grows
    assert ex.outbox.counts()["sent"] == 3
