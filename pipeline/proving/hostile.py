"""Scenarios of ``vessel-seg stress`` with hostile input: a corpus of broken and dangerous files in the capture
folder, and hostile HTTP against the status page. The daemon must stay up (same PID), handle or quarantine
every file with a reason, never read or write outside its configured folders, and answer every request with
the right status (never a 5xx).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Dict, List, Set

from vessel_seg.pipeline.proving.checks import DataDirState, content_id, snapshot, tree_signature, verify_result_dir
from vessel_seg.pipeline.proving.hostile_http import Http, Invariants, attack_cases, burst, fuzz
from vessel_seg.pipeline.proving.inputs import (
    IGNORED,
    QUARANTINE,
    REJECTED,
    RESULT,
    HostileCase,
    atime_detects_reads,
    build_hostile_corpus,
    fundus_bytes,
    write_renamed,
    write_secret,
)
from vessel_seg.pipeline.proving.report import ScenarioReport
from vessel_seg.pipeline.proving.scenarios import Profile, finish_scene
from vessel_seg.pipeline.proving.scene import Scene
from vessel_seg.vocabulary import result_id

log = logging.getLogger(__name__)


def outcome_of(case: HostileCase, state: DataDirState, capture: Path, complete: Set[str]) -> str:
    """How a hostile case ended: result, quarantine:<reason>, rejected, ignored, or pending/unknown."""
    q = state.by_source().get(case.name)
    if q is not None:
        reason = str(q.get("reason"))
        return REJECTED if reason == "rejected" else "%s:%s" % (QUARANTINE, reason)
    if case.id and case.id in complete:
        return RESULT
    in_journal = any(r.get("source") == case.name for r in state.journal.values())
    if os.path.lexists(os.path.join(str(capture), case.name)) and not in_journal:
        return IGNORED
    if in_journal:
        return "pending"
    return "gone (neither result nor quarantine)"


def _accepts(case: HostileCase, outcome: str) -> bool:
    kind = outcome.split(":", 1)[0]
    if kind not in case.expect:
        return False
    if kind == QUARANTINE and case.reason:
        return outcome.split(":", 1)[1] in case.reason
    return True


def _resolved(outcome: str) -> bool:
    return outcome.split(":", 1)[0] in (RESULT, QUARANTINE, REJECTED)


# ------------------------------------------------------------------------------------------------ 3. hostile
def scenario_hostile(root: Path, profile: Profile, seed: int) -> ScenarioReport:
    """The hostile corpus (module docstring); a table says how each file ended."""
    report = ScenarioReport("hostile", "hostile corpus: broken, unusual and dangerous files in capture/")
    t0 = time.monotonic()
    scene = Scene(root, "hostile", report)
    secret_path, secret_sha = write_secret(scene.secret)
    atime_ok = atime_detects_reads(scene.dir)
    secret_atime = os.stat(str(secret_path)).st_atime_ns
    cases = build_hostile_corpus(scene.capture, scene.secret, seed=seed)
    report.count("bad_inputs", len(cases))
    report.table_header = ("file", "trouble", "expected", "ended as", "ok")
    before = tree_signature(scene.dir, exclude=[scene.data, scene.log, scene.tmp])
    try:
        scene.daemon.start()
        pid = scene.daemon.pid
        outcomes: Dict[str, str] = {}

        def settled() -> bool:
            state = snapshot(scene.data)
            complete = scene.done_ids()
            outcomes.clear()
            for c in cases:
                outcomes[c.name] = outcome_of(c, state, scene.capture, complete)
            decidable = [c for c in cases if IGNORED not in c.expect]
            return all(_resolved(outcomes[c.name]) for c in decidable)

        scene.wait(settled, 120 * profile.timeout_scale, "every hostile file to be handled")
        time.sleep(5.0)                    # two rescans: late pick-ups of "ignored" files would show now
        canary = fundus_bytes(seed + 4242, ".png")
        write_renamed(scene.capture / "canary after the corpus.png", canary)
        scene.wait(lambda: content_id(canary) in scene.done_ids(), 60 * profile.timeout_scale,
                   "a good image after the corpus (the daemon still works)")
        settled()
        state = snapshot(scene.data)
        rc = scene.daemon.stop()
        report.check(rc == 0, "SIGTERM: exit status %s (expected 0)" % rc)
        report.check(scene.daemon.pids == [pid] and not scene.daemon.unexpected_exits,
                     "the daemon did not stay up: pids %s, exits %s" % (scene.daemon.pids,
                                                                       scene.daemon.unexpected_exits))
        report.facts["daemon PID throughout"] = "%s (%d process(es))" % (pid, len(scene.daemon.pids))
        for c in cases:
            got = outcomes.get(c.name, "?")
            ok = _accepts(c, got)
            if ok and got == RESULT and c.id:
                problems = verify_result_dir(scene.results / c.id, c.sha256)
                size = c.notes.get("size")
                if size is not None and not problems:
                    meta = json.loads((scene.results / c.id / "result.json").read_text(encoding="utf-8"))
                    if meta.get("original_size") != size:
                        problems.append("original_size %s, expected %s" % (meta.get("original_size"), size))
                if problems:
                    ok = False
                    got = "result with problems: %s" % "; ".join(problems)
            report.table.append((c.name, c.kind, "/".join(c.expect) + ("(%s)" % "|".join(c.reason) if c.reason else ""),
                                 got, "yes" if ok else "NO"))
            report.check(ok, "%r (%s): expected %s, ended as %s" % (c.name, c.kind, "/".join(c.expect), got))
        # nothing outside the configured folders was read or written
        after = tree_signature(scene.dir, exclude=[scene.data, scene.log, scene.tmp])
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        report.check(not changed, "files outside DATA_DIR created or changed: %s" % changed[:10])
        leaked = [rid for rid in state.result_dirs if rid == result_id(secret_sha)] + [
            k for k in state.journal if k == result_id(secret_sha)]
        report.check(not leaked, "the secret file outside capture/ was processed: %s" % leaked)
        if atime_ok:
            report.check(os.stat(str(secret_path)).st_atime_ns == secret_atime,
                         "the secret file outside capture/ was read (its atime moved)")
            report.facts["secret sibling file"] = "not read (atime unchanged; atime tracking verified)"
        else:
            report.facts["secret sibling file"] = "not processed (this file system does not update atime)"
        report.check(not os.listdir(str(scene.tmp)), "the daemon left files in its TMPDIR: %s"
                     % os.listdir(str(scene.tmp))[:5])
        tally: Dict[str, int] = {}
        for row in report.table:
            key = row[3].split(":", 1)[0]
            tally[key] = tally.get(key, 0) + 1
        report.facts["outcomes"] = ", ".join("%s %d" % kv for kv in sorted(tally.items()))
        report.count("images_in", len(cases) + 1)
        report.count("results_out", len([1 for c in cases if outcomes.get(c.name) == RESULT]) + 1)
    finally:
        finish_scene(scene, report, t0)
    return report


# ------------------------------------------------------------------------------------------------ 6. web
def _static_names() -> List[str]:
    """File names under the web package's static/ (located without importing the web package)."""
    spec = importlib.util.find_spec("vessel_seg.web")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = os.path.join(list(spec.submodule_search_locations)[0], "static")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def scenario_web(root: Path, profile: Profile, seed: int) -> ScenarioReport:
    """Traversal, oversized and wrong-type uploads, missing/wrong token, malformed requests, a bounded burst
    and a fuzz of the API against the live status page; the server stays responsive."""
    report = ScenarioReport("web", "hostile HTTP: attacks, a %d-request burst (%d threads), %d fuzzed requests"
                            % (profile.burst_requests, profile.burst_threads, profile.fuzz_requests))
    t0 = time.monotonic()
    token = "stress-" + secrets.token_hex(12)
    max_upload = 1024 * 1024
    scene = Scene(root, "web", report, {"web": {"token": token, "max_upload_bytes": max_upload}})
    marker = ("TOP-SECRET-" + secrets.token_hex(8)).encode()
    scene.secret.mkdir(parents=True, exist_ok=True)
    (scene.secret / "marker.txt").write_bytes(marker)
    before = tree_signature(scene.dir, exclude=[scene.data, scene.log, scene.tmp])
    try:
        scene.daemon.start()
        pid = scene.daemon.pid
        good = [fundus_bytes(seed * 10 + 500 + i, ".png") for i in range(3)]
        for i, data in enumerate(good):
            write_renamed(scene.capture / ("web_%d.png" % i), data)
        ids = [content_id(d) for d in good]
        scene.wait(lambda: set(ids) <= scene.done_ids(), 60 * profile.timeout_scale, "three results to serve")
        http = Http(scene.port(), token)
        static = _static_names()
        inv = Invariants(static, [b"SQLite format 3", marker, b"root:x:0:0", token.encode()])
        cases = attack_cases(http, inv, ids[0], good[0], max_upload)
        report.table_header = ("request", "expected", "got", "ok", "note")
        for c in cases:
            report.table.append((c.name, "/".join(str(s) for s in c.expect), c.got, "yes" if c.ok else "NO",
                                 c.note[:80]))
            report.check(c.ok, "web case %r: expected %s, got %s %s" % (c.name, c.expect, c.got, c.note))
        paths = ["/api/status", "/api/results?page=1", "/healthz", "/", "/results/%s/thumb.jpg" % ids[0],
                 "/api/results/%s" % ids[1], "/metrics"]
        b = burst(http, inv, paths, profile.burst_requests, profile.burst_threads)
        report.facts["burst"] = "%d/%d answered 200 in %.1f s, p50 %.0f ms, p95 %.0f ms, max %.0f ms" % (
            b["ok"], profile.burst_requests, b["seconds"], b["p50_ms"] or 0, b["p95_ms"] or 0, b["max_ms"] or 0)
        report.check(b["ok"] == profile.burst_requests, "burst: %d errors: %s" % (len(b["errors"]), b["errors"][:5]))
        f = fuzz(http, inv, profile.fuzz_requests, seed, ids)
        report.facts["fuzz"] = "%d requests (%s)" % (f["requests"], f["engine"])
        t_ping = time.perf_counter()
        alive = http.request("GET", "/healthz", auth=False)
        report.facts["healthz after everything"] = "%d in %.0f ms" % (alive.status, (time.perf_counter() - t_ping)
                                                                      * 1000)
        report.check(alive.status == 200, "/healthz after the attacks: %d" % alive.status)
        report.facts["answers by status"] = ", ".join("%d: %d" % kv for kv in sorted(inv.statuses.items()))
        unique = sorted(set(inv.violations))
        for v in unique[:20]:
            report.fail("invariant violated: %s" % v)
        report.count("web_requests", inv.checked + len([c for c in cases if c.name.startswith("raw:")]))
        uploaded = [n for n in os.listdir(str(scene.capture)) if "evil" in n]
        report.facts["traversal-named upload stored as"] = ", ".join(repr(n) for n in uploaded) or "-"
        rc = scene.daemon.stop()
        report.check(rc == 0, "SIGTERM: exit status %s (expected 0)" % rc)
        report.check(scene.daemon.pids == [pid], "the daemon restarted: %s" % scene.daemon.pids)
        after = tree_signature(scene.dir, exclude=[scene.data, scene.log, scene.tmp])
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        report.check(not changed, "files outside DATA_DIR created or changed: %s" % changed[:10])
        report.check(not os.listdir(str(scene.tmp)), "request bodies left in the daemon's TMPDIR: %s"
                     % os.listdir(str(scene.tmp))[:5])
        state = snapshot(scene.data)
        report.check(not state.temp_files, "stray temp files: %s" % state.temp_files[:5])
        report.check(not state.states().get("processing"), "journal rows left processing: %s" % state.states())
    finally:
        finish_scene(scene, report, t0)
    return report

