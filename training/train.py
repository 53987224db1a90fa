"""Train a vessel segmentation network on the product's own preprocessing.

    python -m training.train --data ../shared/datasets/DRIVE --run runs/unet --budget-min 45
    python -m training.train --data DIR --images imgs --labels gt --fov masks --run runs/x   # other datasets
    python -m training.train --run runs/unet --resume                 # another sitting, same 45-min total budget
    python -m training.train --run runs/unet --resume --budget-min 60  # another sitting, total raised to 60 min

Checkpoints (``last.pt`` every few minutes, ``best.pt`` on the best validation AUC) resume exactly:
model, optimiser, step, elapsed time and random state. A held-out part of the training images
(``--val-count``) chooses the checkpoint and, at the end, the threshold; test images are never used.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from training.augment import canvas, geometric, photometric
from training.data import RootSampler, load_roots, qualified_names
from training.models import build_model, count_macs, count_parameters_deployed
from vessel_seg.device.aipp import AippConfig, aipp_csc_rgb, default_aipp_cfg_text, parse_aipp_cfg
from vessel_seg.pipeline.engine.decode import dct_scale
from vessel_seg.pipeline.shared.datasets import Sample
from vessel_seg.pipeline.shared.preprocess import (
    PreprocessParams,
    crop_and_resize,
    preprocess,
    restore_to_original,
    rgb_to_nv12,
)
from vessel_seg.pipeline.shared.scoring import best_dice_threshold, roc_auc, threshold_metrics

log = logging.getLogger("training")
DEFAULT_BUDGET_MIN = 45.0


class Prepared:
    """One sample in model space: network input (uint8), soft label and FOV (float32 / bool).

    A camera-size image is reduced at load as the appliance's JPEG decode reduces it (``decode.dct_scale``:
    while its shorter side keeps the working size), label and FOV with it; ``scale`` says by how much.
    """

    def __init__(self, sample: Sample, params: PreprocessParams) -> None:
        self.sample = sample
        rgb, label, fov = sample.load()
        h, w = rgb.shape[:2]
        self.scale = dct_scale(w, h, lambda fw, fh: params.working_size(min(fw, fh)))
        if self.scale > 1:
            size = ((w + self.scale - 1) // self.scale, (h + self.scale - 1) // self.scale)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            label = cv2.resize(label.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
            if fov is not None:
                fov = cv2.resize(fov.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        self.rgb, self.label, self.fov_orig = rgb, label, fov
        self.x, self.y, self.m = to_model_space(rgb, label.astype(np.float32), params, self.scale)


def network_input(model_rgb: np.ndarray, colour: bool) -> np.ndarray:
    """What the network sees of a preprocessed image, as uint8: the gray plane (H, W), which the NV12 path
    carries losslessly, or for colour the (H, W, 3) image after the NV12 round trip and AIPP's conversion."""
    if not colour:
        return model_rgb[:, :, 0]
    return aipp_csc_rgb(rgb_to_nv12(model_rgb), _aipp_config(model_rgb.shape[0]))


@functools.lru_cache(maxsize=4)
def _aipp_config(size: int) -> AippConfig:
    """The AIPP that export writes into a bundle (parsed once per size)."""
    return parse_aipp_cfg(default_aipp_cfg_text(size, size))


def to_tensor(xs: List[np.ndarray], device: torch.device) -> torch.Tensor:
    """A batch of uint8 network inputs, (H, W) or (H, W, 3) each, as float NCHW in [0, 1]."""
    x = np.stack(xs).astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def to_model_space(rgb: np.ndarray, label: np.ndarray, params: PreprocessParams, scale: int = 1):
    pre = preprocess(rgb, params, scale)
    y = np.clip(crop_and_resize(label.astype(np.float32), pre.geometry), 0.0, 1.0)
    return network_input(pre.model_rgb, params.colour), y.astype(np.float32), pre.fov


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference recipe's class-balanced sigmoid cross-entropy (HED style)."""
    pos = target.sum()
    beta = 1.0 - pos / target.numel()
    w = beta * target + (1.0 - beta) * (1.0 - target)
    return F.binary_cross_entropy_with_logits(logits, target, weight=w) * 2.0


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE plus soft Dice: Dice counters the ~1:9 imbalance, BCE keeps probabilities calibrated."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = 1.0 - (2.0 * inter + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + dice


LOSSES = {"bce+dice": bce_dice, "bce": lambda logits, target: F.binary_cross_entropy_with_logits(logits, target),
          "balanced-bce": balanced_bce}


# The flipped passes that ``flips`` averages: none, left-right, up-down, both (dims of an NCHW tensor).
FLIP_DIMS: Dict[int, List[Tuple[int, ...]]] = {1: [()], 2: [(), (3,)], 4: [(), (3,), (2,), (2, 3)]}


def predict512(model: torch.nn.Module, x: np.ndarray, device: torch.device, flips: int = 1) -> np.ndarray:
    """The network's probability in model space. With ``flips`` 2 or 4, the mean over the flipped passes
    (test-time averaging, ``flips`` times the compute: a measurement, not what the appliance runs)."""
    model.eval()
    t = to_tensor([x], device)
    with torch.no_grad():
        passes = [torch.sigmoid(model(t.flip(d))).flip(d) if d else torch.sigmoid(model(t))
                  for d in FLIP_DIMS[flips]]
    model.train()
    return torch.stack(passes).mean(dim=0)[0, 0].cpu().numpy()


def validate(model: torch.nn.Module, items: List[Prepared], device: torch.device) -> Dict[str, float]:
    """Pooled AUC and best Dice in model space (fast proxy used to pick checkpoints)."""
    scores, labels = [], []
    for it in items:
        p = predict512(model, it.x, device)
        scores.append(p[it.m])
        labels.append(it.y[it.m] >= 0.5)
    s, y = np.concatenate(scores), np.concatenate(labels)
    return {"auc": roc_auc(s, y), "dice@0.5": threshold_metrics(s, y, 0.5)["dice"]}


def original_size_probabilities(model: torch.nn.Module, items: List[Prepared], params: PreprocessParams,
                                device: torch.device, flips: int = 1) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """The network's probability for each item at its original size, restored the way the product path does,
    and the field of view to score it in: the dataset's FOV mask, or the detected one where it has none."""
    probs, fovs = [], []
    for it in items:
        pre = preprocess(it.rgb, params, getattr(it, "scale", 1))
        x = network_input(pre.model_rgb, params.colour)
        probs.append(restore_to_original(predict512(model, x, device, flips), pre.geometry, pre.fov_original))
        fovs.append(it.fov_orig if it.fov_orig is not None else pre.fov_original)
    return probs, fovs


def score_original_size(probs: List[np.ndarray], fovs: List[np.ndarray], items: List[Prepared]) -> Dict[str, float]:
    """Inside the FOVs: AUC, the best-Dice threshold and its metrics."""
    s = np.concatenate([p[f] for p, f in zip(probs, fovs)])
    y = np.concatenate([it.label[f] for it, f in zip(items, fovs)])
    t = best_dice_threshold(s, y)
    out = {"auc": roc_auc(s, y), "threshold": t}
    out.update(threshold_metrics(s, y, t))
    return out


def final_validation(model: torch.nn.Module, items: List[Prepared], params: PreprocessParams,
                     device: torch.device, flips: int = 1) -> Dict[str, float]:
    """At the original size, inside the dataset's FOV masks: AUC, the best-Dice threshold and its metrics."""
    return score_original_size(*original_size_probabilities(model, items, params, device, flips), items)


class WeightAverage:
    """An exponential moving average of the weights and batch-norm statistics (Polyak averaging): the
    averaged network is what is validated, checkpointed as ``model`` and exported; it is steadier than the
    last step's weights when batches are small and noisy."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        current = model.state_dict()
        for name, avg in self.model.state_dict().items():
            cur = current[name]
            if avg.dtype.is_floating_point:
                avg.mul_(self.decay).add_(cur.detach(), alpha=1.0 - self.decay)
            else:
                avg.copy_(cur)


def save_ckpt(path: Path, state: Dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, str(tmp))
    os.replace(str(tmp), str(path))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append",
                    help="dataset root (DRIVE layout, or generic with --images/--labels); repeat for several")
    ap.add_argument("--shares", default="",
                    help="sampling share of each --data root, comma-separated (default: equal shares)")
    ap.add_argument("--split", default="training", help="DRIVE split to train on (default training)")
    ap.add_argument("--images"), ap.add_argument("--labels"), ap.add_argument("--fov")
    ap.add_argument("--run", required=True, help="run folder for checkpoints and logs")
    ap.add_argument("--arch", default="unet", choices=["unet", "wnet", "reference"])
    ap.add_argument("--channels", default="8,16,32,40", help="U-Net widths per level (of each U-Net in a W-Net)")
    ap.add_argument("--colour", action="store_true",
                    help="train on the colour image as the NV12/AIPP path delivers it (default: the gray plane)")
    ap.add_argument("--fov-margin", type=float, default=PreprocessParams.fov_margin,
                    help="border kept around the field of view, as a fraction of its diameter (the bundle records it)")
    ap.add_argument("--hires-size", type=int, default=0,
                    help="high-resolution working size for large fields of view (e.g. 1024; run as tiles of 512 "
                         "by the appliance; the bundle records it); 0 = every image at 512")
    ap.add_argument("--hires-from-px", type=int, default=1200,
                    help="FOV box size in original pixels from which --hires-size applies")
    ap.add_argument("--recipe", default="ours", choices=["ours", "reference"],
                    help="ours: BCE+Dice, camera augmentation, cosine LR; reference: balanced BCE, Adam 1e-3, "
                         "rot90/flip only")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="wall-time budget in minutes for the whole run, all sittings together (default 45; "
                         "--resume keeps the run's own budget unless this is given)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = budget only)")
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--val-count", type=int, default=4, help="training images held out for validation")
    ap.add_argument("--val-every-s", type=float, default=150.0)
    ap.add_argument("--rotate", type=float, default=0.0,
                    help="also rotate each sample by up to this many degrees either way (0 = rot90/flips only)")
    ap.add_argument("--scale-jitter", type=float, default=0.0,
                    help="also zoom each sample by a factor within 1 +/- this fraction (0 = none)")
    ap.add_argument("--aug-prob", type=float, default=0.35, help="chance a sample is a fresh camera-like variant")
    ap.add_argument("--loss", default=None, choices=sorted(LOSSES),
                    help="training loss (default: bce+dice for ours, balanced-bce for reference)")
    ap.add_argument("--init", help="start from this checkpoint's weights (architecture included) with a fresh "
                                   "optimiser and schedule: a fine-tuning run")
    ap.add_argument("--warmup", type=int, default=100, help="linear learning-rate warm-up steps")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="validate, checkpoint and export a moving average of the weights with this decay "
                         "(e.g. 0.999; 0 = the last step's weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    return ap.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_last = run / "last.pt"
    state: Optional[Dict] = None
    if args.resume:
        if not ckpt_last.exists():
            log.error("--resume: %s does not exist", ckpt_last)
            return 2
        state = torch.load(str(ckpt_last), map_location="cpu", weights_only=False)
        saved = state["args"]
        for k in ("data", "shares", "split", "images", "labels", "fov", "arch", "channels", "colour", "fov_margin",
                  "recipe", "patch", "batch", "lr", "val_count", "seed", "loss", "init", "warmup", "ema", "aug_prob",
                  "rotate", "scale_jitter"):
            if k in saved:
                setattr(args, k, saved[k])
        if args.budget_min is None:
            args.budget_min = saved.get("budget_min")
    if args.budget_min is None:
        args.budget_min = DEFAULT_BUDGET_MIN
    if state is not None:
        log.info("resuming %s at step %d (%.1f of %.0f min done)", run, state["step"], state["elapsed"] / 60,
                 args.budget_min)
    if not args.data:
        log.error("--data is required")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    init: Optional[Dict] = None
    if args.init and state is None:
        init = torch.load(str(args.init), map_location="cpu", weights_only=False)
        args.arch = init["arch"]
        if "channels" in init.get("arch_kwargs", {}):
            args.channels = ",".join(str(c) for c in init["arch_kwargs"]["channels"])
        init_pre = PreprocessParams.from_mapping(init.get("preprocess"))
        args.colour, args.fov_margin = init_pre.colour, init_pre.fov_margin
        if init_pre.hires_size and not getattr(args, "hires_size", 0):
            args.hires_size, args.hires_from_px = init_pre.hires_size, init_pre.hires_from_px
    hires = int(getattr(args, "hires_size", 0) or 0)
    params = PreprocessParams(colour=bool(args.colour), fov_margin=float(args.fov_margin), hires_size=hires,
                              hires_from_px=int(getattr(args, "hires_from_px", 0) or 0) if hires else 0)

    try:
        roots = load_roots(vars(args))
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    for r in roots:
        log.info("%s: %d training and %d validation images, share %.2f", r.path, len(r.train), len(r.val), r.share)
    train_by_root = [[Prepared(s, params) for s in r.train] for r in roots]
    val = [Prepared(s, params) for r in roots for s in r.val]
    sampler = RootSampler(train_by_root, [r.share for r in roots])

    kwargs: Dict = ({"channels": tuple(int(c) for c in args.channels.split(","))} if args.arch in ("unet", "wnet")
                    else {})
    if params.colour:
        kwargs["in_ch"] = 3
    model = build_model(args.arch, **kwargs).to(device)
    if init is not None:
        model.load_state_dict(init["model"])
        log.info("initialised from %s (step %d of its run)", args.init, init["step"])
    lr = args.lr or (3e-3 if args.recipe == "ours" else 1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    args.loss = args.loss or ("bce+dice" if args.recipe == "ours" else "balanced-bce")
    loss_fn = LOSSES[args.loss]
    step, elapsed, best_auc = 0, 0.0, -1.0
    history: List[Dict] = []
    if state is not None:
        model.load_state_dict(state.get("train_model", state["model"]))
        opt.load_state_dict(state["opt"])
        step, elapsed, best_auc, history = state["step"], state["elapsed"], state["best_auc"], state["history"]
        if (run / "best.pt").exists():   # best.pt may be newer than last.pt: never overwrite it with a worse one
            best_auc = max(best_auc, torch.load(str(run / "best.pt"), map_location="cpu",
                                                weights_only=False).get("best_auc", -1.0))
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    log.info("model %s: %d deployed parameters, %.2f GMAC at 512x512", args.arch,
             count_parameters_deployed(model.cpu()), count_macs(model.cpu()) / 1e9)
    model.to(device).train()
    average: Optional[WeightAverage] = None
    if args.ema:
        average = WeightAverage(model, args.ema)
        if state is not None:
            average.model.load_state_dict(state["model"])

    def deployed() -> torch.nn.Module:
        return average.model if average is not None else model

    def snapshot() -> Dict:
        extra = {"train_model": model.state_dict()} if average is not None else {}
        return {"args": vars(args), "model": deployed().state_dict(), **extra, "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "best_auc": best_auc, "history": history, "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "preprocess": params.to_dict(), "arch": args.arch,
                "arch_kwargs": kwargs}

    budget = args.budget_min * 60.0
    t_start = time.time() - elapsed
    last_val = last_save = time.time()
    warmup = max(1, args.warmup)
    running, sitting_steps = 0.0, 0
    while True:
        elapsed = time.time() - t_start
        if elapsed >= budget or (args.max_steps and step >= args.max_steps):
            break
        if args.recipe == "ours":
            frac = min(elapsed / budget, 1.0)
            cur = lr * min(1.0, (step + 1) / warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = cur
        xs, ys = [], []
        for _ in range(args.batch):
            it = sampler.draw(rng)
            if args.recipe == "ours" and rng.random() < args.aug_prob:
                rgb, lab = it.rgb, it.label.astype(np.float32)
                if rng.random() < 0.3:
                    rgb, lab = canvas(rgb, lab, rng)
                x, y, m = to_model_space(photometric(rgb, rng), lab, params, it.scale)
            else:
                x, y, m = it.x, it.y, it.m
            x, y, m = geometric(x, y, m, rng, args.patch, args.rotate, args.scale_jitter)
            xs.append(x)
            ys.append(y)
        xb = to_tensor(xs, device)
        yb = torch.from_numpy(np.stack(ys))[:, None].to(device)
        if hasattr(model, "forward_all"):
            loss = sum(loss_fn(out, yb) for out in model.forward_all(xb))   # every stage learns the label
        else:
            loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if average is not None:
            average.update(model)
        step += 1
        lv = float(loss.detach())
        running = 0.98 * running + 0.02 * lv if sitting_steps else lv
        sitting_steps += 1
        now = time.time()
        if step % 20 == 0:
            log.info("step %d  %.1f/%.0f min  loss %.4f  lr %.2e", step, (now - t_start) / 60, budget / 60,
                     running, opt.param_groups[0]["lr"])
        if val and now - last_val >= args.val_every_s:
            last_val = now
            v = validate(deployed(), val, device)
            history.append({"step": step, "elapsed_min": round((now - t_start) / 60, 2), **v})
            log.info("validation at step %d: AUC %.4f  Dice@0.5 %.4f", step, v["auc"], v["dice@0.5"])
            if v["auc"] > best_auc:
                best_auc = v["auc"]
                elapsed = now - t_start
                save_ckpt(run / "best.pt", snapshot())
        if now - last_save >= 120:
            last_save = now
            elapsed = now - t_start
            save_ckpt(ckpt_last, snapshot())
    elapsed = time.time() - t_start
    if val:
        v = validate(deployed(), val, device)
        history.append({"step": step, "elapsed_min": round(elapsed / 60, 2), **v})
        log.info("final validation at step %d: AUC %.4f", step, v["auc"])
        if v["auc"] > best_auc:
            best_auc = v["auc"]
            save_ckpt(run / "best.pt", snapshot())
    save_ckpt(ckpt_last, snapshot())
    if not (run / "best.pt").exists():
        save_ckpt(run / "best.pt", snapshot())
    best = torch.load(str(run / "best.pt"), map_location="cpu", weights_only=False)
    model.load_state_dict(best["model"])
    summary: Dict = {"arch": args.arch, "recipe": args.recipe, "loss": args.loss, "init": args.init, "ema": args.ema,
                     "steps": step, "minutes": round(elapsed / 60, 1),
                     "best_step": best["step"], "train_images": qualified_names(roots, "train"),
                     "val_images": qualified_names(roots, "val"), "history": history,
                     "parameters": count_parameters_deployed(model.cpu()), "macs_512": count_macs(model.cpu())}
    model.to(device)
    if val:
        fv = final_validation(model, val, params, device)
        summary["validation"] = fv
        log.info("validation at original size (best checkpoint): AUC %.4f  Dice %.4f at threshold %.2f",
                 fv["auc"], fv["dice"], fv["threshold"])
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("wrote %s", run / "summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
