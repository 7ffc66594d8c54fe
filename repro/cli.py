"""The `repro` command line. Every subcommand has --help; bad arguments give one line and exit 2."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("repro")


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=["siim", "rsna"])
    parser.add_argument("--root", required=True, type=Path, help="folder with the Kaggle layout")
    parser.add_argument("--size", type=_positive_int, default=256, help="input size in pixels (default 256)")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"),
                        help="where decoded arrays are cached (default runs/cache)")
    parser.add_argument("--split-csv", type=Path, help="explicit split (columns Image_ID, Split)")
    parser.add_argument("--keep-not-normal", action="store_true",
                        help="RSNA: keep the 'No Lung Opacity / Not Normal' class the paper dropped")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="repro", description="Reproduction kit for Arun et al. 2021, saliency-map "
                                               "trustworthiness in chest radiographs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = commands.add_parser("data", help="make, summarise and preview data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    make = data_commands.add_parser("make-phantoms", help="write synthetic chest radiographs in both Kaggle layouts")
    make.add_argument("--out", required=True, type=Path)
    make.add_argument("--n", required=True, type=_positive_int, help="images per data set")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--size", type=_positive_int, default=256)
    make.add_argument("--conspicuity", type=float, default=1.0, help="finding size and contrast multiplier")
    make.add_argument("--confounder-rate", type=float, default=0.0,
                      help="probability that a positive image carries a chest tube / marker")
    make.add_argument("--datasets", default="siim,rsna", help="comma-separated: siim, rsna")
    make.set_defaults(handler=_make_phantoms)
    summary = data_commands.add_parser("summary", help="counts, prevalence, split sizes, mask areas")
    _add_dataset_args(summary)
    summary.set_defaults(handler=_summary)
    preview = data_commands.add_parser("preview", help="a grid of images with findings outlined")
    _add_dataset_args(preview)
    preview.add_argument("--out", required=True, type=Path, help="PNG file to write")
    preview.add_argument("--n", type=_positive_int, default=16)
    preview.add_argument("--seed", type=int, default=0)
    preview.set_defaults(handler=_preview)

    everything = commands.add_parser("all", help="run the whole pipeline of an experiment (resumable)")
    everything.add_argument("--experiment", default="demo", help="name in experiments/ or a YAML path")
    everything.add_argument("--run-dir", type=Path, help="override the experiment's run directory")
    everything.set_defaults(handler=_all)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (ValueError, OSError) as err:  # our errors name the file, row or argument
        if args.verbose:
            raise
        print(f"repro: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repro: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    return 0


def _load(args):
    from repro.data.dataset import load_dataset
    return load_dataset(args.dataset, args.root, args.size, cache_dir=args.cache, split_csv=args.split_csv,
                        drop_not_normal=not args.keep_not_normal)


def _make_phantoms(args) -> None:
    from repro.data.phantoms import PhantomConfig, make_phantoms
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    if not datasets or set(datasets) - {"siim", "rsna"}:
        raise ValueError(f"--datasets must list siim and/or rsna, got {args.datasets!r}")
    config = PhantomConfig(size=args.size, conspicuity=args.conspicuity, confounder_rate=args.confounder_rate)
    started = time.perf_counter()
    roots = make_phantoms(args.out, args.n, args.seed, datasets=datasets, config=config)
    for name, root in roots.items():
        print(f"{name}: {args.n} images in {root}")
    print(f"done in {time.perf_counter() - started:.1f} s")


def _summary(args) -> None:
    from repro.data.summary import format_summary, summarize
    print(format_summary(summarize(_load(args))))


def _preview(args) -> None:
    from repro.data.preview import preview_grid
    print(f"wrote {preview_grid(_load(args), args.out, n=args.n, seed=args.seed)}")


def _all(args) -> None:
    from repro.data.preview import preview_grid
    from repro.data.summary import format_summary, summarize
    from repro.experiments import load_experiment
    from repro.io import write_json
    from repro.pipeline import prepare_data

    experiment = load_experiment(args.experiment, run_dir=args.run_dir)
    started = time.perf_counter()
    print(f"[data] experiment {experiment.name}: run directory {experiment.run_dir}")
    datasets = prepare_data(experiment)
    summaries = {name: summarize(dataset) for name, dataset in datasets.items()}
    write_json(experiment.run_dir / "data-summary.json", summaries)
    for name, dataset in datasets.items():
        print(format_summary(summaries[name]))
        print(f"  preview: {preview_grid(dataset, experiment.run_dir / 'previews' / f'{name}.png')}")
    print(f"[done] {time.perf_counter() - started:.1f} s. Later stages (training, saliency maps, tests, "
          "tables) are not built yet.")


if __name__ == "__main__":
    sys.exit(main())
