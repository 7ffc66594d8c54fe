"""Phantoms in the Kaggle releases' file format, and `repro data check` on them: it passes on the
pristine files and names each planted defect of a corrupted copy, one line each."""
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit

from repro.cli import main
from repro.data.check import DataCheckError, check_data
from repro.data.dicom import read_dicom, write_dicom
from repro.data.phantoms import PhantomConfig, make_phantoms
from repro.experiments import load_experiment

N = 8


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Eight 1024 px phantoms a data set, written as the releases ship their files."""
    out = tmp_path_factory.mktemp("release")
    config = PhantomConfig(size=1024, format="release", siim_prevalence=0.5, rsna_prevalence=0.5)
    return make_phantoms(out, N, 0, config=config, progress=False)


def paper_on(roots, *extra):
    return ["--experiment", "paper", "--set", f"data.siim_root={roots['siim']}",
            "--set", f"data.rsna_root={roots['rsna']}", *extra]


def test_release_files_are_the_releases_format(release):
    siim_files = sorted((release["siim"] / "dicom-images-train").rglob("*.dcm"))
    assert len(siim_files) == N
    path = siim_files[0]
    # nested <study>/<series>/<ImageId>.dcm with the releases' UID roots
    image_id, series, study = path.stem, path.parent.name, path.parent.parent.name
    assert image_id.startswith("1.2.276.0.7230010.3.1.4.") and series.startswith("1.2.276.0.7230010.3.1.3.")
    assert study.startswith("1.2.276.0.7230010.3.1.2.")
    for path in (siim_files[0], next((release["rsna"] / "stage_2_train_images").glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
        assert (ds.Rows, ds.Columns, ds.BitsStored, ds.BitsAllocated) == (1024, 1024, 8, 8)
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
        assert ds.Modality == "CR" and ds.BodyPartExamined == "CHEST" and ds.ViewPosition in ("PA", "AP")
        assert ds.SeriesDescription == f"view: {ds.ViewPosition}" and ds.PatientSex in ("F", "M")
        assert ds.PatientName == ds.PatientID and ds.LossyImageCompressionMethod == "ISO_10918_1"
        frame = next(pydicom.encaps.generate_frames(ds.PixelData))
        assert frame[:2] == b"\xff\xd8" and b"\xff\xc0" in frame     # JPEG, start of frame 0: baseline
        pixels = ds.pixel_array                                       # pylibjpeg's decoder
        assert pixels.dtype == np.uint8 and pixels.shape == (1024, 1024) and pixels.std() > 10
    rle = (release["siim"] / "train-rle.csv").read_text().splitlines()
    assert rle[0] == "ImageId, EncodedPixels" and all(", " in row for row in rle[1:])
    assert len(rle) - 1 > len({row.split(",")[0] for row in rle[1:]})   # a mask in several rows
    labels = (release["rsna"] / "stage_2_train_labels.csv").read_text().splitlines()
    classes = (release["rsna"] / "stage_2_detailed_class_info.csv").read_text().splitlines()
    assert len(labels) == len(classes)                                  # one class row per labels row
    boxes = [row.split(",") for row in labels[1:] if row.endswith(",1")]
    assert boxes and all(value.endswith(".0") for row in boxes for value in row[1:5])   # "264.0"
    assert any(row.endswith("No Lung Opacity / Not Normal") for row in classes)


def test_jpeg_baseline_round_trip_is_close(tmp_path):
    from tests.conftest import gradient_image
    image = gradient_image(64, 1)
    back = read_dicom(write_dicom(tmp_path / "j.dcm", image, transfer_syntax=JPEGBaseline8Bit, jpeg_quality=95))
    assert np.abs(back - image).mean() < 0.02      # lossy, but close: the noise is the hardest part
    with pytest.raises(ValueError, match="JPEG baseline holds 8-bit pixels only"):
        write_dicom(tmp_path / "k.dcm", image, bits=12, transfer_syntax=JPEGBaseline8Bit)


def test_data_check_passes_on_release_files(release, capsys):
    assert main(["data", "check", *paper_on(release)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("data check passed: siim 8 images of the paper's 10,675, 8 DICOMs "
                                               "(0 not listed), 8 decoded at 1024x1024 8-bit MONOCHROME2")
    assert "rsna 7 images (1 Not Normal dropped) of the paper's 14,863" in out[0]


def test_data_check_names_each_planted_defect(release, tmp_path, capsys):
    siim, rsna = shutil.copytree(release["siim"], tmp_path / "siim"), shutil.copytree(release["rsna"], tmp_path / "rsna")
    gone = sorted((siim / "dicom-images-train").rglob("*.dcm"))[3]
    gone.unlink()                                                              # a missing DICOM
    classes = rsna / "stage_2_detailed_class_info.csv"
    patient, kind = classes.read_text().splitlines()[1].split(",")
    classes.write_text(classes.read_text() + f"{patient},{kind}\n")           # an extra class row
    positive = next(row for row in (rsna / "stage_2_train_labels.csv").read_text().splitlines() if row.endswith(",1"))
    shrunk = rsna / "stage_2_train_images" / f"{positive.split(',')[0]}.dcm"
    write_dicom(shrunk, np.full((512, 512), 0.5), transfer_syntax=JPEGBaseline8Bit)   # the wrong size
    assert main(["data", "check", *paper_on({"siim": siim, "rsna": rsna}), "--sample", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("repro: error: ") for line in err)
    assert any(f"ImageId {gone.stem}" in line and "has no DICOM" in line for line in err)
    assert any(f"patientId {patient} has 2 class row(s)" in line and "for 1 row(s) of stage_2_train_labels.csv" in line
               for line in err)
    assert any(line.endswith(f"{shrunk}: 512x512 pixels, expected 1024x1024") for line in err)
    # a split file that does not belong to the data (RSNA only: a split file holds one data set's ids)
    ids = [row.split(",")[0] for row in classes.read_text().splitlines()[1:] if not row.endswith("Not Normal")]
    split = tmp_path / "split.csv"
    split.write_text("Image_ID,Split\n" + "".join(f"{i},train\n" for i in dict.fromkeys(ids)) + "elsewhere,test\n")
    assert main(["data", "check", *paper_on({"siim": siim, "rsna": rsna}), "--set", "data.datasets=[rsna]",
                 "--set", f"data.split={split}"]) == 2
    err = capsys.readouterr().err
    assert f"repro: error: rsna: split file {split}: 1 Image_ID(s) are not in the data set, e.g. ['elsewhere']" in err


def test_repro_all_stops_before_any_work_naming_the_problem(release, tmp_path):
    rsna = shutil.copytree(release["rsna"], tmp_path / "rsna")
    sorted((rsna / "stage_2_train_images").glob("*.dcm"))[1].unlink()
    experiment = load_experiment("paper", run_dir=tmp_path / "run", overrides=[
        f"data.siim_root={release['siim']}", f"data.rsna_root={rsna}"])
    from repro import pipeline
    with pytest.raises(DataCheckError, match=r"^1 problem\(s\) in the data, first: stage_2_train_labels.csv: "
                                             r"patientId .* has no DICOM .*repro data check --experiment paper"):
        pipeline.stage_data(experiment, progress=False)
    assert not (tmp_path / "run" / "cache").exists()


def test_config_check_says_what_it_checked(release, tmp_path, capsys):
    assert main(["config", "--check", *paper_on(release)]) == 0
    out = capsys.readouterr().out
    assert "the settings are valid" in out and "data roots hold their label files and image folders (siim, rsna)" in out
    assert "not checked: the images themselves (repro data check --experiment paper" in out
    assert main(["config", "--check", *paper_on({"siim": tmp_path / "nowhere", "rsna": release["rsna"]})]) == 2
    assert f"repro: error: data.siim_root {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


def test_check_data_of_a_phantom_experiment_writes_and_checks_them(tmp_path):
    experiment = load_experiment("smoke", run_dir=tmp_path / "run", overrides=["data.phantoms.n=6"])
    checks, line = check_data(experiment, progress=False)
    assert line.startswith("data check passed: siim 6 images, 6 DICOMs (0 not listed), 6 decoded at 128x128 "
                           "8-bit MONOCHROME2")
    assert "of the paper's" not in line and not any(c.problems for c in checks.values())
