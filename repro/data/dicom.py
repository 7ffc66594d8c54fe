"""Reading (and, for the synthetic data sets and the tests, writing) single-frame grayscale DICOMs.

`read_dicom` returns what every later stage expects: float32 (H, W) in [0, 1], brighter = denser
(bone white), whatever the photometric interpretation, bit depth, rescale or transfer syntax.
Compressed syntaxes are decoded by pydicom's pixel plugins (pylibjpeg, -libjpeg, -openjpeg, -rle),
which setup.cfg installs.

`write_dicom` writes what the tests and the phantoms need, including JPEG baseline (the transfer
syntax both Kaggle releases ship): pydicom's own encoders cover RLE, JPEG-LS and JPEG 2000 but not
JPEG baseline, so those frames are encoded by Pillow (libjpeg) and encapsulated by pydicom.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from repro.io import atomic_path


class DicomError(ValueError):
    """A DICOM file that cannot be turned into a single grayscale image; the message names it."""


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """Decode one DICOM file into float32 (H, W) in [0, 1], brighter = denser.

    The grey levels are mapped to [0, 1] as a DICOM viewer shows them (`_display_range`), and
    MONOCHROME1 images are inverted so that bone is white in both conventions.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # pydicom raises several types for unreadable files
        raise DicomError(f"{path}: not a readable DICOM file ({err})") from err
    if "PixelData" not in ds:
        raise DicomError(f"{path}: no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(
            f"{path}: expected a grayscale image (MONOCHROME1/2), got PhotometricInterpretation "
            f"{photometric or 'missing'}")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DicomError(f"{path}: expected 1 sample per pixel, got {ds.SamplesPerPixel}")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise DicomError(f"{path}: expected a single frame, got {ds.NumberOfFrames} frames")
    try:
        with _quiet_decoders():
            pixels = ds.pixel_array
    except Exception as err:  # truncated data, missing decoder plugin, corrupt stream
        raise DicomError(
            f"{path}: pixel data cannot be decoded (transfer syntax "
            f"{ds.file_meta.get('TransferSyntaxUID', 'unknown')}): {err}") from err
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected a 2-D image, got pixel array of shape {pixels.shape}")

    image = _display_range(ds, pixels, path)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32)


@contextlib.contextmanager
def _quiet_decoders():
    """pydicom logs each failing decoder plugin with a traceback before it raises; the raised
    error is reported in one line instead (issue: a corrupt JPEG stream printed three tracebacks)."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _display_range(ds, pixels: np.ndarray, path: Path) -> np.ndarray:
    """Stored values -> [0, 1], after the modality LUT (Rescale Slope/Intercept):

    - a VOI window or VOI LUT in the file is applied with pydicom's `apply_voi_lut` (as viewers
      do) and its output range is scaled to [0, 1];
    - otherwise, up to 8 stored bits use the full range the bits allow (the competitions' 8-bit
      files, the phantoms); more than 8 bits use the image's own minimum and maximum, because
      16-bit files often use 10-12 bits and a fixed 0..65535 range would keep a dozen grey levels.

    An image that is one grey level after the modality LUT and the VOI window (a RescaleSlope of
    0, a window that every pixel falls outside of, a blank frame) shows nothing: DicomError.
    """
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        windowed = apply_voi_lut(values, ds).astype(np.float64)
        low, high = _voi_output_range(ds, windowed)
    else:
        windowed = values
        bits_stored = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
        if bits_stored > 8:
            low, high = float(values.min()), float(values.max())
        else:
            signed = int(ds.get("PixelRepresentation", 0)) == 1
            stored = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2 ** bits_stored - 1)
            low, high = sorted(float(apply_modality_lut(np.array(stored), ds)[i]) for i in (0, 1))
    if not windowed.min() < windowed.max() or not low < high:
        transforms = ", ".join(f"{key} {ds.get(key)}" for key in ("RescaleSlope", "RescaleIntercept", "WindowCenter",
                                                                  "WindowWidth") if key in ds)
        raise DicomError(f"{path}: the image is one grey level ({windowed.min():g}) after the modality LUT and "
                         f"the VOI window{f' ({transforms})' if transforms else ''}: there is nothing to show")
    return np.clip((windowed - low) / (high - low), 0.0, 1.0)


def _voi_output_range(ds, windowed: np.ndarray) -> tuple[float, float]:
    """The range `apply_voi_lut` maps into: the LUT's bit depth for a LUT, else the stored range."""
    if "VOILUTSequence" in ds and "WindowCenter" not in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2 ** bits - 1)
    bits_stored = int(ds.get("BitsStored", 16))
    if int(ds.get("PixelRepresentation", 0)) == 1 and "RescaleSlope" not in ds:
        return float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return float(windowed.min()), float(windowed.max())
    return 0.0, float(2 ** bits_stored - 1)


def write_dicom(path: str | os.PathLike, image: np.ndarray, *, bits: int = 8,
                monochrome1: bool = False, transfer_syntax: str = ExplicitVRLittleEndian,
                patient_id: str = "", study_uid: str | None = None, series_uid: str | None = None,
                sop_uid: str | None = None, rescale: tuple[float, float] | None = None,
                tags: dict | None = None, jpeg_quality: int = 90) -> Path:
    """Write a float image in [0, 1] (brighter = denser) as a single-frame grayscale DICOM.

    Used by the synthetic data generator and by the tests, so that both exercise `read_dicom`
    through real files. `rescale=(slope, intercept)` stores (value - intercept) / slope.
    `tags` adds or replaces data elements by keyword (PatientSex="F", PixelSpacing=[0.14, 0.14]).
    JPEG baseline (8 bits only) is lossy: `jpeg_quality` is Pillow's quality (1-95).
    The file is written atomically.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"write_dicom: expected a 2-D image, got shape {image.shape}")
    if bits not in (8, 12, 16):
        raise ValueError(f"write_dicom: bits must be 8, 12 or 16, got {bits}")
    if transfer_syntax == JPEGBaseline8Bit and bits != 8:
        raise ValueError(f"write_dicom: JPEG baseline holds 8-bit pixels only, got bits={bits}")
    top = 2 ** bits - 1
    stored = np.clip(image, 0.0, 1.0)
    if monochrome1:
        stored = 1.0 - stored
    stored = stored * top
    dtype = np.uint8 if bits == 8 else np.uint16
    pixels = np.round(stored).astype(dtype)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for keyword, value in (tags or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    if transfer_syntax == JPEGBaseline8Bit:
        _compress_jpeg_baseline(ds, pixels, jpeg_quality)
    elif transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, pixels)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _compress_jpeg_baseline(ds: Dataset, pixels: np.ndarray, quality: int) -> None:
    """One 8-bit grayscale JPEG baseline frame (ISO 10918-1 process 1), encapsulated in place."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality), progressive=False,
                                 optimize=False)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
