"""Shared fixtures: tiny hand-made Kaggle layouts with known answers."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
