"""The short ``vessel-seg stress`` run (what CI runs): the real daemon as a subprocess on the simulator, through
load, kill -9, a hostile corpus, device faults, a full disk and hostile HTTP. One run serves every test below;
each test states one promise of the appliance and fails with the run's summary when it does not hold."""
from __future__ import annotations

import pytest

import vessel_seg.camera.ingest  # noqa: E402,F401  (the daemon needs the watcher and the journal)
import vessel_seg.pipeline.store.journal  # noqa: E402,F401
from vessel_seg.pipeline.proving.command import SCENARIOS, run_stress  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_stress("short", workdir=tmp_path_factory.mktemp("stress"), seed=20261121)


def _ok(run, name):
    rep = run.report(name)
    assert rep.ok, "\n" + run.summary
    return rep


def test_every_scenario_ran_and_the_summary_says_pass(run):
    assert [r.name for r in run.reports] == list(SCENARIOS)
    assert run.ok, "\n" + run.summary
    assert run.summary.rstrip().splitlines()[-1].startswith("RESULT: PASS")


def test_load_exactly_the_unique_images_get_one_result_each_none_lost_twice_or_early(run):
    rep = _ok(run, "load")
    assert rep.counters["images_in"] == 100
    assert rep.counters["results_out"] == 80              # 20 of the 100 repeat earlier content
    assert rep.counters["lost"] == 0 and rep.counters["duplicated"] == 0 and rep.counters["partial_reads"] == 0


def test_crashes_leave_exactly_one_complete_result_per_image_and_a_drained_journal(run):
    rep = _ok(run, "crash")
    assert rep.counters["crashes"] == 3 and rep.counters["lost"] == 0
    assert rep.facts["journal states"] == {"done": rep.counters["results_out"]}


def test_hostile_files_are_processed_or_quarantined_and_the_daemon_keeps_its_pid(run):
    rep = _ok(run, "hostile")
    assert rep.counters["bad_inputs"] >= 40
    assert len(rep.table) == rep.counters["bad_inputs"] and all(row[-1] == "yes" for row in rep.table)
    assert "(1 process(es))" in rep.facts["daemon PID throughout"]


def test_device_faults_are_retried_reinitialised_and_a_hang_restarts_through_the_watchdog(run):
    rep = _ok(run, "faults")
    assert rep.counters["faults_injected"] == rep.counters["faults_survived"] == 6
    assert rep.counters["watchdog_restarts"] == 1 and rep.counters["lost"] == 0
    assert rep.facts["final health"] == "ok, device ready, pipeline running"


def test_a_full_disk_pauses_with_a_reason_and_resumes_by_itself(run):
    rep = _ok(run, "disk")
    assert "pipeline_state=paused" in rep.facts["status while full"]
    assert rep.facts["resumed by itself"].startswith("yes")


def test_web_answers_attacks_right_survives_a_burst_and_the_fuzz_never_sees_a_5xx(run):
    rep = _ok(run, "web")
    assert rep.facts["burst"].startswith("200/200 answered 200")
    assert not any(int(code) >= 500 for code in
                   (part.split(":")[0] for part in rep.facts["answers by status"].split(", ")))


def test_summary_reports_totals_memory_and_how_each_bad_input_ended(run):
    text = run.summary
    for needle in ("images in", "results out", "lost", "duplicated", "crashes (kill -9) survived",
                   "device faults injected", "bad inputs tried", "peak RSS over all runs", "fds start",
                   "fds end", "bomb_50000.png", "exif_orientation_6.jpg", "pipe.png"):
        assert needle in text, needle


def test_the_disk_scenario_also_works_with_the_enospc_hook_where_mounts_are_not_allowed(tmp_path):
    result = run_stress("short", ["disk"], workdir=tmp_path, disk_mode="hook", seed=5)
    rep = result.report("disk")
    assert rep.ok, "\n" + result.summary
    assert "injected ENOSPC" in rep.title and "pipeline_state=paused" in rep.facts["status while full"]


def test_pacs_down_under_load_and_a_kill_9_every_result_arrives_in_orthanc_exactly_once(run):
    rep = run.report("pacs")
    if "skipped" in rep.facts:
        pytest.skip(rep.facts["skipped"])
    assert rep.ok, "\n" + run.summary
    assert rep.counters["crashes"] == 1 and rep.counters["duplicated"] == 0
    assert rep.counters["arrived"] == 2 * rep.counters["results_out"] == 48       # 24 unique contents
    assert rep.facts["outbox"] == {"sent": 48}
