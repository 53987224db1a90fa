"""Camera simulator: writes fundus images into a capture folder the way real cameras do.

``vessel-seg camera-sim --to CAPTURE_DIR`` (and ``vessel-seg run --demo``) use :class:`CameraSimulator`.
Images are synthetic (:mod:`camera.synthetic`, deterministic for a seed) or taken from ``--from DIR``.
Three write modes mimic the cameras the ingest must cope with:

* ``rename``: write ``<name>.tmp``, fsync, then ``os.replace`` to the final name (the final name only
  ever appears complete);
* ``chunked``: write the final name directly in slow chunks (a camera streaming over USB/SMB);
* ``copy``: a plain ``shutil.copyfile`` (synthetic images: one plain write of the encoded bytes).

File names are unique: ``cam_<UTC timestamp>_<counter><ext>`` (``..._<source stem><ext>`` with ``--from``).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple, Union

from vessel_seg.camera.synthetic import SUPPORTED_WRITE_EXTENSIONS, encode_image, make_fundus
from vessel_seg.vocabulary import IMAGE_EXTENSIONS, utc_stamp

__all__ = ["CameraSimulator", "MODES", "SOURCE_EXTENSIONS", "add_camera_sim_arguments", "run_camera_sim",
           "parse_size"]

log = logging.getLogger(__name__)

#: Write modes of the simulator.
MODES = ("rename", "chunked", "copy")

#: Extensions of files taken from a source folder (``--from``).
SOURCE_EXTENSIONS = IMAGE_EXTENSIONS

_FORMATS = {"png": ".png", "jpg": ".jpg", "tif": ".tif"}


class CameraSimulator(object):
    """Writes images into ``to_dir`` at ``rate_per_s`` until ``count`` files are written or it is stopped.

    Args:
        to_dir: the capture folder (created if missing).
        source_dir: folder of image files to replay (sorted by name, cycled when ``count`` is larger);
            None = synthetic fundus images.
        rate_per_s: files per second (> 0); the schedule does not drift with write time.
        count: files to write; None = forever (synthetic) or each source file once (``source_dir``).
        mode: ``rename``, ``chunked`` or ``copy`` (see the module docstring).
        chunk_bytes, chunk_delay_s: chunk size and pause between chunks in ``chunked`` mode.
        seed: synthetic image ``i`` uses seed ``seed + i``.
        duplicate_every: when N > 0, every N-th file repeats the previous file's bytes under a new name
            (exercises content deduplication).
        extension: format of synthetic images (``.png``, ``.jpg``, ``.tif``).
        size: ``(width, height)`` of synthetic images.
    """

    def __init__(
        self,
        to_dir: Union[str, "os.PathLike[str]"],
        source_dir: Union[str, "os.PathLike[str]", None] = None,
        rate_per_s: float = 1.0,
        count: Optional[int] = None,
        mode: str = "rename",
        chunk_bytes: int = 16384,
        chunk_delay_s: float = 0.05,
        seed: int = 0,
        duplicate_every: int = 0,
        extension: str = ".png",
        size: Tuple[int, int] = (565, 584),
    ) -> None:
        if mode not in MODES:
            raise ValueError("mode must be one of %s, got %r" % (", ".join(MODES), mode))
        if not float(rate_per_s) > 0:
            raise ValueError("rate_per_s must be > 0, got %r" % (rate_per_s,))
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError("count must be a non-negative int or None, got %r" % (count,))
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be a positive int, got %r" % (chunk_bytes,))
        if float(chunk_delay_s) < 0:
            raise ValueError("chunk_delay_s must be >= 0, got %r" % (chunk_delay_s,))
        if isinstance(duplicate_every, bool) or not isinstance(duplicate_every, int) or duplicate_every < 0:
            raise ValueError("duplicate_every must be a non-negative int, got %r" % (duplicate_every,))
        ext = extension.lower() if extension.startswith(".") else "." + extension.lower()
        if ext not in SUPPORTED_WRITE_EXTENSIONS:
            raise ValueError("extension must be one of %s, got %r" % (", ".join(SUPPORTED_WRITE_EXTENSIONS),
                                                                      extension))
        if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 32 for v in size):
            raise ValueError("size must be (width, height) with ints >= 32, got %r" % (size,))
        self.to_dir = Path(to_dir)
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self.rate_per_s = float(rate_per_s)
        self.count = count
        self.mode = mode
        self.chunk_bytes = chunk_bytes
        self.chunk_delay_s = float(chunk_delay_s)
        self.seed = int(seed)
        self.duplicate_every = duplicate_every
        self.extension = ext
        self.size = (int(size[0]), int(size[1]))
        self.sources = self._list_sources() if self.source_dir is not None else []  # type: List[Path]
        self.written = []  # type: List[Path]
        self._counter = 0

    # ------------------------------------------------------------------ sources
    def _list_sources(self) -> List[Path]:
        assert self.source_dir is not None
        if not self.source_dir.is_dir():
            raise ValueError("source folder %s does not exist or is not a folder" % self.source_dir)
        files = sorted(p for p in self.source_dir.iterdir()
                       if p.suffix.lower() in SOURCE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
        if not files:
            raise ValueError("no image files (%s) in %s" % (", ".join(SOURCE_EXTENSIONS), self.source_dir))
        return files

    def total(self) -> Optional[int]:
        """How many files :meth:`run` writes when not stopped (None = forever)."""
        if self.count is not None:
            return self.count
        return len(self.sources) if self.source_dir is not None else None

    def _image(self, index: int) -> Tuple[Optional[Path], bytes, str]:
        """(source path or None, bytes, name suffix) of the index-th image."""
        if self.source_dir is not None:
            src = self.sources[index % len(self.sources)]
            return src, src.read_bytes(), "_" + src.stem + src.suffix.lower()
        rgb, _vessels, _fov = make_fundus(self.size[0], self.size[1], seed=self.seed + index)
        return None, encode_image(rgb, self.extension), self.extension

    def _unique_name(self, suffix: str) -> Path:
        while True:
            self._counter += 1
            now = time.time()
            stamp = utc_stamp(now) + "%03d" % int((now % 1) * 1000)
            name = "cam_%s_%06d%s" % (stamp, self._counter, suffix)
            path = self.to_dir / name
            if not path.exists() and not Path(str(path) + ".tmp").exists():
                return path

    # ------------------------------------------------------------------ writing
    def run(self, stop_event: Optional[threading.Event] = None) -> int:
        """Write files until done or ``stop_event`` is set; returns the number of complete files written."""
        stop = stop_event if stop_event is not None else threading.Event()
        self.to_dir.mkdir(parents=True, exist_ok=True)
        total = self.total()
        interval = 1.0 / self.rate_per_s
        start = time.monotonic()
        written = 0
        previous = None  # type: Optional[Tuple[Optional[Path], bytes, str]]
        index = 0
        log.info("camera simulator: %s images into %s (%s, %.2f/s)",
                 "endless" if total is None else str(total), self.to_dir, self.mode, self.rate_per_s)
        while (total is None or written < total) and not stop.is_set():
            due = start + written * interval
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            if previous is not None and self.duplicate_every and (written + 1) % self.duplicate_every == 0:
                image = previous
            else:
                image = self._image(index)
                index += 1
            src, data, suffix = image
            target = self._unique_name(suffix)
            self._write(target, src, data, stop)
            self.written.append(target)
            previous = image
            written += 1
            log.debug("camera simulator wrote %s (%d bytes)", target.name, len(data))
        log.info("camera simulator: %d file(s) written", written)
        return written

    def _write(self, target: Path, src: Optional[Path], data: bytes, stop: threading.Event) -> None:
        if self.mode == "rename":
            tmp = Path(str(target) + ".tmp")
            try:
                with open(str(tmp), "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(str(tmp), str(target))
            except BaseException:
                _remove_quietly(tmp)
                raise
        elif self.mode == "chunked":
            with open(str(target), "wb") as fh:
                for offset in range(0, len(data), self.chunk_bytes):
                    fh.write(data[offset:offset + self.chunk_bytes])
                    fh.flush()
                    more = offset + self.chunk_bytes < len(data)
                    if more and self.chunk_delay_s > 0 and not stop.is_set():
                        stop.wait(self.chunk_delay_s)   # once stopped, the file is finished without pauses
        else:
            if src is not None:
                shutil.copyfile(str(src), str(target))
            else:
                with open(str(target), "wb") as fh:
                    fh.write(data)


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(str(path))
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- CLI
def parse_size(text: str) -> Tuple[int, int]:
    """``"565x584"`` -> ``(565, 584)`` (argparse type)."""
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        w, h = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError("size must look like WIDTHxHEIGHT, e.g. 565x584, got %r" % text)
    if w < 32 or h < 32 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError("width and height must be in [32, 8192], got %r" % text)
    return w, h


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0, got %r" % text)
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0, got %r" % text)
    return value


def _int_at_least(minimum: int):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not an integer: %r" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("must be >= %d, got %r" % (minimum, text))
        return value
    return parse


def add_camera_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vessel-seg camera-sim`` options to ``parser``."""
    parser.add_argument("--to", required=True, metavar="CAPTURE_DIR", help="capture folder to write into")
    parser.add_argument("--from", dest="source_dir", metavar="DIR", default=None,
                        help="replay the image files of DIR instead of synthetic images")
    parser.add_argument("--rate", type=_positive_float, default=1.0, help="images per second (default 1)")
    parser.add_argument("--count", type=_int_at_least(0), default=None,
                        help="number of images (default: forever, or each --from file once)")
    parser.add_argument("--mode", choices=MODES, default="rename",
                        help="rename: tmp + rename (default); chunked: slow chunks; copy: plain copy")
    parser.add_argument("--chunk-bytes", type=_int_at_least(1), default=16384, help="chunk size for --mode chunked")
    parser.add_argument("--chunk-delay", type=_non_negative_float, default=0.05,
                        help="seconds between chunks for --mode chunked")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first synthetic image")
    parser.add_argument("--size", type=parse_size, default=(565, 584), metavar="WxH",
                        help="synthetic image size (default 565x584)")
    parser.add_argument("--format", choices=sorted(_FORMATS), default="png", help="synthetic image format")
    parser.add_argument("--duplicate-every", type=_int_at_least(0), default=0, metavar="N",
                        help="every N-th image repeats the previous one's bytes (dedup testing)")


def run_camera_sim(args: argparse.Namespace) -> int:
    """Run the simulator from parsed arguments; exit status 0 (done or interrupted), 2 (bad arguments), 1 (error)."""
    try:
        sim = CameraSimulator(args.to, source_dir=args.source_dir, rate_per_s=args.rate, count=args.count,
                              mode=args.mode, chunk_bytes=args.chunk_bytes, chunk_delay_s=args.chunk_delay,
                              seed=args.seed, duplicate_every=getattr(args, "duplicate_every", 0),
                              extension=_FORMATS[args.format], size=tuple(args.size))
    except ValueError as exc:
        log.error("camera-sim: %s", exc)
        return 2
    stop = threading.Event()
    try:
        sim.run(stop)
    except KeyboardInterrupt:
        stop.set()
        log.info("camera-sim interrupted after %d file(s)", len(sim.written))
    except OSError as exc:
        log.error("camera-sim: cannot write into %s: %s", args.to, exc)
        return 1
    return 0
