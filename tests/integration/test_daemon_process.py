"""The real daemon process on the simulator: ingest paths, duplicates, quarantine, crash recovery, shutdown.

Each test starts ``vessel-seg run`` on the simulator (timing-emulation compute, a few ms per execute) under
the proving ground's emulated systemd, and watches only the file system, the journal and the HTTP API.
"""
from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.request

import pytest

from vessel_seg.pipeline.proving.checks import find_temp_files, snapshot
from vessel_seg.pipeline.proving.inputs import fundus_bytes, write_chunked, write_renamed
from vessel_seg.pipeline.proving.supervised import SupervisedDaemon, wait_for, write_stress_config
from vessel_seg.vocabulary import result_id, sha256_bytes


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


def _sha16(data):
    return result_id(sha256_bytes(data))


def write_config(path, data_dir, device_time_ms=5.0, web=False, stable_seconds=0.3):
    return write_stress_config(path, data_dir, {
        "ingest": {"stable_seconds": stable_seconds},
        "pipeline": {"shutdown_timeout_s": 20.0},
        "device": {"sim": {"device_time_ms": device_time_ms}},
        "web": {"enabled": web}})


def drop_by_rename(capture, name, data):
    write_renamed(capture / name, data)


def complete_results(data_dir):
    return snapshot(data_dir).complete


def result_dirs(data_dir):
    return snapshot(data_dir).result_dirs


def reasons(data_dir):
    return snapshot(data_dir).by_source()


def journal_states(data_dir):
    return {rid: row["state"] for rid, row in snapshot(data_dir).journal.items()}


def status_port(d):
    """The status page's port, from the log line the daemon writes once it serves (just after READY=1)."""
    found = wait_for(lambda: re.findall(r"status page: http://127\.0\.0\.1:(\d+)/", d.log_text()), 30,
                     "the status page address", d)
    return int(found[-1])


def test_ingest_paths_duplicates_and_bad_files_then_sigterm_exits_0(tmp_path, data_dir):
    cfg = write_config(tmp_path / "c.yaml", data_dir, device_time_ms=5.0, web=True)
    d = SupervisedDaemon(cfg, data_dir, tmp_path / "daemon.log").start()
    try:
        port = status_port(d)
        capture = data_dir / "capture"
        renamed = [fundus_bytes(1), fundus_bytes(2, ".jpg")]
        drop_by_rename(capture, "eye one.png", renamed[0])
        drop_by_rename(capture, "-odd name é.jpg", renamed[1])
        chunked = fundus_bytes(3, ".png", size=(420, 400))
        writer = threading.Thread(target=write_chunked, args=(capture / "streamed.png", chunked, 10, 0.12))
        writer.start()
        drop_by_rename(capture, "copy of eye one.png", renamed[0])            # duplicate content
        (capture / "empty.jpg").write_bytes(b"")
        (capture / "notes.png").write_text("not an image at all")
        truncated = fundus_bytes(4, ".jpg")
        drop_by_rename(capture, "truncated.jpg", truncated[: len(truncated) // 3])
        (capture / "ignored.tmp").write_bytes(renamed[0])                    # never picked up
        writer.join()
        good = {_sha16(renamed[0]), _sha16(renamed[1]), _sha16(chunked)}
        wait_for(lambda: set(complete_results(data_dir)) == good and len(reasons(data_dir)) == 3,
                   60, "3 results and 3 quarantined files", d)
        time.sleep(1.0)                       # the duplicate must not create anything further
        assert set(result_dirs(data_dir)) == good
        bad = reasons(data_dir)
        assert {k: v["reason"] for k, v in bad.items()} == {
            "empty.jpg": "empty_file", "notes.png": "not_an_image", "truncated.jpg": "truncated_or_corrupt"}
        assert all(v["sha256"] and v["time"] for v in bad.values())
        assert not (capture / "empty.jpg").exists() and (capture / "ignored.tmp").exists()
        # the slow writer's file was handed out only when complete
        meta = json.loads((data_dir / "results" / _sha16(chunked) / "result.json").read_text())
        assert meta["input"]["bytes"] == len(chunked) and meta["source"] == "streamed.png"
        states = journal_states(data_dir)
        assert sorted(states.values()) == ["done"] * 3 + ["failed"] * 3
        assert d.proc.poll() is None
        # the status page is served by the daemon
        status = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/api/status" % port, timeout=10).read())
        assert status["processed"] == 3 and status["failed"] == 3 and status["runtime"] == "sim"
        assert urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=10).status == 200
        # SIGHUP: safe keys take effect, the rest is reported as needing a restart
        text = cfg.read_text().replace("stable_seconds: 0.3", "stable_seconds: 0.4")
        cfg.write_text(text + "model:\n  threshold: 0.7\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: model.threshold applied" in d.log_text(), 20, "reload applied", d)
        drop_by_rename(capture, "after reload.png", fundus_bytes(5))
        rid = _sha16(fundus_bytes(5))
        wait_for(lambda: rid in complete_results(data_dir), 30, "result after reload", d)
        assert json.loads((data_dir / "results" / rid / "result.json").read_text())["threshold"] == 0.7
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0, d.log_tail()
    finally:
        d.close()
    assert find_temp_files(data_dir) == []
    assert "SIGTERM received" in d.log_text()


def test_kill_9_mid_batch_then_restart_gives_each_input_exactly_one_complete_result(tmp_path, data_dir):
    cfg = write_config(tmp_path / "c.yaml", data_dir, device_time_ms=150.0, stable_seconds=0.2)
    d = SupervisedDaemon(cfg, data_dir, tmp_path / "daemon.log").start()
    images = {("img%02d.png" % i): fundus_bytes(10 + i) for i in range(8)}
    try:
        for name, data in images.items():
            drop_by_rename(data_dir / "capture", name, data)
        wait_for(lambda: len(complete_results(data_dir)) >= 2, 60, "two results before the crash", d)
        d.kill9()
    finally:
        d.close()
    done_before = set(complete_results(data_dir))
    assert len(done_before) < len(images), "the batch finished before the kill; the test proves nothing"
    d2 = SupervisedDaemon(cfg, data_dir, tmp_path / "daemon2.log").start()
    try:
        want = {_sha16(v) for v in images.values()}
        wait_for(lambda: set(complete_results(data_dir)) == want, 90, "all 8 results after restart", d2)
        states = wait_for(lambda: (lambda s: s if sorted(s.values()) == ["done"] * 8 else None)(
            journal_states(data_dir)), 20, "journal all done", d2)
        assert set(states) == want
        assert set(result_dirs(data_dir)) == want                          # nothing extra, nothing partial
        assert "recovery:" in d2.log_text()
        d2.proc.send_signal(signal.SIGTERM)
        assert d2.proc.wait(30) == 0
    finally:
        d2.close()
    assert find_temp_files(data_dir) == []
    assert reasons(data_dir) == {}


def test_sigterm_mid_batch_finishes_in_flight_work_and_keeps_the_rest_queued(tmp_path, data_dir):
    cfg = write_config(tmp_path / "c.yaml", data_dir, device_time_ms=200.0, stable_seconds=0.2)
    d = SupervisedDaemon(cfg, data_dir, tmp_path / "daemon.log").start()
    images = {("s%02d.png" % i): fundus_bytes(40 + i) for i in range(10)}
    try:
        for name, data in images.items():
            drop_by_rename(data_dir / "capture", name, data)
        wait_for(lambda: len(complete_results(data_dir)) >= 1, 60, "a first result", d)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(40) == 0, d.log_tail()
    finally:
        d.close()
    states = journal_states(data_dir)
    done = {k for k, v in states.items() if v == "done"}
    assert set(complete_results(data_dir)) == done
    assert set(result_dirs(data_dir)) == done               # no half-written result folders
    assert set(states.values()) <= {"done", "queued"}         # nothing left 'processing'
    assert find_temp_files(data_dir) == []
