"""The ``pacs`` scenario of ``vessel-seg stress``: the real daemon exporting every result by C-STORE to a real
Orthanc that is stopped and started again under load, with a kill -9 of the daemon while the outbox is backed
up. Every result must arrive exactly once (one instance per SOP Instance UID, two objects per result), and
the outbox must end with every row sent.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict

from vessel_seg.pipeline.proving.inputs import Writers, expected_results, make_load_plan
from vessel_seg.pipeline.proving.orthanc import Orthanc, orthanc_missing
from vessel_seg.pipeline.proving.report import ScenarioReport
from vessel_seg.pipeline.proving.scene import Scene

log = logging.getLogger(__name__)

OBJECTS_PER_RESULT = 2            # a plain image: its SEG and the burnt-in SC it references


def outbox_states(data: Path) -> Dict[str, int]:
    """Rows per state of the journal's exports table (read-only; {} before the daemon created it)."""
    path = data / "state" / "journal.sqlite3"
    if not path.exists():
        return {}
    try:
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            rows = con.execute("SELECT state, COUNT(*) FROM exports GROUP BY state").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return {str(s): int(n) for s, n in rows}


def scenario_pacs(root: Path, profile: Any, seed: int) -> ScenarioReport:
    """See the module docstring; skipped (with a note) where Orthanc is not installed."""
    n = profile.pacs_images
    report = ScenarioReport("pacs", "%d images exported by C-STORE to Orthanc; Orthanc killed and restarted "
                                    "under load, one kill -9 of the daemon while the PACS is down" % n)
    t0 = time.monotonic()
    missing = orthanc_missing()
    if missing:
        report.notes.append("skipped: " + missing)
        report.facts["skipped"] = missing
        return report
    pacs = Orthanc(Path(root) / "pacs-orthanc")
    pacs.start()
    drops = make_load_plan(n, seed=seed, prefix="pacs")
    expected = expected_results(drops)
    want = OBJECTS_PER_RESULT * len(expected)
    report.count("images_in", len(drops))
    export = {"enabled": True, "protocol": "dimse", "host": "127.0.0.1", "port": pacs.dicom_port,
              "called_ae_title": "PACS", "calling_ae_title": "VESSELSEG"}
    scene = Scene(root, "pacs", report, overrides={"dicom": {"export": export}})
    timeout = (60 + n * 0.5) * profile.timeout_scale
    try:
        scene.daemon.start()
        writers = Writers(scene.capture, scene.staging, drops, interval_s=0.1).start()
        if not scene.wait(lambda: outbox_states(scene.data).get("sent", 0) >= want // 4, timeout,
                          "a quarter of the objects sent"):
            return report
        pacs.stop()                                                  # the PACS vanishes under load
        t_down = time.monotonic()
        scene.wait(lambda: len(scene.done_ids()) >= len(expected) // 2, timeout, "half of the results")
        pending_while_down = outbox_states(scene.data).get("pending", 0)
        scene.daemon.crash_and_restart()                             # kill -9 with a backed-up outbox
        time.sleep(1.0)
        pacs.start()
        report.facts["PACS down"] = "%.1f s; %d objects pending when the daemon was killed" % (
            time.monotonic() - t_down, pending_while_down)
        report.check(pending_while_down > 0, "nothing was pending while the PACS was down (no backlog tested)")
        scene.wait(lambda: writers.done() and set(expected) <= scene.done_ids(), timeout, "every result")
        ok = scene.wait(lambda: outbox_states(scene.data).get("sent", 0) >= want, timeout,
                        "every object sent after the PACS came back")
        rc = scene.daemon.stop()
        report.check(rc == 0, "SIGTERM: exit status %s (expected 0)" % rc)
        states = outbox_states(scene.data)
        report.facts["outbox"] = dict(states)
        report.check(states == {"sent": want}, "outbox %s, expected {'sent': %d}" % (states, want))
        found = pacs.find_instances() if ok else []
        uids = [i["MainDicomTags"].get("SOPInstanceUID") for i in found]
        report.count("results_out", len(scene.done_ids()))
        report.count("crashes", scene.daemon.kills)
        report.count("arrived", len(uids))
        report.count("duplicated", len(uids) - len(set(uids)))
        report.check(len(set(uids)) == want, "%d distinct instances in the PACS, expected %d"
                     % (len(set(uids)), want))
        report.facts["written"] = "%d files (%d unique contents -> %d objects)" % (len(drops), len(expected), want)
    finally:
        scene.daemon.close()
        report.samples = list(scene.daemon.samples)
        pacs.stop()
        report.seconds = time.monotonic() - t0
    return report
