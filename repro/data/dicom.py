"""Reading (and, for the synthetic data sets and the tests, writing) single-frame grayscale DICOMs.

`read_dicom` returns what every later stage expects: float32 (H, W) in [0, 1], brighter = denser
(bone white), whatever the photometric interpretation, bit depth, rescale or transfer syntax.
Compressed syntaxes are decoded by pydicom's pixel plugins (pylibjpeg, -libjpeg, -openjpeg, -rle),
which setup.cfg installs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from repro.io import atomic_path


class DicomError(ValueError):
    """A DICOM file that cannot be turned into a single grayscale image; the message names it."""


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """Decode one DICOM file into float32 (H, W) in [0, 1], brighter = denser.

    The display range is the full range the stored bits allow (BitsStored), after Rescale
    Slope/Intercept; MONOCHROME1 images are inverted so that bone is white in both conventions.
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
        pixels = ds.pixel_array
    except Exception as err:  # truncated data, missing decoder plugin, corrupt stream
        raise DicomError(
            f"{path}: pixel data cannot be decoded (transfer syntax "
            f"{ds.file_meta.get('TransferSyntaxUID', 'unknown')}): {err}") from err
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected a 2-D image, got pixel array of shape {pixels.shape}")

    bits_stored = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2 ** bits_stored - 1)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    values = pixels.astype(np.float64) * slope + intercept
    ends = sorted((low * slope + intercept, high * slope + intercept))
    image = (values - ends[0]) / (ends[1] - ends[0])
    image = np.clip(image, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32)


def write_dicom(path: str | os.PathLike, image: np.ndarray, *, bits: int = 8,
                monochrome1: bool = False, transfer_syntax: str = ExplicitVRLittleEndian,
                patient_id: str = "", study_uid: str | None = None, series_uid: str | None = None,
                sop_uid: str | None = None, rescale: tuple[float, float] | None = None) -> Path:
    """Write a float image in [0, 1] (brighter = denser) as a single-frame grayscale DICOM.

    Used by the synthetic data generator and by the tests, so that both exercise `read_dicom`
    through real files. `rescale=(slope, intercept)` stores (value - intercept) / slope.
    The file is written atomically.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"write_dicom: expected a 2-D image, got shape {image.shape}")
    if bits not in (8, 12, 16):
        raise ValueError(f"write_dicom: bits must be 8, 12 or 16, got {bits}")
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
    ds.PixelData = pixels.tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, pixels)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
