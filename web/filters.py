"""The results list's filters (``?patient_id=&patient_name=&date_from=&date_to=``), validated."""
from __future__ import annotations

import re
from typing import Dict, Mapping

#: Filter names, as the journal and the result store take them.
FILTER_NAMES = ("patient_id", "patient_name", "date_from", "date_to")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_LEN = 64


def parse_filters(args: Mapping[str, str]) -> Dict[str, str]:
    """The non-empty filters of a query; ValueError with a message for a bad one."""
    out: Dict[str, str] = {}
    for name in FILTER_NAMES:
        raw = args.get(name)
        if raw is None:
            continue
        value = str(raw).strip()
        if not value:
            continue
        if len(value) > _MAX_LEN or any(not c.isprintable() for c in value):
            raise ValueError("{} must be at most {} printable characters".format(name, _MAX_LEN))
        if name.startswith("date_") and not _DATE.fullmatch(value):
            raise ValueError("{} must be a date YYYY-MM-DD".format(name))
        out[name] = value
    if "date_from" in out and "date_to" in out and out["date_from"] > out["date_to"]:
        raise ValueError("date_from is after date_to")
    return out
