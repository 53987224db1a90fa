"""Who and what a capture shows: patient, eye, visit and the DICOM instance, as one flat mapping.

Sources: a DICOM header (:func:`from_dataset`); for plain photographs a file-name pattern such as
``{patient_id}_{laterality}_{date}`` (:func:`from_filename`) and/or a sidecar JSON next to the image
(:func:`from_sidecar`; its values win over the name's). No source: no identity (``{}``, anonymous).

Values are normalised strings: dates ``YYYY-MM-DD``, the acquisition ``YYYY-MM-DDTHH:MM:SS`` (local time of
the camera, as DICOM records it), laterality ``R`` or ``L`` (``OD``/``OS`` accepted), sex ``M``/``F``/``O``.
This is health data: callers never log it at INFO or above.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

#: Every identity field, in display order (the keys of result.json ``identity`` and the journal's table).
IDENTITY_FIELDS = ("patient_id", "patient_name", "birth_date", "sex", "laterality", "acquired", "study_uid",
                   "series_uid", "sop_uid", "accession", "manufacturer", "model")

#: Placeholders a file-name pattern may use -> the regular expression of their text.
PATTERN_FIELDS = {
    "patient_id": r"[A-Za-z0-9.\-]+",
    "patient_name": r"[^_]+",
    "laterality": r"(?:OD|OS|od|os|[RLrl])",
    "date": r"(?:\d{8}|\d{4}-\d{2}-\d{2})",
    "time": r"(?:\d{6}|\d{4}|\d{2}-\d{2}-\d{2})",
    "birth_date": r"(?:\d{8}|\d{4}-\d{2}-\d{2})",
    "sex": r"[MFOmfo]",
    "accession": r"[A-Za-z0-9.\-]+",
    "any": r".*?",
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_MAX_TEXT = 128
_SIDECAR_MAX_BYTES = 64 * 1024


class PatternError(ValueError):
    """A file-name pattern that cannot be used (unknown placeholder, repeated field)."""


def compile_pattern(pattern: str) -> "re.Pattern[str]":
    """The regular expression of a file-name pattern (matched against the whole name without extension)."""
    out, pos, seen = [], 0, set()
    for m in _PLACEHOLDER.finditer(pattern):
        name = m.group(1)
        if name not in PATTERN_FIELDS:
            raise PatternError("unknown placeholder {%s} (known: %s)" % (name, ", ".join(sorted(PATTERN_FIELDS))))
        if name in seen and name != "any":
            raise PatternError("placeholder {%s} appears twice" % name)
        seen.add(name)
        out.append(re.escape(pattern[pos:m.start()]))
        out.append("(?:%s)" % PATTERN_FIELDS[name] if name == "any" else "(?P<%s>%s)" % (name, PATTERN_FIELDS[name]))
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    if not seen:
        raise PatternError("the pattern %r has no placeholder" % pattern)
    return re.compile("".join(out))


def _date(text: str) -> Optional[str]:
    digits = re.sub(r"[^0-9]", "", text or "")
    if len(digits) < 8:
        return None
    y, m, d = digits[:4], digits[4:6], digits[6:8]
    if not (1 <= int(m) <= 12 and 1 <= int(d) <= 31):
        return None
    return "%s-%s-%s" % (y, m, d)


def _time(text: str) -> Optional[str]:
    digits = re.sub(r"[^0-9]", "", (text or "").split(".")[0])
    if len(digits) < 4:
        return None
    digits = (digits + "00")[:6]
    hh, mm, ss = digits[:2], digits[2:4], digits[4:6]
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 60:
        return None
    return "%s:%s:%s" % (hh, mm, ss)


def _laterality(text: str) -> Optional[str]:
    value = (text or "").strip().upper()
    return {"R": "R", "L": "L", "OD": "R", "OS": "L", "RIGHT": "R", "LEFT": "L"}.get(value)


def _clean(text: Any) -> str:
    value = "".join(c for c in str(text) if c.isprintable()).strip()
    return value[:_MAX_TEXT]


def _person_name(value: Any) -> str:
    """A DICOM person name (``Family^Given^Middle^Prefix^Suffix``) as ``Family, Given Middle``."""
    parts = [p.strip() for p in str(value).split("=")[0].split("^")]
    family = parts[0] if parts else ""
    rest = " ".join(p for p in parts[1:3] if p)
    return _clean(family + (", " + rest if rest and family else rest))


def normalise(raw: Dict[str, Any]) -> Dict[str, str]:
    """Only known fields, as clean strings; dates, times, eye and sex in their normal form; empties dropped."""
    out: Dict[str, str] = {}
    for key in IDENTITY_FIELDS:
        value = raw.get(key)
        if value is None or str(value).strip() == "":
            continue
        text: Optional[str]
        if key == "birth_date":
            text = _date(str(value))
        elif key == "laterality":
            text = _laterality(str(value))
        elif key == "sex":
            text = str(value).strip().upper()[:1] if str(value).strip().upper()[:1] in ("M", "F", "O") else None
        elif key == "acquired":
            text = _acquired(str(value))
        else:
            text = _clean(value)
        if text:
            out[key] = text
    return out


def _acquired(value: str) -> Optional[str]:
    """'YYYY-MM-DD[THH:MM:SS]' from DICOM DT ('20240102101500.000+0100'), ISO text or a plain date."""
    value = value.strip()
    date = _date(value[:10] if "-" in value[:10] else value[:8])
    if date is None:
        return None
    rest = value[10:] if "-" in value[:10] else value[8:]
    rest = rest.lstrip("T ")
    rest = re.split(r"[+\-Zz]", rest)[0] if rest else ""
    time_text = _time(rest) if rest else None
    return date + ("T" + time_text if time_text else "")


def from_dataset(ds: Any) -> Dict[str, str]:
    """The identity recorded in a DICOM header."""
    def get(keyword: str) -> str:
        try:
            value = ds.get(keyword, "")
        except Exception:  # a malformed element must not stop the image
            return ""
        return "" if value is None else str(value)

    acquired = get("AcquisitionDateTime")
    if not acquired:
        for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"),
                                 ("SeriesDate", "SeriesTime"), ("StudyDate", "StudyTime")):
            if get(date_kw):
                acquired = get(date_kw) + get(time_kw)
                break
    name = ""
    try:
        if ds.get("PatientName", None):
            name = _person_name(ds.PatientName)
    except Exception:
        name = ""
    raw = {
        "patient_id": get("PatientID"),
        "patient_name": name,
        "birth_date": get("PatientBirthDate"),
        "sex": get("PatientSex"),
        "laterality": get("ImageLaterality") or get("Laterality"),
        "acquired": acquired,
        "study_uid": get("StudyInstanceUID"),
        "series_uid": get("SeriesInstanceUID"),
        "sop_uid": get("SOPInstanceUID"),
        "accession": get("AccessionNumber"),
        "manufacturer": get("Manufacturer"),
        "model": get("ManufacturerModelName"),
    }
    return normalise(raw)


def from_filename(name: str, pattern: Optional["re.Pattern[str]"]) -> Dict[str, str]:
    """The identity a file name carries under ``pattern`` (see :func:`compile_pattern`); {} when it does not match."""
    if pattern is None:
        return {}
    stem = os.path.splitext(os.path.basename(name))[0]
    m = pattern.fullmatch(stem)
    if m is None:
        return {}
    found = {k: v for k, v in m.groupdict().items() if v}
    raw: Dict[str, Any] = {k: v for k, v in found.items() if k in IDENTITY_FIELDS}
    if "date" in found:
        raw["acquired"] = found["date"] + ("T" + found["time"] if "time" in found else "")
    return normalise(raw)


def sidecar_path(path: Path) -> Optional[Path]:
    """The sidecar of an image: ``<name>.json`` or ``<stem>.json`` next to it, when present."""
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate != path and candidate.is_file():
            return candidate
    return None


def from_sidecar(path: Path) -> Dict[str, str]:
    """The identity in an image's sidecar JSON (an object whose keys are identity fields); {} when none.

    A damaged or oversized sidecar is logged (without its content) and ignored: the image is processed
    anonymously rather than lost.
    """
    side = sidecar_path(path)
    if side is None:
        return {}
    try:
        if side.stat().st_size > _SIDECAR_MAX_BYTES:
            log.warning("sidecar %s is larger than %d bytes; ignored", side.name, _SIDECAR_MAX_BYTES)
            return {}
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("sidecar %s is unreadable (%s); the image is processed without it", side.name,
                    type(exc).__name__)
        return {}
    if not isinstance(data, dict):
        log.warning("sidecar %s is not a JSON object; ignored", side.name)
        return {}
    raw = dict(data)
    if "date" in raw and "acquired" not in raw:
        raw["acquired"] = raw["date"]
    return normalise(raw)


def for_plain_image(path: Path, pattern: Optional["re.Pattern[str]"], sidecar: bool) -> Dict[str, str]:
    """The identity of a plain photograph: the file name under ``pattern``, then the sidecar (its values win)."""
    out = from_filename(path.name, pattern)
    if sidecar:
        out.update(from_sidecar(path))
    return out


def eye_label(laterality: Optional[str]) -> str:
    """OD (right eye), OS (left eye) or '' for the page."""
    return {"R": "OD", "L": "OS"}.get(laterality or "", "")
