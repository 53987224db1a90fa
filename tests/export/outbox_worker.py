"""A process that drains a data folder's outbox to a PACS, so a test can kill -9 it mid-send.

    python outbox_worker.py DATA_DIR EXPORT_CONFIG_JSON

Queues every complete result (backfill), sends until nothing is pending, exits 0.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from vessel_seg.pipeline.export.exporter import Exporter
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.results import ResultStore


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = Path(sys.argv[1])
    cfg = json.loads(sys.argv[2])
    journal = Journal(data / "state" / "journal.sqlite3")
    exporter = Exporter(journal, ResultStore(data, journal), cfg, backoff_min_s=0.1, backoff_max_s=0.5)
    exporter.backfill()
    while exporter.outbox.counts()["pending"]:
        if not exporter.run_once():
            time.sleep(0.05)
    journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
