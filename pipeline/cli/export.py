"""``vessel-seg export-status`` and ``vessel-seg export-retry``: the PACS outbox from the command line.

Both open the data folder's journal directly (SQLite WAL: safe while the daemon runs). A retry makes the
rows pending and due now; the running daemon's export worker picks them up within a few seconds.
"""
from __future__ import annotations

import argparse
import json

from vessel_seg.pipeline.appliance.config import ConfigError, resolve_path
from vessel_seg.pipeline.appliance.datadir import DataPaths
from vessel_seg.pipeline.cli.main import err, out
from vessel_seg.pipeline.cli.run import config_for_run
from vessel_seg.pipeline.store.journal import Journal, JournalError
from vessel_seg.pipeline.store.outbox import Outbox
from vessel_seg.vocabulary import is_result_id


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="configuration file (default: built-in defaults, "
                   "or $VESSEL_SEG_CONFIG)")
    p.add_argument("--data-dir", metavar="DIR", help="the daemon's data folder (overrides data_dir)")


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg export-status``."""
    _common(p)
    p.add_argument("--json", action="store_true", help="print the counts and rejections as JSON")


def add_retry_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg export-retry``."""
    _common(p)
    p.add_argument("id", nargs="?", metavar="ID", help="the result whose export to retry")
    p.add_argument("--all-rejected", action="store_true", help="retry every export the PACS rejected")


def _open(args: argparse.Namespace) -> Journal:
    cfg = config_for_run(args)
    paths = DataPaths.from_config(cfg)
    path = paths.journal
    if not path.is_file():
        raise JournalError("no journal at %s (is --data-dir right?)" % resolve_path(str(path)))
    return Journal(path)


def run_status(args: argparse.Namespace) -> int:
    """Counts per state, then every rejected export with its reason; exit 0 (1 when no journal)."""
    try:
        journal = _open(args)
    except (ConfigError, JournalError) as exc:
        err("vessel-seg export-status: %s" % exc)
        return 1
    try:
        box = Outbox(journal)
        counts = box.counts()
        rejected = box.listing("rejected", limit=1000)
        unqueued = len(box.unexported_results())
    finally:
        journal.close()
    if args.json:
        out(json.dumps({"counts": counts, "not_queued": unqueued, "rejected": [
            {k: r[k] for k in ("result_id", "object", "reason", "attempts", "updated")} for r in rejected]}))
        return 0
    out("pending %d  sent %d  rejected %d  (done results not yet queued: %d)"
        % (counts["pending"], counts["sent"], counts["rejected"], unqueued))
    for r in rejected:
        out("rejected %s %s (%d attempts, %s): %s" % (r["result_id"], r["object"], r["attempts"], r["updated"],
                                                     r["reason"]))
    return 0


def run_retry(args: argparse.Namespace) -> int:
    """Make rejected exports (of ID, or all with --all-rejected) pending again; exit 2 on bad usage."""
    if bool(args.id) == bool(args.all_rejected):
        err("vessel-seg export-retry: give a result ID or --all-rejected (not both)")
        return 2
    if args.id and not is_result_id(args.id):
        err("vessel-seg export-retry: %r is not a result id (16 lowercase hex digits)" % args.id)
        return 2
    try:
        journal = _open(args)
    except (ConfigError, JournalError) as exc:
        err("vessel-seg export-retry: %s" % exc)
        return 1
    try:
        n = Outbox(journal).retry(args.id, all_rejected=args.all_rejected)
    finally:
        journal.close()
    out("%d export(s) pending again; the running daemon sends them within seconds" % n)
    return 0
