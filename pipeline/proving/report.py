"""Reports of ``vessel-seg stress``: one :class:`ScenarioReport` per scenario and the summary table."""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Counters summed over scenarios for the summary (key -> label).
TOTALS = OrderedDict([
    ("images_in", "images in"),
    ("results_out", "results out"),
    ("lost", "lost"),
    ("duplicated", "duplicated (processed twice / extra results)"),
    ("partial_reads", "read while still being written"),
    ("crashes", "crashes (kill -9) survived"),
    ("watchdog_restarts", "watchdog restarts survived"),
    ("faults_injected", "device faults injected"),
    ("faults_survived", "device faults survived"),
    ("bad_inputs", "bad inputs tried"),
    ("web_requests", "web requests sent"),
])


@dataclass
class ScenarioReport(object):
    """What one scenario tried and found. ``problems`` empty = it passed."""

    name: str
    title: str
    facts: "OrderedDict[str, Any]" = field(default_factory=OrderedDict)
    counters: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    table: List[Tuple[str, ...]] = field(default_factory=list)
    table_header: Tuple[str, ...] = ()
    samples: List[Tuple[float, int, int, int]] = field(default_factory=list)   # (t, pid, rss_kib, fds)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, text: str) -> None:
        self.problems.append(text)

    def check(self, condition: bool, text: str) -> bool:
        if not condition:
            self.problems.append(text)
        return condition

    def count(self, key: str, n: int) -> None:
        self.counters[key] = self.counters.get(key, 0) + int(n)


def memory_summary(samples: Sequence[Tuple[float, int, int, int]], warmup_fraction: float = 0.2
                   ) -> Dict[str, Any]:
    """Peak RSS, RSS after warm-up and at the end, fds after warm-up and at the end (one process life)."""
    if not samples:
        return {}
    t0, t1 = samples[0][0], samples[-1][0]
    cut = t0 + (t1 - t0) * warmup_fraction
    warm = [s for s in samples if s[0] >= cut] or list(samples)
    head = warm[: max(1, len(warm) // 10)]
    return {
        "samples": len(samples),
        "peak_rss_mib": round(max(s[2] for s in samples) / 1024.0, 1),
        "rss_after_warmup_mib": round(statistics.median(s[2] for s in head) / 1024.0, 1),
        "rss_end_mib": round(samples[-1][2] / 1024.0, 1),
        "max_rss_after_warmup_mib": round(max(s[2] for s in warm) / 1024.0, 1),
        "fds_after_warmup": max(s[3] for s in head),
        "fds_end": samples[-1][3],
        "fds_start": samples[0][3],
    }


def last_life(samples: Sequence[Tuple[float, int, int, int]]) -> List[Tuple[float, int, int, int]]:
    """The samples of the last process (the pid of the last sample)."""
    if not samples:
        return []
    pid = samples[-1][1]
    return [s for s in samples if s[1] == pid]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 60) -> List[str]:
    cells = [[str(c) for c in header]] + [[str(c).replace("\n", "\\n") for c in r] for r in rows]
    widths = [min(width, max(len(r[i]) for r in cells)) for i in range(len(header))]
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c[:width].ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def format_summary(reports: Sequence[ScenarioReport], profile: str, seconds: float,
                   extra: Optional[Dict[str, Any]] = None) -> str:
    """The text summary: per-scenario table, totals, bad-input outcomes, web cases, memory, problems."""
    lines = ["vessel-seg stress (%s) - %s, Python %s, %s, %s" % (
        profile, time.strftime("%Y-%m-%d %H:%M:%S"), platform.python_version(), platform.machine(),
        "%d CPUs" % (_cpus(),))]
    lines.append("")
    rows = [(r.name, "PASS" if r.ok else "FAIL", "%.1f s" % r.seconds, r.title) for r in reports]
    lines.extend(_table(("scenario", "result", "time", "what it did"), rows, width=100))
    lines.append("")
    totals = OrderedDict((k, 0) for k in TOTALS)
    for r in reports:
        for k, v in r.counters.items():
            totals[k] = totals.get(k, 0) + v
    lines.append("Totals")
    lines.extend(_table(("", "count"), [(TOTALS.get(k, k), v) for k, v in totals.items()]))
    all_samples = [s for r in reports for s in r.samples]
    if all_samples:
        lines.append("")
        lines.append("Memory and file descriptors (daemon process, sampled from /proc every 0.5 s)")
        mem_rows = []
        for r in reports:
            m = memory_summary(last_life(r.samples))
            if m:
                mem_rows.append((r.name, m["peak_rss_mib"], m["rss_after_warmup_mib"], m["rss_end_mib"],
                                 m["fds_start"], m["fds_after_warmup"], m["fds_end"]))
        lines.extend(_table(("scenario", "peak RSS MiB", "RSS after warm-up", "RSS end", "fds start",
                             "fds after warm-up", "fds end"), mem_rows))
        lines.append("peak RSS over all runs: %.1f MiB" % (max(s[2] for s in all_samples) / 1024.0))
    for r in reports:
        lines.append("")
        lines.append("[%s] %s: %s" % (r.name, "PASS" if r.ok else "FAIL", r.title))
        for k, v in r.facts.items():
            lines.append("  %s: %s" % (k, v))
        if r.table:
            lines.extend("  " + t for t in _table(r.table_header, r.table))
        for n in r.notes:
            lines.append("  note: %s" % n)
        for p in r.problems[:40]:
            lines.append("  PROBLEM: %s" % p)
        if len(r.problems) > 40:
            lines.append("  ... %d more problems" % (len(r.problems) - 40))
    if extra:
        lines.append("")
        for k, v in extra.items():
            lines.append("%s: %s" % (k, v))
    lines.append("")
    bad = [r.name for r in reports if not r.ok]
    lines.append("RESULT: %s in %.0f s" % ("FAIL (%s)" % ", ".join(bad) if bad else "PASS", seconds))
    return "\n".join(lines)


def _cpus() -> int:
    return os.cpu_count() or 1
