"""Synthetic chest-radiograph phantoms: determinism, the two Kaggle layouts, labels that match the
pixels, physically sensible findings, the confounder knob and argument checks."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from repro.data import phantoms
from repro.data.dicom import read_dicom
from repro.data.phantoms import PhantomConfig, make_phantoms, make_rsna_layout, make_siim_layout, render_phantom
from repro.data.siim import load_siim_records, rle_decode

N = 40
SMALL = PhantomConfig(size=128)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    return make_phantoms(tmp_path_factory.mktemp("phantoms"), N, 7, config=SMALL)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _truth(root: Path) -> dict[str, tuple[np.ndarray, int]]:
    size = SMALL.size
    return {row["ImageId"]: (rle_decode(row["Evidence"], size, size), int(row["Confounder"]))
            for row in _rows(root / "phantom-truth.csv")}


def _siim_masks(root: Path) -> dict[str, np.ndarray]:
    """Union of the train-rle.csv rows per ImageId, in file order."""
    masks: dict[str, np.ndarray] = {}
    for line in (root / "train-rle.csv").read_text().splitlines()[1:]:
        image_id, rle = (field.strip() for field in line.split(","))
        mask = masks.setdefault(image_id, np.zeros((SMALL.size, SMALL.size), dtype=bool))
        mask |= rle_decode(rle, SMALL.size, SMALL.size)
    return masks


def _rsna_boxes(root: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    boxes: dict[str, list] = {}
    for row in _rows(root / "stage_2_train_labels.csv"):
        found = boxes.setdefault(row["patientId"], [])
        if row["Target"] == "1":
            found.append(tuple(int(float(row[k])) for k in ("x", "y", "width", "height")))
    return boxes


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_files_other_seed_differs(tmp_path, roots):
    again = make_phantoms(tmp_path / "again", N, 7, config=SMALL)
    other = make_phantoms(tmp_path / "other", N, 8, config=SMALL)
    for name, root in roots.items():
        files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(again[name]) for p in again[name].rglob("*") if p.is_file())
        for rel in files:
            assert (root / rel).read_bytes() == (again[name] / rel).read_bytes(), rel
            if rel.suffix == ".dcm":
                np.testing.assert_array_equal(read_dicom(root / rel), read_dicom(again[name] / rel))
        csv_name = "train-rle.csv" if name == "siim" else "stage_2_train_labels.csv"
        assert (root / csv_name).read_text() != (other[name] / csv_name).read_text()
        first = [read_dicom(p) for p in sorted(root.rglob("*.dcm"))[:5]]
        second = [read_dicom(p) for p in sorted(other[name].rglob("*.dcm"))[:5]]
        assert not any(np.array_equal(a, b) for a, b in zip(first, second))


def test_the_two_layouts_differ(roots):
    siim = read_dicom(next(roots["siim"].rglob("*.dcm")))
    assert not any(np.array_equal(siim, read_dicom(p)) for p in roots["rsna"].rglob("*.dcm"))


def test_render_depends_only_on_the_generator():
    a = render_phantom(np.random.default_rng(3), "pneumonia", SMALL)
    b = render_phantom(np.random.default_rng(3), "pneumonia", SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.evidence, b.evidence)
    assert a.boxes == b.boxes
    assert a.image.dtype == np.float32 and a.image.shape == (128, 128)
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Layouts


def test_siim_layout(roots):
    root = roots["siim"]
    assert (root / "train-rle.csv").read_text().splitlines()[0] == "ImageId, EncodedPixels"
    masks = _siim_masks(root)
    assert len(masks) == N
    positives = [image_id for image_id, mask in masks.items() if mask.any()]
    assert len(positives) == round(N * PhantomConfig().siim_prevalence)
    for path in root.rglob("*.dcm"):
        study, series, name = path.relative_to(root / "dicom-images-train").parts
        ds = pydicom.dcmread(path)
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (study, series, path.stem)
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsStored == 8
        assert path.stem in masks
    assert len(list(root.rglob("*.dcm"))) == N
    records = load_siim_records(root)  # the project's own loader accepts the layout
    assert sorted(r.image_id for r in records if r.label) == sorted(positives)
    assert set(_truth(root)) == set(masks)


def test_rsna_layout(roots):
    root = roots["rsna"]
    labels = _rows(root / "stage_2_train_labels.csv")
    classes = _rows(root / "stage_2_detailed_class_info.csv")
    assert list(labels[0]) == ["patientId", "x", "y", "width", "height", "Target"]
    assert list(classes[0]) == ["patientId", "class"]
    # As in the real files: one class row per label row, same patients in the same order.
    assert [r["patientId"] for r in labels] == [r["patientId"] for r in classes]
    by_patient = {r["patientId"]: r["class"] for r in classes}
    assert len(by_patient) == N
    assert sorted(p.stem for p in (root / "stage_2_train_images").glob("*.dcm")) == sorted(by_patient)
    for row, info in zip(labels, classes):
        assert (row["Target"] == "1") == (info["class"] == "Lung Opacity")
        if row["Target"] == "0":
            assert row["x"] == row["y"] == row["width"] == row["height"] == ""
    counts = {name: sum(c == name for c in by_patient.values())
              for name in ("Lung Opacity", "Normal", "No Lung Opacity / Not Normal")}
    config = PhantomConfig()
    not_normal = round(N * config.rsna_not_normal_fraction)
    assert counts["No Lung Opacity / Not Normal"] == not_normal
    assert counts["Lung Opacity"] == round((N - not_normal) * config.rsna_prevalence)
    assert min(counts.values()) > 0
    assert set(_truth(root)) == set(by_patient)


# ---------------------------------------------------------------------------------------------
# Labels match the pixels


def test_siim_rle_matches_rendering(roots):
    """Re-render every image from its per-image seed: train-rle.csv, phantom-truth.csv and the DICOM
    pixels all agree with the rendered phantom."""
    root = roots["siim"]
    masks, truth = _siim_masks(root), _truth(root)
    paths = {p.stem: p for p in root.rglob("*.dcm")}
    _, seeds = phantoms._streams(7, "siim", N, SMALL)
    for seed, (image_id, mask) in zip(seeds, masks.items()):
        finding = "pneumothorax" if mask.any() else None
        phantom = render_phantom(np.random.default_rng(seed), finding, SMALL, confounder_kind="chest_tube")
        np.testing.assert_array_equal(mask, phantom.mask)
        np.testing.assert_array_equal(truth[image_id][0], phantom.evidence)
        assert np.abs(read_dicom(paths[image_id]) - phantom.image).max() <= 0.5 / 255 + 1e-6


def test_one_region_per_connected_component():
    # Bilateral pneumothoraces are rare (about 12% of positives): render until one appears.
    for seed in range(60):
        phantom = render_phantom(np.random.default_rng(seed), "pneumothorax", SMALL)
        if len(phantom.regions) > 1:
            break
    else:
        pytest.fail("no bilateral pneumothorax in 60 phantoms")
    assert ndimage.label(phantom.mask)[1] == len(phantom.regions)
    np.testing.assert_array_equal(np.logical_or.reduce(phantom.regions), phantom.mask)


def test_pneumothorax_evidence_hugs_the_mask(roots):
    """Rule: evidence = the texture-free region (inside the mask) plus the pleural line, which lies
    on the collapsed lung's edge: no evidence pixel is more than 2 px (at 128 px) from the mask."""
    root = roots["siim"]
    truth = _truth(root)
    for image_id, mask in _siim_masks(root).items():
        evidence = truth[image_id][0]
        assert evidence.any() == mask.any()
        if mask.any():
            assert (evidence & mask).sum() == mask.sum()
            assert ndimage.distance_transform_edt(~mask)[evidence].max() <= 2.0


def test_pneumonia_boxes_contain_their_opacity(roots):
    root = roots["rsna"]
    truth = _truth(root)
    for patient_id, boxes in _rsna_boxes(root).items():
        evidence = truth[patient_id][0]
        assert evidence.any() == bool(boxes)
        covered = np.zeros_like(evidence)
        for x, y, w, h in boxes:
            inside = evidence[y:y + h, x:x + w]
            # Each box is the tight bounding box of its opacity's evidence: evidence touches all four sides.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[y:y + h, x:x + w] = True
        assert not (evidence & ~covered).any()


@pytest.mark.parametrize("finding", ["pneumothorax", "pneumonia"])
def test_masks_lie_in_the_lungs_and_body(finding):
    for seed in range(12):
        phantom = render_phantom(np.random.default_rng(seed), finding, SMALL)
        assert phantom.mask.any()
        assert not (phantom.mask & ~phantom.body).any()
        # Lung edges are soft (a pixel or two), so evidence may reach 2 px past the hard lung mask.
        assert ndimage.distance_transform_edt(~phantom.lungs)[phantom.evidence].max() <= 2.0
        if finding == "pneumonia":
            masks = [np.zeros_like(phantom.mask) for _ in phantom.boxes]
            for mask, (x, y, w, h) in zip(masks, phantom.boxes):
                mask[y:y + h, x:x + w] = True
            np.testing.assert_array_equal(np.logical_or.reduce(masks), phantom.mask)
            assert 1 <= len(phantom.boxes) <= 3


# ---------------------------------------------------------------------------------------------
# Physical sanity, in numbers


def test_pneumothorax_region_has_no_lung_texture():
    """High-frequency texture (std of the image minus its gaussian blur) inside the gap, 3 px away
    from its edges, against its mirror image in the other lung (where that lands in the lung: at
    least 50 px): lower in every phantom, and by over a quarter in the median."""
    config = PhantomConfig(size=256)
    ratios = []
    for seed in range(12):
        phantom = render_phantom(np.random.default_rng(seed), "pneumothorax", config)
        detail = phantom.image - ndimage.gaussian_filter(phantom.image, 1.5)
        gap = ndimage.binary_erosion(phantom.mask, iterations=3)
        mirror = ndimage.binary_erosion(np.fliplr(phantom.mask) & phantom.lungs & ~phantom.mask, iterations=3)
        if gap.sum() >= 50 and mirror.sum() >= 50:
            ratios.append(detail[gap].std() / detail[mirror].std())
    assert len(ratios) >= 8
    assert max(ratios) < 0.95, ratios
    assert np.median(ratios) < 0.75, ratios


def test_pneumothorax_region_is_darker_and_has_a_pleural_line():
    config = PhantomConfig(size=256)
    for seed in range(4):
        with_ptx = render_phantom(np.random.default_rng(seed), "pneumothorax", config)
        without = render_phantom(np.random.default_rng(seed), None, config)
        gap = with_ptx.mask
        assert with_ptx.image[gap].mean() < without.image[gap].mean() - 0.03
        line = with_ptx.evidence & ~gap
        assert line.any()
        assert with_ptx.image[line].mean() > without.image[line].mean() + 0.03


def test_opacity_brightens_the_lung():
    """Same generator state with and without the finding: the opacity's evidence region is brighter."""
    for seed in range(6):
        sick = render_phantom(np.random.default_rng(seed), "pneumonia", SMALL)
        healthy = render_phantom(np.random.default_rng(seed), None, SMALL)
        region = sick.evidence
        assert sick.image[region].mean() > healthy.image[region].mean() + 0.08
        # Outside its boxes the opacity's gaussian tails add less than the evidence threshold.
        assert np.abs(sick.image - healthy.image)[~sick.mask].max() < 0.05


def test_lungs_are_darker_than_the_mediastinum():
    for seed in range(6):
        phantom = render_phantom(np.random.default_rng(seed), None, SMALL)
        rows = np.flatnonzero(phantom.lungs.any(axis=1))
        centre = phantom.image[rows, 128 // 2 - 6: 128 // 2 + 6]
        assert phantom.image[phantom.lungs].mean() < centre.mean() - 0.2
        assert phantom.image[~phantom.body].mean() < phantom.image[phantom.lungs].mean()


def test_not_normal_changes_the_anatomy_without_a_finding():
    for seed in range(4):
        odd = render_phantom(np.random.default_rng(seed), "not_normal", SMALL)
        normal = render_phantom(np.random.default_rng(seed), None, SMALL)
        assert not odd.mask.any() and not odd.evidence.any() and not odd.boxes
        # An enlarged heart or fluid in a costophrenic angle: at least 0.5% of the image changes visibly.
        assert (np.abs(odd.image - normal.image) > 0.05).mean() > 0.005


def test_conspicuity_scales_the_finding():
    faint = render_phantom(np.random.default_rng(5), "pneumonia", PhantomConfig(size=128, conspicuity=0.5))
    strong = render_phantom(np.random.default_rng(5), "pneumonia", PhantomConfig(size=128, conspicuity=1.5))
    healthy = render_phantom(np.random.default_rng(5), None, SMALL)
    gain = [(p.image - healthy.image)[p.evidence].mean() for p in (faint, strong)]
    assert gain[0] < gain[1]
    assert faint.evidence.sum() < strong.evidence.sum()


# ---------------------------------------------------------------------------------------------
# Confounder


def test_confounder_follows_the_label(tmp_path):
    config = PhantomConfig(size=128, confounder_rate=1.0, confounder_negative_rate=0.0)
    roots = make_phantoms(tmp_path, 16, 1, config=config)
    siim_positive = {k: v.any() for k, v in _siim_masks(roots["siim"]).items()}
    for image_id, (_, confounder) in _truth(roots["siim"]).items():
        assert confounder == int(siim_positive[image_id])
    rsna_positive = {k: bool(v) for k, v in _rsna_boxes(roots["rsna"]).items()}
    for patient_id, (_, confounder) in _truth(roots["rsna"]).items():
        assert confounder == int(rsna_positive[patient_id])
    assert 0 < sum(siim_positive.values()) < 16 and 0 < sum(rsna_positive.values()) < 16


@pytest.mark.parametrize("kind", ["chest_tube", "marker"])
def test_confounder_is_visible_and_off_by_default(kind):
    finding = "pneumothorax" if kind == "chest_tube" else "pneumonia"
    plain = render_phantom(np.random.default_rng(2), finding, SMALL, confounder_kind=kind)
    marked = render_phantom(np.random.default_rng(2), finding, PhantomConfig(size=128, confounder_rate=1.0),
                            confounder_kind=kind)
    assert not plain.confounder and marked.confounder
    brighter = marked.image - plain.image > 0.1
    assert brighter.sum() > 20
    assert (brighter & marked.evidence).sum() < 0.5 * brighter.sum()  # it is not the finding
    negative = render_phantom(np.random.default_rng(2), None, PhantomConfig(size=128, confounder_negative_rate=1.0),
                              confounder_kind=kind)
    assert negative.confounder


# ---------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize("field, value", [
    ("size", 32), ("size", 100.0), ("conspicuity", 0), ("conspicuity", float("nan")),
    ("siim_prevalence", 1.5), ("rsna_prevalence", -0.1), ("rsna_not_normal_fraction", 2),
    ("confounder_rate", -1), ("confounder_negative_rate", "0.5"),
])
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=f"{field}.*{value}"):
        PhantomConfig(**{field: value})


@pytest.mark.parametrize("maker", [make_siim_layout, make_rsna_layout])
@pytest.mark.parametrize("argument, value", [("n", 0), ("n", 2.5), ("seed", -1)])
def test_bad_layout_arguments_are_refused(tmp_path, maker, argument, value):
    kwargs = {"n": 2, "seed": 0, argument: value}
    with pytest.raises(ValueError, match=f"{argument} must .* got {value}"):
        maker(tmp_path, config=SMALL, **kwargs)
    assert not any(tmp_path.iterdir())


def test_bad_datasets_and_findings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="datasets.*chexpert"):
        make_phantoms(tmp_path, 2, 0, datasets=("siim", "chexpert"))
    with pytest.raises(ValueError, match="finding.*'edema'"):
        render_phantom(np.random.default_rng(0), "edema", SMALL)
    with pytest.raises(ValueError, match="confounder_kind.*'pacemaker'"):
        render_phantom(np.random.default_rng(0), None, SMALL, confounder_kind="pacemaker")


def test_the_preview_grid_shows_the_grey_levels_not_a_white_page(roots, tmp_path):
    """`repro data preview`: the uint16 images drawn at their grey levels (once drawn at raw uint16
    values against a 0-255 scale, every radiograph came out white)."""
    import matplotlib.image as mpimg

    from repro.data.dataset import load_dataset
    from repro.data.preview import preview_grid
    data = load_dataset("siim", roots["siim"], 64, cache_dir=tmp_path / "cache", progress=False)
    grey = mpimg.imread(preview_grid(data, tmp_path / "grid.png", n=4))[..., :3].mean(axis=-1)
    assert (grey > 0.99).mean() < 0.6      # the page's margins and titles; saturated it was 98% white
    assert (grey < 0.5).mean() > 0.15      # the radiographs' dark background and lungs
