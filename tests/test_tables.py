"""Tables 2-4 in the paper's layout, from cells with planted verdicts."""
import pandas as pd
import pytest

from repro.protocol import KAGGLE_DATASETS, PAPER_METHODS
from repro.report.tables import render_table, write_table
from repro.statistics.cells import result_cells
from tests.helpers import main_choice, synthetic_scores


def cells_of(scores, methods=PAPER_METHODS, controls=()):
    cells = result_cells(scores, KAGGLE_DATASETS["siim"], main_choice(), methods=methods, controls=controls)
    return cells.assign(fragile=False)


@pytest.fixture(scope="module")
def cells():
    return cells_of(synthetic_scores())


def test_layout_matches_the_paper(cells, tmp_path):
    table3 = render_table(cells, 3)
    assert list(table3.columns) == ["Dataset and Saliency Method", "AUPRC", "P Value (AVG)", "P Value*",
                                    "Baseline", "Fully Randomized", "P Value"]
    assert list(table3.iloc[:, 0]) == ["SIIM-ACR pneumothorax segmentation", "AVG", "U-Net", *PAPER_METHODS]
    avg = table3.iloc[1]
    assert avg["P Value (AVG)"] == "NA" and avg["AUPRC"].count("±") == 1
    assert table3.iloc[3 + PAPER_METHODS.index("XRAI")]["P Value (AVG)"].endswith("‡")
    assert table3.iloc[3 + PAPER_METHODS.index("GRAD")]["P Value (AVG)"].endswith("†")
    table4 = render_table(cells, 4)
    assert list(table4.iloc[:, 0]) == ["SIIM-ACR pneumothorax segmentation", "U-Net", "LOW", *PAPER_METHODS]
    assert table4.iloc[2]["Repeatability SSIM"] == "0.5"
    paths = write_table(cells, 4, tmp_path)
    assert [p.name for p in paths] == ["table4.csv", "table4.md", "table4.tex"]
    assert "\\dag" in paths[2].read_text() and "±" in paths[1].read_text()


def test_fragile_verdicts_and_short_cells_are_marked(cells):
    marked = cells.copy()
    xrai = (marked.method == "XRAI") & (marked.column == "P_AVG") & (marked.table == 3)
    marked.loc[xrai, "fragile"] = True
    gcam = (marked.method == "GCAM") & (marked.column == "AUPRC") & (marked.table == 3)
    marked.loc[gcam, "n"] = 20
    table3 = render_table(marked, 3)
    row = lambda m: table3.iloc[3 + PAPER_METHODS.index(m)]  # noqa: E731
    assert row("XRAI")["P Value (AVG)"].endswith("‡ ◊")
    assert row("GRAD")["P Value (AVG)"].endswith("†")
    assert row("GCAM")["AUPRC"].endswith("(n=20)") and "(n=" not in row("GRAD")["AUPRC"]


def test_table3_note_says_which_randomization_form_it_holds(cells, tmp_path):
    text = write_table(cells, 3, tmp_path)[1].read_text()
    assert "randomization_plot" in text and "n (siim" in text
    per_image = result_cells(synthetic_scores(), KAGGLE_DATASETS["siim"], main_choice(), methods=PAPER_METHODS,
                             form="per_image").assign(fragile=False)
    assert "averaged over the replicates" in write_table(per_image, 3, tmp_path)[1].read_text()


def test_a_subset_and_controls_are_laid_out_after_the_methods():
    scores = synthetic_scores(methods=("GRAD", "IG"))
    extra = scores[scores.group == "GRAD"].assign(group="EDGE")
    cells = cells_of(pd.concat([scores, extra]), methods=("GRAD", "IG"), controls=("EDGE",))
    assert list(render_table(cells, 2).iloc[:, 0]) == ["SIIM-ACR pneumothorax segmentation", "AVG", "U-Net",
                                                       "GRAD", "IG", "EDGE"]
    with pytest.raises(ValueError, match="table must be"):
        render_table(cells, 5)


def test_the_control_line_names_the_data_sets_in_the_cells_order():
    """Not in a set's order, which follows the process's string-hash seed: two demo runs wrote
    "controls (rsna, siim)" and "controls (siim, rsna)" in report.md."""
    from repro.protocol import FAIL, PASS
    from repro.report.summary import RunReport

    def cells(order):
        rows = []
        for dataset in order:
            rows += [{"table": 3, "dataset": dataset, "method": "AVG", "column": "AUPRC", "n": 40, "verdict": ""},
                     {"table": 3, "dataset": dataset, "method": "EDGE", "column": "P_Randomization", "n": 40,
                      "verdict": FAIL},
                     {"table": 3, "dataset": dataset, "method": "ORACLE", "column": "P_AVG", "n": 40, "verdict": PASS}]
        return pd.DataFrame(rows)

    for order in (["siim", "rsna"], ["rsna", "siim"]):
        assert RunReport(None, cells(order), None, []).control_lines[0].startswith(f"controls ({', '.join(order)}): ")


def test_a_localizer_below_avg_is_named_on_the_console_and_in_the_report():
    """As a classifier near chance is marked: the ceiling of the utility test under its floor is
    said where the verdicts are read (the console summary, report.md)."""
    from repro.experiments import load_experiment
    from repro.report.summary import RunReport, localizers_below_avg, report_markdown
    scores = synthetic_scores("rsna", methods=("GRAD", "XRAI"))
    retinanet = scores.group == "RetinaNet"
    scores.loc[retinanet, "score"] -= 0.35                     # 0.10, under AVG's 0.15
    cells = result_cells(scores, KAGGLE_DATASETS["rsna"], main_choice("rsna"), methods=("GRAD", "XRAI"))
    [below] = localizers_below_avg(cells)
    assert (below.dataset, below.localizer, below.images) == ("rsna", "RetinaNet", 25)
    assert below.auprc == pytest.approx(0.10, abs=0.02) and below.avg == pytest.approx(0.15, abs=0.02)
    report = RunReport(load_experiment("demo"), cells.assign(fragile=False), None, [])
    warning = (f"  warning: rsna: the RetinaNet scores below AVG on utility (AUPRC {below.auprc:.2f} against "
               f"{below.avg:.2f} on 25 test images): it is no ceiling, so the comparisons with it do not test "
               f"the paper's claims, and the grade counts the findings that rest on it as not measured")
    assert report.verdict_lines()[-1] == warning
    assert f"**Warning**: {below.finding}: it is no ceiling" in report_markdown(report)
    # Above AVG (the synthetic scores' own 0.45): nothing is said.
    fine = result_cells(synthetic_scores("rsna", methods=("GRAD", "XRAI")), KAGGLE_DATASETS["rsna"],
                        main_choice("rsna"), methods=("GRAD", "XRAI"))
    assert localizers_below_avg(fine) == []
    assert "warning" not in "\n".join(RunReport(None, fine.assign(fragile=False), None, []).verdict_lines())
