"""Shared fixtures: tiny hand-made Kaggle layouts with known answers.

TensorFlow runs as the smoke experiment asks (one thread, op determinism) in the test process, so
that an in-process run and a run on worker processes compute the same bits.
"""
from __future__ import annotations

import sys
from pathlib import Path

from repro.runtime import configure

configure(deterministic=True, threads=1)

# Test-only peers that do not install beside the kit's requirements (Quantus: tests/test_sanity.py),
# put in .testdeps by `make test`; last on the path, so that they never shadow the kit's own packages.
TESTDEPS = Path(__file__).resolve().parents[1] / ".testdeps"
if TESTDEPS.is_dir() and str(TESTDEPS) not in sys.path:
    sys.path.append(str(TESTDEPS))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from repro.data.dicom import write_dicom  # noqa: E402
from repro.data.siim import rle_encode  # noqa: E402


def gradient_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :] * np.ones((size, 1))
    return np.clip(0.6 * ramp + 0.3 * rng.random((size, size)), 0, 1)


@pytest.fixture
def siim_root(tmp_path):
    """Four 64x64 images: two negatives, one with a square mask, one with two rows (two squares)."""
    root = tmp_path / "siim"
    masks = {}
    masks["img0"] = np.zeros((64, 64), bool)
    masks["img1"] = np.zeros((64, 64), bool)
    square = np.zeros((64, 64), bool)
    square[8:24, 32:48] = True
    masks["img2"] = square
    left, right = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    left[40:60, 2:10] = True
    right[0:6, 50:64] = True
    masks["img3"] = left | right
    rows = ["ImageId, EncodedPixels"]
    for i, (image_id, mask) in enumerate(masks.items()):
        write_dicom(root / "dicom-images-train" / f"study{i}" / f"series{i}" / f"{image_id}.dcm",
                    gradient_image(64, i))
        if image_id == "img3":
            rows += [f"{image_id}, {rle_encode(left)}", f"{image_id}, {rle_encode(right)}"]
        else:
            rows.append(f"{image_id}, {rle_encode(mask)}")
    (root / "train-rle.csv").write_text("\n".join(rows) + "\n")
    return root, masks


@pytest.fixture
def rsna_root(tmp_path):
    """Five 64x64 images: one Normal, one Not Normal, two with one box, one with two boxes."""
    root = tmp_path / "rsna"
    labels = ["patientId,x,y,width,height,Target", "p0,,,,,0", "p1,,,,,0", "p2,10,20,15,5,1",
              "p3,0,0,63,63,1", "p4,1,2,3,4,1", "p4,40,40,10,10,1"]
    classes = ["patientId,class", "p0,Normal", "p1,No Lung Opacity / Not Normal", "p2,Lung Opacity",
               "p3,Lung Opacity", "p4,Lung Opacity", "p4,Lung Opacity"]
    for i in range(5):
        write_dicom(root / "stage_2_train_images" / f"p{i}.dcm", gradient_image(64, 10 + i))
    (root / "stage_2_train_labels.csv").write_text("\n".join(labels) + "\n")
    (root / "stage_2_detailed_class_info.csv").write_text("\n".join(classes) + "\n")
    return root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The README's main command on the smoke experiment, once per session, on a local Dask
    cluster of two worker processes, one of which is killed (SIGKILL) once the maps stage has
    written a few maps: every test that reads this run also checks that a dead worker costs
    nothing (tests/test_pipeline.py compares the run with an in-process one, bit for bit).

    Read-only for every test: a test that changes a run works on a copy (tests.helpers.copy_run)."""
    import contextlib
    import io
    import threading
    from types import SimpleNamespace

    from repro import results
    from repro.cli import main
    from repro.experiments import load_experiment
    from tests.helpers import kill_a_worker_once_maps_appear
    run_dir = tmp_path_factory.mktemp("smoke")
    printed, killed, stop = io.StringIO(), [], threading.Event()
    killer = threading.Thread(target=kill_a_worker_once_maps_appear, args=(run_dir, killed, stop), daemon=True)
    killer.start()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["all", "--experiment", "smoke", "--run-dir", str(run_dir), "--cluster", "local:2"])
    finally:
        stop.set()
        killer.join()
    assert code == 0, printed.getvalue()[-3000:]
    experiment = load_experiment("smoke", run_dir=run_dir)
    return SimpleNamespace(experiment=experiment, run_dir=run_dir, results=experiment.layout.results_dir,
                           cells=results.read_cells(experiment), printed=printed.getvalue(), killed=killed)
