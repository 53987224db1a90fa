"""Scenarios of ``vessel-seg stress`` that push images through the real daemon: load, crashes, device faults,
disk full. Each returns a :class:`~pipeline.stress_report.ScenarioReport`; every check is on what the daemon
left on disk (results, journal, quarantine, temp files) and on what it says on /api/status.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from vessel_seg.pipeline.proving.checks import check_results, content_id, snapshot, verify_result_dir
from vessel_seg.pipeline.proving.inputs import Writers, expected_results, fundus_bytes, make_load_plan, write_renamed
from vessel_seg.pipeline.proving.report import ScenarioReport, last_life, memory_summary
from vessel_seg.pipeline.proving.scene import Scene
from vessel_seg.vocabulary import sha256_bytes

log = logging.getLogger(__name__)

_DONE_RE = re.compile(r" done .* -> results/([0-9a-f]{16}) \(")


@dataclass
class Profile(object):
    """Sizes of one stress run (``short``: CI, ``long``: on demand)."""

    name: str
    load_images: int
    crash_images: int
    crashes: int
    fault_images: int
    disk_images: int
    fuzz_requests: int
    burst_requests: int = 200
    burst_threads: int = 16
    strict_soak: bool = False
    timeout_scale: float = 1.0
    pacs_images: int = 30


PROFILES = {
    "short": Profile("short", load_images=100, crash_images=60, crashes=3, fault_images=40, disk_images=10,
                     fuzz_requests=150),
    "long": Profile("long", load_images=2000, crash_images=500, crashes=25, fault_images=300, disk_images=40,
                    fuzz_requests=2000, strict_soak=True, timeout_scale=4.0, pacs_images=300),
}


def finish_scene(scene: Scene, report: ScenarioReport, t0: float) -> None:
    """Kill what is left of the daemon, keep its RSS/fd samples, record the scenario's duration."""
    scene.daemon.close()
    report.samples = list(scene.daemon.samples)
    report.seconds = time.monotonic() - t0


def _journal_checks(report: ScenarioReport, data: Path, expected: Dict[str, str], attempts_once: bool) -> None:
    state = snapshot(data)
    states = state.states()
    report.facts["journal states"] = dict(states)
    report.check(not states.get("processing") and not states.get("queued"),
                 "journal not drained after a clean stop: %s" % states)
    extra_rows = sorted(set(state.journal) - set(expected))
    report.check(not extra_rows, "%d journal rows for content nobody wrote completely (read while being "
                                 "written?): %s" % (len(extra_rows), extra_rows[:5]))
    done = set(state.done_ids())
    report.check(done == set(state.result_dirs),
                 "journal done rows (%d) != result folders (%d): only in journal %s, only on disk %s"
                 % (len(done), len(state.result_dirs), sorted(done - set(state.result_dirs))[:5],
                    sorted(set(state.result_dirs) - done)[:5]))
    report.check(not state.temp_files, "stray temp files: %s" % state.temp_files[:10])
    if attempts_once:
        twice = {k: r["attempts"] for k, r in state.journal.items() if int(r["attempts"] or 0) != 1}
        report.count("duplicated", len(twice))
        report.check(not twice, "attempt counter != 1 (processed more than once): %s" % list(twice.items())[:5])


def _result_checks(report: ScenarioReport, data: Path, expected: Dict[str, str]) -> None:
    problems, lost, unexpected = check_results(data, expected)
    report.count("results_out", len(expected) - len(lost))
    report.count("lost", len(lost))
    partial = [k for k, v in problems.items() if any("sha256" in p for p in v)]
    report.count("partial_reads", len(partial) + len(unexpected))
    report.count("duplicated", 0)
    report.check(not lost, "%d image(s) lost (no result): %s" % (len(lost), lost[:10]))
    report.check(not unexpected, "%d unexpected result folder(s) (partial reads?): %s"
                 % (len(unexpected), unexpected[:10]))
    for rid, plist in sorted(problems.items())[:20]:
        report.fail("result %s: %s" % (rid, "; ".join(plist)))
    if len(problems) > 20:
        report.fail("... and %d more results with problems" % (len(problems) - 20))


def _soak_facts(report: ScenarioReport, scene: Scene, strict: bool) -> None:
    mem = memory_summary(last_life(scene.daemon.samples))
    if not mem:
        return
    report.facts["RSS MiB (after warm-up -> max after warm-up -> end)"] = "%s -> %s -> %s" % (
        mem["rss_after_warmup_mib"], mem["max_rss_after_warmup_mib"], mem["rss_end_mib"])
    report.facts["open fds (start / after warm-up / end)"] = "%s / %s / %s" % (
        mem["fds_start"], mem["fds_after_warmup"], mem["fds_end"])
    grew = mem["max_rss_after_warmup_mib"] > 1.10 * mem["rss_after_warmup_mib"]
    fd_grew = mem["fds_end"] > mem["fds_after_warmup"]
    if strict:
        report.check(not grew, "RSS grew more than 10%% after warm-up: %s MiB -> max %s MiB"
                     % (mem["rss_after_warmup_mib"], mem["max_rss_after_warmup_mib"]))
        report.check(not fd_grew, "open file descriptors grew: %s after warm-up -> %s at the end"
                     % (mem["fds_after_warmup"], mem["fds_end"]))
    elif grew or fd_grew:
        report.notes.append("soak (report only in short runs): RSS or fds grew after warm-up: %s" % mem)


# ------------------------------------------------------------------------------------------------ 1. load
def scenario_load(root: Path, profile: Profile, seed: int) -> ScenarioReport:
    """N images from three concurrent writers with duplicated content: exactly the unique ones produce results,
    none lost, none processed twice, none read while still being written."""
    n = profile.load_images
    report = ScenarioReport("load", "%d images from 3 concurrent writers (chunked, rename, copy), 20%% duplicates"
                            % n)
    t0 = time.monotonic()
    drops = make_load_plan(n, seed=seed, prefix="load")
    expected = expected_results(drops)
    dups = len(drops) - len(expected)
    report.count("images_in", len(drops))
    scene = Scene(root, "load", report)
    try:
        scene.daemon.start()
        pid = scene.daemon.pid
        writers = Writers(scene.capture, scene.staging, drops).start()
        t_in = time.monotonic()
        ok = scene.wait(lambda: writers.done() and set(expected) <= scene.done_ids(),
                        (60 + n * 0.5) * profile.timeout_scale, "every unique image to have a result")
        elapsed = time.monotonic() - t_in
        if ok:
            scene.wait(lambda: int(scene.status().get("duplicates", -1)) >= dups, 30,
                       "the daemon to have seen all %d duplicate files" % dups)
        time.sleep(1.5)                       # anything read early and re-read would show up now
        status = scene.status()
        report.check(writers.errors == [], "writer errors: %s" % writers.errors[:5])
        rc = scene.daemon.stop()
        report.check(rc == 0, "SIGTERM: exit status %s (expected 0)" % rc)
        report.check(scene.daemon.pids == [pid], "the daemon restarted: pids %s" % scene.daemon.pids)
        report.facts["written"] = "%d files (%d unique contents, %d duplicates)" % (len(drops), len(expected), dups)
        report.facts["throughput"] = "%.1f images/s (first write -> last result, %.1f s)" % (
            len(expected) / max(elapsed, 1e-6), elapsed)
        report.facts["daemon duplicates counter"] = status.get("duplicates")
        report.check(status.get("duplicates") == dups, "daemon counted %s duplicates, %d were written"
                     % (status.get("duplicates"), dups))
        _result_checks(report, scene.data, expected)
        _journal_checks(report, scene.data, expected, attempts_once=True)
        done_lines = Counter(_DONE_RE.findall(scene.daemon.log_text()))
        twice = {k: v for k, v in done_lines.items() if v > 1}
        report.check(not twice, "logged 'done' more than once for %s" % list(twice.items())[:5])
        report.count("duplicated", len(twice))
        _soak_facts(report, scene, profile.strict_soak)
    finally:
        finish_scene(scene, report, t0)
    return report


# ------------------------------------------------------------------------------------------------ 2. crashes
#: Results between two kills: more than the pipeline holds in flight, so consecutive crashes hit different
#: items. Tighter crash loops are the poison-pill guard's business (appliance.recovery.MAX_INTERRUPTED_ATTEMPTS).
KILL_GAP = 12


def kill_marks(rng: random.Random, total: int, k: int, gap: int) -> List[int]:
    """``k`` random result counts in (0, total) at least ``gap`` apart (fewer when they do not fit)."""
    room = total - 1 - gap * (k - 1)
    if room < 1:
        k = max(1, (total - 1) // max(1, gap))
        room = max(1, total - 1 - gap * (k - 1))
    picks = sorted(rng.sample(range(1, room + 1), min(k, room)))
    return [p + i * gap for i, p in enumerate(picks)]


def scenario_crash(root: Path, profile: Profile, seed: int) -> ScenarioReport:
    """kill -9 at K random moments of a load run (at least KILL_GAP results apart), restarting each time: exactly
    one complete result per image, a consistent journal, no truncated outputs and no temp files left."""
    n, k = profile.crash_images, profile.crashes
    report = ScenarioReport("crash", "%d images, kill -9 at %d random moments, restart each time" % (n, k))
    t0 = time.monotonic()
    rng = random.Random(seed)
    drops = make_load_plan(n, seed=seed + 1, prefix="crash")
    expected = expected_results(drops)
    report.count("images_in", len(drops))
    scene = Scene(root, "crash", report)
    moments: List[str] = []
    try:
        scene.daemon.start()
        # ~10 files/s: slower than the daemon, so the crashes land while images keep arriving and in flight
        writers = Writers(scene.capture, scene.staging, drops, interval_s=0.25).start()
        marks = kill_marks(rng, len(expected), k, KILL_GAP)
        last = 0
        for mark in marks:
            need = max(mark, last + KILL_GAP)
            if not scene.wait(lambda: len(scene.done_ids()) >= need or (writers.done() and set(expected)
                                                                       <= scene.done_ids()),
                              (60 + n * 0.5) * profile.timeout_scale, "%d results before a crash" % need):
                break
            time.sleep(rng.uniform(0.0, 0.4))
            last = len(scene.done_ids())
            moments.append("%d/%d" % (last, len(expected)))
            scene.daemon.crash_and_restart()
        scene.wait(lambda: writers.done() and set(expected) <= scene.done_ids(),
                   (60 + n * 0.5) * profile.timeout_scale, "every unique image to have a result after the crashes")
        time.sleep(1.0)
        rc = scene.daemon.stop()
        report.check(rc == 0, "final SIGTERM: exit status %s (expected 0)" % rc)
        report.count("crashes", scene.daemon.kills)
        report.check(scene.daemon.kills == k, "only %d of %d crashes happened" % (scene.daemon.kills, k))
        report.check(not scene.daemon.unexpected_exits, "unexpected exits: %s" % scene.daemon.unexpected_exits)
        report.facts["kill -9 at (results so far)"] = ", ".join(moments)
        interrupted = [q.get("source") for q in snapshot(scene.data).quarantined.values()
                       if q.get("reason") == "interrupted"]
        report.check(not interrupted, "quarantined as interrupted (poison-pill guard) after the crashes: %s"
                     % interrupted[:10])
        report.facts["written"] = "%d files (%d unique contents)" % (len(drops), len(expected))
        _result_checks(report, scene.data, expected)
        _journal_checks(report, scene.data, expected, attempts_once=False)
    finally:
        finish_scene(scene, report, t0)
    return report


# ------------------------------------------------------------------------------------------------ 4. device faults
FAULT_PLAN = [
    {"call": "acl.mdl.execute_async", "code": 507011, "times": 2, "after": 5},    # transient: retried
    {"call": "acl.rt.synchronize_stream", "code": 507013, "times": 1, "after": 9},  # transient, on collect
    {"call": "acl.mdl.execute_async", "code": 507015, "times": 1, "after": 14},   # device error: re-init
    {"call": "acl.rt.malloc", "code": 207001, "times": 1, "after": 4},            # allocation fails in that re-init
]
HANG_AFTER = 22


def scenario_faults(root: Path, profile: Profile, seed: int) -> ScenarioReport:
    """Device faults from the config file during a load run: transient ones are retried, device errors lead to
    re-initialisation, a hang stops the watchdog pings and the emulated systemd restarts the daemon; no image
    is lost."""
    n = profile.fault_images
    planned = sum(f["times"] for f in FAULT_PLAN) + 1
    report = ScenarioReport("faults", "%d images with %d injected device faults (transient, device error, "
                            "allocation failure, hang -> watchdog restart)" % (n, planned))
    t0 = time.monotonic()
    drops = make_load_plan(n, seed=seed + 2, prefix="fault", duplicate_every=0)
    expected = expected_results(drops)
    report.count("images_in", len(drops))
    faulty = {"device": {"retries": 3, "hang_timeout_s": 2.0,
                         "sim": {"faults": FAULT_PLAN, "hang_after": HANG_AFTER}}}
    scene = Scene(root, "faults", report, faulty, watchdog_s=3.0)
    restarts: List[str] = []

    def clean_config(what: str) -> None:
        """The device is fine after the restart (a real NPU after a reset); the next process runs clean."""
        restarts.append(what)
        scene.write_config({"device": {"sim": {"faults": [], "hang_after": None}}})

    try:
        scene.daemon.start()
        writers = Writers(scene.capture, scene.staging, drops).start()
        scene.wait(lambda: writers.done() and set(expected) <= scene.done_ids(),
                   (90 + n * 0.5) * profile.timeout_scale, "every image to have a result despite the faults",
                   before_restart=clean_config)
        status = scene.status()
        text = scene.daemon.log_text()
        injected = text.count("sim: injected fault ")
        hangs = text.count("executes hang from now on (hang_after)")
        retried = text.count("; retrying in ")
        reinits = text.count("; re-initialising")
        rc = scene.daemon.stop()
        report.check(rc == 0, "SIGTERM: exit status %s (expected 0)" % rc)
        report.count("faults_injected", injected + hangs)
        report.count("watchdog_restarts", scene.daemon.watchdog_restarts)
        report.facts["faults injected (log)"] = "%d ACL error codes + %d hang" % (injected, hangs)
        report.facts["retries / re-initialisations (log)"] = "%d / %d" % (retried, reinits)
        report.facts["watchdog restarts"] = scene.daemon.watchdog_restarts
        report.facts["final health"] = "%s, device %s, pipeline %s" % (
            status.get("health"), status.get("device_state"), status.get("pipeline_state"))
        report.check(injected == planned - 1, "%d ACL faults fired, %d planned" % (injected, planned - 1))
        report.check(hangs == 1, "the hang fired %d times, planned once" % hangs)
        report.check(retried >= 1, "no transient retry logged")
        report.check(reinits >= 1, "no re-initialisation logged")
        report.check(scene.daemon.watchdog_restarts == 1,
                     "%d watchdog restarts (expected 1, for the hang)" % scene.daemon.watchdog_restarts)
        report.check(not scene.daemon.unexpected_exits, "unexpected exits: %s" % scene.daemon.unexpected_exits)
        report.check(status.get("health") == "ok" and status.get("device_state") == "ready",
                     "not healthy at the end: %s" % {k: status.get(k) for k in
                                                    ("health", "health_reason", "device_state")})
        _result_checks(report, scene.data, expected)
        _journal_checks(report, scene.data, expected, attempts_once=False)
        survived = (injected + hangs) if report.ok else 0
        report.count("faults_survived", survived)
    finally:
        finish_scene(scene, report, t0)
    return report


# ------------------------------------------------------------------------------------------------ 5. disk full
#: Upper bound of one result's size on disk for the 256x256 inputs (probability.bin is 1 MiB of it).
RESULT_MIB = 1.4


def can_mount_tmpfs(where: Path) -> bool:
    """Whether a size-limited tmpfs can be mounted here (root with CAP_SYS_ADMIN, a `mount` binary)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = where / ".mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    try:
        ok = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
        if ok:
            subprocess.call(["umount", str(probe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return ok
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def scenario_disk(root: Path, profile: Profile, seed: int, mode: str = "auto") -> ScenarioReport:
    """results/ runs out of space: the pipeline pauses (paused + paused_reason on /api/status), leaves no partial
    files and resumes by itself when space returns. ``mode``: tmpfs (a 20 MiB mount, larger when
    the run has more images than fit, filled up to ~2.5 MiB free), hook (ENOSPC test hook of
    pipeline.atomic) or auto (tmpfs when the machine allows mounts)."""
    from vessel_seg.pipeline.store.atomic import ENOSPC_FLAG_ENV

    n = profile.disk_images
    if mode == "auto":
        mode = "tmpfs" if can_mount_tmpfs(root) else "hook"
    size_mib = max(20, int(n * RESULT_MIB) + 4)      # all results fit once the filler is gone
    report = ScenarioReport("disk", "%d images onto a full results/ (%s), then space returns" % (
        n, "%d MiB tmpfs" % size_mib if mode == "tmpfs" else "injected ENOSPC"))
    t0 = time.monotonic()
    report.count("images_in", n)
    flag = Path(root) / "disk" / "enospc.flag"
    env = {ENOSPC_FLAG_ENV: str(flag)} if mode == "hook" else {}
    # this scenario proves the pause-and-resume path of a full disk: retention (which would free space by
    # pruning the oldest results first) is off here
    scene = Scene(root, "disk", report, env=env, overrides={"retention": {"min_free_percent": 0}})
    mounted = False
    filler = scene.results / ".stress-filler"
    try:
        if mode == "tmpfs":
            scene.results.mkdir(parents=True, exist_ok=True)
            rc = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mib, "tmpfs", str(scene.results)])
            if not report.check(rc == 0, "mount of a %d MiB tmpfs failed (%s)" % (size_mib, rc)):
                return report
            mounted = True
            st = os.statvfs(str(scene.results))
            free = st.f_bavail * st.f_frsize
            with open(str(filler), "wb") as fh:             # leave room for about two results
                fh.write(b"\0" * max(0, free - int(2.5 * 1024 * 1024)))
        scene.daemon.start()
        data = [fundus_bytes(seed * 1000 + 900 + i, ".png", (256, 256)) for i in range(n)]
        expected = {content_id(d): sha256_bytes(d) for d in data}
        if mode == "hook":
            for i in range(2):
                write_renamed(scene.capture / ("disk_%03d.png" % i), data[i])
            scene.wait(lambda: len(scene.done_ids()) >= 2, 60, "two results before the disk fills")
            flag.write_bytes(b"full")
        for i in range(2 if mode == "hook" else 0, n):
            write_renamed(scene.capture / ("disk_%03d.png" % i), data[i])
        paused: Dict[str, Any] = {}

        def is_paused() -> bool:
            paused.clear()
            paused.update(scene.status())
            return paused.get("pipeline_state") == "paused"

        if scene.wait(is_paused, 60 * profile.timeout_scale, "pipeline_state paused on /api/status"):
            reason = str(paused.get("paused_reason") or "")
            report.facts["status while full"] = "pipeline_state=%s, health=%s, paused_reason=%r" % (
                paused.get("pipeline_state"), paused.get("health"), reason[:120])
            report.check("disk full" in reason or "No space" in reason,
                          "paused_reason does not say the disk is full: %r" % reason)
            time.sleep(1.0)                                     # several failed retries while full
            done_while_full = scene.done_ids()
            state = snapshot(scene.data)
            report.check(not state.temp_files, "temp files left while the disk is full: %s" % state.temp_files[:5])
            for rid in state.result_dirs:
                folder = scene.results / rid
                for name in os.listdir(str(folder)):
                    if name == "probability.bin":
                        size = (folder / name).stat().st_size
                        report.check(size == 1048576, "partial %s/%s (%d bytes) while full" % (rid, name, size))
            for rid in done_while_full:
                problems = verify_result_dir(scene.results / rid, expected.get(rid))
                report.check(not problems, "result %s written before the disk filled: %s" % (rid, problems))
            report.facts["results before the disk filled"] = len(done_while_full)
            report.check(len(done_while_full) < n, "the disk never filled up (all %d results written)" % n)
            if mode == "tmpfs":
                filler.unlink()
            else:
                flag.unlink()
            t_free = time.monotonic()
            resumed = scene.wait(lambda: set(expected) <= scene.done_ids(), 60 * profile.timeout_scale,
                                 "all results after space returned")
            status = scene.status()
            report.facts["resumed by itself"] = "%s, %.1f s after space returned; pipeline_state=%s" % (
                "yes" if resumed else "NO", time.monotonic() - t_free, status.get("pipeline_state"))
            report.check(status.get("pipeline_state") == "running" and not status.get("paused_reason"),
                         "not running again after space returned: %s" % {
                             k: status.get(k) for k in ("pipeline_state", "paused_reason")})
        rc = scene.daemon.stop()
        report.check(rc == 0, "SIGTERM: exit status %s (expected 0)" % rc)
        report.check(scene.daemon.pids[:1] == scene.daemon.pids, "the daemon restarted: %s" % scene.daemon.pids)
        _result_checks(report, scene.data, expected)
        _journal_checks(report, scene.data, expected, attempts_once=False)
    finally:
        finish_scene(scene, report, t0)
        if mounted:
            if subprocess.call(["umount", str(scene.results)]) != 0:
                subprocess.call(["umount", "-l", str(scene.results)])
    return report
