"""DICOM files as fundus cameras write them, built with pydicom: for the tests and the stress corpus.

:func:`build_dicom` makes an Ophthalmic Photography 8/16 bit, VL Photographic or Secondary Capture image,
single or multi-frame, uncompressed, JPEG Baseline (YBR_FULL_422, as cameras write it) or JPEG 2000, with a
patient identity. The files carry the modules their IOD requires, so dicom3tools' ``dciodvfy`` accepts them.
"""
from __future__ import annotations

import io
from typing import Any, Dict, Optional, Sequence

import numpy as np
from PIL import Image

OP8 = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
OP16 = "1.2.840.10008.5.1.4.1.1.77.1.5.2"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY = "1.2.840.10008.5.1.4.1.1.7"

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"   # not decodable by Pillow: the unsupported case

#: The identity the builder writes unless told otherwise (a made-up patient).
DEFAULT_IDENTITY = {
    "patient_id": "PAT-0042", "patient_name": "DOE^JANE", "birth_date": "19700131", "sex": "F",
    "laterality": "R", "acquired": "20240315101530", "accession": "ACC123", "manufacturer": "Carl Zeiss Meditec",
    "model": "VISUCAM 500",
}

_IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1234.1"   # this builder's implementation class UID (test use)


def _code(value: str, scheme: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _frames_of(image: np.ndarray, frames: int) -> Sequence[np.ndarray]:
    """``frames`` slightly different copies of ``image`` (so each frame has its own content)."""
    out = []
    for i in range(frames):
        out.append(np.roll(image, 3 * i, axis=1) if i else image)
    return out


def _encode_frame(frame: np.ndarray, syntax: str) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(frame)
    if syntax == JPEG_BASELINE:
        img.save(buf, format="JPEG", quality=95, subsampling=1 if frame.ndim == 3 else 0)
    elif syntax == JPEG2000_LOSSLESS:
        img.save(buf, format="JPEG2000", irreversible=False, no_jp2=True, mct=1 if frame.ndim == 3 else 0)
    else:  # JPEG lossless cannot be written by Pillow: a JPEG baseline stream under a wrong label
        img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_dicom(image: np.ndarray, sop_class: str = OP8, syntax: str = EXPLICIT, frames: int = 1,
                identity: Optional[Dict[str, str]] = None, uid_seed: int = 1, with_pixels: bool = True,
                bits_stored: Optional[int] = None) -> bytes:
    """A complete DICOM file (preamble, file meta, data set) holding ``image`` (H, W, 3 uint8 or H, W uint8/16).

    ``identity`` keys as :data:`DEFAULT_IDENTITY` (a missing key is left out of the file). ``uid_seed`` makes
    the UIDs (and so the content) unique per file.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence as DicomSequence

    if frames > 1 and sop_class not in (OP8, OP16):
        raise ValueError("only the ophthalmic photography IODs are multi-frame here")
    ident = dict(DEFAULT_IDENTITY if identity is None else identity)
    root = "1.2.826.0.1.3680043.10.1234.%d" % int(uid_seed)
    sop_uid = root + ".3.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = _IMPLEMENTATION_UID
    meta.ImplementationVersionName = "VESSELSEG_TEST"
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = syntax == IMPLICIT
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = root + ".1"
    ds.SeriesInstanceUID = root + ".2"
    ds.PatientName = ident.get("patient_name", "")
    ds.PatientID = ident.get("patient_id", "")
    ds.PatientBirthDate = ident.get("birth_date", "")
    ds.PatientSex = ident.get("sex", "")
    acquired = ident.get("acquired", "")
    ds.StudyDate = acquired[:8]
    ds.StudyTime = acquired[8:14]
    ds.ContentDate = acquired[:8]
    ds.ContentTime = acquired[8:14]
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ident.get("accession", "")
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = ident.get("manufacturer", "")
    ds.ManufacturerModelName = ident.get("model", "")
    ds.PatientOrientation = ""
    laterality = ident.get("laterality", "")
    ophthalmic = sop_class in (OP8, OP16)
    if ophthalmic:
        ds.Modality = "OP"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.AcquisitionDateTime = acquired
        ds.ImageLaterality = laterality or "U"
        ds.AnatomicRegionSequence = DicomSequence([_code("T-AA000", "SRT", "Eye")])
        ds.PatientEyeMovementCommanded = "NO"
        ds.HorizontalFieldOfView = 45
        ds.EmmetropicMagnification = 1.0
        ds.IntraOcularPressure = 15.0
        ds.PupilDilated = "NO"
        ds.DetectorType = "CCD"
        ds.AcquisitionDeviceTypeCodeSequence = DicomSequence([_code("R-1021A", "SRT", "Fundus Camera")])
        ds.IlluminationTypeCodeSequence = DicomSequence()
        ds.LightPathFilterTypeStackCodeSequence = DicomSequence()
        ds.ImagePathFilterTypeStackCodeSequence = DicomSequence()
        ds.LensesCodeSequence = DicomSequence()
        ds.RefractiveStateSequence = DicomSequence()
        ds.AcquisitionContextSequence = DicomSequence()
        ds.SynchronizationFrameOfReferenceUID = root + ".4"
        ds.SynchronizationTrigger = "NO TRIGGER"
        ds.AcquisitionTimeSynchronized = "N"
        if image.ndim == 2:
            ds.PresentationLUTShape = "IDENTITY"
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "01" if syntax == JPEG_BASELINE else "00"
        if syntax == JPEG_BASELINE:
            ds.LossyImageCompressionRatio = 10
            ds.LossyImageCompressionMethod = "ISO_10918_1"
    elif sop_class == VL_PHOTO:
        ds.Modality = "XC"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Laterality = laterality
        ds.AcquisitionDateTime = acquired
        ds.AcquisitionContextSequence = DicomSequence()
        ds.LossyImageCompression = "01" if syntax == JPEG_BASELINE else "00"
    else:
        ds.Modality = "OT"
        ds.ConversionType = "DI"
        ds.Laterality = laterality
    gray = image.ndim == 2
    sixteen = image.dtype == np.uint16
    rows, cols = int(image.shape[0]), int(image.shape[1])
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1 if gray else 3
    ds.BitsAllocated = 16 if sixteen else 8
    ds.BitsStored = bits_stored or (16 if sixteen else 8)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if gray:
        ds.PhotometricInterpretation = "MONOCHROME2"
    elif syntax == JPEG_BASELINE:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    elif syntax == JPEG2000_LOSSLESS:
        ds.PhotometricInterpretation = "YBR_RCT"
    else:
        ds.PhotometricInterpretation = "RGB"
    if not gray:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063   # Frame Time
        ds.FrameTime = 100.0
    elif ophthalmic:
        ds.NumberOfFrames = 1
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 0.0
    if with_pixels:
        parts = _frames_of(image, frames)
        if syntax in (EXPLICIT, IMPLICIT):
            ds.PixelData = b"".join(np.ascontiguousarray(p).astype("<u2" if sixteen else "u1").tobytes()
                                    for p in parts)
        else:
            ds.PixelData = encapsulate([_encode_frame(p, syntax) for p in parts])
            ds["PixelData"].is_undefined_length = True
            ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    return buf.getvalue()


def edited(data: bytes, **values: object) -> bytes:
    """``data`` (a DICOM file) re-written with the given attributes set (``PatientName="X"``, ...)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for key, value in values.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    return buf.getvalue()
