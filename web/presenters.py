"""Turn what the daemon and its result store return into JSON-safe dicts for the API and the templates.

The web never exposes filesystem paths: keys such as ``path`` / ``original_path`` are dropped, and files are
referenced by URL (``/results/<id>/<name>``) only.
"""
from __future__ import annotations

import datetime
import logging
import math
from pathlib import PurePath
from typing import Any, Dict, List, Mapping, Optional, Tuple

from flask import url_for

from vessel_seg.vocabulary import CAPTURE_STATES, DONE, QUEUED, STAGE_NAMES, TOTAL
from vessel_seg.web.result_files import ALLOWED_FILES, DOWNLOAD_ORDER

log = logging.getLogger(__name__)

_HIDDEN_KEYS = frozenset(("path", "original_path", "data_dir", "capture_dir"))
_INT_STATUS_KEYS = ("processed", "failed", "queued")


class StatusUnavailable(Exception):
    """daemon.status() failed or returned something unusable."""


def json_safe(value: Any) -> Any:
    """Recursively convert to JSON types: numpy scalars/arrays, tuples, datetimes; NaN/inf become None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items() if str(k) not in _HIDDEN_KEYS}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return value.name
    if hasattr(value, "tolist"):  # numpy scalar or array, without importing numpy here
        return json_safe(value.tolist())
    return str(value)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def read_status(daemon: Any) -> Dict[str, Any]:
    """daemon.status() as a JSON-safe dict with integer processed/failed/queued; raises StatusUnavailable."""
    try:
        raw = daemon.status()
    except Exception as exc:
        log.exception("daemon.status() failed")
        raise StatusUnavailable("daemon status unavailable: {}".format(type(exc).__name__))
    if not isinstance(raw, Mapping):
        raise StatusUnavailable("daemon status unavailable: not a mapping")
    status = json_safe(raw)
    for key in _INT_STATUS_KEYS:
        status[key] = _as_int(status.get(key))
    status.setdefault("health", "failed")
    status.setdefault("runtime", None)
    status.setdefault("model", None)
    if not isinstance(status.get("runtime_info"), dict):
        status["runtime_info"] = {}
    return status


def health_problem(status: Mapping[str, Any]) -> Optional[str]:
    """None when pipeline and device are healthy, else the reason."""
    health = status.get("health")
    device_state = status.get("device_state")
    pipeline_state = status.get("pipeline_state")
    if health != "ok":
        return str(status.get("health_reason") or "health is {}".format(health))
    if device_state is not None and device_state != "ready":
        return "device is {}".format(device_state)
    if pipeline_state in ("stopped", "draining"):
        return "pipeline is {}".format(pipeline_state)
    return None


def ordered_stages(timings: Any) -> List[Dict[str, Any]]:
    """[{"stage", "ms"}] in pipeline order (unknown stages after the known ones, ``total`` last)."""
    if not isinstance(timings, Mapping):
        return []
    known = [s for s in STAGE_NAMES if s in timings]
    extra = sorted(s for s in timings if s not in STAGE_NAMES and s != TOTAL)
    names = known + extra + ([TOTAL] if TOTAL in timings else [])
    out = []
    for name in names:
        value = timings[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append({"stage": str(name), "ms": float(value)})
    return out


def _state_of(record: Mapping[str, Any]) -> str:
    state = record.get("state")
    if state in CAPTURE_STATES:
        return str(state)
    return DONE if record.get("files") else QUEUED


def file_url(result_id: str, name: str, download: bool = False) -> str:
    """URL of an allow-listed result file."""
    if download:
        return url_for("pages.result_file", result_id=result_id, name=name, download=1)
    return url_for("pages.result_file", result_id=result_id, name=name)


def _record_view(record: Mapping[str, Any]) -> Tuple[Dict[str, Any], str]:
    """What every view of a record starts with: JSON-safe fields, state, source, created and the page URL."""
    view = json_safe(record)
    rid = str(view.get("id") or "")
    view["state"] = _state_of(record)
    for key in ("source", "created"):
        view.setdefault(key, None)
    view["url"] = url_for("pages.result_page", result_id=rid)
    return view, rid


def _add_identity_view(view: Dict[str, Any]) -> None:
    """``identity`` always a dict; ``eye`` (OD/OS) and ``acquired_date`` for the page."""
    identity = view.get("identity")
    if not isinstance(identity, dict):
        identity = {}
    view["identity"] = identity
    view["eye"] = {"R": "OD", "L": "OS"}.get(str(identity.get("laterality") or ""), None)
    acquired = identity.get("acquired")
    view["acquired_date"] = str(acquired)[:10] if acquired else None


def list_item(store: Any, record: Mapping[str, Any]) -> Dict[str, Any]:
    """One entry of /api/results: the store's summary plus state, identity and URLs."""
    item, rid = _record_view(record)
    _add_identity_view(item)
    item["api_url"] = url_for("api.result", result_id=rid)
    has_thumb = item["state"] == "done" and store.file_path(rid, "thumb.jpg") is not None
    item["thumb_url"] = file_url(rid, "thumb.jpg") if has_thumb else None
    return item


def result_detail(store: Any, record: Mapping[str, Any]) -> Dict[str, Any]:
    """Everything the result page and /api/results/<id> show: metadata, timings and available files."""
    detail, rid = _record_view(record)
    _add_identity_view(detail)
    files = []
    if detail["state"] == "done":
        for name in DOWNLOAD_ORDER:
            if store.file_path(rid, name) is None:
                continue
            kind = ALLOWED_FILES[name]
            files.append({"name": name, "label": kind.label, "url": file_url(rid, name),
                          "download_url": file_url(rid, name, download=True)})
    detail["downloads"] = files
    detail["stages"] = ordered_stages(detail.get("timings_ms"))
    return detail


def page_of_results(store: Any, offset: int, limit: int, filters: Optional[Mapping[str, str]] = None
                    ) -> Tuple[List[Dict[str, Any]], bool]:
    """Newest-first list items for one page, and whether another page follows (one extra record is read)."""
    records = store.list(offset, limit + 1, filters=dict(filters)) if filters else store.list(offset, limit + 1)
    return [list_item(store, r) for r in records[:limit]], len(records) > limit


def human_size(nbytes: int) -> str:
    """'50 MiB' for 52428800, '50 MB' for 50000000, '2000 bytes' below a megabyte."""
    if nbytes >= 1024 * 1024 and nbytes % (1024 * 1024) == 0:
        return "{} MiB".format(nbytes // (1024 * 1024))
    if nbytes >= 1000 * 1000:
        return "{:g} MB".format(round(nbytes / 1e6, 1))
    return "{} bytes".format(nbytes)
