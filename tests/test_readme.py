"""The README: its results section is the one the published run's records give, its two commands
come first, its layout section names what the tree holds, and nothing cites files outside the
repository."""
import re
import subprocess
from pathlib import Path

import pytest

from repro import results
from repro.experiments import load_experiment
from repro.report.readme import BEGIN, END, readme_section, results_section, update_readme

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
OUTSIDE = "../" + "shared"    # the team folder beside the checkout, which a clone does not have


def test_the_readme_results_are_the_published_run_s():
    """figures/ and the README's numbers move together: a demo run rewrites both (publish_readme)."""
    assert readme_section(README) == results_section(REPOSITORY / "figures")


def test_the_readme_starts_with_its_two_commands():
    code = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL).group(1)
    assert [line.split("#")[0].strip() for line in code.strip().splitlines()] == ["make demo", "make test"]
    ci = (REPOSITORY / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_layout_section_names_every_module_and_folder():
    layout = re.search(r"## Layout\n\n```\n(.*?)```", README.read_text(), flags=re.DOTALL).group(1)
    for path in sorted((REPOSITORY / "repro").rglob("*.py")):
        if path.name != "__init__.py":
            assert path.stem in layout, f"README layout does not mention {path.relative_to(REPOSITORY)}"
    for folder in ("repro", "experiments", "notebooks", "tests", "benchmarks", "figures", "docs"):
        assert re.search(rf"^{folder}/", layout, flags=re.MULTILINE), folder


def test_nothing_cites_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    offenders = [name for name in tracked if name.endswith((".py", ".md", ".yaml", ".ipynb", ".cfg"))
                 and (REPOSITORY / name).is_file() and OUTSIDE in (REPOSITORY / name).read_text()]
    assert offenders == []


def test_a_published_run_rewrites_the_readme_section(smoke_run, tmp_path):
    experiment = load_experiment("smoke", run_dir=smoke_run.run_dir, overrides=[
        f"publish_dir={tmp_path / 'figures'}", f"publish_readme={tmp_path / 'README.md'}",
        "allow_outside_project=true"])
    (tmp_path / "README.md").write_text(f"# Title\n\nbefore\n\n{BEGIN}\nold numbers\n{END}\n\nafter\n")
    results.publish(experiment)
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old numbers" not in text
    section = readme_section(tmp_path / "README.md")
    assert "Run `smoke` at commit" in section and "3 positive test images for utility" in section
    assert "fidelity grade: **" in section and "not yet compared with a second run" in section
    published = tmp_path / "figures" / "report"     # the HTML report, whole, beside the tables
    assert sorted(p.name for p in published.iterdir()) == sorted(p.name for p in smoke_run.results.joinpath("report").iterdir())
    assert (published / "index.html").read_bytes() == (smoke_run.results / "report" / "index.html").read_bytes()
    with pytest.raises(ValueError, match="no results section"):
        update_readme(tmp_path / "figures" / "report.md", tmp_path / "figures")
    # publish_report: false publishes the files without the HTML report
    lean = load_experiment("smoke", run_dir=smoke_run.run_dir, overrides=[
        f"publish_dir={tmp_path / 'lean'}", "publish_report=false", "allow_outside_project=true"])
    copied = results.publish(lean)
    assert (tmp_path / "lean" / "table3.md").is_file() and not (tmp_path / "lean" / "report").exists()
    assert all("report" not in p.parent.name for p in copied)


def test_model_scores_name_restarts_and_mark_a_classifier_near_chance():
    from repro.report.readme import _model_score
    learned = {"monitor": "auc", "test": {"auc": 0.914}, "seed": 77,
               "restarts": [{"seed": 4, "val": {"auc": 0.608}}]}
    assert _model_score("r3", learned) == "r3 0.914 (from seed 77, trained again after seed 4: validation ROC AUC 0.61)"
    assert _model_score("r3", {"monitor": "auc", "test": {"auc": 0.52}}) == "r3 0.520 **(near chance)**"
    assert _model_score("unet", {"monitor": "pixel_ap", "test": {"pixel_ap": 0.2}}) == "unet 0.200"   # not a classifier


def test_every_comparison_with_the_published_run_is_quoted_and_no_other(tmp_path):
    """One line per figures/reproducibility*.json made against the published results; a comparison
    made for other results (an earlier publication) is left out."""
    import json
    import shutil
    figures = shutil.copytree(REPOSITORY / "figures", tmp_path / "figures")
    for path in figures.glob("reproducibility*.json"):
        path.unlink()
    published = json.loads((figures / "provenance.json").read_text())["results_sha256"]
    (figures / "reproducibility.json").write_text(json.dumps({"summary": "same bytes", "results_sha256": published}))
    (figures / "reproducibility-old.json").write_text(json.dumps({"summary": "stale", "results_sha256": {}}))
    (figures / "reproducibility-other-cpu.json").write_text(json.dumps({"summary": "other bits",
                                                                        "results_sha256": published}))
    section = results_section(figures)
    assert "- checked against another run: same bytes (figures/reproducibility.json)" in section
    assert "- checked against another run: other bits (figures/reproducibility-other-cpu.json)" in section
    assert "stale" not in section and "not yet compared" not in section


def test_a_localizer_below_avg_is_marked_in_the_results(tmp_path):
    """As a classifier near chance: the data set's line says its localizer scored below AVG."""
    import shutil

    import pandas as pd
    figures = shutil.copytree(REPOSITORY / "figures", tmp_path / "figures")
    cells = pd.read_csv(figures / "cells.csv", dtype={"p": str, "verdict": str}, keep_default_na=False)
    unet = (cells.table == 3) & (cells.dataset == "siim") & (cells.method == "U-Net") & (cells.column == "AUPRC")
    cells.loc[unet, "mean"] = "0.05"
    cells.to_csv(figures / "cells.csv", index=False)
    [siim] = [line for line in results_section(figures).splitlines() if line.startswith("- SIIM-ACR-like:")]
    avg = float(cells.loc[(cells.table == 3) & (cells.dataset == "siim") & (cells.method == "AVG")
                          & (cells.column == "AUPRC"), "mean"].item())
    assert siim.endswith(f"; **warning: the U-Net scores below AVG on utility (AUPRC 0.05 against {avg:.2f} on "
                         f"54 test images): it is no ceiling, and the grade counts the findings that rest on it "
                         f"as not measured**")
