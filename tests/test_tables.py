import numpy as np
import pandas as pd
import pytest

from repro.report.published import METHODS, published_cells
from repro.report.tables import CELL_COLUMNS, render_table, result_cells, write_table


def synthetic_scores(dataset="siim", n_images=25, seed=0):
    """Scores with planted answers: XRAI beats AVG on utility, GRAD falls below its randomization
    baseline, XRAI stays above it, the high baseline beats everything."""
    rng = np.random.default_rng(seed)
    high = "U-Net" if dataset == "siim" else "RetinaNet"
    rows = []

    def add(test, metric, group, state, centre, spread=0.03):
        for i in range(n_images):
            rows.append((dataset, test, metric, group, state, f"img{i}", centre + rng.normal(0, spread)))

    for metric in ("auprc", "roc_auc"):
        add("utility", metric, "AVG", "trained", 0.15)
        add("utility", metric, high, "trained", 0.45)
        for method in METHODS:
            add("utility", metric, method, "trained", 0.25 if method == "XRAI" else 0.05)
    for method in METHODS:
        add("randomization", "ssim", method, "baseline", 0.3)
        add("randomization", "ssim", method, "mixed1", 0.45 if method == "XRAI" else 0.15)
        add("repeatability", "ssim", method, "trained", 0.7 if method == "XRAI" else 0.3)
        add("reproducibility", "ssim", method, "trained", 0.2)
    add("repeatability", "ssim", high, "trained", 0.95)
    add("reproducibility", "ssim", high, "trained", 0.95)
    return pd.DataFrame(rows, columns=["dataset", "test", "metric", "group", "state", "image", "score"])


@pytest.fixture(scope="module")
def cells():
    return result_cells(synthetic_scores(), "siim")


def test_cells_have_the_published_schema_and_cells(cells):
    assert list(cells.columns) == CELL_COLUMNS
    published = published_cells()
    published = published[published.dataset == "siim"]
    key = ["table", "dataset", "method", "column"]
    assert set(map(tuple, cells[key].values)) == set(map(tuple, published[key].values))


def test_planted_verdicts(cells):
    def verdict(table, method, column):
        row = cells[(cells.table == table) & (cells.method == method) & (cells.column == column)]
        return row["verdict"].item()

    assert verdict(3, "XRAI", "P_AVG") == "pass"
    assert verdict(3, "GRAD", "P_AVG") == "did not pass"
    assert verdict(3, "XRAI", "P_High") == "did not pass"
    assert verdict(3, "GRAD", "P_Randomization") == "pass"
    assert verdict(3, "XRAI", "P_Randomization") == "did not pass"
    assert verdict(4, "XRAI", "P_Repeat_Low") == "pass"
    assert verdict(4, "GRAD", "P_Reprod_Low") == "did not pass"


def test_means_are_the_score_means(cells):
    scores = synthetic_scores()
    expected = scores[(scores.test == "utility") & (scores.metric == "auprc") & (scores.group == "AVG")]["score"]
    row = cells[(cells.table == 3) & (cells.method == "AVG") & (cells.column == "AUPRC")]
    assert row["mean"].item() == pytest.approx(expected.mean(), abs=5e-5)   # cells keep 4 decimals
    assert row["sd"].item() == pytest.approx(expected.std(ddof=1), abs=5e-5)


def test_layout_matches_the_paper(cells, tmp_path):
    table3 = render_table(cells, 3)
    assert list(table3.columns) == ["Dataset and Saliency Method", "AUPRC", "P Value (AVG)", "P Value*",
                                    "Baseline", "Fully Randomized", "P Value"]
    assert list(table3.iloc[:, 0]) == ["SIIM-ACR pneumothorax segmentation", "AVG", "U-Net", *METHODS]
    avg = table3.iloc[1]
    assert avg["P Value (AVG)"] == "NA" and avg["AUPRC"].count("±") == 1
    assert table3.iloc[2 + METHODS.index("XRAI") + 1]["P Value (AVG)"].endswith("‡")
    table4 = render_table(cells, 4)
    assert list(table4.iloc[:, 0]) == ["SIIM-ACR pneumothorax segmentation", "U-Net", "LOW", *METHODS]
    assert table4.iloc[2]["Repeatability SSIM"] == "0.5"
    paths = write_table(cells, 4, tmp_path)
    assert [p.name for p in paths] == ["table4.csv", "table4.md", "table4.tex"]
    assert "\\dag" in paths[2].read_text() and "±" in paths[1].read_text()


def test_controls_are_reported_after_the_methods():
    scores = synthetic_scores()
    extra = scores[scores.group == "GRAD"].assign(group="EDGE")
    cells = result_cells(pd.concat([scores, extra]), "siim", controls=("EDGE",))
    assert list(render_table(cells, 2).iloc[:, 0])[-1] == "EDGE"
    with pytest.raises(ValueError, match="table must be"):
        render_table(cells, 5)
