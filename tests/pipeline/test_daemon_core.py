"""The Daemon object in-process on the simulator with a tiny bundle: ingest, dedupe, uploads, recovery,
archive policy, hang detection, status and reload."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from pipefakes import InProcessDaemons, daemon_config, fundus_like, tiny_bundle, wait_until, write_image

import vessel_seg.camera.ingest  # noqa: E402,F401  (the daemon needs the watcher and the journal)
import vessel_seg.pipeline.store.journal  # noqa: E402,F401
from vessel_seg.pipeline.appliance.daemon import Daemon, DaemonError  # noqa: E402
from vessel_seg.pipeline.appliance.recovery import Recovery  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def cfg(tmp_path, bundle):
    c = daemon_config(tmp_path / "data", bundle)
    c["pipeline"]["retry_interval_s"] = 0.1
    return c


@pytest.fixture
def running(cfg):
    daemons = InProcessDaemons(cfg)
    yield daemons.start
    daemons.stop_all()


def _png(path, seed=0):
    return write_image(path, fundus_like(180, 160, seed=seed))


def _id(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]



def test_a_capture_becomes_a_result_and_status_reports_it(running):
    d = running()
    img = _png(d.paths.capture / "a.png")
    rid = _id(img)
    wait_until(lambda: d.results.is_complete(rid) and d.status()["processed"] == 1, what="result")
    s = d.status()
    for key in ("processed", "failed", "queued", "runtime", "runtime_info", "model", "health", "health_reason",
                "device_state", "throughput_ipm", "stage_latency_ms", "last_hour", "pipeline_state",
                "paused_reason"):
        assert key in s
    assert s["runtime"] == "sim" and s["model"] == {"name": "tiny-test-net", "version": "9.9.9"}
    assert s["health"] == "ok" and s["pipeline_state"] == "running" and s["device_state"] == "ready"
    assert s["throughput_ipm"] > 0 and "execute" in s["stage_latency_ms"]
    assert d.results.get(rid)["source"] == "a.png" and d.is_progressing()
    assert d.metrics.snapshot()["counters"]["processed"] == 1
    assert img.exists()                                   # ingest.after: keep
    assert d.stop(10.0) is True


def test_same_content_twice_is_recorded_as_duplicate_not_processed_again(running):
    d = running()
    a = _png(d.paths.capture / "a.png", seed=3)
    wait_until(lambda: d.results.is_complete(_id(a)), what="first result")
    mtime = os.stat(str(d.paths.results / _id(a) / "result.json")).st_mtime
    (d.paths.capture / "b.png").write_bytes(a.read_bytes())
    wait_until(lambda: d.metrics.value("duplicates") == 1, what="duplicate recorded")
    time.sleep(0.3)
    assert os.stat(str(d.paths.results / _id(a) / "result.json")).st_mtime == mtime
    assert d.status()["processed"] == 1


def test_bad_file_is_quarantined_with_a_reason_and_a_failed_journal_row(running):
    d = running()
    bad = d.paths.capture / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR garbage")
    wait_until(lambda: d.status()["failed"] == 1, what="failure")
    (q,) = d.results.quarantined()
    assert q["source"] == "bad.png" and q["reason"] and q["sha256"]
    assert not bad.exists() and (d.paths.quarantine / q["file"]).exists()
    assert d.results.get(q["id"])["state"] == "failed"


def test_a_duplicate_of_an_item_that_later_fails_is_quarantined_with_it_not_left_in_capture(running):
    d = running()
    d.scheduler.pause("held by the test", kind="manual")       # the first copy stays queued
    bad = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR garbage"
    (d.paths.capture / "first.png").write_bytes(bad)
    wait_until(lambda: d.status()["queued"] == 1, what="first copy queued")
    (d.paths.capture / "second.png").write_bytes(bad)
    wait_until(lambda: d.metrics.value("duplicates") == 1, what="duplicate seen while the first is queued")
    d.scheduler.resume("manual")
    wait_until(lambda: len(d.results.quarantined()) == 2, what="both copies quarantined")
    reasons = {q["source"]: q["reason"] for q in d.results.quarantined()}
    assert reasons["second.png"] == "duplicate_of_failed" and reasons["first.png"] != "duplicate_of_failed"
    assert os.listdir(str(d.paths.capture)) == []


def test_a_held_duplicate_is_quarantined_even_when_a_retry_requeues_the_failed_item_at_once(running):
    d = running()
    d.scheduler.pause("held by the test", kind="manual")
    bad = b""                                                      # an empty file: rejected at decode
    (d.paths.capture / "first.jpg").write_bytes(bad)
    wait_until(lambda: d.status()["queued"] == 1, what="first copy queued")
    (d.paths.capture / "second.png").write_bytes(bad)
    wait_until(lambda: d.metrics.value("duplicates") == 1, what="duplicate held while the first is queued")
    mark = d.journal.mark

    def mark_then_a_retry_arrives(rid, state, *args, **kwargs):
        # what a third copy does when it lands right after the failure: the row is requeued (a retry)
        # before the failed run settles the duplicate it was holding
        mark(rid, state, *args, **kwargs)
        if state == "failed":
            d.journal.requeue(rid, source="third.tif", path=str(d.paths.capture / "third.tif"))

    d.journal.mark = mark_then_a_retry_arrives
    d.scheduler.resume("manual")
    wait_until(lambda: len(d.results.quarantined()) == 2, what="both copies quarantined")
    reasons = {q["source"]: q["reason"] for q in d.results.quarantined()}
    assert reasons == {"first.jpg": "empty_file", "second.png": "duplicate_of_failed"}
    assert os.listdir(str(d.paths.capture)) == []


def test_a_duplicate_of_an_item_in_flight_is_archived_only_once_the_original_is_done(running, cfg):
    cfg["ingest"]["after"] = "archive"
    d = running(cfg)
    d.scheduler.pause("held by the test", kind="manual")
    a = _png(d.paths.capture / "a.png", seed=5)
    wait_until(lambda: d.status()["queued"] == 1, what="first copy queued")
    rid = _id(a)
    (d.paths.capture / "b.png").write_bytes(a.read_bytes())
    wait_until(lambda: d.metrics.value("duplicates") == 1, what="duplicate seen")
    time.sleep(0.3)
    assert (d.paths.capture / "b.png").exists()            # not archived while the original may still fail
    d.scheduler.resume("manual")
    wait_until(lambda: d.results.is_complete(rid) and not (d.paths.capture / "b.png").exists(), what="archived")
    assert sorted(p.name.split("__", 1)[1] for p in d.paths.archive.iterdir()) == ["a.png", "b.png"]


def test_upload_is_written_atomically_into_capture_and_processed(running):
    d = running()
    data = _png(d.paths.root / "src.png", seed=5).read_bytes()
    rid = d.submit_upload("../../etc/up load.png", data)
    assert rid == hashlib.sha256(data).hexdigest()[:16]
    assert (d.paths.capture / "up_load.png").read_bytes() == data
    wait_until(lambda: d.results.is_complete(rid), what="uploaded result")
    with pytest.raises(ValueError):
        d.submit_upload("x.png", b"not an image")
    with pytest.raises(ValueError):
        d.submit_upload("x.png", b"")


def test_upload_with_a_wrong_extension_gets_the_extension_of_its_content(running):
    d = running()
    data = _png(d.paths.root / "src.png", seed=6).read_bytes()
    d.submit_upload("photo.exe", data)
    assert (d.paths.capture / "photo.png").exists()


def test_uploads_on_a_file_system_without_hard_links_are_published_by_rename_and_never_overwrite(
        running, monkeypatch):
    import errno

    import vessel_seg.pipeline.appliance.uploads as uploads_module

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    d = running()
    d.scheduler.pause("test")                               # keep both files in capture/ while we look
    monkeypatch.setattr(uploads_module.os, "link", no_links)
    first = _png(d.paths.root / "one.png", seed=11).read_bytes()
    second = _png(d.paths.root / "two.png", seed=12).read_bytes()
    rid1 = d.submit_upload("same.png", first)
    rid2 = d.submit_upload("same.png", second)
    published = {p.name: p.read_bytes() for p in d.paths.capture.iterdir() if not p.name.startswith(".")}
    assert published == {"same.png": first, "same__%s.png" % rid2[:8]: second}
    assert not [p for p in d.paths.capture.iterdir() if p.name.endswith(".staged")]
    d.scheduler.resume()
    wait_until(lambda: d.results.is_complete(rid1) and d.results.is_complete(rid2), what="both uploads processed")


def test_an_upload_is_stored_under_a_safe_name_with_the_extension_of_its_content(running):
    d = running()
    data = _png(d.paths.root / "src.png", seed=13).read_bytes()
    d.scheduler.pause("test")
    for raw in ("../a b/c d.png", "..hidden.png", "-rf.png", ""):
        d.submit_upload(raw, data)
    assert {p.name for p in d.paths.capture.iterdir() if not p.name.startswith(".")} >= {"c_d.png", "hidden.png",
                                                                                           "rf.png", "upload.png"}
    d.scheduler.resume()


def test_archive_policy_moves_processed_inputs(running, cfg):
    cfg["ingest"]["after"] = "archive"
    d = running(cfg)
    img = _png(d.paths.capture / "x.png", seed=7)
    rid = _id(img)
    wait_until(lambda: (d.paths.archive / (rid + "__x.png")).exists(), what="archived input")
    assert not img.exists() and d.results.is_complete(rid)


def test_restart_redoes_interrupted_and_incomplete_items_but_not_finished_ones(running, cfg):
    from vessel_seg.pipeline.store.journal import Journal

    d = running()
    done = _png(d.paths.capture / "done.png", seed=8)
    wait_until(lambda: d.results.is_complete(_id(done)), what="first result")
    d.stop(10.0)
    finished_mtime = os.stat(str(d.paths.results / _id(done) / "result.json")).st_mtime
    # an interrupted item and a 'done' item whose result folder lost a file
    j = Journal(d.paths.state / "journal.sqlite3")
    interrupted = _png(d.paths.capture / "interrupted.png", seed=9)
    rid_i, _ = j.add(hashlib.sha256(interrupted.read_bytes()).hexdigest(), "interrupted.png", str(interrupted),
                     interrupted.stat().st_size)
    j.start(rid_i)
    broken = _png(d.paths.capture / "broken.png", seed=10)
    rid_b, _ = j.add(hashlib.sha256(broken.read_bytes()).hexdigest(), "broken.png", str(broken),
                     broken.stat().st_size)
    j.mark(rid_b, "done")
    (d.paths.results / rid_b).mkdir(parents=True)
    (d.paths.results / rid_b / "mask.png").write_bytes(b"x")
    j.close()
    d2 = running()
    wait_until(lambda: d2.results.is_complete(rid_i) and d2.results.is_complete(rid_b)
          and d2.status()["processed"] == 3, what="recovered results")
    assert os.stat(str(d2.paths.results / _id(done) / "result.json")).st_mtime == finished_mtime


def test_a_hung_execute_makes_the_daemon_unhealthy_until_it_completes(running, cfg):
    from vessel_seg.device.sim import control

    cfg["device"]["hang_timeout_s"] = 0.3
    d = running(cfg)
    control.set_hang(True)
    try:
        img = _png(d.paths.capture / "h.png", seed=11)
        wait_until(lambda: not d.is_progressing(), what="hang detected")
        assert d.status()["health"] == "failed" and "hung" in d.status()["health_reason"]
        assert "hung" in d.status_line()          # what `systemctl status` shows
    finally:
        control.set_hang(False)
    wait_until(lambda: d.results.is_complete(_id(img)), what="result after the hang")
    assert d.is_progressing() and d.status()["health"] == "ok"


def test_reload_applies_safe_keys_and_reports_the_rest(running, cfg):
    import copy

    d = running()
    new = copy.deepcopy(cfg)
    new["model"]["threshold"] = 0.8
    new["logging"]["level"] = "WARNING"
    new["pipeline"]["queue_size"] = 99
    changes = d.reload(new)
    assert changes == {"applied": ["logging.level", "model.threshold"], "restart": ["pipeline.queue_size"]}
    assert d.stages.threshold == 0.8
    img = _png(d.paths.capture / "t.png", seed=12)
    wait_until(lambda: d.results.is_complete(_id(img)), what="result")
    assert json.loads((d.paths.results / _id(img) / "result.json").read_text())["threshold"] == 0.8
    import logging
    logging.getLogger().setLevel("INFO")


def _journal_row(journal, path, starts=0, state=None):
    rid, _ = journal.add(hashlib.sha256(path.read_bytes()).hexdigest(), path.name, str(path), path.stat().st_size)
    for _ in range(starts):
        journal.start(rid)
    if state is not None:
        journal.mark(rid, state)
    return rid


def test_an_item_the_daemon_died_on_three_times_is_failed_and_quarantined_not_requeued_again(running, cfg):
    from vessel_seg.pipeline.appliance.recovery import MAX_INTERRUPTED_ATTEMPTS
    from vessel_seg.pipeline.store.journal import Journal

    assert MAX_INTERRUPTED_ATTEMPTS == 3
    d = running()
    d.stop(10.0)
    j = Journal(d.paths.state / "journal.sqlite3")
    poison = _png(d.paths.capture / "poison.png", seed=20)
    rid_p = _journal_row(j, poison, starts=3)                  # processing, third attempt interrupted
    (d.paths.results / rid_p).mkdir(parents=True)             # what the last attempt had written
    (d.paths.results / rid_p / "probability.bin").write_bytes(b"\0" * 4096)
    survivor = _png(d.paths.capture / "survivor.png", seed=21)
    rid_s = _journal_row(j, survivor, starts=2)                # interrupted twice: one more chance
    j.close()
    d2 = running()
    row = d2.journal.get(rid_p)
    assert row["state"] == "failed"
    assert row["reason"] == "interrupted 3 times (the daemon died while processing it)"
    assert not poison.exists()
    (q,) = d2.results.quarantined()
    assert q["id"] == rid_p and q["reason"] == "interrupted" and q["source"] == "poison.png"
    assert (d2.paths.quarantine / q["file"]).read_bytes()[:4] == b"\x89PNG"
    wait_until(lambda: d2.results.is_complete(rid_s), what="the other interrupted item is processed")
    time.sleep(0.3)
    assert not d2.results.is_complete(rid_p) and d2.journal.get(rid_p)["state"] == "failed"
    assert not (d2.paths.results / rid_p).exists()            # a failed item leaves no partial result folder


def test_after_a_crash_the_items_that_were_in_flight_are_redone_alone_before_anything_else(
        running, cfg, monkeypatch):
    """A crash is counted against every item in flight, so those are redone one at a time: if one of them
    kills the daemon again, the blame falls on it alone, not on the innocent images beside it."""
    from vessel_seg.pipeline.store.journal import Journal

    d = running()
    d.stop(10.0)
    j = Journal(d.paths.state / "journal.sqlite3")
    suspects = [_journal_row(j, _png(d.paths.capture / ("s%d.png" % i), seed=30 + i), starts=1) for i in range(3)]
    queued = _journal_row(j, _png(d.paths.capture / "queued.png", seed=34))
    j.close()
    fresh = _png(d.paths.capture / "fresh.png", seed=35)          # not journaled yet: the watcher's job
    ids = suspects + [queued, _id(fresh)]
    started = []
    real_start = Journal.start

    def recording_start(journal, rid):
        others = [o for o in ids if o != rid and (journal.get(o) or {}).get("state") == "processing"]
        started.append((rid, others))
        return real_start(journal, rid)

    monkeypatch.setattr(Journal, "start", recording_start)
    d2 = running()
    wait_until(lambda: all(d2.results.is_complete(rid) for rid in ids), what="all five processed")
    order = [rid for rid, _ in started]
    assert order[:3] == suspects                                  # the suspects first, in their order
    assert all(others == [] for rid, others in started if rid in suspects)   # each alone
    assert set(order[3:]) == {queued, _id(fresh)}


def test_a_capture_whose_ingest_failed_is_offered_again_and_processed(running):
    from vessel_seg.pipeline.store.journal import JournalError

    d = running()
    real_add = d.journal.add
    failures = []

    def add_fails_once(*args, **kwargs):
        if not failures:
            failures.append(args[1])
            raise JournalError("database or disk is full")
        return real_add(*args, **kwargs)

    d.journal.add = add_fails_once
    img = _png(d.paths.capture / "retry.png", seed=22)
    wait_until(lambda: d.results.is_complete(_id(img)) and d.journal.get(_id(img))["state"] == "done",
          what="the capture processed after the failed ingest")
    assert failures == ["retry.png"]


def test_content_that_failed_and_is_dropped_in_again_is_retried_not_quarantined_as_a_duplicate(running):
    d = running()
    real_prepare = d.stages.prepare
    broken = {"on": True}

    def prepare(item):
        if broken["on"]:
            raise RuntimeError("a cause the technician can fix")
        return real_prepare(item)

    d.stages.prepare = prepare
    img = _png(d.paths.capture / "eye.png", seed=23)
    data, rid = img.read_bytes(), _id(img)
    wait_until(lambda: d.journal.get(rid) is not None and d.journal.get(rid)["state"] == "failed", what="failure")
    wait_until(lambda: len(d.results.quarantined()) == 1 and not img.exists(), what="quarantined")
    assert d.journal.get(rid)["attempts"] == 1
    broken["on"] = False                                       # the cause is fixed
    (d.paths.capture / "eye again.png").write_bytes(data)      # and the file dropped in again
    wait_until(lambda: d.results.is_complete(rid) and d.journal.get(rid)["state"] == "done", what="the retried result")
    row = d.journal.get(rid)
    assert row["state"] == "done" and row["reason"] is None and row["source"] == "eye again.png"
    assert row["attempts"] == 1                                # a deliberate retry starts the count again
    assert [q["reason"] for q in d.results.quarantined()] == ["processing_error"]
    assert d.metrics.value("duplicates") == 0


def test_a_second_upload_with_a_taken_name_gets_the_id_in_its_name(running):
    d = running()
    d.scheduler.pause("held by the test", kind="manual")
    first = _png(d.paths.root / "1.png", seed=24).read_bytes()
    second = _png(d.paths.root / "2.png", seed=25).read_bytes()
    d.submit_upload("eye.png", first)
    rid = d.submit_upload("eye.png", second)
    assert (d.paths.capture / "eye.png").read_bytes() == first
    assert (d.paths.capture / ("eye__%s.png" % rid[:8])).read_bytes() == second
    assert sorted(os.listdir(str(d.paths.capture))) == ["eye.png", "eye__%s.png" % rid[:8]]   # no staging left


def test_simultaneous_uploads_with_the_same_name_never_overwrite_each_other(running):
    import threading

    d = running()
    d.scheduler.pause("held by the test", kind="manual")
    rounds, per_round = 4, 3
    payloads = [[_png(d.paths.root / ("%d-%d.png" % (r, i)), seed=100 + r * 10 + i).read_bytes()
                 for i in range(per_round)] for r in range(rounds)]
    errors = []

    def upload(barrier, name, data):
        try:
            barrier.wait(5.0)
            d.submit_upload(name, data)
        except Exception as exc:  # reported below
            errors.append(exc)

    for r in range(rounds):
        barrier = threading.Barrier(per_round)
        threads = [threading.Thread(target=upload, args=(barrier, "same%d.png" % r, data)) for data in payloads[r]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10.0)
    assert errors == []
    stored = sorted(p.read_bytes() for p in d.paths.capture.iterdir())
    assert stored == sorted(data for group in payloads for data in group)


def test_finished_results_are_checked_for_completeness_after_startup_not_before(running, monkeypatch):
    import threading

    from vessel_seg.pipeline.store.journal import Journal

    d = running()
    d.stop(10.0)
    j = Journal(d.paths.state / "journal.sqlite3")
    broken = _png(d.paths.capture / "broken.png", seed=26)
    rid = _journal_row(j, broken, starts=1, state="done")          # 'done' but its result folder is gone
    j.close()
    release = threading.Event()
    checked_in = []
    real_done_rows = Recovery._done_rows

    def gated_done_rows(self):
        checked_in.append(threading.current_thread().name)
        release.wait(10.0)
        return real_done_rows(self)

    monkeypatch.setattr(Recovery, "_done_rows", gated_done_rows)
    d2 = running()                                        # start() returned: READY=1 would be sent now
    assert threading.current_thread().name not in checked_in
    assert not d2.results.is_complete(rid)
    release.set()
    wait_until(lambda: d2.results.is_complete(rid), what="the incomplete result redone in the background")
    assert checked_in == ["vs-recovery"]


def test_a_journal_error_on_one_recovered_row_does_not_end_the_recovery(running, monkeypatch):
    from vessel_seg.pipeline.store.journal import Journal, JournalError

    d = running()
    d.stop(10.0)
    j = Journal(d.paths.state / "journal.sqlite3")
    gone = _png(d.paths.capture / "gone.png", seed=27)
    rid_gone = _journal_row(j, gone, starts=1)
    gone.unlink()                                          # input missing: recovery marks it failed
    kept = _png(d.paths.capture / "kept.png", seed=28)
    rid_kept = _journal_row(j, kept, starts=1)
    j.close()
    d2 = Daemon(d.config, systemd=False)
    real_recover = Recovery.recover

    def recover_with_a_failing_mark(self):
        rows = real_recover(self)
        real_mark = d2.journal.mark

        def mark(cid, state, *args, **kwargs):
            if cid == rid_gone:
                raise JournalError("database is locked")
            return real_mark(cid, state, *args, **kwargs)

        d2.journal.mark = mark
        return rows

    monkeypatch.setattr(Recovery, "recover", recover_with_a_failing_mark)
    d2.start()
    try:
        wait_until(lambda: d2.results.is_complete(rid_kept), what="the row after the failing one")
        assert d2._recovery_thread is not None
        d2._recovery_thread.join(5.0)
        assert not d2._recovery_thread.is_alive()
        assert d2.journal.get(rid_gone)["state"] == "queued"   # left for the next start
    finally:
        d2.stop(10.0)


def test_a_dead_pipeline_thread_stops_the_watchdog_pings_and_shows_in_health(running):
    d = running()
    assert d.is_progressing() and d.dead_pipeline_threads() == []

    def crash():
        raise RuntimeError("a bug in the device loop")

    d.scheduler.dev_q.get_nowait = crash          # the device thread dies on its next refill
    _png(d.paths.capture / "c.png", seed=29)
    wait_until(lambda: "vs-device" in d.dead_pipeline_threads(), what="the device thread to die")
    assert not d.is_progressing()
    s = d.status()
    assert s["health"] == "failed" and "vs-device" in s["health_reason"]
    assert "vs-device" in d.status_line()


def test_a_second_daemon_on_the_same_data_directory_is_refused_until_the_first_stops(running, cfg):
    first = running(cfg)
    second = Daemon(cfg, systemd=False)
    with pytest.raises(DaemonError, match="already using"):
        second.start()
    second.stop(1.0)
    first.stop(10.0)
    third = running(cfg)                    # the lock went with the first daemon
    assert third.status()["pipeline_state"] == "running"


@pytest.mark.parametrize("after", ["keep", "archive"])
def test_the_page_offers_and_serves_original_size_images_made_on_first_request(running, cfg, after):
    import cv2

    from vessel_seg.web import create_app

    cfg["ingest"]["after"] = after
    d = running(cfg)
    img = _png(d.paths.capture / "a.png")
    rid = _id(img)
    wait_until(lambda: d.results.is_complete(rid), what="result")
    if after == "archive":
        wait_until(lambda: not img.exists(), what="archive")
    folder = d.paths.results / rid
    assert not (folder / "overlay.png").exists()               # not made with the result
    client = create_app(d, dict(cfg["web"])).test_client()
    body = client.get("/api/results/%s" % rid).get_json()
    offered = {f["name"] for f in body["downloads"]}
    assert {"probability.png", "mask.png", "overlay.png", "input.jpg", "probability.bin"} <= offered
    assert client.get("/results/%s" % rid).status_code == 200
    for name, shape in (("overlay.png", (160, 180, 3)), ("mask.png", (160, 180)), ("input.jpg", (160, 180, 3))):
        resp = client.get("/results/%s/%s?download=1" % (rid, name))
        assert resp.status_code == 200, name
        decoded = cv2.imdecode(np.frombuffer(resp.get_data(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.shape == shape, name
        assert (folder / name).is_file()                         # kept for the next request
    assert d.results.is_complete(rid)
