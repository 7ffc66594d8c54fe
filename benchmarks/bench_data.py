"""The data stage at paper scale: release-format DICOMs (1024 px, JPEG baseline) decoded into the
320 px cache, on one process and on every core, with the peak memory; extrapolated to the paper's
25,538 images (10,675 SIIM-ACR, 14,863 RSNA).

The files are Kaggle-format phantoms (repro.data.phantoms, format "release"): --distinct of them
per data set are rendered (0.5 s each at 1024 px), then written --n times in all under new ids
(copies of the DICOM files with their label rows): decoding cost depends on the file, not on
whether another file holds the same pixels, and rendering thousands would take longer than
decoding them. Both data sets are measured (SIIM decodes RLE masks, RSNA fills boxes).

    python benchmarks/bench_data.py --n 2000 --out runs/bench/bench_data.json
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from benchmarks.output import show_and_save  # noqa: E402
from repro.data.dataset import load_dataset  # noqa: E402
from repro.data.phantoms import PhantomConfig, make_phantoms  # noqa: E402
from repro.protocol import KAGGLE_DATASETS  # noqa: E402
from repro.provenance import StageClock  # noqa: E402

SIZE = 320
PAPER_IMAGES = {name: spec.images for name, spec in KAGGLE_DATASETS.items()}


def main(argv=None) -> dict:
    args = parse(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.work))
    try:
        made = make_phantoms(work / "distinct", args.distinct, 0, progress=False,
                             config=PhantomConfig(size=1024, format="release"))
        roots = {"siim": _copies_siim(made["siim"], work / "siim", args.n),
                 "rsna": _copies_rsna(made["rsna"], work / "rsna", args.n)}
        disk = {name: sum(p.stat().st_size for p in root.rglob("*.dcm")) / args.n for name, root in roots.items()}
        cores = len(os.sched_getaffinity(0))
        runs = {}
        for processes in sorted({1, cores}):
            for name, root in roots.items():
                cache = work / f"cache-{processes}-{name}"
                clock = StageClock(interval=0.1)
                cpu = _cpu_seconds()
                with clock.stage("decode"):
                    dataset = load_dataset(name, root, SIZE, cache_dir=cache, processes=processes, progress=False)
                cpu = _cpu_seconds() - cpu
                clock.stop()
                seconds = clock.stages["decode"]["seconds"]
                runs[f"{name}, {processes} process(es)"] = {
                    "dataset": name, "processes": processes, "images": len(dataset.ids), "seconds": seconds,
                    "images_per_second": round(len(dataset.ids) / seconds, 1), "cpu_seconds": round(cpu, 1),
                    "images_per_cpu_second": round(len(dataset.ids) / cpu, 2),
                    "peak_memory_gb": clock.stages["decode"]["peak_memory_gb"],
                    "cache_bytes_per_image": round(sum(p.stat().st_size for p in cache.glob("*.npz")) / len(dataset.ids)),
                    "array_bytes_per_image": round(sum(a.nbytes for a in (dataset.images, dataset.masks)) / len(dataset.ids))}
                del dataset
        result = {"settings": vars(args), "cores": cores, "dicom_bytes_per_image": disk, "runs": runs,
                  "paper": extrapolate(runs, cores)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return show_and_save(result, report(result), args.out)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="DICOMs per data set")
    parser.add_argument("--distinct", type=int, default=100, help="distinct phantoms rendered per data set")
    parser.add_argument("--work", help="folder for the temporary files (default: the system's)")
    parser.add_argument("--out")
    return parser.parse_args(argv)


def _copies_siim(source: Path, root: Path, n: int) -> Path:
    """n SIIM-layout files from the distinct ones: nested study/series folders, RLE rows copied."""
    rows = (source / "train-rle.csv").read_text().splitlines()
    by_id: dict[str, list[str]] = {}
    for row in rows[1:]:
        by_id.setdefault(row.split(",")[0], []).append(row.split(",", 1)[1])
    files = {p.stem: p for p in (source / "dicom-images-train").rglob("*.dcm")}
    ids = list(by_id)
    out = [rows[0]]
    for i in range(n):
        original = ids[i % len(ids)]
        copy = f"{original}.{i}"
        target = root / "dicom-images-train" / f"study.{i}" / f"series.{i}" / f"{copy}.dcm"
        target.parent.mkdir(parents=True)
        shutil.copyfile(files[original], target)
        out += [f"{copy},{rle}" for rle in by_id[original]]
    (root / "train-rle.csv").write_text("\n".join(out) + "\n")
    return root


def _copies_rsna(source: Path, root: Path, n: int) -> Path:
    labels = (source / "stage_2_train_labels.csv").read_text().splitlines()
    classes = (source / "stage_2_detailed_class_info.csv").read_text().splitlines()
    by_id: dict[str, list[tuple[str, str]]] = {}
    for label, kind in zip(labels[1:], classes[1:]):
        by_id.setdefault(label.split(",")[0], []).append((label.split(",", 1)[1], kind.split(",", 1)[1]))
    ids = list(by_id)
    (root / "stage_2_train_images").mkdir(parents=True)
    label_rows, class_rows = [labels[0]], [classes[0]]
    for i in range(n):
        original = ids[i % len(ids)]
        copy = f"{original[:-5]}{i:05d}"
        shutil.copyfile(source / "stage_2_train_images" / f"{original}.dcm", root / "stage_2_train_images" / f"{copy}.dcm")
        label_rows += [f"{copy},{label}" for label, _ in by_id[original]]
        class_rows += [f"{copy},{kind}" for _, kind in by_id[original]]
    (root / "stage_2_train_labels.csv").write_text("\n".join(label_rows) + "\n")
    (root / "stage_2_detailed_class_info.csv").write_text("\n".join(class_rows) + "\n")
    return root


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the decoders)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def extrapolate(runs: dict, cores: int) -> dict:
    """The paper's images at the measured CPU cost per image (linear: every image costs the same;
    CPU seconds, which other jobs on a shared machine disturb far less than wall time), on one core
    and spread over `cores` (assumed perfect: the chunks are independent); the peak as the arrays the
    cache holds (N x (320 x 320 uint16 image + bool mask)) plus what the one-process run held besides."""
    paper = {}
    for name, images in PAPER_IMAGES.items():
        one = next(r for r in runs.values() if r["dataset"] == name and r["processes"] == 1)
        arrays_gb = one["array_bytes_per_image"] / 1e9
        overhead = one["peak_memory_gb"] - arrays_gb * one["images"]
        minutes = images / one["images_per_cpu_second"] / 60
        paper[name] = {"images": images, "minutes_one_core": round(minutes, 1),
                       f"minutes_{cores}_processes": round(minutes / cores, 1),
                       "minutes_8_processes": round(minutes / 8, 1),
                       "peak_memory_gb": round(overhead + arrays_gb * images, 2),
                       "cache_gb": round(one["cache_bytes_per_image"] * images / 1e9, 2)}
    return paper


def report(result: dict) -> str:
    lines = ["# The data stage (benchmarks/bench_data.py)", "",
             "| data set, processes | images | wall s | images/s | CPU s | images per CPU s | peak GB | cache bytes / image |",
             "|---|---|---|---|---|---|---|---|"]
    for label, run in result["runs"].items():
        lines.append(f"| {label} | {run['images']} | {run['seconds']} | {run['images_per_second']} | {run['cpu_seconds']} | "
                     f"{run['images_per_cpu_second']} | {run['peak_memory_gb']} | {run['cache_bytes_per_image']} |")
    cores = result["cores"]
    lines += ["", f"Extrapolated to the paper's images (CPU seconds per image; {cores} and 8 processes assumed to "
                  "divide the time):", "",
              f"| data set | images | minutes on one core | on {cores} | on 8 | peak GB | cache GB |",
              "|---|---|---|---|---|---|---|"]
    for name, row in result["paper"].items():
        lines.append(f"| {name} | {row['images']} | {row['minutes_one_core']} | {row[f'minutes_{cores}_processes']} | "
                     f"{row['minutes_8_processes']} | {row['peak_memory_gb']} | {row['cache_gb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
