"""``vessel-seg morphometry-check DATASET_DIR...``: our measurements against the same ones on manual labels.

For every labelled image (DRIVE layout: ``<split>/images``, ``1st_manual``, ``mask``; STARE and HRF copies
in that layout too), the image goes through the product path exactly as in ``vessel-seg evaluate``
(decode -> preprocess -> NV12 -> execute on the simulator, FP16 -> probability at the original size ->
mask at the threshold); each measurement of docs/MORPHOMETRY.md is computed on that mask and on the manual
label, inside the dataset's FOV mask, with the same optic disc (located once, on the photograph and our
mask). Reported per dataset and measurement: n, Pearson r, mean bias (ours - manual) and the manual mean.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

#: Measurements the issue requires r >= 0.8 for.
REQUIRED = ("density_fov", "fd_mask", "fd_skeleton", "width_mean_fovd")
TARGET_R = 0.8


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg morphometry-check``."""
    p.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="dataset roots in DRIVE's layout")
    p.add_argument("--split", default="test", help="split (default: test)")
    p.add_argument("--model", help="model bundle folder (default: the configured one)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="simulator precision")
    p.add_argument("--threshold", type=float, help="binarisation threshold (default: the model's)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images of each dataset")
    p.add_argument("--json", metavar="FILE", help="write everything (per image too) as JSON ('-' = stdout)")
    p.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def pearson(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Pearson correlation of paired values; None with fewer than 3 pairs or no variance."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 3:
        return None
    if np.ptp(a) <= 1e-12 * max(1.0, float(np.abs(a).max())) or np.ptp(b) <= 1e-12 * max(1.0, float(
            np.abs(b).max())):
        return None                 # a constant series (rounding noise would give a spurious +-1)
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else None


def summarise(rows: List[Dict[str, Any]], names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Per measurement: n (pairs where both values exist), r, mean bias (ours - manual), manual mean."""
    out = {}
    for name in names:
        pairs = [(r["ours"][name], r["manual"][name]) for r in rows
                 if r["ours"].get(name) is not None and r["manual"].get(name) is not None]
        ours = [float(p[0]) for p in pairs]
        manual = [float(p[1]) for p in pairs]
        out[name] = {"n": len(pairs), "r": pearson(ours, manual),
                     "bias": float(np.mean(np.subtract(ours, manual))) if pairs else None,
                     "manual_mean": float(np.mean(manual)) if pairs else None}
    return out


def check_dataset(root: Path, stages: Any, sess: Any, split: str, limit: int, progress=None) -> Dict[str, Any]:
    """Per-image measurements (ours and manual) for one dataset."""
    from vessel_seg.pipeline.engine.decode import decode_image
    from vessel_seg.pipeline.engine.morphometry import measure
    from vessel_seg.pipeline.engine.optic_disc import locate_optic_disc
    from vessel_seg.pipeline.engine.stages import WorkItem
    from vessel_seg.pipeline.shared.datasets import find_samples
    from vessel_seg.pipeline.store.measurements import MEASUREMENT_NAMES, flatten

    samples = find_samples(root, split=split)
    if limit:
        samples = samples[:limit]
    rows = []
    for i, smp in enumerate(samples):
        t0 = time.perf_counter()
        job = stages.prepare(WorkItem(id="check", sha256="", source=smp.image.name, path=smp.image))
        stages.run_model(job, lambda x: sess.infer(0, x))
        prob = job.full_probability()                   # at the labels' (original) size, as evaluate scores it
        label, fov = smp.load_masks(prob.shape)
        if fov is None:
            fov = job.full_fov()
        thr = stages.threshold_for(job)                 # the bundle's for this working size, or the given one
        ours_mask = (prob >= thr) & fov
        rgb = job.decoded.rgb if job.decoded.scale == 1 else decode_image(smp.image, 1 << 30, 200000000).rgb
        disc = locate_optic_disc(rgb, fov, vessels=ours_mask)
        ours = measure(ours_mask, fov, disc=disc)
        manual = measure(label & fov, fov, disc=disc)
        rows.append({"image": smp.name, "threshold": thr, "ours": flatten(ours), "manual": flatten(manual),
                     "optic_disc": ours["optic_disc"], "ms": (time.perf_counter() - t0) * 1000.0})
        if progress:
            progress("[%s %d/%d] %s  density %.4f/%.4f  FD %.3f/%.3f  (%.0f ms)" % (
                root.name, i + 1, len(samples), smp.name, rows[-1]["ours"]["density_fov"] or 0,
                rows[-1]["manual"]["density_fov"] or 0, rows[-1]["ours"]["fd_mask"] or 0,
                rows[-1]["manual"]["fd_mask"] or 0, rows[-1]["ms"]))
    names = list(MEASUREMENT_NAMES)
    return {"dataset": root.name, "path": str(root), "split": split, "images": len(rows),
            "summary": summarise(rows, names), "per_image": rows}


def run_check(datasets: Sequence[Path], bundle_dir: Path, precision: str = "fp16", threshold: Optional[float] = None,
              split: str = "test", limit: int = 0, progress=None) -> Dict[str, Any]:
    """Every dataset through the product path (simulator); see the module docstring."""
    from vessel_seg.device import load_bundle, open_session
    from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings

    bundle = load_bundle(str(bundle_dir))
    t_start = time.perf_counter()
    with open_session(bundle, runtime="sim", sim_options={"precision": precision}) as sess:
        model = ModelInfo.from_bundle(bundle, runtime=sess.runtime_name, precision=precision)
        settings = StageSettings(max_pixels=200000000, max_bytes=1 << 30, threshold=threshold)
        stages = Stages(model, settings, Path("."), name_by="stem")
        results = [check_dataset(Path(d), stages, sess, split, limit, progress) for d in datasets]
        used = sorted({r["threshold"] for d in results for r in d["per_image"]}) or [stages.threshold]
    thr: Any = used[0] if len(used) == 1 else used
    return {"model": {"name": bundle.name, "version": bundle.version}, "precision": precision, "threshold": thr,
            "split": split, "datasets": results, "seconds": round(time.perf_counter() - t_start, 1)}


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else spec % value


def _mark(name: str, r: Optional[float]) -> str:
    return " (< 0.8)" if name in REQUIRED and r is not None and r < TARGET_R else ""


def format_markdown(res: Dict[str, Any]) -> str:
    """One row per measurement; per dataset: r, mean bias (ours - manual), manual mean (n)."""
    out = io.StringIO()
    head = ["measurement"]
    for ds in res["datasets"]:
        head += ["%s r" % ds["dataset"], "%s bias" % ds["dataset"], "%s manual mean (n)" % ds["dataset"]]
    out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    names = list(res["datasets"][0]["summary"]) if res["datasets"] else []
    for name in names:
        cells = ["`%s`" % name]
        for ds in res["datasets"]:
            s = ds["summary"][name]
            cells += [_fmt(s["r"], "%.3f") + _mark(name, s["r"]), _fmt(s["bias"], "%+.4g"),
                      "%s (%d)" % (_fmt(s["manual_mean"], "%.4g"), s["n"])]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue() + _footer(res)


def _footer(res: Dict[str, Any]) -> str:
    from vessel_seg.pipeline.cli.evaluate import format_thresholds

    thr_text = format_thresholds(res["threshold"])
    return "model %s %s | simulator %s | threshold %s | split %s | %.1f s\n" % (
        res["model"]["name"], res["model"]["version"], res["precision"], thr_text, res["split"],
        res["seconds"])


def format_table(res: Dict[str, Any], markdown: bool = False) -> str:
    """One line per dataset and measurement: n, r, bias, manual mean (and the r >= 0.8 check where required)."""
    if markdown:
        return format_markdown(res)
    out = io.StringIO()
    out.write("%-7s %-22s %3s %9s %14s %12s\n" % ("dataset", "measurement", "n", "r", "bias", "manual"))
    for ds in res["datasets"]:
        for name, s in ds["summary"].items():
            cells = (ds["dataset"], name, str(s["n"]), _fmt(s["r"], "%.3f") + _mark(name, s["r"]),
                     _fmt(s["bias"], "%+.5g"), _fmt(s["manual_mean"], "%.5g"))
            out.write("%-7s %-22s %3s %9s %14s %12s\n" % cells)
    return out.getvalue() + _footer(res)


def run(args: argparse.Namespace) -> int:
    """``vessel-seg morphometry-check``."""
    from vessel_seg.pipeline.cli.evaluate import default_bundle_dir

    def progress(line: str) -> None:
        if not args.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    bundle_dir = Path(args.model) if args.model else default_bundle_dir()
    try:
        res = run_check([Path(d) for d in args.datasets], bundle_dir, precision=args.precision,
                        threshold=args.threshold, split=args.split, limit=args.limit, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write("vessel-seg morphometry-check: %s\n" % exc)
        return 2
    if args.json != "-":
        sys.stdout.write(format_table(res, markdown=args.markdown))
    if args.json:
        text = json.dumps(res, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    return 0
