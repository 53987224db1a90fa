"""``vessel-seg evaluate DATASET_DIR``: score the whole product path against manual labels.

Each image goes through exactly what the daemon does (decode the file -> preprocess -> NV12 -> execute on the
configured runtime, by default the simulator in FP16 with AIPP -> probability restored to the original size),
then is compared with its manual label inside the dataset's FOV mask (or, when a dataset has none, the
detected FOV). Reported: AUC pooled over all FOV pixels of all images (as the reference's compute_roc.m),
mean per-image AUC, and Dice, accuracy, sensitivity and specificity at the threshold.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET_DIR", help="DRIVE root, or a folder with image/label subfolders")
    p.add_argument("--split", default="test", help="DRIVE split (default: test)")
    p.add_argument("--observer", type=int, default=1, choices=[1, 2], help="DRIVE manual observer (default 1)")
    p.add_argument("--images", help="image subfolder (generic layout)")
    p.add_argument("--labels", help="label subfolder (generic layout)")
    p.add_argument("--fov", help="FOV mask subfolder (generic layout; default: the detected FOV)")
    p.add_argument("--model", help="model bundle folder (default: the shipped bundle)")
    p.add_argument("--runtime", default="sim", choices=["auto", "acl", "sim"], help="default: sim")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"],
                   help="simulator precision (default fp16, as the NPU computes)")
    p.add_argument("--threshold", type=float, help="binarisation threshold (default: the model's)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON ('-' for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write per-image rows as CSV ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def default_bundle_dir() -> Path:
    """The bundle the daemon would load with the default configuration (``model.bundle`` / $VESSEL_SEG_MODELS)."""
    from vessel_seg.pipeline.appliance.config import default_config, resolve_bundle_dir

    return resolve_bundle_dir(default_config())


def evaluate(dataset: Path, bundle_dir: Path, runtime: str = "sim", precision: str = "fp16",
             threshold: Optional[float] = None, split: str = "test", observer: int = 1,
             images: Optional[str] = None, labels: Optional[str] = None, fov: Optional[str] = None,
             limit: int = 0, progress=None) -> Dict[str, Any]:
    """Run the product path over a dataset and return the metrics (see module docstring)."""
    from vessel_seg.device import load_bundle, open_session
    from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings, WorkItem
    from vessel_seg.pipeline.shared.datasets import find_samples
    from vessel_seg.pipeline.shared.scoring import best_dice_threshold, roc_auc, threshold_metrics

    samples = find_samples(dataset, split=split, observer=observer, images=images, labels=labels, fov=fov)
    if limit:
        samples = samples[:limit]
    bundle = load_bundle(str(bundle_dir))
    used = set()                                            # thresholds applied (one per working size)
    rows: List[Dict[str, Any]] = []
    all_s, all_y, all_p = [], [], []
    t_start = time.perf_counter()
    with open_session(bundle, runtime=runtime, sim_options={"precision": precision}) as sess:
        model = ModelInfo.from_bundle(bundle, runtime=sess.runtime_name, precision=precision)
        stages = Stages(model, StageSettings(max_pixels=200000000, max_bytes=1 << 30, threshold=threshold), Path("."),
                        name_by="stem")
        for i, smp in enumerate(samples):
            t0 = time.perf_counter()
            job = stages.prepare(WorkItem(id="eval", sha256="", source=smp.image.name, path=smp.image))
            stages.run_model(job, lambda x: sess.infer(0, x))
            prob = job.full_probability()                     # at the original size, as probability.png
            label, fov_mask = smp.load_masks(prob.shape)     # the image itself was decoded by the pipeline
            if fov_mask is None:
                fov_mask = job.full_fov()
            s, y = prob[fov_mask], label[fov_mask]
            thr = stages.threshold_for(job)                  # the bundle's for this working size, or the given one
            used.add(thr)
            all_s.append(s.astype(np.float32))
            all_y.append(y)
            all_p.append(s >= thr)
            row = {"image": smp.name, "auc": roc_auc(s, y), "threshold": thr}
            row.update(threshold_metrics(s, y, thr))
            row["ms"] = (time.perf_counter() - t0) * 1000.0
            rows.append(row)
            if progress:
                progress("[%d/%d] %s  AUC %.4f  Dice %.4f  (%.0f ms)" % (i + 1, len(samples), smp.name, row["auc"],
                                                                         row["dice"], row["ms"]))
        runtime_name = sess.runtime_name
    s, y = np.concatenate(all_s), np.concatenate(all_y)
    summary = {"pooled_auc": roc_auc(s, y), "mean_auc": float(np.mean([r["auc"] for r in rows]))}
    summary.update(threshold_metrics(np.concatenate(all_p).astype(np.float32), y, 0.5))   # each at its threshold
    # for choosing a bundle's threshold on training images (never on the test split)
    best = best_dice_threshold(s, y)
    summary["best_dice_threshold"] = best
    summary["best_dice"] = threshold_metrics(s, y, best)["dice"]
    thr_out: Any = sorted(used)[0] if len(used) == 1 else sorted(used)
    return {"dataset": str(dataset), "split": split, "observer": observer, "images": len(rows),
            "model": {"name": bundle.name, "version": bundle.version, "path": str(bundle_dir)},
            "runtime": runtime_name, "precision": precision, "aipp": bundle.aipp is not None, "threshold": thr_out,
            "summary": summary, "per_image": rows, "seconds": round(time.perf_counter() - t_start, 1)}


def format_thresholds(thr: Any) -> str:
    """'0.60', or '0.60 / 0.78 (by working size)' when images were binarised at different thresholds."""
    if isinstance(thr, list):
        return " / ".join("%.2f" % t for t in thr) + " (by working size)"
    return "%.2f" % thr


def format_table(res: Dict[str, Any]) -> str:
    out = io.StringIO()
    out.write("%-22s %8s %8s %8s %8s %8s\n" % ("image", "AUC", "Dice", "Acc", "Sens", "Spec"))
    for r in res["per_image"]:
        out.write("%-22s %8.4f %8.4f %8.4f %8.4f %8.4f\n" % (r["image"], r["auc"], r["dice"], r["accuracy"],
                                                            r["sensitivity"], r["specificity"]))
    s = res["summary"]
    out.write("-" * 66 + "\n")
    out.write("%-22s %8.4f %8.4f %8.4f %8.4f %8.4f\n" % ("pooled", s["pooled_auc"], s["dice"], s["accuracy"],
                                                        s["sensitivity"], s["specificity"]))
    thr_text = format_thresholds(res["threshold"])
    out.write("mean per-image AUC %.4f | %d images | model %s %s | runtime %s %s%s | threshold %s | %.1f s\n" % (
        s["mean_auc"], res["images"], res["model"]["name"], res["model"]["version"], res["runtime"],
        res["precision"], " + AIPP/NV12" if res["aipp"] else "", thr_text, res["seconds"]))
    if "best_dice_threshold" in s:
        out.write("best Dice %.4f at threshold %.2f (choose thresholds on training images only)\n"
                  % (s["best_dice"], s["best_dice_threshold"]))
    return out.getvalue()


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text)


def run(args: argparse.Namespace) -> int:
    bundle_dir = Path(args.model) if args.model else default_bundle_dir()

    def progress(line: str) -> None:
        if not args.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    try:
        res = evaluate(Path(args.dataset), bundle_dir, runtime=args.runtime, precision=args.precision,
                       threshold=args.threshold, split=args.split, observer=args.observer, images=args.images,
                       labels=args.labels, fov=args.fov, limit=args.limit, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write("vessel-seg evaluate: %s\n" % exc)
        return 2
    if args.json != "-" and args.csv != "-":
        sys.stdout.write(format_table(res))
    if args.json:
        _write(args.json, json.dumps(res, indent=2) + "\n")
    if args.csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["image", "auc", "threshold", "dice", "accuracy", "sensitivity",
                                            "specificity", "ms"])
        w.writeheader()
        for r in res["per_image"]:
            w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
        _write(args.csv, buf.getvalue())
    return 0
