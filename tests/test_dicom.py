import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from repro.data.dicom import DicomError, read_dicom, write_dicom
from tests.conftest import gradient_image


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("monochrome1", [False, True])
def test_round_trip_bits_and_photometric(tmp_path, bits, monochrome1):
    image = gradient_image(32, bits)
    path = write_dicom(tmp_path / "a.dcm", image, bits=bits, monochrome1=monochrome1)
    back = read_dicom(path)
    assert back.dtype == np.float32 and back.shape == (32, 32)
    # Quantisation to `bits` is the only loss; MONOCHROME1 is inverted back so bone stays white.
    # Above 8 bits the image's own range is the display range (no VOI window in the file).
    expected = image if bits == 8 else (image - image.min()) / (image.max() - image.min())
    assert np.abs(back - expected).max() <= 1.0 / (2 ** bits - 1) / (image.max() - image.min()) + 1e-6


def test_voi_window_is_applied_as_a_viewer_would(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 4096), (2, 1))
    path = write_dicom(tmp_path / "w.dcm", ramp, bits=12)
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = 2048, 1024
    ds.save_as(path)
    image = read_dicom(path)[0]
    stored = np.arange(4096)
    assert (image[stored < 1536] == 0).all() and (image[stored > 2560] == 1).all()
    middle = (stored > 1600) & (stored < 2500)
    # DICOM PS3.3 C.11.2.1.2.1: linear from c - 0.5 - (w - 1) / 2 to c - 0.5 + (w - 1) / 2.
    expected = ((stored[middle] - (2048 - 0.5)) / (1024 - 1) + 0.5)
    np.testing.assert_allclose(image[middle], expected, atol=1e-3)


def test_monochrome1_is_stored_inverted(tmp_path):
    image = np.zeros((8, 8))
    image[:, 4:] = 1.0
    path = write_dicom(tmp_path / "m1.dcm", image, monochrome1=True)
    stored = pydicom.dcmread(path).pixel_array
    assert stored[0, 0] == 255 and stored[0, 7] == 0  # dark air stored high in MONOCHROME1
    assert read_dicom(path)[0, 0] == 0.0 and read_dicom(path)[0, 7] == 1.0


def test_rescale_slope_intercept(tmp_path):
    image = gradient_image(16, 3)
    plain = read_dicom(write_dicom(tmp_path / "plain.dcm", image, bits=12))
    rescaled = read_dicom(write_dicom(tmp_path / "rescaled.dcm", image, bits=12, rescale=(2.0, -1024.0)))
    np.testing.assert_allclose(rescaled, plain, atol=1e-6)
    inverted = read_dicom(write_dicom(tmp_path / "negative.dcm", image, bits=12, rescale=(-1.0, 0.0)))
    np.testing.assert_allclose(inverted, 1.0 - plain, atol=1e-6)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_transfer_syntaxes(tmp_path, syntax):
    image = gradient_image(32, 5)
    path = write_dicom(tmp_path / "c.dcm", image, bits=8, transfer_syntax=syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_allclose(read_dicom(path), np.round(image * 255) / 255, atol=1e-6)


def test_jpeg_baseline(tmp_path):
    # The SIIM-ACR files are JPEG baseline: encode one with Pillow and encapsulate it.
    image = gradient_image(64, 7) * 0.5 + 0.25
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    path = write_dicom(tmp_path / "j.dcm", image)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds.save_as(path)
    decoded = read_dicom(path)
    assert decoded.shape == (64, 64)
    assert np.abs(decoded - image).mean() < 0.03  # lossy, but close


def test_a_corrupt_jpeg_stream_is_one_error_and_no_library_traceback(tmp_path, capfd, caplog):
    image = gradient_image(64, 8)
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    stream = bytearray(buffer.getvalue())
    stream[len(stream) // 3: len(stream) // 3 + 400] = b"\x00" * 400      # the entropy-coded data damaged
    path = write_dicom(tmp_path / "corrupt.dcm", image)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([bytes(stream[:len(stream) // 2])])
    ds.save_as(path)
    with pytest.raises(DicomError, match="corrupt.dcm: pixel data cannot be decoded"):
        read_dicom(path)
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out and "Traceback" not in caplog.text


def test_colour_image_rejected():
    with pytest.raises(DicomError, match="SC_rgb_small_odd.dcm.*MONOCHROME"):
        read_dicom(get_testdata_file("SC_rgb_small_odd.dcm"))


def test_multiframe_rejected():
    path = get_testdata_file("rtdose_rle.dcm")
    with pytest.raises(DicomError, match="rtdose_rle.dcm.*frame"):
        read_dicom(path)


def test_truncated_file_rejected(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", gradient_image(64, 1))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) - 2000])
    with pytest.raises(DicomError, match="truncated.dcm"):
        read_dicom(truncated)


def test_not_a_dicom_rejected(tmp_path):
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"this is not a dicom file")
    with pytest.raises(DicomError, match="garbage.dcm"):
        read_dicom(path)


@pytest.mark.parametrize("case", ["rescale slope 0", "outside the window", "blank frame"])
def test_an_image_of_one_grey_level_is_refused_naming_the_file(tmp_path, case):
    """A RescaleSlope of 0 (every pixel the intercept), a VOI window that every pixel falls
    outside of, or a frame of one value would come out a constant image: refused, not trained on."""
    image = gradient_image(32, 4)
    path = tmp_path / "flat.dcm"
    if case == "rescale slope 0":
        write_dicom(path, image, bits=12, rescale=(0.0, 100.0))
        detail = r"\(RescaleSlope 0(\.0)?, RescaleIntercept 100(\.0)?\)"
    elif case == "outside the window":
        write_dicom(path, image, bits=12)
        ds = pydicom.dcmread(path)
        ds.WindowCenter, ds.WindowWidth = 10000, 100     # far above every stored value (at most 4095)
        ds.save_as(path)
        detail = r"\(WindowCenter 10000(\.0)?, WindowWidth 100(\.0)?\)"
    else:
        write_dicom(path, np.full((32, 32), 0.5))
        detail = ""
    with pytest.raises(DicomError, match=rf"^{path}: the image is one grey level \([-\d.e+]+\) after the modality LUT "
                                         rf"and the VOI window ?{detail}: there is nothing to show$"):
        read_dicom(path)
