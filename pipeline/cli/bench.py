"""``vessel-seg bench``: throughput, memory and idle CPU of the appliance, all measured in ONE run.

For each device mode (``npu`` = the simulator emulating an Ascend 310: ``device_time_ms`` per execute with the
CPU released, ``compute: surrogate``; ``cpu`` = the simulator running the real network on this CPU):

* execute-only: the device alone, back to back, double-buffered over two slots, on a ready model input;
* end-to-end: the real ``Daemon`` in-process on a temp data dir: files renamed into capture/ -> result.json
  written (steady-state rate between the first and the last result, plus the makespan);
* sequential: one thread does everything per image (decode ... render), synchronous execute: no overlap.

Plus peak RSS and the CPU use of an idle daemon (empty capture folder). Every rate is the median over
``--repeats``; ratios are computed from numbers measured in this same run.
Targets (emulated NPU): end-to-end >= 0.90x execute-only; double-buffered (end-to-end) >= 1.4x sequential;
idle CPU about 0.
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
TARGET_E2E_VS_EXEC = 0.90
TARGET_DB_VS_SEQ = 1.4
TARGET_IDLE_CPU = 0.02


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg bench``."""
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--images", metavar="DIR", help="benchmark on these images (default: synthetic 565x584 "
                   "DRIVE-sized fundus images)")
    p.add_argument("--count", type=int, default=24, help="images per measurement (default 24)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per measurement; medians reported (default 3)")
    p.add_argument("--device-time-ms", type=float, default=37.5,
                   help="emulated NPU time per execute in ms (default 37.5)")
    p.add_argument("--modes", default="npu,cpu",
                   help="comma-separated: npu (emulated NPU), cpu (real network on this CPU); default both")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="idle-CPU measurement length (default 5)")
    p.add_argument("--model", metavar="DIR", help="model bundle (default: the configured one)")
    p.add_argument("--config", metavar="FILE", help="configuration file (workers, queue sizes)")


# ---------------------------------------------------------------------------------------------- inputs
def _synthetic_images(count: int, size: Tuple[int, int]) -> List[Tuple[str, bytes]]:
    import cv2

    from vessel_seg.camera.synthetic import make_fundus

    out = []
    for i in range(count):
        rgb, _vessels, _fov = make_fundus(width=size[0], height=size[1], seed=1000 + i)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError("PNG encoding failed")
        out.append(("bench_%03d.png" % i, buf.tobytes()))
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
def measure_execute_only(cfg: Any, model_input: Any, count: int) -> float:
    """Images/s of the device alone: two slots kept busy with submit/collect on a ready input."""
    from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle, make_device

    device = make_device(load_model_bundle(cfg), cfg)
    device.start()
    try:
        device.infer(0, model_input)           # warm-up (model load, first-run allocations)
        t0 = time.perf_counter()
        device.submit(0, model_input)
        for i in range(1, count):
            device.submit(i % 2, model_input)
            device.collect((i - 1) % 2)
        device.collect((count - 1) % 2)
        return count / (time.perf_counter() - t0)
    finally:
        device.close()


def prepare_input(cfg: Any, image_path: Path) -> Any:
    """The model input for one image (for execute-only)."""
    from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle
    from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings, WorkItem

    bundle = load_model_bundle(cfg)
    stages = Stages(ModelInfo.from_bundle(bundle), StageSettings.from_config(cfg), image_path.parent)
    return stages.prepare(WorkItem(id="0" * 16, sha256="", source=image_path.name, path=image_path)).model_input


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


def measure_end_to_end(cfg: Any, images: List[Tuple[str, bytes]], timeout_s: float = 600.0) -> Dict[str, float]:
    """The real daemon in-process: drop files (rename into place) -> wait for every result.json."""
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
        return {"throughput_ips": steady or want / makespan, "makespan_s": makespan, "makespan_ips": want / makespan,
                "cpu_ms_per_image": cpu_per_image_ms}
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
def run_bench(args: argparse.Namespace) -> Dict[str, Any]:
    """Run every measurement and return the report."""
    from vessel_seg.pipeline.appliance.config import load_config

    base = load_config(args.config)
    count = max(3, int(args.count))
    repeats = max(1, int(args.repeats))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"npu", "cpu"}
    if unknown:
        raise ValueError("unknown mode(s): %s (choose npu, cpu)" % ", ".join(sorted(unknown)))
    if args.images:
        images = _folder_images(Path(args.images), count + 1)
        source = str(args.images)
    else:
        images = _synthetic_images(count + 1, DRIVE_SIZE)
        source = "synthetic %dx%d" % DRIVE_SIZE
    root = Path(tempfile.mkdtemp(prefix="vessel-seg-bench-"))
    report: Dict[str, Any] = {
        "images": {"source": source, "count": count}, "repeats": repeats, "modes": {},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    try:
        inputs = root / "inputs"
        inputs.mkdir()
        paths = []
        for name, data in images[1:]:
            (inputs / name).write_bytes(data)
            paths.append(inputs / name)
        for mode in modes:
            if mode == "npu":
                sim = {"compute": "surrogate", "device_time_ms": float(args.device_time_ms), "precision": "fp16"}
            else:
                sim = {"compute": "real", "device_time_ms": None, "precision": "fp32"}
            cfg = _bench_config(base, root / "unused", sim, args.model)
            model_input = prepare_input(cfg, paths[0])
            runs: Dict[str, List[float]] = {"execute_only": [], "end_to_end": [], "end_to_end_makespan": [],
                                            "sequential": [], "host_cpu_ms_per_image": []}
            stage_ms: Dict[str, List[float]] = {}
            for r in range(repeats):
                log.info("bench %s: repeat %d/%d", mode, r + 1, repeats)
                runs["execute_only"].append(measure_execute_only(cfg, model_input, count))
                e2e_cfg = _bench_config(base, root / ("%s-e2e-%d" % (mode, r)), sim, args.model)
                e2e = measure_end_to_end(e2e_cfg, images)
                runs["end_to_end"].append(e2e["throughput_ips"])
                runs["end_to_end_makespan"].append(e2e["makespan_ips"])
                runs["host_cpu_ms_per_image"].append(e2e["cpu_ms_per_image"])
                seq_out = root / ("%s-seq-%d" % (mode, r))
                runs["sequential"].append(measure_sequential(cfg, paths, seq_out, stage_ms))
                shutil.rmtree(str(seq_out), ignore_errors=True)
                shutil.rmtree(str(root / ("%s-e2e-%d" % (mode, r))), ignore_errors=True)
            med = {k: _median(v) for k, v in runs.items()}
            entry = {
                "device": sim,
                "execute_only_ips": round(med["execute_only"], 3),
                "end_to_end_ips": round(med["end_to_end"], 3),
                "end_to_end_makespan_ips": round(med["end_to_end_makespan"], 3),
                "sequential_ips": round(med["sequential"], 3),
                "host_cpu_ms_per_image": round(med["host_cpu_ms_per_image"], 1),
                "e2e_vs_execute_only": round(med["end_to_end"] / med["execute_only"], 3) if med["execute_only"] else 0,
                "double_buffered_vs_sequential": round(med["end_to_end"] / med["sequential"], 3)
                if med["sequential"] else 0,
                "runs": {k: [round(x, 3) for x in v] for k, v in runs.items()},
                "sequential_stage_median_ms": {k: round(_median(v), 2) for k, v in sorted(stage_ms.items())},
            }
            report["modes"][mode] = entry
        idle_cfg = _bench_config(base, root / "idle", {"compute": "surrogate", "device_time_ms": 1.0}, args.model)
        report["idle_cpu_fraction"] = round(measure_idle_cpu(idle_cfg, float(args.idle_seconds)), 4)
        report["idle_seconds"] = float(args.idle_seconds)
        report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        shutil.rmtree(str(root), ignore_errors=True)
    targets: Dict[str, Any] = {"idle_cpu_about_zero": report["idle_cpu_fraction"] <= TARGET_IDLE_CPU}
    if "npu" in report["modes"]:
        npu = report["modes"]["npu"]
        targets["e2e_ge_0.90x_execute_only"] = npu["e2e_vs_execute_only"] >= TARGET_E2E_VS_EXEC
        targets["double_buffered_ge_1.4x_sequential"] = npu["double_buffered_vs_sequential"] >= TARGET_DB_VS_SEQ
    report["targets"] = targets
    return report


def format_report(rep: Dict[str, Any]) -> str:
    """Human-readable table."""
    lines = ["vessel-seg bench: %s images x %d, %d repeat(s) (medians), %s CPUs, Python %s" % (
        rep["images"]["source"], rep["images"]["count"], rep["repeats"], rep["machine"]["cpus"],
        rep["machine"]["python"])]
    lines.append("%-5s %-28s %10s %10s %10s %9s %9s" % ("mode", "device", "exec img/s", "e2e img/s", "seq img/s",
                                                     "e2e/exec", "db/seq"))
    for mode, m in rep["modes"].items():
        dev = m["device"]
        desc = ("emulated NPU %.1f ms/exec" % dev["device_time_ms"]) if mode == "npu" else "real network on CPU"
        lines.append("%-5s %-28s %10.2f %10.2f %10.2f %8.2fx %8.2fx" % (
            mode, desc, m["execute_only_ips"], m["end_to_end_ips"], m["sequential_ips"], m["e2e_vs_execute_only"],
            m["double_buffered_vs_sequential"]))
    for mode, m in rep["modes"].items():
        lines.append("%s: end-to-end host CPU %.0f ms per image (all threads)" % (mode, m["host_cpu_ms_per_image"]))
        stages = m.get("sequential_stage_median_ms") or {}
        if stages:
            lines.append("%s: sequential median ms per stage: %s" % (mode, ", ".join(
                "%s %.1f" % (k, v) for k, v in stages.items())))
    lines.append("peak RSS %.0f MiB; idle CPU %.2f%% of one core over %.0f s; load average at start %s" % (
        rep["peak_rss_mb"], 100.0 * rep["idle_cpu_fraction"], rep["idle_seconds"],
        " ".join("%.2f" % x for x in rep["machine"]["loadavg_at_start"])))
    for name, ok in rep["targets"].items():
        lines.append("target %-36s %s" % (name, "PASS" if ok else "MISS"))
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
