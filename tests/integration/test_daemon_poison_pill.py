"""The real daemon process: an image that hangs the device every time (a poison pill) is given up after the
daemon died on it 3 times, instead of being requeued at every watchdog restart until systemd gives up."""
from __future__ import annotations

from vessel_seg.pipeline.proving.checks import snapshot
from vessel_seg.pipeline.proving.inputs import fundus_bytes, write_renamed
from vessel_seg.pipeline.proving.supervised import SupervisedDaemon, wait_for, write_stress_config
from vessel_seg.vocabulary import result_id, sha256_bytes


def _row(data_dir, rid):
    return snapshot(data_dir).journal.get(rid) or {}


def test_an_image_the_daemon_dies_on_three_times_is_quarantined_and_the_fourth_start_goes_on(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "capture").mkdir(parents=True)
    poison = fundus_bytes(40)
    rid = result_id(sha256_bytes(poison))
    write_renamed(data_dir / "capture" / "poison.png", poison)
    fast = {"ingest": {"stable_seconds": 0.2}}
    hanging = write_stress_config(tmp_path / "hang.yaml", data_dir,
                                  dict(fast, device={"sim": {"hang_execute": True}}))
    for n in (1, 2, 3):                        # each start hangs on it; the watchdog would kill the process
        d = SupervisedDaemon(hanging, data_dir, tmp_path / ("daemon%d.log" % n)).start()
        try:
            wait_for(lambda: _row(data_dir, rid).get("state") == "processing" and _row(data_dir, rid)["attempts"] == n,
                     60, "attempt %d in flight" % n, d)
            d.kill9()
        finally:
            d.close()
    good = fundus_bytes(41)
    write_renamed(data_dir / "capture" / "good.png", good)
    healthy = write_stress_config(tmp_path / "ok.yaml", data_dir, fast)
    d = SupervisedDaemon(healthy, data_dir, tmp_path / "daemon4.log").start()
    try:
        wait_for(lambda: result_id(sha256_bytes(good)) in snapshot(data_dir).complete, 60, "the next image", d)
        state = snapshot(data_dir)
        assert state.journal[rid]["state"] == "failed"
        info = state.by_source()["poison.png"]
        assert info["reason"] == "interrupted" and info["id"] == rid
        assert "interrupted 3 times" in info["detail"]
        assert not (data_dir / "capture" / "poison.png").exists()
        assert rid not in state.complete
    finally:
        d.close()
