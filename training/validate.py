"""Validate a checkpoint at the original size on its run's held-out images, and record it in summary.json.

    python -m training.validate --checkpoint runs/twin/last.pt
    python -m training.validate --checkpoint runs/a/last.pt --ensemble runs/b/last.pt runs/c/last.pt
    python -m training.validate --checkpoint runs/twin/last.pt --flips 4

A final fit on all training images ships its *last* step and has no images of its own to validate on; its
twin (the same command with images held out) does. This scores the twin's last checkpoint the way training
scores its best one (AUC inside the FOV masks, the best-Dice threshold and its metrics) and writes it to the
twin's summary.json as ``validation_last``, which ``training.export --validation-from`` then uses.
With ``--ensemble`` it scores the mean of several twins' probabilities instead, and with ``--flips`` the mean over
flipped passes (test-time averaging); neither is what the appliance runs, so neither records anything.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from training.data import load_roots
from training.models import network_from_checkpoint
from training.train import (
    FLIP_DIMS,
    Prepared,
    final_validation,
    original_size_probabilities,
    score_original_size,
)
from vessel_seg.pipeline.shared.preprocess import PreprocessParams

log = logging.getLogger("training.validate")


def _load(ckpt_path: Path) -> Tuple[Dict, PreprocessParams, List[Prepared], torch.nn.Module]:
    """A checkpoint, its preprocessing, the images its run held out (prepared with it) and its network."""
    ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    targs = ckpt["args"]
    if not targs.get("val_count"):
        raise ValueError("%s held out no images (--val-count 0): nothing to validate on" % ckpt_path)
    params = PreprocessParams.from_mapping(ckpt.get("preprocess"))
    val = [Prepared(s, params) for root in load_roots(targs) for s in root.val]
    return ckpt, params, val, network_from_checkpoint(ckpt)


def validate_checkpoint(ckpt_path: Path, flips: int = 1) -> Dict[str, float]:
    """Original-size validation of a checkpoint on the images its run held out (``flips`` > 1: the mean over
    that many flipped passes)."""
    ckpt, params, val, model = _load(ckpt_path)
    result = final_validation(model, val, params, torch.device("cpu"), flips)
    result["step"] = int(ckpt["step"])
    return result


def validate_ensemble(ckpt_paths: Sequence[Path], flips: int = 1) -> Dict[str, Any]:
    """Each checkpoint alone and the mean of their probabilities, on the images all their runs held out: how
    far averaging networks (or distilling them into one) could move the validation AUC. Each network gets its
    own run's preprocessing."""
    if not ckpt_paths:
        raise ValueError("an ensemble needs at least one checkpoint")
    members: Dict[str, float] = {}
    per_network: List[List[np.ndarray]] = []
    names: List[str] = []
    for path in ckpt_paths:
        _, params, val, model = _load(path)
        held_out = [it.sample.name for it in val]
        names = names or held_out
        if held_out != names:
            raise ValueError("%s held out %s, the others %s: an ensemble needs the same images"
                             % (path, held_out, names))
        probs, fovs = original_size_probabilities(model, val, params, torch.device("cpu"), flips)
        members[str(path)] = score_original_size(probs, fovs, val)["auc"]
        log.info("%s: AUC %.4f", path, members[str(path)])
        per_network.append(probs)
    mean = score_original_size([np.mean(image, axis=0) for image in zip(*per_network)], fovs, val)
    return {"members": members, "ensemble": mean}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.validate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a run's last.pt (or best.pt)")
    ap.add_argument("--ensemble", nargs="+", metavar="CHECKPOINT", default=[],
                    help="also average these checkpoints' probabilities with --checkpoint's and score the mean "
                         "(about what distilling them into one network could reach); records nothing")
    ap.add_argument("--flips", type=int, choices=sorted(FLIP_DIMS), default=1,
                    help="average each network over this many flipped passes (2: left-right, 4: and up-down): "
                         "test-time averaging at that many times the compute; records nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.ensemble:
        paths = [Path(args.checkpoint)] + [Path(p) for p in args.ensemble]
        try:
            ens = validate_ensemble(paths, args.flips)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        log.info("mean of %d networks: AUC %.4f  Dice %.4f at threshold %.2f (best single %.4f)", len(paths),
                 ens["ensemble"]["auc"], ens["ensemble"]["dice"], ens["ensemble"]["threshold"],
                 max(ens["members"].values()))
        return 0
    path = Path(args.checkpoint)
    try:
        result = validate_checkpoint(path, args.flips)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info("%s (step %d%s): AUC %.4f  Dice %.4f at threshold %.2f", path, result["step"],
             ", mean of %d flipped passes" % args.flips if args.flips > 1 else "", result["auc"], result["dice"],
             result["threshold"])
    if path.name == "last.pt" and args.flips == 1:
        summary_path = path.parent / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary["validation_last"] = result
        summary_path.write_text(json.dumps(summary, indent=2))
        log.info("recorded as validation_last in %s", summary_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
