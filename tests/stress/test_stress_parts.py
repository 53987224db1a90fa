"""The parts of ``vessel-seg stress`` on their own: checks that must catch damage, the hostile corpus, the
writers, the systemd emulation, the ENOSPC test hook, the web invariants and the report."""
from __future__ import annotations

import errno
import io
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from vessel_seg.pipeline.engine.binfile import PROB_NBYTES
from vessel_seg.pipeline.proving.checks import find_temp_files, tree_signature, verify_result_dir
from vessel_seg.pipeline.proving.hostile_http import Answer, Invariants, servable
from vessel_seg.pipeline.proving.inputs import (
    IGNORED,
    QUARANTINE,
    REJECTED,
    RESULT,
    Writers,
    build_hostile_corpus,
    expected_results,
    make_load_plan,
    png_with_header,
    write_secret,
)
from vessel_seg.pipeline.proving.report import ScenarioReport, format_summary, memory_summary
from vessel_seg.pipeline.proving.supervised import SupervisedDaemon
from vessel_seg.pipeline.store.atomic import ENOSPC_FLAG_ENV, atomic_write_bytes
from vessel_seg.pipeline.store.results import write_result
from vessel_seg.vocabulary import RESULT_FILES, sha256_bytes

RID = "0123456789abcdef"


def _png(size=(40, 40)):
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 80, 30)).save(buf, "PNG")
    return buf.getvalue()


def _result(tmp_path, sha="ab" * 32):
    files = {n: (b"\0" * PROB_NBYTES if n == "probability.bin" else (_png() if n.endswith(".png") else b""))
             for n in RESULT_FILES.values()}
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    files["thumb.jpg"] = buf.getvalue()
    folder = tmp_path / "results" / RID
    write_result(folder, files, {"id": RID, "sha256": sha})
    return folder


# ------------------------------------------------------------------------------------------------ checks
def test_a_sound_result_folder_has_no_problems(tmp_path):
    assert verify_result_dir(_result(tmp_path), "ab" * 32) == []


@pytest.mark.parametrize("damage, expected", [
    (lambda f: (f / "probability.bin").write_bytes(b"\0" * 1000), "probability.bin has 1000 bytes"),
    (lambda f: (f / "mask.png").write_bytes(_png()[:30]), "mask.png is not decodable"),
    (lambda f: (f / ".overlay.png.0123456789ab.tmp").write_bytes(b"x"), "stray file"),
    (lambda f: (f / "overlay.png").unlink(), "missing overlay.png"),
    (lambda f: (f / "result.json").write_text("{"), "result.json does not parse"),
])
def test_damage_to_a_result_folder_is_reported(tmp_path, damage, expected):
    folder = _result(tmp_path)
    damage(folder)
    assert any(expected in p for p in verify_result_dir(folder))


def test_a_result_of_other_content_than_the_final_file_is_a_partial_read(tmp_path):
    problems = verify_result_dir(_result(tmp_path, sha="cd" * 32), "ab" * 32)
    assert any("read while being written" in p for p in problems)


def test_temp_files_are_found_everywhere_but_in_capture(tmp_path):
    (tmp_path / "capture").mkdir()
    (tmp_path / "capture" / "x.tmp").write_bytes(b"")
    (tmp_path / "results" / RID).mkdir(parents=True)
    (tmp_path / "results" / RID / ".mask.png.0123456789ab.tmp").write_bytes(b"")
    assert find_temp_files(tmp_path) == [os.path.join("results", RID, ".mask.png.0123456789ab.tmp")]


def test_tree_signature_sees_new_and_changed_files_but_not_excluded_folders(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "s.txt").write_text("a")
    before = tree_signature(tmp_path, exclude=[tmp_path / "data"])
    (tmp_path / "data" / "new").write_text("fine")
    assert tree_signature(tmp_path, exclude=[tmp_path / "data"]) == before
    (tmp_path / "secret" / "s.txt").write_text("changed!")
    assert tree_signature(tmp_path, exclude=[tmp_path / "data"]) != before


# ------------------------------------------------------------------------------------------------ inputs
def test_load_plan_repeats_content_under_new_names_and_alternates_writers():
    drops = make_load_plan(10, seed=1, duplicate_every=5, size=(64, 64), big_every=0)
    assert len(drops) == 10 and len({d.name for d in drops}) == 10
    dups = [d for d in drops if d.duplicate_of]
    assert len(dups) == 2 and all(d.data == next(o.data for o in drops if o.name == d.duplicate_of) for d in dups)
    assert len(expected_results(drops)) == 8
    assert {d.writer for d in drops} == {"chunked", "rename", "copy"}


def test_the_three_writers_deliver_exactly_the_planned_bytes(tmp_path):
    capture = tmp_path / "capture"
    capture.mkdir()
    drops = make_load_plan(6, seed=2, duplicate_every=0, size=(64, 64), big_every=0)
    w = Writers(capture, tmp_path / "staging", drops, chunks=3, chunk_delay_s=0.01).start()
    assert w.join(30) and not w.errors
    assert sorted(os.listdir(str(capture))) == sorted(d.name for d in drops)
    assert all((capture / d.name).read_bytes() == d.data for d in drops)
    assert os.listdir(str(tmp_path / "staging")) == []


def test_hostile_corpus_has_every_kind_of_trouble_the_issue_lists(tmp_path):
    capture, secret = tmp_path / "capture", tmp_path / "secret"
    capture.mkdir()
    write_secret(secret)
    cases = build_hostile_corpus(capture, secret)
    kinds = " | ".join(c.kind for c in cases)
    assert len(cases) >= 40
    for needle in ("truncated JPEG", "truncated PNG", "truncated TIFF", "zero bytes", "random bytes",
                   "decompression bomb (PNG header 50000x50000)", "JPEG header 65000x65000", "16-bit", "CMYK",
                   "palette", "RGBA", "symlink to a file outside", "directory", "FIFO", "hostile file name",
                   "DICOM OP 8-bit JPEG baseline", "DICOM cut in the middle", "DICOM without pixel data",
                   "unsupported transfer syntax", "65000x65000 pixels"):
        assert needle in kinds, needle
    assert sorted(c.kind for c in cases if c.kind.startswith("EXIF")) == ["EXIF orientation %d" % k
                                                                         for k in range(1, 9)]
    names = [c.name for c in cases]
    assert any(" " in n for n in names) and any("\n" in n for n in names) and any(n.startswith("-") for n in names)
    assert any(ord(ch) > 127 for n in names for ch in n)
    assert stat.S_ISFIFO(os.lstat(str(capture / "pipe.png")).st_mode)
    assert os.path.realpath(str(capture / "outside_link.png")) == os.path.realpath(str(secret / "secret.png"))
    for c in cases:
        assert c.expect and set(c.expect) <= {RESULT, QUARANTINE, IGNORED, REJECTED}, c


def test_the_bomb_png_declares_50000_by_50000_in_a_few_bytes():
    data = png_with_header(50000, 50000, 2, b"\0" * 100)
    assert len(data) < 200
    Image.MAX_IMAGE_PIXELS, saved = None, Image.MAX_IMAGE_PIXELS
    try:
        assert Image.open(io.BytesIO(data)).size == (50000, 50000)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_kill_moments_are_random_result_counts_at_least_the_gap_apart():
    import random

    from vessel_seg.pipeline.proving.scenarios import kill_marks

    for seed in range(20):
        marks = kill_marks(random.Random(seed), 400, 25, 12)
        assert len(marks) == 25 and 0 < marks[0] and marks[-1] < 400
        assert all(b - a >= 12 for a, b in zip(marks, marks[1:]))
    assert kill_marks(random.Random(1), 48, 3, 12) != kill_marks(random.Random(2), 48, 3, 12)


# ------------------------------------------------------------------------------------------------ ENOSPC hook
def test_enospc_hook_fails_atomic_writes_while_the_flag_exists_and_leaves_nothing(tmp_path, monkeypatch):
    flag = tmp_path / "full.flag"
    monkeypatch.setenv(ENOSPC_FLAG_ENV, str(flag))
    target = tmp_path / "out" / "a.bin"
    target.parent.mkdir()
    atomic_write_bytes(target, b"before")
    flag.write_bytes(b"")
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"during")
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(str(target.parent)) == ["a.bin"] and target.read_bytes() == b"before"
    flag.unlink()
    atomic_write_bytes(target, b"after")
    assert target.read_bytes() == b"after"


# ------------------------------------------------------------------------------------------------ systemd emulation
FAKE_SERVICE = textwrap.dedent("""
    import os, socket, sys, time
    addr = os.environ["NOTIFY_SOCKET"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", addr)
    pings = int(sys.argv[1]) if os.path.exists(sys.argv[2]) else 1000000
    for _ in range(pings):
        s.sendto(b"WATCHDOG=1", addr)
        time.sleep(0.1)
    time.sleep(3600)
""")


def test_a_service_whose_watchdog_pings_stop_is_killed_and_restarted_like_systemd_would(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(FAKE_SERVICE)
    hang_flag = tmp_path / "hang"
    hang_flag.write_text("")
    d = SupervisedDaemon(tmp_path / "unused.yaml", tmp_path, tmp_path / "svc.log", watchdog_s=0.6,
                         command=[sys.executable, str(script), "3", str(hang_flag)], sample_s=0.1)
    try:
        d.start()
        first = d.pid
        seen = None
        deadline = time.monotonic() + 20
        while seen is None and time.monotonic() < deadline:
            seen = d.supervise(before_restart=lambda what: hang_flag.unlink())
            time.sleep(0.05)
        assert seen == "watchdog" and d.watchdog_restarts == 1
        assert d.pid != first and d.alive()
        time.sleep(1.5)                                     # the new process keeps pinging
        assert d.supervise() is None and d.notify.watchdog_pings > 3
        assert d.samples and all(rss > 0 and fds > 0 for _t, _p, rss, fds in d.samples)
    finally:
        d.close()


def test_a_service_that_dies_is_restarted_and_the_exit_is_recorded(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import os, socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                      "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\nimport time; time.sleep(0.3)\n"
                      "raise SystemExit(3)\n")
    d = SupervisedDaemon(tmp_path / "unused.yaml", tmp_path, tmp_path / "svc.log", watchdog_s=30.0,
                         command=[sys.executable, str(script)])
    try:
        d.start()
        d.proc.wait(10)
        assert d.supervise() == "exited with 3"
        assert d.unexpected_exits == ["exited with 3"] and len(d.pids) == 2
    finally:
        d.close()


# ------------------------------------------------------------------------------------------------ web invariants
def test_only_allow_listed_paths_may_be_served():
    static = ["app.css"]
    for ok in ("/", "/api/status", "/results/%s/mask.png" % RID, "/static/app.css", "/healthz"):
        assert servable(ok, static), ok
    for bad in ("/results/%s/../../state/journal.sqlite3" % RID, "/static/../config.yaml", "/etc/passwd",
                "/results/%s/input.png" % RID, "/results/%s" % RID.upper(), "/static/other.js"):
        assert not servable(bad, static), bad


def test_invariants_catch_5xx_non_json_api_errors_leaks_and_off_list_files():
    inv = Invariants(["app.css"], [b"SQLite format 3"])
    assert inv.check("GET", "/api/x", Answer(500, {"content-type": "application/json"}, b"{}", 1.0))
    assert inv.check("GET", "/api/x", Answer(404, {"content-type": "text/html"}, b"<p>", 1.0))
    assert inv.check("GET", "/results/a", Answer(404, {"content-type": "text/html"}, b"SQLite format 3\0", 1.0))
    assert inv.check("GET", "/static/%2e%2e/x", Answer(200, {"content-type": "text/plain"}, b"", 1.0))
    assert not inv.check("GET", "/api/results/zz", Answer(404, {"content-type": "application/json"}, b"{}", 1.0))
    assert not inv.check("OPTIONS", "/static/nope", Answer(200, {"allow": "GET, OPTIONS"}, b"", 1.0))
    assert inv.check("OPTIONS", "/static/nope", Answer(200, {"allow": "GET"}, b"file content", 1.0))
    assert not inv.check("GET", "/%2f%2fresults", Answer(200, {"content-type": "text/html"}, b"<html>", 1.0))
    assert inv.check("GET", "//static/..", Answer(200, {"content-type": "text/html"}, b"<html>", 1.0))
    assert len(inv.violations) == 6 and inv.checked == 9


# ------------------------------------------------------------------------------------------------ report
def test_memory_summary_compares_after_warm_up_with_the_end():
    samples = [(float(t), 7, 100000 + t * 10, 10 + (t > 5)) for t in range(11)]
    m = memory_summary(samples)
    assert m["peak_rss_mib"] == round(100100 / 1024.0, 1) and m["fds_end"] == 11 and m["fds_start"] == 10


def test_summary_lists_scenarios_totals_tables_and_problems():
    a = ScenarioReport("load", "100 images")
    a.count("images_in", 100)
    a.count("lost", 0)
    b = ScenarioReport("hostile", "corpus", table_header=("file", "ended as"), table=[("x.png", "quarantine")])
    b.fail("x.png ended wrong")
    text = format_summary([a, b], "short", 12.0)
    assert "load      PASS" in text and "hostile   FAIL" in text
    assert "images in" in text and "100" in text and "x.png" in text and "PROBLEM: x.png ended wrong" in text
    assert text.rstrip().endswith("RESULT: FAIL (hostile) in 12 s")


def test_update_doc_replaces_only_the_results_section(tmp_path):
    from vessel_seg.pipeline.proving.command import DOC_END, DOC_START, update_doc

    doc = tmp_path / "STRESS.md"
    doc.write_text("# Stress\nintro\n%s\nold long\n%s\n%s\nold short\n%s\ntail\n" % (
        DOC_START % "long", DOC_END % "long", DOC_START % "short", DOC_END % "short"))
    update_doc(doc, "RESULT: PASS", "short")
    text = doc.read_text()
    assert "old short" not in text and "old long" in text and "RESULT: PASS" in text
    assert text.startswith("# Stress\nintro") and text.endswith("tail\n")
    with pytest.raises(ValueError):
        update_doc(doc, "x", "medium")


def test_stress_command_exits_1_when_a_scenario_found_a_problem(monkeypatch, capsys):
    import argparse

    from vessel_seg.pipeline.proving import command as stress

    def fake_run_stress(profile, names, **kw):
        bad = ScenarioReport("load", "x")
        bad.fail("1 image lost")
        return stress.StressResult(profile, [bad], summary="RESULT: FAIL")

    monkeypatch.setattr(stress, "run_stress", fake_run_stress)
    args = argparse.Namespace(long=False, only="load", seed=1, workdir=None, keep=False, disk_mode="auto",
                              report=None, update_doc=None)
    assert stress.run(args) == 1
    assert "RESULT: FAIL" in capsys.readouterr().out


def test_secret_file_atime_is_older_than_its_mtime(tmp_path):
    path, sha = write_secret(tmp_path / "secret")
    st = os.stat(str(path))
    assert st.st_atime_ns < st.st_mtime_ns and sha256_bytes(path.read_bytes()) == sha
    assert Path(path).name == "secret.png"
