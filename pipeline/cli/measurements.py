"""``vessel-seg measurements --csv FILE``: the vessel measurements of every stored result as CSV.

The same table as the results page's download (``/results.csv``): id, source, created, patient id and name,
eye, acquisition date (from result.json ``identity`` when present), optic disc found, zone reason and every
scalar measurement of docs/MORPHOMETRY.md. Reads DATA_DIR/results only; works while the daemon runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg measurements``."""
    p.add_argument("--csv", required=True, metavar="FILE", help="output CSV file ('-' for stdout)")
    p.add_argument("--config", metavar="FILE", help="configuration file (its data_dir)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the config's data_dir)")


def run(args: argparse.Namespace) -> int:
    """Write the CSV; exit 2 when the data directory has no results folder."""
    from vessel_seg.pipeline.appliance.config import ConfigError, load_config, resolve_path
    from vessel_seg.pipeline.cli.main import err, out
    from vessel_seg.pipeline.store.measurements import measurements_csv
    from vessel_seg.pipeline.store.results import ResultStore

    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        try:
            data_dir = resolve_path(str(load_config(args.config)["data_dir"]))
        except ConfigError as exc:
            err("vessel-seg measurements: %s" % exc)
            return 2
    if not (data_dir / "results").is_dir():
        err("vessel-seg measurements: no results folder in %s" % data_dir)
        return 2
    text = measurements_csv(ResultStore(data_dir))
    if args.csv == "-":
        sys.stdout.write(text)
    else:
        Path(args.csv).write_text(text, encoding="utf-8")
        out("%s (%d results)" % (args.csv, max(0, text.count("\n") - 1)))
    return 0
