"""The command line: --help everywhere, one-line errors, summary and preview on real layouts."""
import subprocess
import sys
from pathlib import Path

import pytest

from repro.cli import main
from repro.experiments import load_experiment
from tests.helpers import copy_run, finished_results


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "repro.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args", [[], ["data"], ["data", "make-phantoms"], ["data", "summary"],
                                  ["data", "preview"], ["data", "check"], ["weights", "fetch"], ["all"], ["report"]])
def test_help_everywhere(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    assert "usage: repro" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["data", "summary", "--dataset", "chexpert", "--root", "x"], "invalid choice: 'chexpert'"),
    (["data", "make-phantoms", "--out", "x", "--n", "0"], "expected a positive integer"),
    (["data", "summary", "--dataset", "siim"], "the following arguments are required: --root"),
    (["frobnicate"], "invalid choice"),
    (["maps", "--states", " , "], "expected comma-separated names, got ' , '"),
])
def test_wrong_arguments_give_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["-v", "all", "--experiment", "smoke"], ["all", "--experiment", "smoke", "-v"],
                                  ["data", "summary", "--dataset", "siim", "--root", "x", "--verbose"]])
def test_verbose_before_or_after_the_subcommand(args):
    from repro.cli import build_parser
    assert build_parser().parse_args(args).verbose is True
    assert build_parser().parse_args([a for a in args if a not in ("-v", "--verbose")]).verbose is False


def test_missing_root_is_one_line_not_a_traceback(tmp_path):
    result = run_cli("data", "summary", "--dataset", "siim", "--root", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("repro: error:") and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_experiment(capsys):
    assert main(["all", "--experiment", "nonesuch"]) == 2
    assert "unknown experiment 'nonesuch'" in capsys.readouterr().err


def test_summary_and_preview(rsna_root, tmp_path, capsys):
    common = ["--dataset", "rsna", "--root", str(rsna_root), "--size", "32", "--cache", str(tmp_path / "c")]
    assert main(["data", "summary", *common]) == 0
    assert "rsna: 4 images at 32 px, 3 positive" in capsys.readouterr().out
    out = tmp_path / "grid.png"
    assert main(["data", "preview", *common, "--out", str(out), "--n", "4"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "summary", *common, "--keep-not-normal"]) == 0
    assert "5 images" in capsys.readouterr().out


def test_make_phantoms_command(tmp_path, capsys):
    assert main(["data", "make-phantoms", "--out", str(tmp_path), "--n", "6", "--size", "64",
                 "--datasets", "rsna"]) == 0
    assert (tmp_path / "rsna" / "stage_2_train_labels.csv").is_file()
    assert not (tmp_path / "siim").exists()
    assert main(["data", "make-phantoms", "--out", str(tmp_path), "--n", "6", "--datasets", "ct"]) == 2
    assert "--datasets" in capsys.readouterr().err


def test_python_dash_m_repro_works():
    done = subprocess.run([sys.executable, "-m", "repro", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: repro" in done.stdout and done.stderr == ""


def test_a_wrong_scheduler_address_is_one_line(tmp_path, capsys):
    assert main(["maps", "--experiment", "smoke", "--run-dir", str(tmp_path), "--cluster", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("repro: error: --cluster tcp://127.0.0.1:9: cannot reach a Dask scheduler there")
    assert len(err.strip().splitlines()) == 1, err
    assert main(["maps", "--experiment", "smoke", "--run-dir", str(tmp_path), "--cluster", "lcoal:2"]) == 2
    assert "expected local:N or a scheduler address" in capsys.readouterr().err


def test_hints_name_the_experiment_file_and_the_run_directory(tmp_path, capsys):
    experiment = tmp_path / "mine.yaml"
    experiment.write_text((Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml").read_text())
    assert main(["table", "3", "--experiment", str(experiment), "--run-dir", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err
    assert f"(run: repro all --experiment {experiment} --run-dir {tmp_path / 'elsewhere'})" in err
    assert main(["table", "3", "--experiment", "smoke", "--run-dir", str(tmp_path / "x")]) == 2
    assert f"(run: repro all --experiment smoke --run-dir {tmp_path / 'x'})" in capsys.readouterr().err


def test_maps_with_an_unknown_method_is_one_line(capsys):
    assert main(["maps", "--experiment", "smoke", "--methods", "FOO"]) == 2
    err = capsys.readouterr().err
    assert "--methods: unknown ['FOO']" in err and len(err.strip().splitlines()) == 1


def test_results_of_other_settings_are_refused_by_every_command_that_reads_them(tmp_path, capsys):
    run = tmp_path / "run"
    finished_results(load_experiment("smoke", run_dir=run))
    common = ["--experiment", "smoke", "--run-dir", str(run)]
    assert main(["table", "3", *common]) == 0 and "| XRAI " in capsys.readouterr().out
    assert main(["table", "3", *common, "--set", "runtime.threads=3"]) == 0    # how a run executes: no result changes
    capsys.readouterr()
    for command in (["table", "3"], ["figure", "2"], ["grade"]):
        assert main([*command, *common, "--set", "train.epochs=7"]) == 2, command
        printed = capsys.readouterr()
        assert printed.err == (f"repro: error: {run / 'results'} holds results made with other settings than these: "
                               f"train.epochs: 1 then, 7 now (run: repro all --experiment smoke --run-dir {run} "
                               "--set train.epochs=7)\n"), command
        assert printed.out == ""
    made = sorted(p.name for p in run.iterdir() if p.name != ".lock")    # the run lock each command took
    assert made == ["experiment.json", "provenance.json", "results"]   # no data made
    # and none of them writes while a run holds the directory
    from repro.io import RunLock
    with RunLock(load_experiment("smoke", run_dir=run).layout.lock_file):
        for command in (["table", "3"], ["figure", "2"], ["grade"]):
            assert main([*command, *common]) == 2, command
            assert "is in use by" in capsys.readouterr().err, command


def test_results_after_an_edited_experiment_file_are_refused(tmp_path, capsys):
    smoke = (Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml").read_text()
    path = tmp_path / "mine.yaml"
    path.write_text(smoke)
    finished_results(load_experiment(path, run_dir=tmp_path / "run"))
    common = ["--experiment", str(path), "--run-dir", str(tmp_path / "run")]
    assert main(["grade", *common]) == 0 and "24 of 25 of the paper's findings agree" in capsys.readouterr().out
    path.write_text(smoke.replace("ssim_images: 3", "ssim_images: 13"))
    assert main(["grade", *common]) == 2
    assert ("holds results made with other settings than these: evaluation.ssim_images: 3 then, 13 now (run: repro all "
            f"--experiment {path} --run-dir {tmp_path / 'run'})\n") in capsys.readouterr().err


def test_results_of_another_version_of_the_kit_are_refused(tmp_path, capsys, monkeypatch):
    """A change to the code that alters results (repro.versions) makes earlier results stale too:
    the same settings, other statistics."""
    from repro import versions
    finished_results(load_experiment("smoke", run_dir=tmp_path))
    monkeypatch.setitem(versions.CODE_VERSIONS, "statistics", versions.STATISTICS_VERSION + 1)
    assert main(["table", "3", "--experiment", "smoke", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (f"holds results made by another version of the kit: statistics: {versions.STATISTICS_VERSION} then, "
            f"{versions.STATISTICS_VERSION + 1} now (run: repro all --experiment smoke") in err


@pytest.mark.parametrize("damage, message", [
    ("edited cells", r"cells.csv is not the file the last finished run wrote \(a run that did not finish, or an edit"),
    ("null provenance", r"cells.csv: the record of the run that made it is missing or damaged \(.*provenance.json: "
                        r"expected a JSON object, got null\)"),
    ("no provenance", r"cells.csv: the record of the run that made it is missing or damaged"),
])
def test_results_that_no_finished_run_recorded_are_refused(tmp_path, capsys, damage, message):
    import re
    finished_results(load_experiment("smoke", run_dir=tmp_path))
    if damage == "edited cells":
        with open(tmp_path / "results" / "cells.csv", "a") as cells:
            cells.write("3,siim,XRAI,AUPRC,0.9,0.1,,,100,replicates,,,,False\n")
    elif damage == "null provenance":
        (tmp_path / "provenance.json").write_text("null")
    else:
        (tmp_path / "provenance.json").unlink()
    assert main(["table", "3", "--experiment", "smoke", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "(run: repro all --experiment smoke" in err and len(err.splitlines()) == 1


def test_sigterm_ends_a_command_as_ctrl_c_does(monkeypatch, capsys):
    import os
    import signal
    import time

    import repro.cli as cli

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)      # the handler interrupts it
        raise AssertionError("SIGTERM did not stop the command")
    monkeypatch.setattr(cli, "_config", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["config", "--experiment", "smoke"]) == 143
    assert capsys.readouterr().err == "repro: interrupted; run the same command again to continue\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_maps_with_an_unknown_state_names_the_models_states(smoke_run, tmp_path, capsys):
    copy_run(smoke_run, tmp_path, parts=("data", "cache", "models"))
    assert main(["maps", "--experiment", "smoke", "--run-dir", str(tmp_path), "--states", "original,foo"]) == 2
    err = capsys.readouterr().err
    assert err == ("repro: error: states: unknown ['foo']; the maps of siim planned here have the states original, "
                   f"logits, {', '.join(f'mixed{k}' for k in range(10, 0, -1))}\n")
    # with the bottom-up check on, its states are known too (docs/sanity-checks.md)
    assert main(["maps", "--experiment", "smoke", "--run-dir", str(tmp_path), "--states", "foo",
                 "--set", "evaluation.sanity.tests=[bottom_up]"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"mixed1, {', '.join(f'up_to_mixed{k}' for k in range(1, 11))}, up_to_logits\n")
    assert not (tmp_path / "maps").exists()
