"""Validate a checkpoint at the original size on its run's held-out images, and record it in summary.json.

    python -m training.validate --checkpoint runs/twin/last.pt

A final fit on all training images ships its *last* step and has no images of its own to validate on; its
twin (the same command with images held out) does. This scores the twin's last checkpoint the way training
scores its best one (AUC inside the FOV masks, the best-Dice threshold and its metrics) and writes it to the
twin's summary.json as ``validation_last``, which ``training.export --validation-from`` then uses.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from pipeline.datasets import find_samples
from pipeline.preprocess import PreprocessParams
from training.models import build_model
from training.train import Prepared, final_validation, split_samples

log = logging.getLogger("training.validate")


def validate_checkpoint(ckpt_path: Path) -> Dict[str, float]:
    """Original-size validation of a checkpoint on the images its run held out."""
    ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    targs = ckpt["args"]
    if not targs.get("val_count"):
        raise ValueError("%s held out no images (--val-count 0): nothing to validate on" % ckpt_path)
    params = PreprocessParams.from_mapping(ckpt.get("preprocess"))
    samples = find_samples(Path(targs["data"]), split=targs["split"], images=targs.get("images"),
                           labels=targs.get("labels"), fov=targs.get("fov"))
    val = [Prepared(s, params) for s in split_samples(samples, targs["val_count"])[1]]
    model = build_model(ckpt["arch"], **ckpt.get("arch_kwargs", {}))
    model.load_state_dict(ckpt["model"])
    result = final_validation(model, val, params, torch.device("cpu"))
    result["step"] = int(ckpt["step"])
    return result


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.validate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a run's last.pt (or best.pt)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    path = Path(args.checkpoint)
    try:
        result = validate_checkpoint(path)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info("%s (step %d): AUC %.4f  Dice %.4f at threshold %.2f", path, result["step"], result["auc"],
             result["dice"], result["threshold"])
    if path.name == "last.pt":
        summary_path = path.parent / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary["validation_last"] = result
        summary_path.write_text(json.dumps(summary, indent=2))
        log.info("recorded as validation_last in %s", summary_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
