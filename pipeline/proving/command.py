"""``vessel-seg stress``: the proving ground. Runs the REAL daemon (a subprocess on the simulated NPU) through
load, crashes, hostile input, device faults, a full disk and hostile HTTP, then prints a summary of what it
tried and what it found. Exit status 1 when anything was lost, duplicated or wrong.

Profiles: the default short run (CI: ~100 images, 3 crashes, ~2 minutes on 2 cores) and ``--long`` (2000 images,
25 crashes, strict soak checks). The daemon runs with ``compute: surrogate`` and a small ``device_time_ms`` so
the host pipeline, not the emulated NPU, is what is stressed. See docs/STRESS.md.
"""
from __future__ import annotations

import argparse
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from vessel_seg.pipeline.proving.report import ScenarioReport, format_summary

log = logging.getLogger(__name__)

#: Scenario names, in the order they run.
SCENARIOS = ("load", "crash", "hostile", "faults", "disk", "web", "pacs")

#: Markers around the results section of a profile in docs/STRESS.md (``--update-doc``).
DOC_START = "<!-- stress-results:%s:start -->"
DOC_END = "<!-- stress-results:%s:end -->"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg stress``."""
    p.add_argument("--long", action="store_true",
                   help="the long run: 2000 images, 25 crashes, 2000 fuzzed requests, strict soak checks")
    p.add_argument("--only", metavar="NAMES", help="comma-separated subset of: %s" % ", ".join(SCENARIOS))
    p.add_argument("--seed", type=int, default=20261121, help="random seed (kill moments, corpus, fuzz)")
    p.add_argument("--workdir", metavar="DIR", help="where the scenarios' data directories go (default: a "
                   "temporary folder, removed afterwards unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the working folder (daemon logs, data) afterwards")
    p.add_argument("--disk-mode", choices=["auto", "tmpfs", "hook"], default="auto",
                   help="disk-full emulation: a small tmpfs mount (20 MiB; needs root), the ENOSPC test hook of "
                   "pipeline.atomic, or auto (tmpfs when mounting works)")
    p.add_argument("--report", metavar="FILE", help="also write the summary to FILE")
    p.add_argument("--update-doc", metavar="MD", help="replace the results section of this Markdown file "
                   "(between %s and %s) with the summary" % (DOC_START % "PROFILE", DOC_END % "PROFILE"))
    p.set_defaults(default_log_level="WARNING")


@dataclass
class StressResult(object):
    """All scenario reports of one run and the summary text."""

    profile: str
    reports: List[ScenarioReport] = field(default_factory=list)
    summary: str = ""
    seconds: float = 0.0
    workdir: Optional[Path] = None

    @property
    def ok(self) -> bool:
        return bool(self.reports) and all(r.ok for r in self.reports)

    def report(self, name: str) -> ScenarioReport:
        for r in self.reports:
            if r.name == name:
                return r
        raise KeyError(name)


def _runner(name: str, disk_mode: str) -> Callable[..., ScenarioReport]:
    from vessel_seg.pipeline.proving import hostile as h
    from vessel_seg.pipeline.proving import pacs as p
    from vessel_seg.pipeline.proving import scenarios as s

    table: Dict[str, Callable[..., ScenarioReport]] = {
        "load": s.scenario_load, "crash": s.scenario_crash, "faults": s.scenario_faults,
        "disk": lambda root, profile, seed: s.scenario_disk(root, profile, seed, disk_mode),
        "hostile": h.scenario_hostile, "web": h.scenario_web, "pacs": p.scenario_pacs,
    }
    return table[name]


def run_stress(profile: str = "short", scenarios: Optional[Sequence[str]] = None, seed: int = 20261121,
               workdir: Optional[Path] = None, keep: bool = False, disk_mode: str = "auto",
               progress: Optional[Callable[[str], None]] = None) -> StressResult:
    """Run the scenarios (all by default) and return their reports; never raises for a failing scenario."""
    from vessel_seg.pipeline.proving.scenarios import PROFILES

    if profile not in PROFILES:
        raise ValueError("profile must be one of %s, got %r" % (", ".join(PROFILES), profile))
    names = list(scenarios or SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError("unknown scenario(s) %s (known: %s)" % (", ".join(unknown), ", ".join(SCENARIOS)))
    prof = PROFILES[profile]
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="vessel-seg-stress-")) if own_dir else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    result = StressResult(profile, workdir=root)
    t0 = time.monotonic()
    try:
        for i, name in enumerate(names):
            if progress:
                progress("[%d/%d] %s ..." % (i + 1, len(names), name))
            try:
                rep = _runner(name, disk_mode)(root, prof, seed + i)
            except Exception as exc:                   # a crash of the harness itself is a finding too
                log.exception("stress scenario %s crashed", name)
                rep = ScenarioReport(name, "(the scenario itself crashed)")
                rep.fail("%s: %s" % (type(exc).__name__, exc))
            result.reports.append(rep)
            if progress:
                progress("[%d/%d] %s %s in %.1f s%s" % (i + 1, len(names), name, "PASS" if rep.ok else "FAIL",
                                                        rep.seconds, "" if rep.ok else ": " + rep.problems[0][:200]))
    finally:
        result.seconds = time.monotonic() - t0
        result.summary = format_summary(result.reports, profile, result.seconds,
                                        {"working folder": "%s (%s)" % (root, "kept" if keep or not own_dir
                                                                        else "removed")})
        if own_dir and not keep:
            shutil.rmtree(str(root), ignore_errors=True)
    return result


def update_doc(path: Path, summary: str, profile: str = "long") -> None:
    """Replace the text between the profile's results markers of a Markdown file with the summary."""
    text = path.read_text(encoding="utf-8")
    start, end = DOC_START % profile, DOC_END % profile
    block = "%s\n```text\n%s\n```\n%s" % (start, summary.rstrip(), end)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError("%s has no %s ... %s section" % (path, start, end))
    path.write_text(pattern.sub(lambda _m: block, text), encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """``vessel-seg stress``: 0 when everything held, 1 when anything was lost, duplicated or wrong."""
    from vessel_seg.pipeline.cli.main import err, out

    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        result = run_stress("long" if args.long else "short", names, seed=args.seed,
                            workdir=Path(args.workdir) if args.workdir else None, keep=args.keep,
                            disk_mode=args.disk_mode, progress=err)
    except ValueError as exc:
        err("vessel-seg stress: %s" % exc)
        return 2
    out(result.summary)
    if args.report:
        Path(args.report).write_text(result.summary + "\n", encoding="utf-8")
    if args.update_doc:
        try:
            update_doc(Path(args.update_doc), result.summary, result.profile)
        except (OSError, ValueError) as exc:
            err("vessel-seg stress: cannot update %s: %s" % (args.update_doc, exc))
            return 1
    return 0 if result.ok else 1
