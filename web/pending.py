"""Uploads accepted by this web app that the result store does not know yet.

``daemon.submit_upload`` writes the file into capture/; the journal row may appear a moment later (when the
ingest picks the file up). Until then /api/results/<id> answers ``queued`` instead of 404, so the upload page
can poll without errors. An upload that was quarantined before reaching the journal is reported as ``failed``
with the quarantine reason.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Dict, Optional

from vessel_seg.vocabulary import QUEUED, utc_iso
from vessel_seg.web.presenters import json_safe


class RecentUploads(object):
    """Thread-safe, bounded memory of recent uploads: id -> (source name, accepted time)."""

    def __init__(self, ttl_s: float = 900.0, max_items: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self._ttl = float(ttl_s)
        self._max = int(max_items)
        self._clock = clock
        self._items = collections.OrderedDict()  # type: collections.OrderedDict
        self._lock = threading.Lock()

    def add(self, result_id: str, source: str) -> None:
        """Remember an accepted upload."""
        with self._lock:
            self._items.pop(result_id, None)
            self._items[result_id] = (source, self._clock())
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def get(self, result_id: str) -> Optional[Dict[str, Any]]:
        """A ``queued`` record for a recent upload, or None (unknown or expired)."""
        with self._lock:
            entry = self._items.get(result_id)
            if entry is None:
                return None
            source, accepted = entry
            if self._clock() - accepted > self._ttl:
                del self._items[result_id]
                return None
        return {"id": result_id, "source": source, "state": QUEUED, "created": utc_iso(accepted)}


def lookup_result(store: Any, recent: RecentUploads, result_id: str) -> Optional[Dict[str, Any]]:
    """The store's record; else a pending upload (queued, or failed if it was quarantined); else None."""
    record = store.get(result_id)
    if record is not None:
        return record
    pending = recent.get(result_id)
    if pending is None:
        return None
    for item in store.quarantined():
        if isinstance(item, dict) and item.get("id") == result_id:
            pending["state"] = "failed"
            reason = item.get("reason") or "quarantined"
            detail = item.get("detail")
            pending["reason"] = "{}: {}".format(reason, detail) if detail else str(reason)
            break
    return json_safe(pending)
