"""The real daemon process: an image that hangs the device every time (a poison pill) is given up after the
daemon died on it 3 times, instead of being requeued at every watchdog restart until systemd gives up."""
from __future__ import annotations

import hashlib
import sqlite3

from daemon_harness import (DaemonProcess, complete_results, drop_by_rename, fundus_bytes, journal_states, reasons,
                            wait_until, write_config)

import vessel_seg.camera.ingest  # noqa: E402,F401  (the daemon needs the watcher and the journal)
import vessel_seg.pipeline.store.journal  # noqa: E402,F401


def _attempts(data_dir, rid):
    con = sqlite3.connect("file:%s?mode=ro" % (data_dir / "state" / "journal.sqlite3"), uri=True, timeout=10)
    try:
        return con.execute("SELECT attempts FROM captures WHERE id = ?", (rid,)).fetchone()[0]
    finally:
        con.close()


def test_an_image_the_daemon_dies_on_three_times_is_quarantined_and_the_fourth_start_goes_on(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "capture").mkdir(parents=True)
    poison = fundus_bytes(40)
    rid = hashlib.sha256(poison).hexdigest()[:16]
    drop_by_rename(data_dir / "capture", "poison.png", poison)
    hanging = write_config(tmp_path / "hang.yaml", data_dir, stable_seconds=0.2, hang_execute=True)
    for n in (1, 2, 3):                        # each start hangs on it; the watchdog would kill the process
        d = DaemonProcess(hanging, data_dir, tmp_path / ("daemon%d.log" % n)).start()
        try:
            wait_until(lambda: journal_states(data_dir).get(rid) == "processing" and _attempts(data_dir, rid) == n,
                       60, "attempt %d in flight" % n, d)
            d.kill9()
        finally:
            d.stop()
    good = fundus_bytes(41)
    drop_by_rename(data_dir / "capture", "good.png", good)
    healthy = write_config(tmp_path / "ok.yaml", data_dir, stable_seconds=0.2)
    d = DaemonProcess(healthy, data_dir, tmp_path / "daemon4.log").start()
    try:
        wait_until(lambda: hashlib.sha256(good).hexdigest()[:16] in complete_results(data_dir), 60,
                   "the next image processed", d)
        assert journal_states(data_dir)[rid] == "failed"
        info = reasons(data_dir)["poison.png"]
        assert info["reason"] == "interrupted" and info["id"] == rid
        assert "interrupted 3 times" in info["detail"]
        assert not (data_dir / "capture" / "poison.png").exists()
        assert rid not in complete_results(data_dir)
    finally:
        d.stop()
