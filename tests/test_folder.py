"""A data set of your own from a folder: boxes that cannot be drawn are refused naming the file and row."""
import numpy as np
import pytest
from PIL import Image

from repro.data.folder import load_folder_dataset
from repro.experiments import FolderData


def folder_with_boxes(root, box: str):
    """Two 32x32 PNGs, one positive with two boxes (the second is `box`)."""
    for name in ("a", "b"):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)).save(root / "images" / f"{name}.png")
    (root / "labels.csv").write_text("image,label,split\na.png,1,train\nb.png,0,test\n")
    (root / "boxes.csv").write_text(f"image,x,y,width,height\na.png,2,2,8,8\na.png,{box}\n")
    return FolderData(root=str(root), boxes="boxes.csv")


def test_boxes_become_masks(tmp_path):
    folder = folder_with_boxes(tmp_path, "20,20,4,4")
    dataset = load_folder_dataset("chest", tmp_path, 32, folder, cache_dir=tmp_path / "cache", progress=False)
    assert dataset.masks[0, 2:11, 2:11].all() and dataset.masks[0, 20:25, 20:25].all()
    assert dataset.masks[0].sum() == 81 + 25 and not dataset.masks[1].any()


@pytest.mark.parametrize("box, problem", [
    ("nan,4,8,8", "has a value that is not a finite number"),
    ("4,4,inf,8", "has a value that is not a finite number"),
    ("4,4,-8,8", "has no positive width and height"),
    ("4,4,8,0", "has no positive width and height"),
])
def test_a_box_that_cannot_be_drawn_names_the_file_and_row(tmp_path, box, problem):
    folder = folder_with_boxes(tmp_path, box)
    x, y, width, height = box.split(",")
    with pytest.raises(ValueError) as error:
        load_folder_dataset("chest", tmp_path, 32, folder, cache_dir=tmp_path / "cache", progress=False)
    assert str(error.value) == (f"{tmp_path / 'boxes.csv'}: row 2: the box (x={x}, y={y}, width={width}, "
                                f"height={height}) {problem}")
    assert not (tmp_path / "cache").exists()
