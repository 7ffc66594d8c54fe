"""The `repro` command line. Every subcommand has --help; bad arguments give one line and exit 2."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ logs: quiet unless asked
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

    def experiment_command(name, help, handler):
        command = commands.add_parser(name, help=help)
        command.add_argument("--experiment", default="demo", help="name in experiments/ or a YAML path (default demo)")
        command.add_argument("--run-dir", type=Path, help="override the experiment's run directory")
        command.set_defaults(handler=handler)
        return command

    train = experiment_command("train", "train the experiment's models (finished ones are kept)", _train)
    train.add_argument("--only", help="train only this model (e.g. inception_r1)")
    maps = experiment_command("maps", "compute the saliency maps the tests need (resumable)", _maps)
    maps.add_argument("--methods", help="comma-separated subset of GRAD,SG,IG,SIG,GCAM,XRAI,GBP,GGCAM")
    maps.add_argument("--states", help="comma-separated subset of original,logits,mixed10,...,mixed1")
    table = experiment_command("table", "write Table 2, 3 or 4 from the run's scores", _table)
    table.add_argument("number", type=int, choices=[2, 3, 4])
    figure = experiment_command("figure", "draw Figure 2, 3 or 4 from the run's scores and maps", _figure)
    figure.add_argument("number", type=int, choices=[2, 3, 4])
    experiment_command("grade", "compare the run's tables with the published ones", _grade)
    experiment_command("all", "run the whole pipeline of an experiment (resumable)", _all)
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


def _experiment(args):
    from repro.experiments import load_experiment
    return load_experiment(args.experiment, run_dir=args.run_dir)


def _train(args) -> None:
    from repro.models import train_experiment
    train_experiment(_experiment(args), only=args.only)


def _maps(args) -> None:
    from repro.evaluation.run import compute_maps
    from repro.pipeline import prepare_data
    experiment = _experiment(args)
    split = (lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None)
    for dataset in prepare_data(experiment).values():
        compute_maps(experiment, dataset, methods=split(args.methods), states=split(args.states))
    print(f"maps in {experiment.run_dir / 'maps'}")


def _table(args) -> None:
    from repro.pipeline import make_tables, read_scores
    experiment = _experiment(args)
    make_tables(experiment, read_scores(experiment), tables=(args.number,))
    print((experiment.run_dir / "results" / f"table{args.number}.md").read_text())


def _figure(args) -> None:
    from repro.pipeline import make_figures, prepare_data, read_scores
    experiment = _experiment(args)
    for path in make_figures(experiment, read_scores(experiment), prepare_data(experiment), figures=(args.number,)):
        print(f"wrote {path}")


def _grade(args) -> None:
    from repro.pipeline import make_grade, make_tables, read_scores
    experiment = _experiment(args)
    report = make_grade(experiment, make_tables(experiment, read_scores(experiment)))
    print((experiment.run_dir / "results" / "grade.md").read_text().split("## The paper's findings")[0])
    print(f"full grade: {experiment.run_dir / 'results' / 'grade.md'} ({len(report['findings'])} findings)")


def _all(args) -> None:
    from repro import pipeline
    result = pipeline.run_all(_experiment(args))
    out = pipeline.results_dir(result.experiment)
    print(f"\n[done] {result.seconds:.0f} s. Tables, figures and the grade: {out}")
    print(pipeline.headline(result.cells))
    s = result.grade["summary"]
    print(f"fidelity grade: {s['findings_agreeing']} of the paper's findings agree, {s['findings_disagreeing']} "
          f"disagree, {s['findings_not_measured']} not measured ({out / 'grade.md'})")
    for problem in result.control_problems:
        print(f"!!! CONTROL CHECK FAILED: {problem}", file=sys.stderr)
    if not result.control_problems:
        print("controls: EDGE fails the randomization test and ORACLE beats AVG, as they must")


if __name__ == "__main__":
    sys.exit(main())
