"""Retention: results are pruned oldest first by age and by free space, never while their export is pending;
the input goes with the result, the journal keeps the row, and the log and the status say what was pruned."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from pacs_helpers import make_result

from vessel_seg.pipeline.appliance.config import default_config
from vessel_seg.pipeline.appliance.datadir import DataPaths
from vessel_seg.pipeline.appliance.retention import DiskUsage, Retention
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.outbox import Outbox
from vessel_seg.pipeline.store.results import ResultStore

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
IDS = ["%016x" % (0xc000 + i) for i in range(4)]


class Disk(object):
    """A file system of 1000 bytes whose free space grows by what each pruning frees (100 per result)."""

    def __init__(self, free):
        self.free = free

    def __call__(self, _path):
        return DiskUsage(1000, 1000 - self.free, self.free)


@pytest.fixture
def env(tmp_path, monkeypatch):
    cfg = default_config()
    cfg["data_dir"] = str(tmp_path / "data")
    paths = DataPaths.from_config(cfg)
    paths.create(archive=False)
    j = Journal(paths.journal)
    store = ResultStore(paths.root, j)
    for age_days, rid in zip((40, 20, 5, 1), IDS):                # oldest first
        created = (NOW - timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        monkeypatch.setattr("vessel_seg.pipeline.store.journal._now_iso", lambda c=created: c)
        src = paths.capture / (rid + ".png")
        src.write_bytes(b"input")
        j.add(rid + "0" * 48, src.name, str(src), 5)
        j.mark(rid, "done")
        make_result(store.results_dir, rid)
    monkeypatch.undo()
    yield cfg, paths, j, store
    j.close()


def _retention(cfg, paths, j, disk, **policy):
    cfg["retention"].update(policy)
    r = Retention(cfg, paths, j, disk_usage=disk, now=lambda: NOW)
    return r


def test_results_older_than_max_age_are_pruned_with_their_inputs_and_the_journal_keeps_the_row(env, caplog):
    cfg, paths, j, store = env
    r = _retention(cfg, paths, j, Disk(900), max_age_days=10, min_free_percent=10)
    with caplog.at_level(logging.INFO, logger="vessel_seg.pipeline.appliance.retention"):
        pruned = r.apply()
    assert [p.result_id for p in pruned] == IDS[:2]
    for rid in IDS[:2]:
        assert not (paths.results / rid).exists() and not (paths.capture / (rid + ".png")).exists()
        row = j.get(rid)
        assert row["state"] == "done" and row["reason"] == "pruned: older than 10 days"
        assert store.get(rid)["reason"].startswith("pruned")
    assert all(store.is_complete(rid) for rid in IDS[2:])
    assert "pruned result %s (older than 10 days" % IDS[0] in caplog.text
    status = r.status()
    assert status["pruned_total"] == 2 and [p["result_id"] for p in status["recent"]] == IDS[1::-1]


def test_low_free_space_prunes_the_oldest_until_enough_is_free(env):
    cfg, paths, j, _store = env
    disk = Disk(50)                                            # 5 % free, 10 % wanted
    r = _retention(cfg, paths, j, disk, max_age_days=None, min_free_percent=10)
    calls = []
    real_prune = r._prune

    def prune(row, why):
        calls.append(row["id"])
        disk.free += 30                                        # each result frees 3 %
        return real_prune(row, why)

    r._prune = prune
    pruned = r.apply()
    assert calls == IDS[:2] and [p.why for p in pruned] == ["free space below 10%"] * 2
    assert r.apply() == []                                     # 11 % free now: nothing more


def test_a_result_whose_export_is_pending_is_never_pruned(env):
    cfg, paths, j, _store = env
    box = Outbox(j)
    box.enqueue(IDS[0], [("seg", "1.2", "1.2.1", "1.2.1.1")])             # pending
    box.enqueue(IDS[1], [("seg", "1.3", "1.3.1", "1.3.1.1")])
    box.mark_sent(IDS[1], "seg")
    box.enqueue(IDS[2], [("seg", "1.4", "1.4.1", "1.4.1.1")])
    box.mark_rejected(IDS[2], "seg", "status 0xA900")                    # shown on the page, not pending
    r = Retention(dict(cfg, retention={"max_age_days": 0.5, "min_free_percent": 0}), paths, j,
                  export_enabled=True, disk_usage=Disk(900), now=lambda: NOW)
    pruned = [p.result_id for p in r.apply()]
    assert pruned == [IDS[1], IDS[2]]
    assert (paths.results / IDS[0]).is_dir()                             # pending
    assert (paths.results / IDS[3]).is_dir()                             # export on, not queued yet
    assert r.status()["kept_for_export"] == 2
    box.mark_sent(IDS[0], "seg")
    assert [p.result_id for p in r.apply()] == [IDS[0]]


def test_with_enough_space_and_no_age_limit_nothing_is_pruned(env):
    cfg, paths, j, store = env
    r = _retention(cfg, paths, j, Disk(900), max_age_days=None, min_free_percent=10)
    assert r.apply() == []
    assert all(store.is_complete(rid) for rid in IDS)


def test_a_pruned_result_is_not_queued_for_export_later(env):
    cfg, paths, j, _store = env
    _retention(cfg, paths, j, Disk(900), max_age_days=10).apply()
    assert Outbox(j).unexported_results() == IDS[2:]
