"""Export a trained checkpoint as a complete model bundle under ``models/<name>/``.

    python -m training.export --checkpoint runs/unet/best.pt --out models/vessel-unet --name vessel-unet

Writes model.onnx (opset 11, BN folded, 3-channel input for AIPP), aipp.cfg (NV12 -> RGB, full-range BT.601,
scale 1/255), convert_om.sh and model.yaml (hashes, threshold chosen on validation data, parameters, MACs,
provenance). Before writing, the ONNX is run through OpenCV's DNN module and compared with torch.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from training.data import data_roots
from training.models import count_macs, count_parameters_deployed, export_graph, network_from_checkpoint
from vessel_seg.device.aipp import default_aipp_cfg_text
from vessel_seg.device.bundle import write_bundle
from vessel_seg.device.onnx_proto import encode_model

log = logging.getLogger("training.export")


def check_onnx_matches_torch(model: torch.nn.Module, onnx_bytes: bytes, size: int = 512, seed: int = 0) -> float:
    """Max |cv2.dnn(onnx) - torch| on a random image (gray, fed as R = G = B, for a gray network); raises if
    above 1e-4."""
    import cv2

    rng = np.random.default_rng(seed)
    image = rng.random((1, getattr(model, "in_ch", 1), size, size)).astype(np.float32)
    model.eval()
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(image)))[0, 0].numpy()
    net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_bytes, np.uint8))
    net.setInput(np.repeat(image, 3, axis=1) if image.shape[1] == 1 else image)
    out = net.forward().reshape(size, size)
    diff = float(np.abs(out - ref).max())
    if diff > 1e-4:
        raise RuntimeError("exported ONNX differs from torch by %.3g" % diff)
    return diff


# The options that decide what a run learns, in the order a command lists them; _ALWAYS_SHOWN ones even at default.
_ALWAYS_SHOWN = ("arch", "recipe", "budget_min", "patch", "batch", "seed")
_RESULT_OPTIONS = ("shares", "arch", "channels", "colour", "fov_margin", "recipe", "loss", "init", "budget_min",
                   "max_steps", "lr", "warmup", "ema", "aug_prob", "rotate", "scale_jitter", "patch", "batch",
                   "val_count", "seed")


def dataset_names(targs: Dict[str, Any]) -> str:
    """``DRIVE`` or ``DRIVE + STARE + HRF``: the folder names of a run's dataset roots."""
    return " + ".join(Path(root).name for root in data_roots(targs))


def command_line(targs: Dict[str, Any]) -> str:
    """The training command a checkpoint's saved arguments amount to (dataset and run folders abstracted):
    the always-shown options, and every other one that differs from ``training.train``'s default."""
    from training.train import parse_args

    defaults = vars(parse_args(["--run", "RUN"]))
    roots = data_roots(targs)
    data = " ".join("--data %s" % Path(r).name.upper() for r in roots) if len(roots) > 1 else "--data DATA"
    parts = ["python -m training.train %s --run RUN" % data]
    for key in _RESULT_OPTIONS:
        value = targs.get(key)
        if value is None or (key not in _ALWAYS_SHOWN and value == defaults.get(key)):
            continue
        if isinstance(value, bool):          # a flag: named when set
            parts.append("--%s" % key.replace("_", "-"))
            continue
        shown = "INIT_RUN/" + Path(str(value)).name if key == "init" else value
        parts.append("--%s %s" % (key.replace("_", "-"), shown))
    return " ".join(parts)


def training_stages(ckpt_path: Path, limit: int = 8) -> List[Dict[str, Any]]:
    """The chain of runs behind a checkpoint (its ``--init`` ancestors first), as far as their files exist."""
    stages: List[Dict[str, Any]] = []
    path: Optional[Path] = ckpt_path
    while path is not None and path.exists() and len(stages) < limit:
        ck = torch.load(str(path), map_location="cpu", weights_only=False)
        targs = ck["args"]
        summary_path = path.parent / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        stage = {"run": path.parent.name, "command": command_line(targs),
                 "loss": targs.get("loss") or ("bce+dice" if targs.get("recipe") == "ours" else "balanced-bce"),
                 "train_images": len(summary.get("train_images", [])),
                 "val_images": len(summary.get("val_images", [])),
                 "steps": summary.get("steps", ck["step"]), "checkpoint_step": ck["step"],
                 "minutes": summary.get("minutes")}
        if summary.get("validation"):
            stage["validation_auc"] = round(float(summary["validation"]["auc"]), 4)
        stages.insert(0, stage)
        path = Path(targs["init"]) if targs.get("init") else None
    return stages


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="best.pt from training.train")
    ap.add_argument("--out", required=True, help="bundle folder, e.g. models/vessel-unet")
    ap.add_argument("--name", help="bundle name (default: the folder's name)")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--description", default="")
    ap.add_argument("--threshold", type=float, help="default: the validation-chosen one from summary.json")
    ap.add_argument("--validation-from", help="summary.json of a twin run (same recipe, images held out) whose "
                                              "last checkpoint's validation (python -m training.validate) gives "
                                              "the threshold and metrics of a final fit on all training images")
    ap.add_argument("--no-aipp", action="store_true", help="float32 NCHW input instead of NV12 + AIPP")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    ckpt_path = Path(args.checkpoint)
    ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    model = network_from_checkpoint(ckpt)
    model.eval()
    summary_path = ckpt_path.parent / "summary.json"
    summary: Dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    validation = summary.get("validation", {})
    validation_source = "held-out images of this run"
    if args.validation_from:
        twin = json.loads(Path(args.validation_from).read_text())
        if "validation_last" not in twin:
            log.error("%s has no validation_last: run python -m training.validate --checkpoint RUN/last.pt first "
                      "(a final fit ships its last step, so its twin's last step is what must be validated)",
                      args.validation_from)
            return 2
        validation = {k: v for k, v in twin["validation_last"].items() if k != "step"}
        validation_source = ("the last checkpoint (step %d) of the twin run %s: the same command with the last %d "
                             "training images held out (%s)" % (
                                 twin["validation_last"]["step"], Path(args.validation_from).parent.name,
                                 len(twin.get("val_images", [])), ", ".join(twin.get("val_images", []))))
    threshold = args.threshold if args.threshold is not None else float(validation.get("threshold", 0.5))

    graph = export_graph(model)
    onnx_bytes = encode_model(graph)
    diff = check_onnx_matches_torch(model, onnx_bytes)
    log.info("ONNX vs torch max abs difference: %.2e", diff)
    targs = ckpt["args"]
    meta: Dict[str, Any] = {
        "name": args.name or Path(args.out).name,
        "version": args.version,
        "description": args.description or ("%s trained on %s" % (ckpt["arch"], dataset_names(targs))),
        "threshold": round(threshold, 4),
        "parameters": count_parameters_deployed(model),
        "macs_512": count_macs(model),
        "architecture": {"arch": ckpt["arch"], **{k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in ckpt.get("arch_kwargs", {}).items()}},
        "preprocess": ckpt["preprocess"],
        "provenance": {
            "trained_by": "python -m training.train (this repository)",
            "dataset": "%s split '%s'%s: %d training images, %s" % (
                dataset_names(targs), targs["split"],
                " (shares %s)" % targs["shares"] if targs.get("shares") else "", len(summary.get("train_images", [])),
                "%d held out for validation (%s)" % (len(summary["val_images"]), ", ".join(summary["val_images"]))
                if summary.get("val_images") else "none held out (a final fit on all of them)"),
            "recipe": targs["recipe"],
            "command": command_line(targs),
            "stages": training_stages(ckpt_path),
            "validation_source": validation_source,
            "steps": summary.get("steps", ckpt["step"]),
            "best_step": ckpt["step"],
            "training_minutes": summary.get("minutes"),
            "exported": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "metrics": {"validation": {k: round(float(v), 4) for k, v in validation.items()}},
    }
    aipp_text = None if args.no_aipp else default_aipp_cfg_text(512, 512)
    bundle = write_bundle(args.out, graph, meta, aipp_text)
    log.info("wrote bundle %s (%s %s, %d parameters, %.2f GMAC, threshold %.2f)", bundle.path, bundle.name,
             bundle.version, meta["parameters"], meta["macs_512"] / 1e9, threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
