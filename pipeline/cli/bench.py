"""``vessel-seg bench``: throughput, latency, memory, storage and idle CPU of the appliance, all in ONE run.

Inputs: synthetic fundus frames of each size in ``--sizes`` (the default preset ``camera``: 565x584, 2592x1944
and 3504x2336), a circular retina in a black canvas saved as a camera does (JPEG quality 90); or the images
of ``--images DIR``. For each size and each device mode (``npu`` = the simulator emulating an Ascend 310:
``device_time_ms`` per execute with the CPU released, ``compute: surrogate``; ``cpu`` = the simulator running
the real network on this CPU):

* execute-only: the device alone, back to back, double-buffered over two slots, on a ready model input;
* end-to-end: the real ``Daemon`` in-process on a temp data dir: files renamed into capture/ -> result.json
  written (steady-state rate between the first and the last result, plus the makespan);
* sequential: one thread does everything per image (decode ... render), synchronous execute: no overlap.

Per size (from the first mode's end-to-end runs): the median host time of each stage (result.json timings),
host CPU per image (all threads), bytes stored per result, the latency from a frame's file being closed to its
result.json (median and p95, frames dropped one at a time into an idle daemon), and the peak RSS (VmHWM) of a
daemon in a process of its own taking the size's frames end to end (the bench process's own peak, which also
holds the frames and what generating them left resident, is reported as ``bench_peak_rss_mb``). Plus the CPU
use of an idle daemon. Every rate is the median over ``--repeats``; ratios are computed from numbers measured
in this same run.
Targets (emulated NPU): end-to-end >= 0.95x execute-only at every size; host CPU per image <= 30 ms at
565x584 and <= 60 ms at 3504x2336; median latency <= 0.5 s, peak RSS <= 300 MiB and <= 1.5 MB stored per
result at 3504x2336; double-buffered (end-to-end) >= 1.4x sequential; idle CPU about 0.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from vessel_seg.vocabulary import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

DRIVE_SIZE = (565, 584)
#: ``--sizes`` presets.
SIZE_PRESETS = {"camera": [(565, 584), (2592, 1944), (3504, 2336)], "drive": [DRIVE_SIZE]}
CAMERA_JPEG_QUALITY = 90
#: Distinct synthetic retinas per size (the other frames are those with a few corner pixels changed).
UNIQUE_FRAMES = 4
TARGET_E2E_VS_EXEC = 0.95
TARGET_DB_VS_SEQ = 1.4
TARGET_IDLE_CPU = 0.02
#: (width, height) -> host CPU ms per image at most
TARGET_CPU_MS = {(565, 584): 30.0, (3504, 2336): 60.0}
TARGET_LATENCY_S = {(3504, 2336): 0.5}
TARGET_RSS_MB = {(3504, 2336): 300.0}
TARGET_BYTES = {(3504, 2336): 1.5e6}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg bench``."""
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--images", metavar="DIR", help="benchmark on these images (default: synthetic frames of --sizes)")
    p.add_argument("--sizes", default="camera",
                   help="frame sizes: a preset (camera = 565x584,2592x1944,3504x2336; drive = 565x584) or a "
                        "comma-separated list of WxH (default camera)")
    p.add_argument("--count", type=int, default=24, help="images per measurement (default 24)")
    p.add_argument("--latency-count", type=int, default=8,
                   help="frames dropped one at a time for the latency (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per measurement; medians reported (default 3)")
    p.add_argument("--device-time-ms", type=float, default=37.5,
                   help="emulated NPU time per execute in ms (default 37.5)")
    p.add_argument("--modes", default="npu,cpu",
                   help="comma-separated: npu (emulated NPU), cpu (real network on this CPU); default both")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="idle-CPU measurement length (default 5)")
    p.add_argument("--model", metavar="DIR", help="model bundle (default: the configured one)")
    p.add_argument("--config", metavar="FILE", help="configuration file (workers, queue sizes)")


# ---------------------------------------------------------------------------------------------- inputs
def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """``--sizes``: a preset name or WxH,WxH,..."""
    from vessel_seg.pipeline.engine.binfile import parse_size

    if text.strip() in SIZE_PRESETS:
        return list(SIZE_PRESETS[text.strip()])
    sizes = [parse_size(part.strip()) for part in text.split(",") if part.strip()]
    if not sizes:
        raise ValueError("no sizes in %r" % text)
    return sizes


def _synthetic_images(count: int, size: Tuple[int, int], seed0: int = 1000) -> List[Tuple[str, bytes]]:
    """``count`` camera frames: a synthetic retina in a black canvas, JPEG quality 90, all distinct (beyond
    ``UNIQUE_FRAMES`` retinas, the frame number is written in the black surround's top row: eight 8x8 blocks,
    each 0 or 6, below the FOV threshold and coarse enough to survive JPEG)."""
    import cv2

    from vessel_seg.camera.synthetic import camera_vessel_scale, make_fundus

    out = []
    base = []
    for i in range(min(count, UNIQUE_FRAMES)):
        rgb, _vessels, _fov = make_fundus(width=size[0], height=size[1], seed=seed0 + i,
                                          vessel_scale=camera_vessel_scale(*size))
        base.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        del rgb, _vessels, _fov
    for i in range(count):
        bgr = base[i % len(base)]
        if i >= len(base):
            bgr = bgr.copy()
            for bit in range(8):
                bgr[0:8, 8 * bit:8 * bit + 8] = 6 if (i // len(base)) >> bit & 1 else 0
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, CAMERA_JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out.append(("frame_%dx%d_%03d.jpg" % (size[0], size[1], i), buf.tobytes()))
    return out


def _folder_images(folder: Path, count: int) -> List[Tuple[str, bytes]]:
    """``count`` distinct images from ``folder``; repeats get one corner pixel changed (distinct content)."""
    import cv2
    import numpy as np

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError("no images (%s) in %s" % (", ".join(IMAGE_EXTENSIONS), folder))
    out = []
    for i in range(count):
        src = files[i % len(files)]
        if i < len(files):
            out.append((src.name, src.read_bytes()))
            continue
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError("cannot read %s" % src)
        img = np.array(img)
        img[0, 0] = (i % 256, (i // 256) % 256, 7)
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        out.append(("%s_%03d.png" % (src.stem, i), buf.tobytes()))
    return out


# ---------------------------------------------------------------------------------------------- helpers
def _median(values: List[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _bench_config(base: Dict[str, Any], data_dir: Path, sim: Dict[str, Any], bundle: Optional[str]) -> Any:
    import copy

    cfg = copy.deepcopy(base)
    cfg["data_dir"] = str(data_dir)
    cfg["device"]["runtime"] = "sim"
    cfg["device"]["sim"].update(sim)
    cfg["web"]["enabled"] = False
    cfg["ingest"]["stable_seconds"] = 0.05
    if bundle:
        cfg["model"]["bundle"] = bundle
    return cfg


# ---------------------------------------------------------------------------------------------- measurements
def measure_execute_only(cfg: Any, model_inputs: Any, count: int) -> float:
    """Images/s of the device alone: two slots kept busy with submit/collect on ready inputs, each image
    being its executes (one, or one per tile of a high-resolution working size)."""
    from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle, make_device

    device = make_device(load_model_bundle(cfg), cfg)
    device.start()
    units = list(model_inputs) * count
    try:
        device.infer(0, units[0])              # warm-up (model load, first-run allocations)
        t0 = time.perf_counter()
        device.submit(0, units[0])
        for i in range(1, len(units)):
            device.submit(i % 2, units[i])
            device.collect((i - 1) % 2)
        device.collect((len(units) - 1) % 2)
        return count / (time.perf_counter() - t0)
    finally:
        device.close()


def prepare_input(cfg: Any, image_path: Path) -> Any:
    """The model inputs for one image (for execute-only): one per execute."""
    from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle
    from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings, WorkItem

    bundle = load_model_bundle(cfg)
    stages = Stages(ModelInfo.from_bundle(bundle), StageSettings.from_config(cfg), image_path.parent)
    return stages.prepare(WorkItem(id="0" * 16, sha256="", source=image_path.name, path=image_path)).model_inputs


def measure_sequential(cfg: Any, paths: List[Path], out_dir: Path,
                       stage_ms: Optional[Dict[str, List[float]]] = None) -> float:
    """Images/s with one thread doing every stage per image (no double buffering, no worker threads);
    each timed image's stage times (result.json ``timings_ms``) are appended to ``stage_ms`` when given."""
    from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle, make_device, runtime_name_and_precision
    from vessel_seg.pipeline.engine.stages import ModelInfo, SequentialRunner, Stages, StageSettings, WorkItem

    bundle = load_model_bundle(cfg)
    device = make_device(bundle, cfg)
    device.start()
    try:
        runtime, precision = runtime_name_and_precision(device, cfg)
        stages = Stages(ModelInfo.from_bundle(bundle, runtime, precision), StageSettings.from_config(cfg), out_dir)
        runner = SequentialRunner(stages, device)
        items = [WorkItem.for_file(p) for p in paths]
        runner.process(items[0])                # warm-up, not timed
        t0 = time.perf_counter()
        for item in items:
            job = runner.process(item)
            if stage_ms is not None:
                for stage, ms in job.timings_ms.items():
                    stage_ms.setdefault(stage, []).append(float(ms))
        return len(items) / (time.perf_counter() - t0)
    finally:
        device.close()


def _percentile(values: List[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _result_stats(results: Path) -> Dict[str, List[float]]:
    """Per finished result: each stage's time (result.json) and the bytes its folder holds."""
    out: Dict[str, List[float]] = {"bytes": []}
    for meta_path in sorted(results.glob("*/result.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        for stage, ms in (meta.get("timings_ms") or {}).items():
            out.setdefault(stage, []).append(float(ms))
        out["bytes"].append(float(_folder_bytes(meta_path.parent)))
    return out


def _drop(capture: Path, name: str, data: bytes) -> float:
    """Write a frame as a camera does (temp name, then rename); the time it was closed (epoch s)."""
    tmp = capture / (".%s.tmp" % name)
    tmp.write_bytes(data)
    os.replace(str(tmp), str(capture / name))
    return time.time()


def measure_latency(daemon: Any, images: List[Tuple[str, bytes]], timeout_s: float = 120.0) -> List[float]:
    """Seconds from each frame's file closed to its result.json, one frame at a time into an idle daemon."""
    from vessel_seg.vocabulary import RESULT_JSON, result_id, sha256_bytes

    out = []
    for name, data in images:
        result = daemon.paths.results / result_id(sha256_bytes(data)) / RESULT_JSON
        closed = _drop(daemon.paths.capture, name, data)
        deadline = time.monotonic() + timeout_s
        while not result.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("latency frame %s not processed within %.0f s" % (name, timeout_s))
            time.sleep(0.002)
        out.append(max(0.0, os.stat(str(result)).st_mtime - closed))
    return out


def measure_end_to_end(cfg: Any, images: List[Tuple[str, bytes]], timeout_s: float = 600.0,
                       latency_images: Optional[List[Tuple[str, bytes]]] = None) -> Dict[str, Any]:
    """The real daemon in-process: drop files (rename into place) -> wait for every result.json; then, with
    ``latency_images``, the latency of frames dropped one at a time."""
    from vessel_seg.pipeline.appliance.daemon import Daemon

    daemon = Daemon(cfg, systemd=False)
    daemon.start()
    try:
        _wait_warm(daemon, images[0], timeout_s)
        capture = daemon.paths.capture
        base_done = int(daemon.metrics.value("processed"))
        base_failed = int(daemon.metrics.value("failed"))
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        for name, data in images[1:]:
            tmp = capture / (".%s.tmp" % name)
            tmp.write_bytes(data)
            os.replace(str(tmp), str(capture / name))
        want = len(images) - 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = int(daemon.metrics.value("processed")) - base_done
            failed = int(daemon.metrics.value("failed")) - base_failed
            if done + failed >= want:
                break
            time.sleep(0.005)
        makespan = time.perf_counter() - t0
        cpu_per_image_ms = (_cpu_seconds() - cpu0) * 1000.0 / max(1, done)
        if failed:
            raise RuntimeError("%d benchmark image(s) failed in the daemon" % failed)
        if done < want:
            raise RuntimeError("end-to-end run timed out after %.0f s (%d/%d done)" % (timeout_s, done, want))
        stamps = sorted(os.stat(str(p)).st_mtime for p in daemon.paths.results.glob("*/result.json"))[1:]
        steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 and stamps[-1] > stamps[0] else 0.0
        stats = _result_stats(daemon.paths.results)
        latency = measure_latency(daemon, latency_images) if latency_images else []
        return {"throughput_ips": steady or want / makespan, "makespan_s": makespan, "makespan_ips": want / makespan,
                "cpu_ms_per_image": cpu_per_image_ms, "results": stats, "latency_s": latency}
    finally:
        daemon.stop(30.0)


def _wait_warm(daemon: Any, image: Tuple[str, bytes], timeout_s: float) -> None:
    """Process one image first so model load and first-run costs are not measured."""
    name, data = image
    tmp = daemon.paths.capture / (".%s.tmp" % name)
    tmp.write_bytes(data)
    os.replace(str(tmp), str(daemon.paths.capture / name))
    deadline = time.monotonic() + timeout_s
    while daemon.metrics.value("processed") + daemon.metrics.value("failed") < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("warm-up image not processed within %.0f s" % timeout_s)
        time.sleep(0.01)


def _daemon_rss_child(cfg: Any, frames: List[str], out: Any) -> None:
    """In a fresh process: a daemon takes ``frames`` (burst, after one warm-up) and reports its peak RSS."""
    try:
        images = [(Path(f).name, Path(f).read_bytes()) for f in frames]
        measure_end_to_end(cfg, images)
        out.put({"peak_rss_mb": peak_rss_mb()})
    except Exception as exc:  # reported to the parent, which raises
        out.put({"error": "%s: %s" % (type(exc).__name__, exc)})


def measure_daemon_rss(cfg: Any, frames: List[Path], timeout_s: float = 600.0) -> float:
    """Peak RSS (MiB) of a daemon process of its own (started fresh: nothing of the bench's frame generation or
    earlier runs is resident in it) processing ``frames`` end to end, as the appliance does."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_daemon_rss_child, args=(dict(cfg), [str(f) for f in frames], out), daemon=True)
    proc.start()
    try:
        res = out.get(timeout=timeout_s)
    finally:
        proc.join(30.0)
        if proc.is_alive():
            proc.terminate()
    if "error" in res:
        raise RuntimeError("daemon RSS measurement failed: %s" % res["error"])
    return float(res["peak_rss_mb"])


def measure_idle_cpu(cfg: Any, seconds: float) -> float:
    """CPU seconds per wall second of a started daemon with an empty capture folder."""
    from vessel_seg.pipeline.appliance.daemon import Daemon

    daemon = Daemon(cfg, systemd=False)
    daemon.start()
    try:
        time.sleep(min(1.0, seconds / 4.0))       # let start-up work (scans, imports) settle
        c0, t0 = _cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        return (_cpu_seconds() - c0) / (time.perf_counter() - t0)
    finally:
        daemon.stop(10.0)


# ---------------------------------------------------------------------------------------------- driver
def _device_options(mode: str, device_time_ms: float) -> Dict[str, Any]:
    if mode == "npu":
        return {"compute": "surrogate", "device_time_ms": float(device_time_ms), "precision": "fp16"}
    return {"compute": "real", "device_time_ms": None, "precision": "fp32"}


def _measure_mode(base: Dict[str, Any], args: argparse.Namespace, root: Path, tag: str, mode: str,
                  images: List[Tuple[str, bytes]], paths: List[Path], count: int, repeats: int,
                  latency_images: Optional[List[Tuple[str, bytes]]]) -> Dict[str, Any]:
    """Execute-only, end-to-end and sequential rates of one mode on one set of frames (medians of repeats)."""
    sim = _device_options(mode, args.device_time_ms)
    cfg = _bench_config(base, root / "unused", sim, args.model)
    model_inputs = prepare_input(cfg, paths[0])
    runs: Dict[str, List[float]] = {"execute_only": [], "end_to_end": [], "end_to_end_makespan": [],
                                    "sequential": [], "host_cpu_ms_per_image": []}
    stats: Dict[str, List[float]] = {}
    latency: List[float] = []
    for r in range(repeats):
        log.info("bench %s %s: repeat %d/%d", tag, mode, r + 1, repeats)
        runs["execute_only"].append(measure_execute_only(cfg, model_inputs, count))
        e2e_dir = root / ("%s-%s-e2e-%d" % (tag, mode, r))
        e2e = measure_end_to_end(_bench_config(base, e2e_dir, sim, args.model), images,
                                 latency_images=latency_images if r == 0 else None)
        runs["end_to_end"].append(e2e["throughput_ips"])
        runs["end_to_end_makespan"].append(e2e["makespan_ips"])
        runs["host_cpu_ms_per_image"].append(e2e["cpu_ms_per_image"])
        for k, v in e2e["results"].items():
            stats.setdefault(k, []).extend(v)
        latency.extend(e2e["latency_s"])
        shutil.rmtree(str(e2e_dir), ignore_errors=True)
        seq_out = root / ("%s-%s-seq-%d" % (tag, mode, r))
        runs["sequential"].append(measure_sequential(cfg, paths, seq_out))
        shutil.rmtree(str(seq_out), ignore_errors=True)
    med = {k: _median(v) for k, v in runs.items()}
    entry: Dict[str, Any] = {
        "device": sim,
        "executes_per_image": len(model_inputs),
        "execute_only_ips": round(med["execute_only"], 3),
        "end_to_end_ips": round(med["end_to_end"], 3),
        "end_to_end_makespan_ips": round(med["end_to_end_makespan"], 3),
        "sequential_ips": round(med["sequential"], 3),
        "host_cpu_ms_per_image": round(med["host_cpu_ms_per_image"], 1),
        "e2e_vs_execute_only": round(med["end_to_end"] / med["execute_only"], 3) if med["execute_only"] else 0,
        "double_buffered_vs_sequential": round(med["end_to_end"] / med["sequential"], 3)
        if med["sequential"] else 0,
        "runs": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        "stages_ms": {k: round(_median(v), 2) for k, v in stats.items() if k != "bytes"},
        "bytes_per_result": int(_median(stats.get("bytes", []))),
    }
    if latency:
        entry["latency_s"] = {"median": round(_median(latency), 3), "p95": round(_percentile(latency, 0.95), 3),
                              "count": len(latency), "values": [round(x, 3) for x in latency]}
    return entry


def run_bench(args: argparse.Namespace) -> Dict[str, Any]:
    """Run every measurement and return the report."""
    from vessel_seg.pipeline.appliance.config import load_config

    base = load_config(args.config)
    count = max(3, int(args.count))
    repeats = max(1, int(args.repeats))
    n_latency = max(0, int(getattr(args, "latency_count", 8)))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"npu", "cpu"}
    if unknown:
        raise ValueError("unknown mode(s): %s (choose npu, cpu)" % ", ".join(sorted(unknown)))
    if args.images:
        sets = [("images", None)]
        source = str(args.images)
    else:
        sizes = parse_sizes(getattr(args, "sizes", "camera") or "camera")
        sets = [("%dx%d" % s, s) for s in sizes]
        source = "synthetic camera frames (JPEG q%d)" % CAMERA_JPEG_QUALITY
    root = Path(tempfile.mkdtemp(prefix="vessel-seg-bench-"))
    report: Dict[str, Any] = {
        "images": {"source": source, "count": count, "latency_count": n_latency}, "repeats": repeats,
        "sizes": [], "modes": {},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    try:
        for tag, size in sets:
            if size is None:
                images = _folder_images(Path(args.images), count + 1 + n_latency)
            else:
                images = _synthetic_images(count + 1 + n_latency, size)
            latency_images, images = images[count + 1:], images[:count + 1]
            inputs = root / ("inputs-" + tag)
            inputs.mkdir()
            paths = []
            for name, data in images[1:]:
                (inputs / name).write_bytes(data)
                paths.append(inputs / name)
            entry: Dict[str, Any] = {"size": tag, "frame_bytes": int(_median([float(len(d)) for _, d in images])),
                                     "modes": {}}
            for mode in modes:
                rss_reset = reset_peak_rss()
                entry["modes"][mode] = _measure_mode(base, args, root, tag, mode, images, paths, count, repeats,
                                                     latency_images if mode == modes[0] else None)
                entry["modes"][mode]["peak_rss_mb"] = round(peak_rss_mb(), 1)
            entry["bench_peak_rss_mb"] = entry["modes"][modes[0]]["peak_rss_mb"]
            entry["bench_peak_rss_scope"] = ("this size and mode (%s)" % modes[0]) if rss_reset else "whole run"
            rss_cfg = _bench_config(base, root / ("%s-rss" % tag), _device_options(modes[0], args.device_time_ms),
                                    args.model)
            entry["peak_rss_mb"] = round(measure_daemon_rss(rss_cfg, paths), 1)
            shutil.rmtree(str(root / ("%s-rss" % tag)), ignore_errors=True)
            first = entry["modes"][modes[0]]
            for key in ("stages_ms", "bytes_per_result", "latency_s"):
                if key in first:
                    entry[key] = first[key]
            entry["host_cpu_ms_per_image"] = first["host_cpu_ms_per_image"]
            report["sizes"].append(entry)
            del images, latency_images
            shutil.rmtree(str(inputs), ignore_errors=True)
        report["modes"] = report["sizes"][0]["modes"]
        idle_cfg = _bench_config(base, root / "idle", {"compute": "surrogate", "device_time_ms": 1.0}, args.model)
        report["idle_cpu_fraction"] = round(measure_idle_cpu(idle_cfg, float(args.idle_seconds)), 4)
        report["idle_seconds"] = float(args.idle_seconds)
        report["peak_rss_mb"] = round(max(e["peak_rss_mb"] for e in report["sizes"]), 1)
    finally:
        shutil.rmtree(str(root), ignore_errors=True)
    report["targets"] = _targets(report)
    return report


def _targets(report: Dict[str, Any]) -> Dict[str, bool]:
    """PASS/MISS of each target the run measured (emulated NPU mode only)."""
    targets: Dict[str, Any] = {"idle_cpu_about_zero": report["idle_cpu_fraction"] <= TARGET_IDLE_CPU}
    for entry in report["sizes"]:
        npu = entry["modes"].get("npu")
        if npu is None:
            continue
        tag = entry["size"]
        targets["%s e2e_ge_%.2fx_execute_only" % (tag, TARGET_E2E_VS_EXEC)] = \
            npu["e2e_vs_execute_only"] >= TARGET_E2E_VS_EXEC
        targets["%s double_buffered_ge_1.4x_sequential" % tag] = \
            npu["double_buffered_vs_sequential"] >= TARGET_DB_VS_SEQ
        try:
            wh = tuple(int(x) for x in tag.split("x"))
        except ValueError:
            continue
        if wh in TARGET_CPU_MS:
            targets["%s host_cpu_le_%.0f_ms" % (tag, TARGET_CPU_MS[wh])] = \
                npu["host_cpu_ms_per_image"] <= TARGET_CPU_MS[wh]
        if wh in TARGET_LATENCY_S and "latency_s" in npu:
            targets["%s median_latency_le_%.1f_s" % (tag, TARGET_LATENCY_S[wh])] = \
                npu["latency_s"]["median"] <= TARGET_LATENCY_S[wh]
        if wh in TARGET_RSS_MB:
            targets["%s peak_rss_le_%.0f_mib" % (tag, TARGET_RSS_MB[wh])] = entry["peak_rss_mb"] <= TARGET_RSS_MB[wh]
        if wh in TARGET_BYTES:
            targets["%s stored_le_%.1f_mb" % (tag, TARGET_BYTES[wh] / 1e6)] = \
                npu["bytes_per_result"] <= TARGET_BYTES[wh]
    return targets


def format_report(rep: Dict[str, Any]) -> str:
    """Human-readable tables: per size and mode the rates, then per size stages, CPU, latency, RSS, bytes."""
    lines = ["vessel-seg bench: %s, %d images x %d repeat(s) (medians), %s CPUs, Python %s" % (
        rep["images"]["source"], rep["images"]["count"], rep["repeats"], rep["machine"]["cpus"],
        rep["machine"]["python"])]
    lines.append("%-10s %-5s %-28s %5s %10s %10s %10s %9s %9s %8s" % (
        "size", "mode", "device", "exec", "exec img/s", "e2e img/s", "seq img/s", "e2e/exec", "db/seq", "CPU ms"))
    for entry in rep["sizes"]:
        for mode, m in entry["modes"].items():
            dev = m["device"]
            desc = ("emulated NPU %.1f ms/exec" % dev["device_time_ms"]) if mode == "npu" else "real network on CPU"
            lines.append("%-10s %-5s %-28s %5d %10.2f %10.2f %10.2f %8.2fx %8.2fx %8.0f" % (
                entry["size"], mode, desc, m.get("executes_per_image", 1), m["execute_only_ips"],
                m["end_to_end_ips"], m["sequential_ips"], m["e2e_vs_execute_only"],
                m["double_buffered_vs_sequential"], m["host_cpu_ms_per_image"]))
    stages = ("decode", "preprocess", "resize", "write_bin", "render", "measure")
    lines.append("")
    lines.append("%-10s %s %8s %15s %9s %12s %11s" % (
        "size", " ".join("%10s" % s for s in stages), "CPU ms", "latency med/p95", "peak RSS", "bytes/result",
        "frame bytes"))
    for entry in rep["sizes"]:
        st = entry.get("stages_ms", {})
        lat = entry.get("latency_s")
        lines.append("%-10s %s %8.0f %15s %7.0f M %12d %11d" % (
            entry["size"], " ".join("%10.1f" % st.get(s, 0.0) for s in stages), entry["host_cpu_ms_per_image"],
            ("%.3f/%.3f s" % (lat["median"], lat["p95"])) if lat else "-", entry["peak_rss_mb"],
            entry.get("bytes_per_result", 0), entry.get("frame_bytes", 0)))
    lines.append("(exec: executes per image (tiles of a high-resolution working size); stages: median host ms per "
                 "image in the first mode's end-to-end runs; CPU: all threads per image; "
                 "latency: file closed -> result.json, one frame at a time; peak RSS: a daemon process of its own)")
    lines.append("idle CPU %.2f%% of one core over %.0f s; load average at start %s" % (
        100.0 * rep["idle_cpu_fraction"], rep["idle_seconds"],
        " ".join("%.2f" % x for x in rep["machine"]["loadavg_at_start"])))
    for name, ok in rep["targets"].items():
        lines.append("target %-44s %s" % (name, "PASS" if ok else "MISS"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``vessel-seg bench``."""
    from vessel_seg.pipeline.cli.main import err, out

    try:
        rep = run_bench(args)
    except (ValueError, RuntimeError, OSError) as exc:
        err("vessel-seg bench: %s" % exc)
        return 1
    out(json.dumps(rep, indent=2, sort_keys=True) if args.json else format_report(rep))
    return 0
