"""`repro data check`: is each Kaggle folder complete and in the releases' format, before hours of work?

For each data set of an experiment: the root exists; the label files parse (the loaders' own
checks); every image the labels list has its DICOM (files nobody lists are counted, not refused:
the SIIM-ACR mirror holds a few); for RSNA, one class row per labels row, as the release has it;
every listed DICOM's header (a full scan with a progress bar) has the expected size, photometric
interpretation and bit depth; a seeded sample decodes through the kit's own reader to that size;
the counts are compared with the paper's and an explicit split file with the data. `repro all`
runs the same checks before its data stage.

A problem is one line naming the file, row or setting. Differences that do not stop a run (counts
other than the paper's, a transfer syntax other than the releases') are notes in the summary.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEGBaseline8Bit
from tqdm.auto import tqdm

from repro.data import rsna, siim
from repro.data.dicom import DicomError, read_dicom
from repro.data.splits import paper_split_lists, read_split_csv
from repro.data.labels import read_label_csv
from repro.data.prepare import ensure_phantoms
from repro.protocol import KAGGLE_DATASETS

SAMPLE = 16          # DICOMs decoded per data set
SHOWN = 10           # problems of one kind shown one per line; the rest are counted in one more line


class DataCheckError(ValueError):
    """The data has problems; the message is one line, the `problems` one line each."""

    def __init__(self, problems: list[str], hint: str):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the data, first: {problems[0]} ({hint})")


@dataclass(frozen=True)
class Expected:
    """What every DICOM of a data set should be."""
    size: int                        # rows = columns
    photometric: str = "MONOCHROME2"
    bits: int = 8
    transfer_syntax: str | None = None   # noted when it differs (the kit decodes any)
    paper_images: int = 0            # 0: no paper counts to compare with (phantoms in another format)
    paper_split: tuple[int, int, int] = (0, 0, 0)


@dataclass
class DatasetCheck:
    name: str
    root: Path
    problems: list[str] = field(default_factory=list)
    images: int = 0           # listed images kept (after the paper's exclusions)
    dropped: int = 0          # RSNA "No Lung Opacity / Not Normal" patients
    dicoms: int = 0           # DICOM files in the image folder
    extra: int = 0            # of those, files the labels do not list
    decoded: int = 0
    split: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, kind_lines: list[str], what: str) -> None:
        """Problems of one kind: the first SHOWN one per line, the rest counted."""
        self.problems += kind_lines[:SHOWN]
        if len(kind_lines) > SHOWN:
            self.problems.append(f"{self.name}: and {len(kind_lines) - SHOWN} more {what}")

    def summary(self, expected: Expected) -> str:
        text = f"{self.name} {self.images} images"
        if self.dropped:
            text += f" ({self.dropped} Not Normal dropped)"
        if expected.paper_images:
            text += f" of the paper's {expected.paper_images:,}"
        text += (f", {self.dicoms} DICOMs ({self.extra} not listed), {self.decoded} decoded at "
                 f"{expected.size}x{expected.size} {expected.bits}-bit {expected.photometric}")
        if self.split:
            text += f", split {'/'.join(str(v) for v in self.split.values())}"
        return text + "".join(f"; {note}" for note in self.notes)


def expectations(experiment) -> dict[str, Expected]:
    """What the experiment's DICOMs should be: the releases' (1024 px, 8-bit MONOCHROME2, JPEG
    baseline) for the Kaggle data and for phantoms written in the release format; else the
    phantoms' size."""
    data = experiment.settings.data
    expected = {}
    for name in experiment.datasets:
        spec = KAGGLE_DATASETS[name]
        if data.source == "kaggle" or data.phantoms.format == "release":
            size = spec.image_size if data.source == "kaggle" else data.phantoms.size
            expected[name] = Expected(size, transfer_syntax=JPEGBaseline8Bit, paper_images=spec.images,
                                      paper_split=spec.split)
        else:
            expected[name] = Expected(data.phantoms.size)
    return expected


def check_experiment(experiment, *, sample: int = SAMPLE, progress: bool = True) -> dict[str, DatasetCheck]:
    """Every data set of a Kaggle-layout experiment (its phantoms must have been written)."""
    data = experiment.settings.data
    if data.source == "folder":
        raise ValueError(f"{experiment.path}: repro data check reads the Kaggle layouts; this experiment's "
                         "data is a folder of your own, checked file by file when a run starts")
    split = data.split
    if isinstance(split, str) and split != "paper":
        split = experiment.resolve(split)
    return {name: check_dataset(name, experiment.dataset_root(name), expected,
                                split=split, drop_not_normal=data.drop_not_normal, sample=sample,
                                progress=progress, root_setting=f"data.{name}_root" if data.source == "kaggle"
                                else "the phantoms")
            for name, expected in expectations(experiment).items()}


def check_dataset(name: str, root: Path, expected: Expected, *, split="paper", drop_not_normal: bool = True,
                  sample: int = SAMPLE, progress: bool = True, root_setting: str = "root") -> DatasetCheck:
    check = DatasetCheck(name, Path(root))
    spec = KAGGLE_DATASETS[name]
    if not check.root.is_dir():
        check.problems.append(f"{name}: {root_setting} {check.root} does not exist (docs/real-data.md: where the "
                              "files come from and the folder each root must hold)")
        return check
    image_dir = check.root / spec.image_dir
    if not image_dir.is_dir():
        check.problems.append(f"{name}: image folder {image_dir} does not exist")
        return check
    files = _dicom_files(image_dir, name, progress)
    check.dicoms = sum(len(paths) for paths in files.values())
    check.add([f"{name}: two DICOMs share the id {stem}: {', '.join(map(str, paths))}"
               for stem, paths in files.items() if len(paths) > 1], "ids with two DICOMs")
    missing: list[str] = []
    try:
        records = _records(name, check.root, {stem: paths[0] for stem, paths in files.items()},
                           drop_not_normal, missing)
        listed = _listed_ids(name, check.root)
    except (ValueError, OSError) as err:     # a label file that does not parse: the loaders name the row
        check.problems.append(f"{name}: {' '.join(str(err).split())}")
        return check
    check.add(missing, "listed images without a DICOM")
    check.images, check.extra = len(records), len(set(files) - listed)
    if name == "rsna":
        check.dropped = len(listed) - len(records) - len(missing)
        check.add(_class_rows(check.root), "patients whose class rows do not match their labels rows")
    problems, other_syntax = _headers(records, expected, name, progress)
    check.add(problems, "DICOMs unlike the release's")
    if other_syntax:
        check.notes.append(f"{other_syntax} DICOMs not JPEG baseline as the releases' (the kit decodes them "
                           "all the same)")
    decoded, problems = _decode_sample(records, expected, sample)
    check.decoded = decoded
    check.add(problems, "DICOMs that do not decode")
    if name == "siim":
        check.add(_masks(records, expected.size), "masks past the image's end")
    if records:
        _splits(check, [r.image_id for r in records], split, expected)
    return check


def _dicom_files(image_dir: Path, name: str, progress: bool) -> dict[str, list[Path]]:
    """id -> DICOM paths under the image folder (SIIM nests them study/series; RSNA does not)."""
    found: dict[str, list[Path]] = {}
    walk = image_dir.rglob("*") if name == "siim" else image_dir.iterdir()
    for path in tqdm(walk, desc=f"listing {name} DICOMs", unit=" files", disable=None if progress else True):
        if path.suffix.lower() == ".dcm" and path.is_file():
            found.setdefault(path.stem, []).append(path)
    return {stem: sorted(paths) for stem, paths in sorted(found.items())}


def _records(name, root, dicoms, drop_not_normal, missing):
    if name == "siim":
        return siim.load_siim_records(root, dicoms=dicoms, missing=missing)
    return rsna.load_rsna_records(root, drop_not_normal=drop_not_normal, missing=missing)


def _listed_ids(name: str, root: Path) -> set[str]:
    """Every id the labels list (RSNA: the Not Normal patients too)."""
    if name == "siim":
        return set(read_label_csv(root / "train-rle.csv", ["ImageId"])["ImageId"])
    return set(read_label_csv(root / rsna.LABELS_CSV, ["patientId"])["patientId"])


def _class_rows(root: Path) -> list[str]:
    """The release lists one class row per labels row (30,227 each): a patient with more or fewer
    class rows than labels rows means the two files do not belong together."""
    labels = read_label_csv(root / rsna.LABELS_CSV, ["patientId"]).groupby("patientId", sort=False).size()
    classes = read_label_csv(root / rsna.CLASS_CSV, ["patientId", "class"])
    unknown = sorted(set(classes["class"]) - {rsna.NOT_NORMAL, "Normal", "Lung Opacity"})
    lines = [f"rsna: {rsna.CLASS_CSV}: unknown class {value!r} (row {int(classes.loc[classes['class'] == value, 'row'].iloc[0])})"
             for value in unknown]
    rows = classes.groupby("patientId", sort=False)["row"].agg(list)
    for patient, class_rows in rows.items():
        expected = int(labels.get(patient, 0))
        if len(class_rows) != expected:
            lines.append(f"rsna: {rsna.CLASS_CSV}: patientId {patient} has {len(class_rows)} class row(s) (rows "
                         f"{', '.join(map(str, class_rows[:5]))}) for {expected} row(s) of {rsna.LABELS_CSV}")
    return lines


def _headers(records, expected: Expected, name: str, progress: bool) -> tuple[list[str], int]:
    """Every listed DICOM's header, without its pixels: the problems, and how many files have
    another transfer syntax than the expected one."""
    lines, other_syntax = [], 0
    for record in tqdm(records, desc=f"checking {name} DICOM headers", unit=" files",
                       disable=None if progress else True):
        path = record.dicom_path
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:   # pydicom raises several types for unreadable files
            lines.append(f"{path}: not a readable DICOM file ({' '.join(str(err).split())})")
            continue
        found = (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)))
        if found != (expected.size, expected.size):
            lines.append(f"{path}: {found[0]}x{found[1]} pixels, expected {expected.size}x{expected.size}")
        photometric = str(ds.get("PhotometricInterpretation", "missing"))
        if photometric != expected.photometric:
            lines.append(f"{path}: PhotometricInterpretation {photometric}, expected {expected.photometric}")
        bits = int(ds.get("BitsStored", 0))
        if bits != expected.bits:
            lines.append(f"{path}: {bits} bits stored, expected {expected.bits}")
        syntax = ds.file_meta.get("TransferSyntaxUID")
        other_syntax += expected.transfer_syntax is not None and syntax != expected.transfer_syntax
    return lines, other_syntax


def _decode_sample(records, expected: Expected, sample: int) -> tuple[int, list[str]]:
    """A seeded sample decoded by the kit's reader: the pixels, not only the header."""
    chosen = random.Random(0).sample(records, min(sample, len(records)))
    lines = []
    for record in chosen:
        try:
            pixels = read_dicom(record.dicom_path)
        except DicomError as err:
            lines.append(str(err))
            continue
        if pixels.shape != (expected.size, expected.size):
            lines.append(f"{record.dicom_path}: decodes to {pixels.shape[0]}x{pixels.shape[1]} pixels, "
                         f"expected {expected.size}x{expected.size}")
        elif not np.isfinite(pixels).all() or pixels.max() <= pixels.min():
            lines.append(f"{record.dicom_path}: decodes to a blank image")
    return len(chosen) - len(lines), lines


def _masks(records, size: int) -> list[str]:
    """Each SIIM mask decoded at the release's size: a run past the end is a damaged row."""
    lines = []
    for record in records:
        if record.label:
            try:
                siim.decode_record_mask(record, size, size)
            except siim.RLEError as err:
                lines.append(f"siim: train-rle.csv: {err}")
    return lines


def _splits(check: DatasetCheck, ids: list[str], split, expected: Expected) -> None:
    if isinstance(split, (str, Path)) and str(split) != "paper":
        try:
            lists = read_split_csv(split, ids)
        except (ValueError, OSError) as err:
            check.problems.append(f"{check.name}: split file {' '.join(str(err).split())}")
            return
    elif isinstance(split, str):
        if len(ids) < 3:
            return
        lists = paper_split_lists(ids)
    else:
        lists = paper_split_lists(ids, test_size=split.test_fraction, val_size=split.val_fraction,
                                  random_state=split.seed)
    check.split = {name: len(members) for name, members in lists.items()}
    counts = tuple(check.split.values())
    if expected.paper_images and check.images == expected.paper_images and counts != expected.paper_split:
        check.notes.append(f"split {'/'.join(map(str, counts))} where the paper has "
                           f"{'/'.join(map(str, expected.paper_split))}")


def format_problems(checks: dict[str, DatasetCheck]) -> list[str]:
    return [line for check in checks.values() for line in check.problems]


def summary_line(checks: dict[str, DatasetCheck], expected: dict[str, Expected]) -> str:
    return "data check passed: " + "; ".join(check.summary(expected[name]) for name, check in checks.items())


def check_data(experiment, *, sample: int = SAMPLE, progress: bool = True, raise_problems: bool = True
               ) -> tuple[dict[str, DatasetCheck], str]:
    """The checks of `repro data check` and of the start of `repro all`: the phantoms written
    first when the experiment makes them; a DataCheckError naming the problems (raise_problems),
    else the checks and their one-line summary."""
    if experiment.settings.data.source == "folder":
        return {}, "data check: a folder of your own is checked file by file as it loads"
    if experiment.settings.data.source == "phantoms":
        ensure_phantoms(experiment, progress=progress)
    checks = check_experiment(experiment, sample=sample, progress=progress)
    problems = format_problems(checks)
    if problems and raise_problems:
        raise DataCheckError(problems, f"every problem, one per line: {experiment.command('data check')}")
    return checks, summary_line(checks, expectations(experiment))


def check_roots(experiment) -> str:
    """`repro config --check`'s data part: each root exists with its label files and image folder
    (a missing one is an error); the images themselves are left to `repro data check`."""
    data = experiment.settings.data
    if data.source == "phantoms":
        return "data: phantoms, written by the run itself"
    if data.source == "folder":
        roots = {name: experiment.dataset_root(name) for name in experiment.datasets}
        missing = [f"data.folder.{name}.root {root} does not exist" for name, root in roots.items() if not root.is_dir()]
    else:
        missing = []
        for name in experiment.datasets:
            root, spec = experiment.dataset_root(name), KAGGLE_DATASETS[name]
            if not root.is_dir():
                missing.append(f"data.{name}_root {root} does not exist")
                continue
            missing += [f"data.{name}_root {root} has no {item}" for item in (*spec.label_files, spec.image_dir)
                        if not (root / item).exists()]
    if missing:
        raise FileNotFoundError("; ".join(missing) + " (docs/real-data.md: where the files come from and "
                                "the folder each root must hold)")
    return (f"data roots hold their label files and image folders ({', '.join(experiment.datasets)}); not checked: "
            f"the images themselves ({experiment.command('data check')})")
