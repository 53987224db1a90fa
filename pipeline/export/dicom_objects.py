"""DICOM objects of a finished result: a Segmentation (SEG, BINARY, one segment) and a Secondary Capture (SC).

Both go into the *source* study, each in a new series of its own. Patient and study attributes come from
result.json's ``identity`` (written by DICOM intake) when present; a plain-image input has none, so it gets
a generated study: Study, Series and SOP Instance UIDs are derived deterministically from the result id
(``generate_uid(entropy_srcs=...)``) and the patient is anonymous (``PatientID = VESSELSEG-<result id>``,
one per result, so unrelated photographs never merge into one patient's history).

Which image the SEG references:

* a DICOM input: the source instance (``identity.sop_uid``, class ``identity.sop_class_uid`` or
  Ophthalmic Photography 8 Bit when intake did not record one);
* a plain image: the burnt-in Secondary Capture of the same result. It has exactly the source's pixel grid
  (the overlay is rendered at the original size), so the SEG frames align pixel for pixel, and it saves
  sending an uncompressed copy of the source (24 MB at 8 MP) as a third object for every result. For that
  reason a plain-image result always exports its SC when it exports a SEG (see :func:`objects_for`).

Every UID and every date in an object is a function of the result (id, result.json), never of the time of
sending, so a resend after a crash is the same instance with the same content.
"""
from __future__ import annotations

import io
import platform
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixel_data_handlers.numpy_handler import pack_bits
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from vessel_seg import __version__

__all__ = ["OBJECT_SEG", "OBJECT_SC", "OBJECTS", "SEG_SOP_CLASS", "SC_SOP_CLASS", "ExportUids", "SourceInfo",
           "plan_uids", "source_info", "objects_for", "build_seg", "build_sc", "encode"]

OBJECT_SEG = "seg"
OBJECT_SC = "secondary_capture"
#: The object kinds ``dicom.export.objects`` may name, in sending order (the SC a plain-image SEG refers to
#: goes first).
OBJECTS = (OBJECT_SC, OBJECT_SEG)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"          # Segmentation Storage
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"              # Secondary Capture Image Storage
OP_8BIT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # Ophthalmic Photography 8 Bit Image Storage

MANUFACTURER = "vessel-seg"
MODEL_NAME = "vessel-seg appliance"
SEG_SERIES_NUMBER = 9101
SC_SERIES_NUMBER = 9102

#: (code value, coding scheme designator, code meaning)
CATEGORY_ANATOMICAL_STRUCTURE = ("91723000", "SCT", "Anatomical Structure")
TYPE_BLOOD_VESSEL = ("59820001", "SCT", "Blood vessel")
REGION_RETINA = ("5665001", "SCT", "Retina")
PURPOSE_SOURCE_IMAGE = ("121322", "DCM", "Source image for image processing operation")
DERIVATION_SEGMENTATION = ("113076", "DCM", "Segmentation")

_UID_TAG = "vessel-seg export v1"


@dataclass(frozen=True)
class ExportUids:
    """The UIDs of a result's export, fixed before the first send (a resend is the same instance)."""

    study: str
    seg_series: str
    seg_instance: str
    sc_series: str
    sc_instance: str
    generated_study: bool        # True: a plain-image input, the study was made for this result

    def instance(self, obj: str) -> str:
        return self.seg_instance if obj == OBJECT_SEG else self.sc_instance

    def series(self, obj: str) -> str:
        return self.seg_series if obj == OBJECT_SEG else self.sc_series


@dataclass(frozen=True)
class SourceInfo:
    """What the objects copy from the source (or make up for a plain image)."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    laterality: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    referring_physician: str
    content_date: str
    content_time: str
    sop_class_uid: Optional[str]         # the source instance (None: plain image)
    sop_instance_uid: Optional[str]
    series_instance_uid: Optional[str]


def _uid(result_id: str, what: str) -> str:
    return generate_uid(entropy_srcs=[_UID_TAG, result_id, what])


def _identity(meta: Dict[str, Any]) -> Dict[str, Any]:
    ident = meta.get("identity")
    return ident if isinstance(ident, dict) else {}


def plan_uids(result_id: str, meta: Dict[str, Any]) -> ExportUids:
    """The UIDs of every object of a result: the source's study when known, else a generated one."""
    study = _text(_identity(meta).get("study_uid"))
    generated = not study
    return ExportUids(study=study or _uid(result_id, "study"),
                      seg_series=_uid(result_id, "seg series"), seg_instance=_uid(result_id, "seg instance"),
                      sc_series=_uid(result_id, "sc series"), sc_instance=_uid(result_id, "sc instance"),
                      generated_study=generated)


def objects_for(configured: Sequence[str], meta: Dict[str, Any]) -> List[str]:
    """The objects to export for a result: the configured ones, plus the SC a plain-image SEG refers to."""
    wanted = set(configured)
    if OBJECT_SEG in wanted and not _text(_identity(meta).get("sop_uid")):
        wanted.add(OBJECT_SC)
    return [o for o in OBJECTS if o in wanted]


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _digits(value: Any) -> str:
    return re.sub(r"[^0-9]", "", value) if isinstance(value, str) else ""


def _date_time(value: Any) -> tuple:
    """(YYYYMMDD, HHMMSS) of an ISO-8601 or DICOM DT text; ('', '') when it has no date."""
    d = _digits(value)
    if len(d) < 8:
        return "", ""
    return d[:8], (d[8:14] if len(d) >= 14 else (d[8:] + "000000")[:6])


def source_info(result_id: str, meta: Dict[str, Any]) -> SourceInfo:
    """Patient and study attributes for the objects of a result (see the module docstring)."""
    ident = _identity(meta)
    created_date, created_time = _date_time(meta.get("created"))
    if not created_date:
        created_date, created_time = "19700101", "000000"
    acq_date, acq_time = _date_time(ident.get("acquired"))
    study_date = _digits(ident.get("study_date"))[:8] or acq_date or created_date
    study_time = _digits(ident.get("study_time"))[:6] or acq_time or created_time
    sex = _text(ident.get("sex")).upper()
    laterality = _text(ident.get("laterality")).upper()
    sop_instance = _text(ident.get("sop_uid")) or None
    return SourceInfo(
        patient_id=_text(ident.get("patient_id")) or ("" if ident else "VESSELSEG-%s" % result_id),
        patient_name=_text(ident.get("patient_name")) or ("" if ident else "ANONYMOUS^"),
        birth_date=_digits(ident.get("birth_date"))[:8],
        sex=sex if sex in ("M", "F", "O") else "",
        laterality=laterality if laterality in ("L", "R") else "",
        study_date=study_date, study_time=study_time,
        accession_number=_text(ident.get("accession"))[:16],
        study_id=_text(ident.get("study_id"))[:16] or ("" if ident else result_id[:16]),
        referring_physician=_text(ident.get("referring_physician_name")),
        content_date=created_date, content_time=created_time,
        sop_class_uid=(_text(ident.get("sop_class_uid")) or OP_8BIT_SOP_CLASS) if sop_instance else None,
        sop_instance_uid=sop_instance,
        series_instance_uid=_text(ident.get("series_uid")) or None,
    )


def _code(code: tuple) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _common(ds: Dataset, src: SourceInfo, uids: ExportUids, obj: str, sop_class: str, result_id: str,
            meta: Dict[str, Any]) -> None:
    """Patient, General Study, General Series, General Equipment and SOP Common attributes."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uids.instance(obj)
    ds.InstanceCreationDate = src.content_date
    ds.InstanceCreationTime = src.content_time
    ds.PatientName = src.patient_name
    ds.PatientID = src.patient_id
    ds.PatientBirthDate = src.birth_date
    ds.PatientSex = src.sex
    ds.StudyInstanceUID = uids.study
    ds.StudyDate = src.study_date
    ds.StudyTime = src.study_time
    ds.ReferringPhysicianName = src.referring_physician
    ds.StudyID = src.study_id
    ds.AccessionNumber = src.accession_number
    ds.SeriesInstanceUID = uids.series(obj)
    ds.SeriesDate = src.content_date
    ds.SeriesTime = src.content_time
    ds.InstanceNumber = 1
    ds.ContentDate = src.content_date
    ds.ContentTime = src.content_time
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.DeviceSerialNumber = platform.node() or "unknown"     # the board
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    ds.SoftwareVersions = ["vessel-seg %s" % __version__,
                           "%s %s" % (model.get("name", "model"), model.get("version", "?"))]


def _source_image_item(sop_class: str, sop_instance: str, purpose: bool = True) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if purpose:
        item.PurposeOfReferenceCodeSequence = DicomSequence([_code(PURPOSE_SOURCE_IMAGE)])
    return item


def _referenced_image(src: SourceInfo, uids: ExportUids) -> tuple:
    """(SOP class, SOP instance, series) of the image the SEG is drawn on."""
    if src.sop_instance_uid and src.sop_class_uid:
        return src.sop_class_uid, src.sop_instance_uid, src.series_instance_uid
    return SC_SOP_CLASS, uids.sc_instance, uids.sc_series


def build_seg(result_id: str, meta: Dict[str, Any], mask: np.ndarray, uids: ExportUids) -> Dataset:
    """The Segmentation object: BINARY, one frame, one segment (retinal blood vessels)."""
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2 or not mask.size:
        raise ValueError("the mask must be a non-empty 2-D array, got shape %r" % (mask.shape,))
    src = source_info(result_id, meta)
    ds = Dataset()
    _common(ds, src, uids, OBJECT_SEG, SEG_SOP_CLASS, result_id, meta)
    ds.Modality = "SEG"
    ds.SeriesNumber = SEG_SERIES_NUMBER
    ds.SeriesDescription = "Retinal vessel segmentation (vessel-seg)"
    if src.laterality:
        ds.ImageLaterality = src.laterality
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ContentLabel = "VESSELS"
    ds.ContentDescription = "Retinal blood vessels segmented by vessel-seg"
    ds.ContentCreatorName = ""
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(mask.shape[0]), int(mask.shape[1])
    ds.BitsAllocated = 1
    ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.SegmentationType = "BINARY"
    ds.NumberOfFrames = 1

    segment = Dataset()
    segment.SegmentNumber = 1
    segment.SegmentLabel = "Retinal vessels"
    segment.SegmentDescription = "Retinal blood vessels"
    segment.SegmentAlgorithmType = "AUTOMATIC"
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    segment.SegmentAlgorithmName = "%s %s" % (model.get("name", "vessel-seg"), model.get("version", ""))
    segment.SegmentedPropertyCategoryCodeSequence = DicomSequence([_code(CATEGORY_ANATOMICAL_STRUCTURE)])
    segment.SegmentedPropertyTypeCodeSequence = DicomSequence([_code(TYPE_BLOOD_VESSEL)])
    segment.AnatomicRegionSequence = DicomSequence([_code(REGION_RETINA)])
    ds.SegmentSequence = DicomSequence([segment])

    dim_uid = _uid(result_id, "seg dimensions")
    organisation = Dataset()
    organisation.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = DicomSequence([organisation])
    index = Dataset()
    index.DimensionOrganizationUID = dim_uid
    index.DimensionIndexPointer = 0x0062000B           # Referenced Segment Number
    index.FunctionalGroupPointer = 0x0062000A          # Segment Identification Sequence
    index.DimensionDescriptionLabel = "Segment"
    ds.DimensionIndexSequence = DicomSequence([index])

    ref_class, ref_instance, ref_series = _referenced_image(src, uids)
    derivation = Dataset()
    derivation.DerivationCodeSequence = DicomSequence([_code(DERIVATION_SEGMENTATION)])
    derivation.SourceImageSequence = DicomSequence([_source_image_item(ref_class, ref_instance)])
    shared = Dataset()
    shared.DerivationImageSequence = DicomSequence([derivation])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frame = Dataset()
    content = Dataset()
    content.DimensionIndexValues = [1]
    frame.FrameContentSequence = DicomSequence([content])
    ident = Dataset()
    ident.ReferencedSegmentNumber = 1
    frame.SegmentIdentificationSequence = DicomSequence([ident])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence([frame])

    if ref_series:
        series_item = Dataset()
        series_item.SeriesInstanceUID = ref_series
        series_item.ReferencedInstanceSequence = DicomSequence([_source_image_item(ref_class, ref_instance,
                                                                                   purpose=False)])
        ds.ReferencedSeriesSequence = DicomSequence([series_item])
    ds.PixelData = pack_bits(mask.ravel())
    return ds


def build_sc(result_id: str, meta: Dict[str, Any], overlay_rgb: np.ndarray, uids: ExportUids) -> Dataset:
    """The Secondary Capture: the overlay (vessels tinted over the photograph) burnt into RGB pixels."""
    rgb = np.ascontiguousarray(np.asarray(overlay_rgb, dtype=np.uint8))
    if rgb.ndim != 3 or rgb.shape[2] != 3 or not rgb.size:
        raise ValueError("the overlay must be an H x W x 3 array, got shape %r" % (rgb.shape,))
    src = source_info(result_id, meta)
    ds = Dataset()
    _common(ds, src, uids, OBJECT_SC, SC_SOP_CLASS, result_id, meta)
    ds.Modality = "OP"
    ds.SeriesNumber = SC_SERIES_NUMBER
    ds.SeriesDescription = "Retinal vessels burnt in (vessel-seg)"
    if src.laterality:          # General Series Laterality (2C) only when Image Laterality is absent
        ds.ImageLaterality = src.laterality
    else:
        ds.Laterality = ""
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.DerivationDescription = "Vessel probability above %.3f tinted over the photograph" % float(
        meta.get("threshold", 0.5))
    if src.sop_instance_uid and src.sop_class_uid:
        ds.SourceImageSequence = DicomSequence([_source_image_item(src.sop_class_uid, src.sop_instance_uid)])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = rgb.tobytes()
    return ds


def encode(ds: Dataset) -> bytes:
    """A Part 10 file (preamble, meta header, Explicit VR Little Endian) of a dataset built here."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=[_UID_TAG, "implementation"])
    meta.ImplementationVersionName = ("VESSELSEG_" + __version__.replace(".", ""))[:16]
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.preamble = b"\0" * 128
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    return buf.getvalue()
