"""The `repro` command line (also `python -m repro`). Every subcommand has --help.

Exit codes: 0 done; 2 bad arguments, a bad experiment or input file, or any other error (one line
on stderr naming the file, row or key; -v shows the traceback); 3 `repro all` finished but a harness
control check failed (the run's results are written, and the failed check is printed); 130
interrupted (Ctrl-C), 143 terminated (SIGTERM): either way run the same command again to continue.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

import repro.runtime  # noqa: F401  (TensorFlow's logging settings, before anything starts it)
from repro import pipeline, results
from repro.data.check import check_data, check_roots, format_problems
from repro.data.contents import format_summary, summarize
from repro.data.dataset import load_dataset
from repro.data.phantoms import PhantomConfig, make_phantoms
from repro.data.preview import preview_grid
from repro.execution import executor_for
from repro.experiments import load_experiment, resolved_config
from repro.io import RunLock
from repro.models.weights import fetch, pretrained
from repro.protocol import DATASETS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED


log = logging.getLogger("repro")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a kill, a batch system's time limit): unwound like Ctrl-C, through every `finally`
    (the run lock released, temporary files removed), and reported the same way."""


def _terminate(signum, frame):
    raise Terminated


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


class _SubParser(_Parser):
    """A subcommand's parser: it takes -v too, so that `repro all ... -v` works as `repro -v all ...`
    (SUPPRESS: when not given here, the value before the subcommand stands)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="log progress details and show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="repro", description="Reproduction kit for Arun et al. 2021, saliency-map "
                                               "trustworthiness in chest radiographs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)

    data = commands.add_parser("data", help="make, summarise and preview data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True, parser_class=_SubParser)
    make = data_commands.add_parser("make-phantoms", help="write synthetic chest radiographs in both Kaggle layouts")
    make.add_argument("--out", required=True, type=Path)
    make.add_argument("--n", required=True, type=_positive_int, help="images per data set")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--size", type=_positive_int, default=256)
    make.add_argument("--conspicuity", type=float, default=1.0, help="finding size and contrast multiplier")
    make.add_argument("--confounder-rate", type=float, default=0.0,
                      help="probability that a positive image carries a chest tube / marker")
    make.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: siim, rsna")
    make.add_argument("--format", choices=["plain", "release"], default="plain",
                      help="plain DICOMs, or the Kaggle releases' files: JPEG baseline, their tags (use --size 1024)")
    make.set_defaults(handler=_make_phantoms)
    for name, handler, text in (("summary", _summary, "counts, prevalence, split sizes, mask areas"),
                                ("preview", _preview, "a grid of images with findings outlined")):
        command = data_commands.add_parser(name, help=text)
        command.add_argument("--dataset", required=True, choices=list(DATASETS))
        command.add_argument("--root", required=True, type=Path, help="folder with the Kaggle layout")
        command.add_argument("--size", type=_positive_int, default=256, help="input size in pixels (default 256)")
        command.add_argument("--cache", type=Path, default=Path("runs/cache"),
                             help="where decoded arrays are cached (default runs/cache)")
        command.add_argument("--split-csv", type=Path, help="explicit split (columns Image_ID, Split)")
        command.add_argument("--keep-not-normal", action="store_true",
                             help="RSNA: keep the 'No Lung Opacity / Not Normal' class the paper dropped")
        command.set_defaults(handler=handler)
        if name == "preview":
            command.add_argument("--out", required=True, type=Path, help="PNG file to write")
            command.add_argument("--n", type=_positive_int, default=16)
            command.add_argument("--seed", type=int, default=0)

    check = data_commands.add_parser("check", help="is each data root complete and in the releases' format? "
                                                   "(repro all runs the same checks first)")
    _experiment_arguments(check)
    check.add_argument("--sample", type=_positive_int, default=16, help="DICOMs decoded per data set (default 16)")
    check.set_defaults(handler=_data_check)

    weights = commands.add_parser("weights", help="pretrained weights for a machine without internet")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, parser_class=_SubParser)
    fetch = weights_commands.add_parser("fetch", help="download the experiment's pretrained weights into a folder "
                                                      "(then: --set runtime.weights_dir=DIR where it runs)")
    _experiment_arguments(fetch)
    fetch.add_argument("--to", required=True, type=Path, help="folder to fill (copy it to the machine that runs)")
    fetch.set_defaults(handler=_weights_fetch)

    def experiment_command(name, help, handler, *, cluster=False):
        command = commands.add_parser(name, help=help)
        _experiment_arguments(command)
        if cluster:
            command.add_argument("--cluster", metavar="SPEC",
                                 help="run the work on Dask: local:N (N worker processes here) or a scheduler "
                                      "address such as tcp://host:8786 (default: the experiment's runtime.cluster)")
        command.set_defaults(handler=handler)
        return command

    config = experiment_command("config", "print the resolved experiment (every default filled in)", _config)
    config.add_argument("--check", action="store_true",
                        help="only validate the settings and that the data roots hold their files; say what was checked")
    train = experiment_command("train", "train the experiment's models (finished ones are kept)", _train, cluster=True)
    train.add_argument("--only", help="train only this model (e.g. inception_r1)")
    maps = experiment_command("maps", "compute the saliency maps the tests need (resumable)", _maps, cluster=True)
    maps.add_argument("--methods", type=_names, help="comma-separated subset of the experiment's methods")
    maps.add_argument("--states", type=_names, help="comma-separated subset of original,logits,mixed10,...,mixed1 "
                      "(and up_to_mixed1,...,up_to_logits with the sanity check bottom_up)")
    table = experiment_command("table", "write Table 2, 3 or 4 from the run's cells", _table)
    table.add_argument("number", type=int, choices=[2, 3, 4])
    figure = experiment_command("figure", "draw Figure 2, 3 or 4 from the run's scores and maps", _figure)
    figure.add_argument("number", type=int, choices=[2, 3, 4])
    statistics = experiment_command("statistics", "export the run's statistics for R: every family fitted, the "
                                                  "kit's P values, and a script that refits them", _statistics)
    statistics.add_argument("--export-r", type=Path, metavar="DIR", required=True,
                            help="where to write scores.csv, contrasts.csv and refit.R (then: Rscript DIR/refit.R DIR)")
    experiment_command("grade", "compare the run's tables with the published ones", _grade)
    report = experiment_command("report", "write the run's HTML report again (results/report/index.html)", _report)
    report.add_argument("--compare", action="append", default=[], type=Path, metavar="RUN_DIR",
                        help="another run directory (or published folder) whose results to compare with this "
                             "run's, on the report's provenance page (repeatable)")
    experiment_command("all", "run the whole pipeline of an experiment (resumable)", _all, cluster=True)
    return parser


def _experiment_arguments(command) -> None:
    command.add_argument("--experiment", default="demo", help="name in experiments/ or a YAML path (default demo)")
    command.add_argument("--run-dir", type=Path, help="override the experiment's run directory")
    command.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                         help="override one setting (repeatable), e.g. --set evaluation.utility_images=10")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if args.verbose:   # TensorFlow's C++ messages too (read when it starts, also in worker processes)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    restore_sigterm = _stop_on_sigterm()
    try:
        return args.handler(args) or 0
    except (ValueError, OSError, LookupError) as err:  # our errors name the file, row or key
        if args.verbose:
            raise
        print(f"repro: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as stop:
        print("repro: interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    finally:
        restore_sigterm()


def _stop_on_sigterm():
    """SIGTERM raises Terminated from here on; returns what puts the earlier handler back. (Python
    lets only the main thread set handlers: called from another thread, nothing changes.)"""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _terminate)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _dataset(args):
    return load_dataset(args.dataset, args.root, args.size, cache_dir=args.cache,
                        split=args.split_csv or "paper", drop_not_normal=not args.keep_not_normal)


def _make_phantoms(args) -> None:
    datasets = tuple(_names(args.datasets))
    if not datasets or set(datasets) - set(DATASETS):
        raise ValueError(f"--datasets must list {' and/or '.join(DATASETS)}, got {args.datasets!r}")
    config = PhantomConfig(size=args.size, conspicuity=args.conspicuity, confounder_rate=args.confounder_rate,
                           format=args.format)
    started = time.perf_counter()
    roots = make_phantoms(args.out, args.n, args.seed, datasets=datasets, config=config)
    for name, root in roots.items():
        print(f"{name}: {args.n} images in {root}")
    print(f"done in {time.perf_counter() - started:.1f} s")


def _summary(args) -> None:
    print(format_summary(summarize(_dataset(args))))


def _preview(args) -> None:
    print(f"wrote {preview_grid(_dataset(args), args.out, n=args.n, seed=args.seed)}")


def _experiment(args):
    return load_experiment(args.experiment, run_dir=args.run_dir, overrides=args.set)


def _cluster(args, experiment) -> str | None:
    """The cluster the work runs on (None: this process). TensorFlow starts only where a stage needs
    it (repro.runtime.configure, quietly): the driver of a cluster run, and an in-process run while
    isolated trainings run, hold none of its memory."""
    return getattr(args, "cluster", None) or experiment.settings.runtime.cluster


def _config(args) -> None:
    experiment = _experiment(args)
    if not args.check:
        print(yaml.safe_dump(resolved_config(experiment), sort_keys=False, allow_unicode=True), end="")
        return
    print(f"{experiment.name}: the settings are valid (schema, models and their roles, saliency parameters); "
          f"{check_roots(experiment)}")


def _weights_fetch(args) -> None:
    experiment = _experiment(args)
    if not any(pretrained(experiment).values()):
        print(f"{experiment.name}: no pretrained weights to fetch (every model starts from random weights)")
        return
    for path in fetch(experiment, args.to):
        print(f"wrote {path}")
    print(f"on the machine that runs it: {experiment.command('all')} --set runtime.weights_dir={args.to.resolve()}")


def _data_check(args) -> int:
    experiment = _experiment(args)
    writes = experiment.settings.data.source == "phantoms"     # into the run directory: under its lock
    with RunLock(experiment.layout.lock_file) if writes else contextlib.nullcontext():
        checks, line = check_data(experiment, sample=args.sample, raise_problems=False)
    for problem in format_problems(checks):
        print(f"repro: error: {problem}", file=sys.stderr)
    if format_problems(checks):
        return EXIT_ERROR
    print(line)
    return 0


def _train(args) -> None:
    experiment = _experiment(args)
    with RunLock(experiment.layout.lock_file), executor_for(_cluster(args, experiment)) as executor:
        pipeline.stage_data(experiment)
        pipeline.stage_train(experiment, executor, only=args.only)


def _maps(args) -> None:
    experiment = _experiment(args)
    methods = experiment.settings.saliency.methods
    if args.methods and set(args.methods) - set(methods):
        raise ValueError(f"--methods: unknown {sorted(set(args.methods) - set(methods))}; this experiment's "
                         f"methods are {', '.join(methods)} (choose others with --set saliency.methods=[...])")
    with RunLock(experiment.layout.lock_file), executor_for(_cluster(args, experiment)) as executor:
        datasets = pipeline.prepare_data(experiment)
        plans = pipeline.stage_maps(experiment, datasets, executor, methods=args.methods, states=args.states)
    print(f"{sum(len(t.image_ids) for p in plans.values() for t in p.tasks)} maps in "
          f"{experiment.layout.root / 'maps'}")


def _table(args) -> None:
    experiment = _experiment(args)
    with RunLock(experiment.layout.lock_file):     # not while a run replaces the same results
        pipeline.stage_tables(experiment, results.read_cells(experiment), tables=(args.number,))
    print(experiment.layout.result(f"table{args.number}.md").read_text())


def _figure(args) -> None:
    experiment = _experiment(args)
    with RunLock(experiment.layout.lock_file):
        scores, cells = results.read_scores(experiment), results.read_cells(experiment)   # before any data is made
        datasets = pipeline.prepare_data(experiment, progress=False)
        paths = pipeline.stage_figures(experiment, scores, cells, datasets, figures=(args.number,))
    for path in paths:
        print(f"wrote {path}")


def _statistics(args) -> None:
    experiment = _experiment(args)
    directory = pipeline.export_statistics(experiment, args.export_r)
    print(f"wrote {directory}: refit in R with  Rscript {directory / 'refit.R'} {directory}")


def _grade(args) -> None:
    experiment = _experiment(args)
    with RunLock(experiment.layout.lock_file):
        cells, sanity = results.read_cells(experiment), None
        if experiment.settings.evaluation.sanity is not None:
            try:
                sanity = results.read_sanity_cells(experiment)
            except (FileNotFoundError, ValueError) as err:   # the paper's grade does not need them
                print(f"the grade leaves the sanity checks' published directions out: {err}")
        report = pipeline.stage_grade(experiment, cells, sanity)
    if report is None:
        raise ValueError(f"the fidelity grade compares the paper's data sets with its tables; experiment "
                         f"{experiment.name} has {', '.join(experiment.datasets)}")
    print(f"fidelity grade: {report['headline']}\nfull grade: {experiment.layout.result('grade.md')}")


def _report(args) -> None:
    print(f"wrote {pipeline.rewrite_report(_experiment(args), compare=args.compare)}")


def _all(args) -> int:
    experiment = _experiment(args)
    report = pipeline.run_all(experiment, cluster=_cluster(args, experiment))
    provenance = report.provenance
    print(f"\n[done] {provenance['wall_seconds']:.0f} s, peak memory {provenance['peak_memory_gb']:.1f} GB. "
          f"Tables, figures and the grade: {experiment.layout.results_dir}; the report: "
          f"{experiment.layout.report_dir / 'index.html'}")
    print("\n".join(report.verdict_lines()))
    if report.near_chance_line:
        print(f"warning: {report.near_chance_line}")
    if report.grade is not None:
        print(f"fidelity grade: {report.grade_line()} ({experiment.layout.result('grade.md')})")
    for line in report.control_lines:
        failed = line.startswith("CONTROL CHECK FAILED")
        print(f"!!! {line}" if failed else line, file=sys.stderr if failed else sys.stdout)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
