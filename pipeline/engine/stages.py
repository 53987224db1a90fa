"""The host-side pipeline stages, one job each, shared by the daemon, ``segment`` and ``bench``.

    decode/validate -> preprocess (FOV, colour) -> resize (model input: NV12 for AIPP bundles, else NCHW
    float; one per tile when a large FOV gets the bundle's high-resolution working size) -> [execute on the
    device: scheduler / SequentialRunner] -> write probability.bin -> render PNGs + result.json

Each stage records its wall time in ``job.timings_ms`` under the names used in result.json.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from vessel_seg import __version__
from vessel_seg.pipeline.engine.binfile import probability_to_bytes
from vessel_seg.pipeline.engine.decode import DecodedImage, decode_image
from vessel_seg.pipeline.engine.dicom_decode import decode_input
from vessel_seg.pipeline.engine.fullsize import encode_fov_png, encode_probability_png, full_probability, quantised
from vessel_seg.pipeline.engine.morphometry import VERSION as MORPHOMETRY_VERSION
from vessel_seg.pipeline.engine.morphometry import in_original_pixels, measure_probability
from vessel_seg.pipeline.engine.render import render_outputs, render_summary
from vessel_seg.pipeline.shared.preprocess import (
    Geometry,
    Preprocessed,
    PreprocessParams,
    fov_from_small,
    preprocess,
    restore_to_original,
    rgb_to_nchw_float,
    rgb_to_nv12,
)
from vessel_seg.pipeline.shared.tiling import TileLayout
from vessel_seg.pipeline.store.results import begin_result, finish_result, write_result_file
from vessel_seg.vocabulary import (
    DEFERRABLE_RESULT_FILES,
    FOV_PNG,
    PROBABILITY_BIN,
    PROBABILITY_HIRES_PNG,
    STAGE_NAMES,
    TOTAL,
    result_id,
    sha256_file,
    utc_iso,
)

log = logging.getLogger(__name__)


@dataclass
class WorkItem:
    """An input waiting to be processed (what the journal knows about it)."""

    id: str
    sha256: str
    source: str            # original file name, for result.json and the page
    path: Path             # where the file is now
    size: int = 0
    frame: Optional[int] = None        # 0-based frame of a multi-frame DICOM file (None: the whole file)
    frames: int = 1                    # frames in that file
    file_sha256: Optional[str] = None  # the file's hash when ``sha256`` is a frame's derived key
    identity: Dict[str, str] = field(default_factory=dict)   # patient, eye, visit (pipeline.engine.identity)

    @classmethod
    def for_file(cls, path: Path, sha256: Optional[str] = None) -> "WorkItem":
        """The item of a file as it is now (its content hash computed unless given)."""
        path = Path(path)
        sha = sha256 or sha256_file(path)
        return cls(id=result_id(sha), sha256=sha, source=path.name, path=path, size=path.stat().st_size)


@dataclass
class Job:
    """An item travelling through the stages, with everything the later stages need."""

    item: WorkItem
    started: float = field(default_factory=time.perf_counter)
    timings_ms: Dict[str, float] = field(default_factory=dict)
    decoded: Optional[DecodedImage] = None
    pre: Optional[Preprocessed] = None
    #: the host tensors, one per execute: one, or the tiles of a high-resolution working size
    model_inputs: List[np.ndarray] = field(default_factory=list)
    tile_outputs: List[np.ndarray] = field(default_factory=list)   # collected so far (scheduler)
    #: the model-space probability (working size square), the tiles' outputs blended
    prob512: Optional[np.ndarray] = None
    result_path: Optional[Path] = None

    @property
    def model_input(self) -> np.ndarray:
        """The first (for a single-tile job, the only) host tensor."""
        return self.model_inputs[0]

    @property
    def full_geometry(self) -> Geometry:
        """The preprocessing geometry on the full-size image (the decode may have been reduced)."""
        assert self.decoded is not None and self.pre is not None
        if self.decoded.scale == 1:
            return self.pre.geometry
        w, h = self.decoded.full_size
        return self.pre.geometry.scaled(self.decoded.scale, w, h)

    def full_fov(self) -> np.ndarray:
        """The field of view at the full size (computed when the decode was reduced)."""
        assert self.decoded is not None and self.pre is not None
        if self.decoded.scale == 1 or self.pre.fov_small is None:
            return self.pre.fov_original
        w, h = self.decoded.full_size
        return fov_from_small(self.pre.fov_small, w, h)

    def full_probability(self) -> np.ndarray:
        """The probability at the full size, 0 outside the FOV (what probability.png shows)."""
        assert self.prob512 is not None and self.pre is not None
        g = self.full_geometry
        prob512 = np.asarray(self.prob512, dtype=np.float32).reshape(g.size, g.size)
        return restore_to_original(prob512, g, self.full_fov())


@dataclass
class ModelInfo:
    """What the stages need to know about the model and the runtime executing it."""

    name: str
    version: str
    nv12: bool                                  # True: the bundle has AIPP and takes NV12 uint8
    host_input_shape: Tuple[int, ...]
    params: PreprocessParams
    threshold: float                            # the bundle's threshold
    runtime: str = "sim"
    precision: str = "fp32"

    @classmethod
    def from_bundle(cls, bundle: Any, runtime: str = "sim", precision: str = "fp32") -> "ModelInfo":
        """Derive from a ``device.ModelBundle``."""
        return cls(name=str(bundle.name), version=str(bundle.version), nv12=bundle.aipp is not None,
                   host_input_shape=tuple(bundle.host_input_shape),
                   params=PreprocessParams.from_mapping(bundle.preprocess), threshold=float(bundle.threshold),
                   runtime=runtime, precision=precision)


@dataclass
class StageSettings:
    """Settings a SIGHUP may change while running."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40000000
    threshold: Optional[float] = None           # None = the model's threshold
    overlay_alpha: float = 0.6
    thumb_size: int = 256
    #: "eager": original-size PNGs and input.jpg written with the result; "on_request": produced when asked
    full_size_images: str = "eager"
    #: decode JPEGs reduced (DCT scaling) while the field of view keeps the model's size across
    reduced_decode: bool = True
    #: the bundle's high-resolution working size (tiles) for large fields of view; False: one execute always
    high_resolution: bool = True
    #: vessel morphometry in result.json (the measure stage); False: none, the CPU it costs saved
    morphometry: bool = True

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "StageSettings":
        """From a validated ``Config``."""
        return cls(max_bytes=config["ingest"]["max_bytes"], max_pixels=config["ingest"]["max_pixels"],
                   threshold=config["model"]["threshold"], overlay_alpha=config["pipeline"]["overlay_alpha"],
                   thumb_size=config["pipeline"]["thumb_size"],
                   full_size_images=config["pipeline"].get("full_size_images", "on_request"),
                   high_resolution=bool(config["model"].get("high_resolution", True)),
                   morphometry=bool(config["pipeline"].get("morphometry", True)))


class _Timer(object):
    def __init__(self, job: Job, name: str) -> None:
        self.job, self.name = job, name

    def __enter__(self) -> "_Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.job.timings_ms[self.name] = (time.perf_counter() - self.t0) * 1000.0


class Stages(object):
    """The host stages bound to one model and a result folder root."""

    def __init__(self, model: ModelInfo, settings: StageSettings, results_dir: Path, name_by: str = "id") -> None:
        """``name_by``: result folders named by the content id (daemon) or by the input's stem (segment)."""
        if name_by not in ("id", "stem"):
            raise ValueError("name_by must be 'id' or 'stem'")
        if not settings.high_resolution and model.params.hires_size:
            model = dataclasses.replace(model, params=dataclasses.replace(model.params, hires_size=0))
        self.model = model
        self.settings = settings
        self.results_dir = Path(results_dir)
        self.name_by = name_by

    @property
    def threshold(self) -> float:
        """The effective binarisation threshold at the model's size."""
        t = self.settings.threshold
        return self.model.threshold if t is None else float(t)

    def threshold_for(self, job: Job) -> float:
        """The binarisation threshold of this job: the configured one, else the bundle's for its working size."""
        assert job.pre is not None
        if self.settings.threshold is None and job.pre.geometry.size != self.model.params.size \
                and self.model.params.hires_threshold:
            return float(self.model.params.hires_threshold)
        return self.threshold

    # -- host pre-processing
    def decode(self, job: Job, max_scale: int = 8) -> None:
        """Decode/validate (raises ``DecodeError``: permanent, quarantine); a JPEG reduced while its shorter
        side keeps the model's working size for a frame that size (at most ``max_scale`` times)."""
        params = self.model.params
        min_side: Any = 0
        if self.settings.reduced_decode:
            def min_side(w: int, h: int) -> int:
                return params.working_size(min(w, h))
        with _Timer(job, "decode"):
            job.decoded = decode_input(job.item.path, self.settings.max_bytes, self.settings.max_pixels,
                                       job.item.frame, min_side=min_side, max_scale=max_scale)

    def preprocess(self, job: Job) -> None:
        """FOV detection, square crop + resize to the model size, colour normalisation (lead's module).

        When a reduced decode leaves the FOV's box smaller than the model input (a small FOV in a large
        frame), the image is decoded again, finer, so the model never sees an upscaled retina.
        """
        assert job.decoded is not None
        t0 = time.perf_counter()
        job.pre = preprocess(job.decoded.rgb, self.model.params, job.decoded.scale)
        while job.decoded.scale > 1 and job.pre.geometry.side < job.pre.geometry.size:
            finer = job.decoded.scale // 2
            while finer > 1 and job.pre.geometry.side * job.decoded.scale < job.pre.geometry.size * finer:
                finer //= 2
            decode_ms = job.timings_ms.get("decode", 0.0)
            t_decode = time.perf_counter()
            self.decode(job, max_scale=finer)
            job.timings_ms["decode"] = decode_ms + job.timings_ms["decode"]
            t0 += time.perf_counter() - t_decode
            job.pre = preprocess(job.decoded.rgb, self.model.params, job.decoded.scale)
        total = (time.perf_counter() - t0) * 1000.0
        resize_ms = float(job.pre.timings_ms.get("resize", 0.0))
        job.timings_ms["preprocess"] = max(0.0, total - resize_ms)
        job.timings_ms["resize"] = resize_ms

    def tiles(self, job: Job) -> TileLayout:
        """The tiles of this job's model-space image (one tile unless the working size is larger)."""
        assert job.pre is not None
        return self.model.params.tile_layout(job.pre.geometry.size)

    def resize(self, job: Job) -> None:
        """The host tensors, one per tile: NV12 uint8 (H*3/2, W) for AIPP bundles, else float32 NCHW in [0, 1]."""
        assert job.pre is not None
        t0 = time.perf_counter()
        convert = rgb_to_nv12 if self.model.nv12 else rgb_to_nchw_float
        inputs = []
        for tile in self.tiles(job).split(job.pre.model_rgb):
            arr = convert(tile)
            if tuple(arr.shape) != tuple(self.model.host_input_shape):
                raise ValueError("model input has shape %s, the bundle expects %s"
                                 % (arr.shape, self.model.host_input_shape))
            inputs.append(np.ascontiguousarray(arr))
        job.model_inputs = inputs
        job.timings_ms["resize"] = job.timings_ms.get("resize", 0.0) + (time.perf_counter() - t0) * 1000.0

    def stitch(self, job: Job, outputs: Sequence[np.ndarray]) -> None:
        """The tiles' outputs (in ``model_inputs`` order) blended into the model-space probability."""
        job.prob512 = self.tiles(job).stitch([np.asarray(o, dtype=np.float32) for o in outputs])

    def run_model(self, job: Job, infer: Callable[[np.ndarray], np.ndarray]) -> None:
        """Execute every tile with ``infer`` (host tensor -> output), one after the other, and stitch."""
        self.stitch(job, [infer(x) for x in job.model_inputs])

    def prepare(self, item: WorkItem) -> Job:
        """decode -> preprocess -> resize; the job is then ready for the device."""
        job = Job(item=item)
        self.decode(job)
        self.preprocess(job)
        self.resize(job)
        return job

    # -- host post-processing
    def result_dir(self, job: Job) -> Path:
        """The folder this job's result goes to."""
        name = job.item.id if self.name_by == "id" else Path(job.item.source).stem
        return self.results_dir / name

    def write_bin(self, job: Job) -> None:
        """probability.bin: the raw 512x512 float32 LE output, first file of the result."""
        assert job.prob512 is not None
        with _Timer(job, "write_bin"):
            out_dir = self.result_dir(job)
            begin_result(out_dir)
            size = self.model.params.size
            prob = np.asarray(job.prob512, dtype=np.float32)
            if prob.shape[0] != size:               # a high-resolution working size: the model-size map too
                write_result_file(out_dir, PROBABILITY_HIRES_PNG, encode_probability_png(prob))
                prob = cv2.resize(prob, (size, size), interpolation=cv2.INTER_AREA)
            write_result_file(out_dir, PROBABILITY_BIN, probability_to_bytes(prob))

    def render(self, job: Job) -> Path:
        """Render and write the images, then result.json (last).

        ``full_size_images: on_request``: only thumb.jpg (and the numbers) from the image at its working
        resolution, plus fov.png; the original-size images are produced when first asked for
        (``engine.fullsize``). ``eager``: every image at the original size now, as ever.
        """
        assert job.prob512 is not None and job.pre is not None and job.decoded is not None
        threshold = self.threshold_for(job)
        alpha = self.settings.overlay_alpha
        deferred: Tuple[str, ...] = ()
        with _Timer(job, "render"):
            prob512 = np.asarray(job.prob512, dtype=np.float32)
            if prob512.shape[0] != self.model.params.size:
                # a tiled result's images come from probability_hires.png's numbers, whenever they are made
                prob512 = quantised(prob512)
            # the probability at the decoded (working) resolution: the original one unless the decode was reduced
            prob_work = restore_to_original(prob512, job.pre.geometry, job.pre.fov_original)
            if self.settings.full_size_images == "on_request":
                (w, h), (ws, hs) = job.decoded.full_size, job.decoded.size
                rendered = render_summary(job.decoded.rgb, prob_work, job.pre.fov_original, threshold, alpha,
                                          self.settings.thumb_size, pixel_scale=float(w * h) / float(ws * hs))
                deferred = DEFERRABLE_RESULT_FILES
            elif job.decoded.scale == 1:
                rendered = render_outputs(job.decoded.rgb, prob_work, job.pre.fov_original, threshold, alpha,
                                          self.settings.thumb_size)
            else:
                full = decode_image(job.item.path, self.settings.max_bytes, self.settings.max_pixels)
                prob_full, fov_full = full_probability(prob512, job.full_geometry, job.pre.fov_small)
                rendered = render_outputs(full.rgb, prob_full, fov_full, threshold, alpha, self.settings.thumb_size)
                del full, prob_full, fov_full
            out_dir = self.result_dir(job)
            for name in deferred:           # made on request from an earlier run of this result: stale now
                try:
                    (out_dir / name).unlink()
                except FileNotFoundError:
                    pass
            files = dict(rendered.files)
            if job.pre.fov_small is not None:
                files[FOV_PNG] = encode_fov_png(job.pre.fov_small)
            for name in sorted(files):
                write_result_file(out_dir, name, files[name])
            meta = self.result_meta(job, rendered.vessel_density_fov, rendered.fov_fraction, threshold)
            meta["vessel_pixels"] = rendered.vessel_pixels
            meta["overlay_alpha"] = float(alpha)
            meta["measured_at"] = list(job.decoded.size if deferred else job.decoded.full_size)
        if self.settings.morphometry:
            meta["morphometry"] = self.measure(job, prob_work, threshold)
            meta["timings_ms"]["measure"] = round(job.timings_ms["measure"], 3)
        # the render time is final only now; result.json carries it
        job.timings_ms[TOTAL] = (time.perf_counter() - job.started) * 1000.0
        meta["timings_ms"]["render"] = round(job.timings_ms["render"], 3)
        meta["timings_ms"][TOTAL] = round(job.timings_ms[TOTAL], 3)
        job.result_path = finish_result(out_dir, meta, deferred)
        return job.result_path

    def measure(self, job: Job, prob_work: np.ndarray, threshold: float) -> Dict[str, Any]:
        """Vessel morphometry of the mask (docs/MORPHOMETRY.md) at the decoded resolution, its pixel values
        given in the original image's pixels, timed as ``measure``. A failure is logged and recorded as
        ``{"error": ...}``: a measurement never costs the segmentation result."""
        assert job.pre is not None and job.decoded is not None
        with _Timer(job, "measure"):
            try:
                found = measure_probability(prob_work, job.pre.fov_original, threshold, job.decoded.rgb)
                return in_original_pixels(found, job.decoded.full_size[0] / float(job.decoded.size[0]))
            except Exception as exc:
                log.exception("morphometry of %s failed", job.item.source)
                return {"version": MORPHOMETRY_VERSION, "error": "%s: %s" % (type(exc).__name__, exc)}

    def finish(self, job: Job) -> Path:
        """write_bin + render; safe to call again after a failure (e.g. disk full)."""
        self.write_bin(job)
        return self.render(job)

    def result_meta(self, job: Job, density: float, fov_fraction: float, threshold: float) -> Dict[str, Any]:
        """The result.json content (ARCHITECTURE.md), files added by ``finish_result``."""
        assert job.decoded is not None and job.pre is not None
        w, h = job.decoded.full_size
        size = self.model.params.size
        layout = self.tiles(job)
        timings = {k: round(float(job.timings_ms.get(k, 0.0)), 3) for k in STAGE_NAMES}
        timings[TOTAL] = round(float(job.timings_ms.get(TOTAL, 0.0)), 3)
        return {
            "id": job.item.id,
            "source": job.item.source,
            "sha256": job.item.sha256,
            "created": utc_iso(),
            "original_size": [w, h],
            "model_input_size": [size, size],
            "working_size": [layout.work, layout.work],
            "tiles": {"count": layout.count, "origins": [list(o) for o in layout.origins()]},
            "model": {"name": self.model.name, "version": self.model.version},
            "runtime": self.model.runtime,
            "precision": self.model.precision,
            "threshold": float(threshold),
            "vessel_density_fov": round(float(density), 6),
            "fov_fraction": round(float(fov_fraction), 6),
            "timings_ms": timings,
            "input": {"format": job.decoded.format, "mode": job.decoded.mode, "notes": list(job.decoded.notes),
                      "bytes": job.item.size, "decode_scale": job.decoded.scale},
            "geometry": job.full_geometry.to_dict(),
            "pipeline_version": __version__,
            **_identity_meta(job.item),
        }


def _identity_meta(item: WorkItem) -> Dict[str, Any]:
    """result.json's ``identity`` (when known) and ``frame`` (for a frame of a multi-frame file)."""
    out: Dict[str, Any] = {}
    if item.identity:
        out["identity"] = dict(item.identity)
    if item.frame is not None:
        out["frame"] = {"index": item.frame, "count": item.frames, "file_sha256": item.file_sha256}
    return out


class SequentialRunner(object):
    """No double buffering: one thread decodes, preprocesses, executes (synchronously) and writes.

    Used by ``vessel-seg segment`` and as the baseline of ``vessel-seg bench``.
    """

    def __init__(self, stages: Stages, device: Any) -> None:
        self.stages = stages
        self.device = device

    def execute(self, job: Job) -> None:
        """Synchronous execute(s) on slot 0."""
        with _Timer(job, "execute"):
            self.stages.run_model(job, lambda x: self.device.infer(0, x))

    def process(self, item: WorkItem) -> Job:
        """Run every stage for one item; raises ``DecodeError`` for bad input, device errors as they come."""
        job = self.stages.prepare(item)
        self.execute(job)
        self.stages.finish(job)
        return job
