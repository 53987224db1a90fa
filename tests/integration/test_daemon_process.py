"""The real daemon process on the simulator: ingest paths, duplicates, quarantine, crash recovery, shutdown.

Each test starts `python -m pipeline.cli run --data-dir TMP --runtime sim` (timing-emulation compute,
a few ms per execute) and watches only the file system, the journal and the HTTP API.
"""
from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest

from daemon_harness import (DaemonProcess, complete_results, drop_by_rename, free_port, fundus_bytes,
                            journal_states, reasons, result_dirs, slow_chunked_writer, temp_files, wait_until,
                            write_config)

import vessel_seg.camera.ingest  # noqa: E402,F401  (the daemon needs the watcher and the journal)
import vessel_seg.pipeline.store.journal  # noqa: E402,F401


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


def _sha16(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def test_ingest_paths_duplicates_and_bad_files_then_sigterm_exits_0(tmp_path, data_dir):
    port = free_port()
    cfg = write_config(tmp_path / "c.yaml", data_dir, device_time_ms=5.0, web_port=port)
    d = DaemonProcess(cfg, data_dir, tmp_path / "daemon.log").start()
    try:
        capture = data_dir / "capture"
        renamed = [fundus_bytes(1), fundus_bytes(2, ".jpg")]
        drop_by_rename(capture, "eye one.png", renamed[0])
        drop_by_rename(capture, "-odd name é.jpg", renamed[1])
        chunked = fundus_bytes(3, ".png", size=(420, 400))
        writer = slow_chunked_writer(capture / "streamed.png", chunked, chunks=10, delay_s=0.12)
        drop_by_rename(capture, "copy of eye one.png", renamed[0])            # duplicate content
        (capture / "empty.jpg").write_bytes(b"")
        (capture / "notes.png").write_text("not an image at all")
        truncated = fundus_bytes(4, ".jpg")
        drop_by_rename(capture, "truncated.jpg", truncated[: len(truncated) // 3])
        (capture / "ignored.tmp").write_bytes(renamed[0])                    # never picked up
        writer.join()
        good = {_sha16(renamed[0]), _sha16(renamed[1]), _sha16(chunked)}
        wait_until(lambda: set(complete_results(data_dir)) == good and len(reasons(data_dir)) == 3,
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
        d.signal(signal.SIGHUP)
        wait_until(lambda: "reload: model.threshold applied" in d.log(), 20, "reload applied", d)
        drop_by_rename(capture, "after reload.png", fundus_bytes(5))
        rid = _sha16(fundus_bytes(5))
        wait_until(lambda: rid in complete_results(data_dir), 30, "result after reload", d)
        assert json.loads((data_dir / "results" / rid / "result.json").read_text())["threshold"] == 0.7
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0, d.log_tail()
    finally:
        d.stop()
    assert temp_files(data_dir) == []
    assert "SIGTERM received" in d.log()


def test_kill_9_mid_batch_then_restart_gives_each_input_exactly_one_complete_result(tmp_path, data_dir):
    cfg = write_config(tmp_path / "c.yaml", data_dir, device_time_ms=150.0, stable_seconds=0.2)
    d = DaemonProcess(cfg, data_dir, tmp_path / "daemon.log").start()
    images = {("img%02d.png" % i): fundus_bytes(10 + i) for i in range(8)}
    try:
        for name, data in images.items():
            drop_by_rename(data_dir / "capture", name, data)
        wait_until(lambda: len(complete_results(data_dir)) >= 2, 60, "two results before the crash", d)
        d.kill9()
    finally:
        d.stop()
    done_before = set(complete_results(data_dir))
    assert len(done_before) < len(images), "the batch finished before the kill; the test proves nothing"
    d2 = DaemonProcess(cfg, data_dir, tmp_path / "daemon2.log").start()
    try:
        want = {_sha16(v) for v in images.values()}
        wait_until(lambda: set(complete_results(data_dir)) == want, 90, "all 8 results after restart", d2)
        states = wait_until(lambda: (lambda s: s if sorted(s.values()) == ["done"] * 8 else None)(
            journal_states(data_dir)), 20, "journal all done", d2)
        assert set(states) == want
        assert set(result_dirs(data_dir)) == want                          # nothing extra, nothing partial
        assert "recovery:" in d2.log()
        d2.signal(signal.SIGTERM)
        assert d2.wait(30) == 0
    finally:
        d2.stop()
    assert temp_files(data_dir) == []
    assert reasons(data_dir) == {}


def test_sigterm_mid_batch_finishes_in_flight_work_and_keeps_the_rest_queued(tmp_path, data_dir):
    cfg = write_config(tmp_path / "c.yaml", data_dir, device_time_ms=200.0, stable_seconds=0.2)
    d = DaemonProcess(cfg, data_dir, tmp_path / "daemon.log").start()
    images = {("s%02d.png" % i): fundus_bytes(40 + i) for i in range(10)}
    try:
        for name, data in images.items():
            drop_by_rename(data_dir / "capture", name, data)
        wait_until(lambda: len(complete_results(data_dir)) >= 1, 60, "a first result", d)
        d.signal(signal.SIGTERM)
        assert d.wait(40) == 0, d.log_tail()
    finally:
        d.stop()
    states = journal_states(data_dir)
    done = {k for k, v in states.items() if v == "done"}
    assert set(complete_results(data_dir)) == done
    assert set(result_dirs(data_dir)) == done               # no half-written result folders
    assert set(states.values()) <= {"done", "queued"}         # nothing left 'processing'
    assert temp_files(data_dir) == []
