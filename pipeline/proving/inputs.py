"""Inputs for ``vessel-seg stress``: load plans written by three kinds of camera, and a hostile corpus.

Load: :func:`make_load_plan` makes N files (synthetic fundus PNG/JPEG, a share of them repeating earlier
content under new names); :class:`Writers` delivers them from three concurrent writers: slow chunked writes of
the final name, temp name + rename, and plain copies from a staging folder.

Hostile: :func:`build_hostile_corpus` drops damaged, unusual and dangerous files into a capture folder and says
for each what must happen to it (a result, quarantine, ignored, rejected), see :class:`HostileCase`.
"""
from __future__ import annotations

import io
import logging
import os
import random
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vessel_seg.vocabulary import result_id, sha256_bytes

log = logging.getLogger(__name__)

WRITER_KINDS = ("chunked", "rename", "copy")


# ------------------------------------------------------------------------------------------------ images
def fundus_rgb(seed: int, size: Tuple[int, int] = (256, 256)) -> np.ndarray:
    """A synthetic fundus image (RGB uint8), deterministic for ``seed``."""
    from vessel_seg.camera.synthetic import make_fundus

    rgb, _vessels, _fov = make_fundus(width=size[0], height=size[1], seed=seed)
    return rgb


def encode(rgb: np.ndarray, fmt: str, **params: object) -> bytes:
    """Encode with Pillow (``fmt``: PNG, JPEG, TIFF, BMP, PPM, WEBP, GIF)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **params)
    return buf.getvalue()


def fundus_bytes(seed: int, ext: str = ".png", size: Tuple[int, int] = (256, 256)) -> bytes:
    """Encoded synthetic fundus (fast PNG compression, JPEG quality 90)."""
    rgb = fundus_rgb(seed, size)
    if ext in (".jpg", ".jpeg"):
        return encode(rgb, "JPEG", quality=90)
    return encode(rgb, "PNG", compress_level=1)


# ------------------------------------------------------------------------------------------------ load
@dataclass
class Drop:
    """One file a writer delivers into the capture folder."""

    name: str
    data: bytes
    writer: str            # chunked | rename | copy
    duplicate_of: Optional[str] = None

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


def make_load_plan(count: int, seed: int = 0, duplicate_every: int = 5, prefix: str = "load",
                   size: Tuple[int, int] = (256, 256), big_every: int = 10) -> List[Drop]:
    """``count`` files: every ``duplicate_every``-th repeats an earlier file's bytes under a new name;
    every ``big_every``-th unique one is DRIVE-sized (565x584); a quarter are JPEG. Writers alternate."""
    rng = random.Random(seed)
    drops: List[Drop] = []
    uniques: List[Drop] = []
    for i in range(count):
        writer = WRITER_KINDS[i % len(WRITER_KINDS)]
        if duplicate_every and i % duplicate_every == duplicate_every - 1 and uniques:
            src = rng.choice(uniques)
            ext = os.path.splitext(src.name)[1]
            drops.append(Drop("%s_%05d_dup%s" % (prefix, i, ext), src.data, writer, duplicate_of=src.name))
            continue
        ext = ".jpg" if i % 4 == 3 else ".png"
        sz = (565, 584) if big_every and len(uniques) % big_every == big_every - 1 else size
        drop = Drop("%s_%05d%s" % (prefix, i, ext), fundus_bytes(seed * 100000 + i, ext, sz), writer)
        uniques.append(drop)
        drops.append(drop)
    return drops


def expected_results(drops: Sequence[Drop]) -> Dict[str, str]:
    """{result id: sha256} of the distinct contents in ``drops``."""
    return {result_id(d.sha256): d.sha256 for d in drops}


def write_chunked(path: Path, data: bytes, chunks: int = 4, delay_s: float = 0.05) -> None:
    """Write the final name directly, in slow chunks (a camera streaming over USB/SMB)."""
    step = max(1, -(-len(data) // chunks))
    with open(str(path), "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            if i + step < len(data):
                time.sleep(delay_s)


def write_renamed(path: Path, data: bytes) -> None:
    """Write ``<name>.part``, fsync, rename to the final name."""
    tmp = path.with_name(path.name + ".part")
    with open(str(tmp), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(str(tmp), str(path))


def write_copied(path: Path, data: bytes, staging: Path) -> None:
    """A plain copy from a staging folder (the final name appears at once and grows)."""
    src = staging / path.name
    src.write_bytes(data)
    shutil.copyfile(str(src), str(path))
    src.unlink()


class Writers(object):
    """Three concurrent writer threads delivering a load plan into ``capture`` (see module docstring).

    ``interval_s``: pause between two files of one writer; ``chunk_delay_s``: pause between chunks.
    """

    def __init__(self, capture: Path, staging: Path, drops: Sequence[Drop], interval_s: float = 0.0,
                 chunks: int = 4, chunk_delay_s: float = 0.05) -> None:
        self.capture = Path(capture)
        self.staging = Path(staging)
        self.drops = list(drops)
        self.interval_s = interval_s
        self.chunks = chunks
        self.chunk_delay_s = chunk_delay_s
        self.written: List[str] = []
        self.errors: List[str] = []
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []

    def start(self) -> "Writers":
        self.staging.mkdir(parents=True, exist_ok=True)
        for kind in WRITER_KINDS:
            mine = [d for d in self.drops if d.writer == kind]
            t = threading.Thread(target=self._run, args=(mine,), name="stress-writer-" + kind, daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def _run(self, drops: List[Drop]) -> None:
        for d in drops:
            path = self.capture / d.name
            try:
                if d.writer == "chunked":
                    write_chunked(path, d.data, self.chunks, self.chunk_delay_s)
                elif d.writer == "rename":
                    write_renamed(path, d.data)
                else:
                    write_copied(path, d.data, self.staging)
            except OSError as exc:
                with self._lock:
                    self.errors.append("%s: %s" % (d.name, exc))
                continue
            with self._lock:
                self.written.append(d.name)
            if self.interval_s:
                time.sleep(self.interval_s)

    def done(self) -> bool:
        return all(not t.is_alive() for t in self._threads)

    def join(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.done()


# ------------------------------------------------------------------------------------------------ hostile
#: Outcomes a hostile case can have.
RESULT, QUARANTINE, IGNORED, REJECTED = "result", "quarantine", "ignored", "rejected"


@dataclass
class HostileCase(object):
    """One hostile file: its name in capture/, what kind of trouble it is, and the acceptable outcomes."""

    name: str
    kind: str
    expect: Tuple[str, ...]
    sha256: Optional[str] = None       # content hash when the file has content the daemon may read
    reason: Tuple[str, ...] = ()       # acceptable quarantine reasons, when it matters
    notes: Dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> Optional[str]:
        return result_id(self.sha256) if self.sha256 else None


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, color_type: int = 2, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` followed by the given (raw, uncompressed) IDAT data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(idat, 9))
            + _png_chunk(b"IEND", b""))


def zero_filled_gray_png(width: int, height: int) -> bytes:
    """A real gray PNG of zeros, streamed row by row (large pixel count, tiny file): a decompression bomb."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)                  # filter byte + pixels
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """Patch the SOF0/SOF2 marker of a JPEG to declare another size (the scan data stays small)."""
    buf = bytearray(data)
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            raise ValueError("not a JPEG marker at %d" % i)
        marker = buf[i + 1]
        seg_len = struct.unpack(">H", bytes(buf[i + 2:i + 4]))[0]
        if marker in (0xC0, 0xC1, 0xC2):
            buf[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(buf)
        i += 2 + seg_len
    raise ValueError("no SOF marker found")


def jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG carrying EXIF orientation ``orientation`` (1..8)."""
    from PIL import Image

    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _tiff(arr: np.ndarray, mode: Optional[str] = None) -> bytes:
    from PIL import Image

    img = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, "TIFF")
    return buf.getvalue()


def _cv2_png16(rgb16: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", rgb16[:, :, ::-1].copy())
    if not ok:
        raise RuntimeError("OpenCV could not encode a 16-bit PNG")
    return buf.tobytes()


class _Corpus(object):
    def __init__(self, capture: Path) -> None:
        self.capture = capture
        self.cases: List[HostileCase] = []

    def file(self, name: str, kind: str, data: bytes, expect: Sequence[str], reason: object = (),
             **notes: object) -> None:
        """Write a case's file; ``reason``: a required quarantine reason (str) or several acceptable ones."""
        with open(os.path.join(str(self.capture), name), "wb") as fh:
            fh.write(data)
        reasons = (reason,) if isinstance(reason, str) else tuple(reason)  # type: ignore[arg-type]
        self.cases.append(HostileCase(name, kind, tuple(expect), sha256_bytes(data), reasons, dict(notes)))

    def other(self, name: str, kind: str, expect: Sequence[str], sha: Optional[str] = None,
              **notes: object) -> None:
        self.cases.append(HostileCase(name, kind, tuple(expect), sha, (), dict(notes)))


def build_hostile_corpus(capture: Path, secret: Path, seed: int = 7) -> List[HostileCase]:
    """Write the hostile corpus into ``capture``; ``secret`` is a sibling folder the daemon must never read
    (its file ``secret.png`` is the target of symlinks). Returns the cases (at least 40)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    c = _Corpus(Path(capture))
    base = fundus_rgb(seed, (320, 240))
    png = encode(base, "PNG", compress_level=1)
    jpg = encode(base, "JPEG", quality=90)
    tif = encode(base, "TIFF")
    img = Image.fromarray(base)
    gray = np.asarray(img.convert("L"))

    # -- truncated, empty, random bytes
    c.file("truncated.jpg", "truncated JPEG", jpg[: len(jpg) // 2], [QUARANTINE])
    c.file("truncated.png", "truncated PNG", png[: len(png) // 2], [QUARANTINE])
    c.file("truncated.tif", "truncated TIFF", tif[: len(tif) // 2], [QUARANTINE])
    for ext in (".jpg", ".png", ".tif"):
        c.file("empty" + ext, "zero bytes", b"", [QUARANTINE], reason=("empty_file", "duplicate_of_failed"))
    for ext in (".jpg", ".png", ".tif", ".bmp", ".webp"):
        c.file("random" + ext, "random bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), [QUARANTINE])
    c.file("text.png", "text behind an image extension", b"hello, this is not an image\n" * 10, [QUARANTINE],
           reason="not_an_image")
    c.file("html.jpg", "HTML behind an image extension", b"<html><body>x</body></html>", [QUARANTINE])
    broken = bytearray(png)
    for k in range(len(broken) // 2, len(broken) // 2 + 64):
        broken[k] ^= 0xFF
    c.file("bad_crc.png", "PNG with corrupted data", bytes(broken), [QUARANTINE])

    # -- decompression bombs and huge dimensions
    c.file("bomb_50000.png", "decompression bomb (PNG header 50000x50000)",
           png_with_header(50000, 50000, 2, b"\x00" * 1000), [QUARANTINE], reason="too_many_pixels")
    c.file("bomb_zeros.png", "decompression bomb (real 7000x7000 PNG of zeros)",
           zero_filled_gray_png(7000, 7000), [QUARANTINE], reason="too_many_pixels")
    c.file("huge_dims.jpg", "JPEG header 65000x65000", jpeg_with_size(jpg, 65000, 65000), [QUARANTINE],
           reason="too_many_pixels")
    c.file("tiny.png", "8x8 image", encode(base[:8, :8].copy(), "PNG"), [QUARANTINE], reason="image_too_small")
    c.file("panorama.png", "extreme aspect ratio 6000x40",
           encode(np.ascontiguousarray(np.resize(base, (40, 6000, 3))), "PNG", compress_level=1),
           [RESULT, QUARANTINE])
    oversized = os.path.join(str(capture), "oversized.png")
    with open(oversized, "wb") as fh:                      # sparse: 65 MiB > ingest.max_bytes
        fh.write(png[:64])
        fh.truncate(65 * 1024 * 1024)
    c.other("oversized.png", "file larger than ingest.max_bytes (65 MiB)", [QUARANTINE])
    c.cases[-1].reason = ("file_too_large",)

    # -- unusual but valid formats and modes: must produce results
    c.file("gray16.png", "16-bit gray PNG", encode((gray.astype(np.uint16) * 257), "PNG"), [RESULT])
    c.file("rgb48.png", "16-bit RGB PNG", _cv2_png16(base.astype(np.uint16) * 257), [RESULT])
    c.file("gray16.tif", "16-bit gray TIFF", _tiff(gray.astype(np.uint16) * 257), [RESULT])
    c.file("float.tif", "32-bit float TIFF", _tiff(gray.astype(np.float32) / 255.0, "F"), [RESULT])
    nan = (gray.astype(np.float32) / 255.0)
    nan[0, 0] = np.nan
    c.file("float_nan.tif", "float TIFF with NaN", _tiff(nan, "F"), [QUARANTINE])
    c.file("cmyk.jpg", "CMYK JPEG", _pil(img.convert("CMYK"), "JPEG", quality=90), [RESULT])
    c.file("cmyk.tif", "CMYK TIFF", _pil(img.convert("CMYK"), "TIFF"), [RESULT])
    pal = img.convert("P", palette=Image.ADAPTIVE, colors=64)
    c.file("palette.png", "palette PNG", _pil(pal, "PNG"), [RESULT])
    c.file("palette_transparent.png", "palette PNG with transparency", _pil(pal, "PNG", transparency=0), [RESULT])
    rgba = img.convert("RGBA")
    rgba.putalpha(200)
    c.file("alpha.png", "RGBA PNG", _pil(rgba, "PNG"), [RESULT])
    c.file("gray_alpha.png", "LA PNG", _pil(img.convert("LA"), "PNG"), [RESULT])
    c.file("bilevel.png", "1-bit PNG", _pil(img.convert("1"), "PNG"), [RESULT])
    c.file("gray.jpg", "8-bit gray JPEG", _pil(img.convert("L"), "JPEG"), [RESULT])
    frames = [img, img.transpose(Image.FLIP_LEFT_RIGHT)]
    c.file("multipage.tif", "multi-frame TIFF", _pil(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
           [RESULT])
    c.file("really_a_png.jpg", "PNG content behind .jpg", encode(fundus_rgb(seed + 1, (256, 256)), "PNG"),
           [RESULT])
    c.file("really_a_gif.png", "GIF behind .png (not a camera format)", _pil(img, "GIF"), [QUARANTINE],
           reason="not_an_image")
    c.file("image.webp", "WebP", _pil(img, "WEBP", quality=80), [RESULT])
    c.file("image.bmp", "BMP", _pil(img, "BMP"), [RESULT])
    c.file("image.ppm", "PPM", _pil(img, "PPM"), [RESULT])
    c.file("trailing_garbage.jpg", "JPEG with garbage appended",
           encode(fundus_rgb(seed + 2, (256, 256)), "JPEG", quality=90) + b"\x00garbage" * 100, [RESULT])
    for k in range(1, 9):
        c.file("exif_orientation_%d.jpg" % k, "EXIF orientation %d" % k,
               jpeg_with_orientation(fundus_rgb(seed + 10 + k, (320, 240)), k), [RESULT],
               size=[240, 320] if k >= 5 else [320, 240])

    # -- hostile names (valid content)
    for n, name in enumerate(["eye with spaces.png", u"\u0433\u043b\u0430\u0437-\u00fc-\u773c.png",
                              "line\nbreak.png", "-rf.png", "--help.png", "semi;colon&$(echo x).png",
                              "UPPER.PNG", "n" * 200 + ".png", "trailing space .png"]):
        c.file(name, "hostile file name", encode(fundus_rgb(seed + 100 + n, (256, 256)), "PNG",
                                                 compress_level=1), [RESULT])

    # -- things that are not regular files
    outside = Path(secret) / "secret.png"
    os.symlink(os.path.relpath(str(outside), str(capture)), os.path.join(str(capture), "outside_link.png"))
    c.other("outside_link.png", "symlink to a file outside the capture folder", [REJECTED, IGNORED])
    os.symlink("/etc/passwd", os.path.join(str(capture), "passwd.png"))
    c.other("passwd.png", "symlink to /etc/passwd", [REJECTED, IGNORED])
    os.symlink(os.path.relpath(str(secret), str(capture)), os.path.join(str(capture), "secret_dir.png"))
    c.other("secret_dir.png", "symlink to a directory outside", [REJECTED, IGNORED])
    os.symlink("loop_b.png", os.path.join(str(capture), "loop_a.png"))
    os.symlink("loop_a.png", os.path.join(str(capture), "loop_b.png"))
    c.other("loop_a.png", "symlink loop", [REJECTED, IGNORED])
    c.other("loop_b.png", "symlink loop", [REJECTED, IGNORED])
    os.symlink("does_not_exist.png", os.path.join(str(capture), "dangling.png"))
    c.other("dangling.png", "dangling symlink", [REJECTED, IGNORED])
    inside_data = encode(fundus_rgb(seed + 200, (256, 256)), "PNG", compress_level=1)
    c.file("link_target.png", "target of an inside symlink", inside_data, [RESULT])
    os.symlink("link_target.png", os.path.join(str(capture), "inside_link.png"))
    c.other("inside_link.png", "symlink to a file inside the capture folder", [RESULT, IGNORED, REJECTED],
            sha=sha256_bytes(inside_data))
    folder = Path(capture) / "folder.png"
    folder.mkdir()
    (folder / "nested.png").write_bytes(encode(fundus_rgb(seed + 300, (256, 256)), "PNG"))
    c.other("folder.png", "directory with an image extension (and an image inside)", [IGNORED])
    os.mkfifo(os.path.join(str(capture), "pipe.png"))
    c.other("pipe.png", "FIFO with an image extension", [IGNORED])

    # -- names the ingest must skip
    for name in (".hidden.png", "partial.png.part", "upload.tmp", "notes.txt", "backup.png~"):
        c.file(name, "ignored name", png, [IGNORED])
    _dicom_cases(c, base, seed)
    return c.cases


def _dicom_cases(c: "_Corpus", base: np.ndarray, seed: int) -> None:
    """DICOM files: valid ones as cameras write them, and broken, bombing or unsupported ones."""

    from vessel_seg.pipeline.proving import dicom_files as dcm

    def build(n: int, **kw: object) -> bytes:
        return dcm.build_dicom(fundus_rgb(seed + 400 + n, (256, 224)), uid_seed=seed * 1000 + n, **kw)

    c.file("IM000001", "DICOM OP 8-bit JPEG baseline (YBR_FULL_422), no extension", build(1, syntax=dcm.JPEG_BASELINE),
           [RESULT])
    c.file("op_j2k.dcm", "DICOM OP 8-bit JPEG 2000 lossless", build(2, syntax=dcm.JPEG2000_LOSSLESS), [RESULT])
    gray16 = (np.asarray(fundus_rgb(seed + 403, (256, 224)))[:, :, 1].astype(np.uint16) * 257)
    c.file("op16.dcm", "DICOM OP 16-bit gray", dcm.build_dicom(gray16, sop_class=dcm.OP16, uid_seed=seed * 1000 + 3),
           [RESULT])
    c.file("1.2.826.0.1.3680043.10.1234.4", "DICOM VL photographic, named by its UID",
           build(4, sop_class=dcm.VL_PHOTO, syntax=dcm.IMPLICIT), [RESULT])
    c.file("sc.dcm", "DICOM secondary capture", build(5, sop_class=dcm.SECONDARY), [RESULT])
    whole = build(6)
    c.file("truncated.dcm", "DICOM cut in the middle of the pixel data", whole[: len(whole) // 2], [QUARANTINE],
           reason=("dicom_truncated",))
    c.file("no_pixels.dcm", "DICOM without pixel data", build(7, with_pixels=False), [QUARANTINE],
           reason=("dicom_no_pixel_data",))
    c.file("jpeg_lossless.dcm", "DICOM in an unsupported transfer syntax (JPEG lossless)",
           build(8, syntax=dcm.JPEG_LOSSLESS), [QUARANTINE], reason=("dicom_unsupported_transfer_syntax",))
    c.file("ct.dcm", "DICOM of an unsupported SOP class (CT image)", build(9, sop_class="1.2.840.10008.5.1.4.1.1.2"),
           [QUARANTINE], reason=("dicom_unsupported_sop_class",))
    c.file("bomb.dcm", "DICOM header declaring 65000x65000 pixels", dcm.edited(build(10), Rows=65000, Columns=65000),
           [QUARANTINE], reason=("too_many_pixels",))
    c.file("frames_bomb.dcm", "DICOM declaring 100000 frames", dcm.edited(build(11), NumberOfFrames=100000),
           [QUARANTINE], reason=("dicom_too_many_frames",))
    c.file("preamble_only", "DICM preamble followed by garbage", b"\0" * 128 + b"DICM" + b"\xff\x00garbage" * 50,
           [QUARANTINE], reason=("dicom_invalid", "dicom_truncated"))
    c.file("NOTES", "text file without an extension", b"not a DICOM file\n" * 20, [IGNORED])


def _pil(img: object, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)  # type: ignore[attr-defined]
    return buf.getvalue()


def write_secret(secret: Path, seed: int = 99) -> Tuple[Path, str]:
    """A valid image in the sibling ``secret`` folder (what outside symlinks point at); returns (path, sha256).

    Its atime is set before its mtime, so on relatime file systems any read would move the atime."""
    secret.mkdir(parents=True, exist_ok=True)
    path = secret / "secret.png"
    data = fundus_bytes(seed, ".png", (256, 256))
    path.write_bytes(data)
    st = os.stat(str(path))
    os.utime(str(path), ns=(st.st_mtime_ns - 3600 * 10 ** 9, st.st_mtime_ns))
    return path, sha256_bytes(data)


def atime_detects_reads(folder: Path) -> bool:
    """Whether reading a file with atime < mtime moves its atime on this file system (relatime/strictatime)."""
    probe = folder / ".atime-probe"
    probe.write_bytes(b"probe")
    st = os.stat(str(probe))
    os.utime(str(probe), ns=(st.st_mtime_ns - 3600 * 10 ** 9, st.st_mtime_ns))
    before = os.stat(str(probe)).st_atime_ns
    with open(str(probe), "rb") as fh:
        fh.read()
    after = os.stat(str(probe)).st_atime_ns
    probe.unlink()
    return after != before
