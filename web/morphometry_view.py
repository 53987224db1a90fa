"""What the result page shows of result.json ``morphometry``: labelled values and a width-distribution plot
(inline SVG drawn here, presentation attributes only, so the page's CSP needs no inline styles or scripts)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from markupsafe import Markup

PLOT_W, PLOT_H = 320, 140
_MARGIN = (34, 8, 8, 30)        # left, top, right, bottom


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _fmt(value: Any, spec: str, scale: float = 1.0, suffix: str = "") -> Optional[str]:
    v = _num(value)
    return None if v is None else (spec % (v * scale)) + suffix


def _count(value: Any) -> str:
    return str(int(value)) if _num(value) is not None else "-"


def width_plot_svg(fractions: List[float], bin_fovd: float) -> Markup:
    """Bar chart of the width histogram: x = width in % of the FOV diameter, y = share of centreline samples."""
    left, top, right, bottom = _MARGIN
    inner_w, inner_h = PLOT_W - left - right, PLOT_H - top - bottom
    n = max(1, len(fractions))
    peak = max([f for f in fractions if isinstance(f, (int, float))] + [1e-9])
    bar_w = inner_w / float(n)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" class="width-plot" viewBox="0 0 %d %d" width="%d" height="%d" '
             'role="img" aria-label="Distribution of vessel width">' % (PLOT_W, PLOT_H, PLOT_W, PLOT_H)]
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="currentColor" stroke-width="1"/>'
                 % (left, top + inner_h, left + inner_w, top + inner_h))
    for i, f in enumerate(fractions):
        v = float(f) if isinstance(f, (int, float)) else 0.0
        h = inner_h * v / peak
        parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f9e89"><title>%.2f-%.2f %%: %.1f %%'
                     '</title></rect>' % (left + i * bar_w + 1, top + inner_h - h, max(bar_w - 2, 1), h,
                                          100 * i * bin_fovd, 100 * (i + 1) * bin_fovd, 100 * v))
    for i in range(0, n + 1, 5):
        x = left + i * bar_w
        parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="currentColor">%.1f</text>'
                     % (x, PLOT_H - bottom + 12, 100 * i * bin_fovd))
    parts.append('<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="currentColor">width, %% of FOV '
                 'diameter</text>' % (left + inner_w // 2, PLOT_H - 4))
    parts.append('<text x="%d" y="%d" font-size="10" text-anchor="end" fill="currentColor">%.0f %%</text>'
                 % (left - 4, top + 8, 100 * peak))
    parts.append("</svg>")
    return Markup("".join(parts))


def morphometry_view(morph: Any) -> Optional[Dict[str, Any]]:
    """{"rows": [(label, value)], "plot": svg or None, "note": str or None}; None without measurements."""
    if not isinstance(morph, dict):
        return None
    if morph.get("error"):
        return {"rows": [], "plot": None, "note": "Measurements failed: %s" % morph.get("error")}
    rows: List[Tuple[str, Optional[str]]] = [
        ("Density, whole FOV", _fmt(_get(morph, "density", "fov"), "%.2f", 100, " %")),
        ("Density, zone B", _fmt(_get(morph, "density", "zone_b"), "%.2f", 100, " %")),
        ("Density, zone C", _fmt(_get(morph, "density", "zone_c"), "%.2f", 100, " %")),
        ("Fractal dimension (mask / skeleton)", None),
        ("Tortuosity, arc / chord", _fmt(_get(morph, "tortuosity", "arc_chord"), "%.4f")),
        ("Tortuosity, curvature", _fmt(_get(morph, "tortuosity", "curvature_rad_per_fovd"), "%.2f",
                                       suffix=" rad per FOV diameter")),
        ("Mean vessel width", None),
        ("Total vessel length", _fmt(_get(morph, "length", "total_fovd"), "%.2f", suffix=" FOV diameters")),
        ("Branch points / end points", "%s / %s" % (_count(morph.get("branch_points")),
                                                    _count(morph.get("end_points")))),
    ]
    fd_m, fd_s = _fmt(_get(morph, "fractal_dimension", "mask"), "%.3f"), _fmt(
        _get(morph, "fractal_dimension", "skeleton"), "%.3f")
    rows[3] = (rows[3][0], "%s / %s" % (fd_m or "-", fd_s or "-"))
    w_f, w_px = _num(_get(morph, "width", "mean_fovd")), _num(_get(morph, "width", "mean_px"))
    rows[6] = (rows[6][0], None if w_f is None else "%.3f %% of FOV diameter (%.1f px)" % (100 * w_f, w_px or 0))
    note = None
    if morph.get("not_measured"):
        rows.append(("Not measured", str(morph["not_measured"])))
    disc = morph.get("optic_disc") if isinstance(morph.get("optic_disc"), dict) else {}
    if disc.get("found"):
        rows.append(("Optic disc", "at (%s, %s) px, radius %s px" % (disc.get("x"), disc.get("y"),
                                                                     disc.get("radius_px"))))
    else:
        note = _get(morph, "density", "zone_reason") or "optic disc not found"
    hist = _get(morph, "width", "histogram")
    plot = None
    if isinstance(hist, dict) and isinstance(hist.get("fraction"), list) and _num(hist.get("bin_fovd")):
        if any(isinstance(f, (int, float)) and f > 0 for f in hist["fraction"]):
            plot = width_plot_svg(hist["fraction"], float(hist["bin_fovd"]))
    return {"rows": [(label, value if value is not None else "-") for label, value in rows], "plot": plot,
            "note": note}
