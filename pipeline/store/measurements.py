"""The vessel measurements of stored results as table rows and CSV (web download and ``vessel-seg measurements``).

Standard library only (the web imports it). Patient, eye and date come from result.json's ``identity``
object (``patient_id``, ``patient_name``, ``laterality``, and ``acquired`` (or ``acquisition_datetime``) as the
``acquisition_datetime`` column) when present, else empty.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from vessel_seg.vocabulary import DONE

#: Flat name of each scalar measurement -> its path in result.json ``morphometry`` (docs/MORPHOMETRY.md).
SCALARS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("density_fov", ("density", "fov")),
    ("density_zone_b", ("density", "zone_b")),
    ("density_zone_c", ("density", "zone_c")),
    ("fd_mask", ("fractal_dimension", "mask")),
    ("fd_skeleton", ("fractal_dimension", "skeleton")),
    ("tortuosity_arc_chord", ("tortuosity", "arc_chord")),
    ("tortuosity_curvature", ("tortuosity", "curvature_rad_per_fovd")),
    ("width_mean_fovd", ("width", "mean_fovd")),
    ("width_mean_px", ("width", "mean_px")),
    ("width_median_fovd", ("width", "median_fovd")),
    ("length_total_fovd", ("length", "total_fovd")),
    ("branch_points", ("branch_points",)),
    ("end_points", ("end_points",)),
)
MEASUREMENT_NAMES = tuple(name for name, _ in SCALARS)
IDENTITY_FIELDS = ("patient_id", "patient_name", "laterality", "acquisition_datetime")
CSV_COLUMNS = (("id", "source", "created") + IDENTITY_FIELDS
               + ("optic_disc_found", "zone_reason", "fov_diameter_px") + MEASUREMENT_NAMES)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def flatten(morph: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """name -> value of every scalar measurement of a ``morphometry`` object (None where missing)."""
    out: Dict[str, Any] = {}
    for name, path in SCALARS:
        value: Any = morph
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out[name] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return out


def result_row(meta: Dict[str, Any]) -> Dict[str, Any]:
    """One CSV row of a result.json."""
    identity = meta.get("identity") if isinstance(meta.get("identity"), dict) else {}
    morph = meta.get("morphometry") if isinstance(meta.get("morphometry"), dict) else {}
    disc = morph.get("optic_disc") if isinstance(morph.get("optic_disc"), dict) else {}
    density = morph.get("density") if isinstance(morph.get("density"), dict) else {}
    row: Dict[str, Any] = {"id": meta.get("id"), "source": meta.get("source"), "created": meta.get("created")}
    for key in IDENTITY_FIELDS:
        row[key] = identity.get(key)
    if not row["acquisition_datetime"]:
        row["acquisition_datetime"] = identity.get("acquired")   # pipeline.engine.identity's name for it
    row["optic_disc_found"] = disc.get("found")
    row["zone_reason"] = density.get("zone_reason") or morph.get("error")
    row["fov_diameter_px"] = morph.get("fov_diameter_px")
    row.update(flatten(morph))
    return row


def iter_results(store: Any, page: int = 500) -> Iterator[Dict[str, Any]]:
    """result.json of every finished result of a ``ResultStore``, newest first."""
    offset = 0
    while True:
        items = store.list(offset, page)
        for item in items:
            if item.get("state") != DONE:
                continue
            meta = store.get(str(item.get("id")))
            if meta is not None and meta.get("state") == DONE:
                yield meta
        if len(items) < page:
            return
        offset += page


def _cell(value: Any) -> Any:
    """CSV cell: empty for None, a leading quote on text a spreadsheet would read as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: Iterable[Dict[str, Any]]) -> str:
    """CSV text (header + one line per row) with the columns of ``CSV_COLUMNS``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def measurements_csv(store: Any) -> str:
    """The CSV of every finished result in ``store``."""
    return to_csv(result_row(meta) for meta in iter_results(store))


def rows(store: Any) -> List[Dict[str, Any]]:
    """Every finished result's row (for tests and callers that want dicts)."""
    return [result_row(meta) for meta in iter_results(store)]
