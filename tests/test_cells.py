"""Tables 2-4 cells from per-image scores: the published schema, planted verdicts, the two forms of
the randomization cells, dropped degenerate scores, n, and tests that are not measured."""
import numpy as np
import pytest

from repro.protocol import FAIL, KAGGLE_DATASETS, NOT_MEASURED, PASS, UNCERTAIN
from repro.report.published import published_cells
from repro.statistics.cells import CELL_COLUMNS, result_cells
from tests.helpers import main_choice, synthetic_scores

SIIM = KAGGLE_DATASETS["siim"]


def cells_of(scores, choice=None, **kwargs):
    return result_cells(scores, SIIM, choice or main_choice(), methods=kwargs.pop("methods", SIIM_METHODS), **kwargs)


SIIM_METHODS = ("GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM")


def cell(cells, table, method, column):
    row = cells[(cells.table == table) & (cells.method == method) & (cells.column == column)]
    assert len(row) == 1, (table, method, column)
    return row.iloc[0]


@pytest.fixture(scope="module")
def cells():
    return cells_of(synthetic_scores())


def test_cells_have_the_published_schema_and_cells(cells):
    assert list(cells.columns) == CELL_COLUMNS
    published = published_cells()
    published = published[published.dataset == "siim"]
    key = ["table", "dataset", "method", "column"]
    assert set(map(tuple, published[key].values)) <= set(map(tuple, cells[key].values))


def test_planted_verdicts(cells):
    assert cell(cells, 3, "XRAI", "P_AVG").verdict == PASS
    assert cell(cells, 3, "GRAD", "P_AVG").verdict == FAIL
    assert cell(cells, 3, "GRAD", "P_High").verdict == FAIL
    assert cell(cells, 3, "GRAD", "P_Randomization").verdict == PASS        # below its baseline
    assert cell(cells, 3, "XRAI", "P_Randomization").verdict == FAIL        # above it
    assert cell(cells, 4, "XRAI", "P_Repeat_Low").verdict == PASS
    assert cell(cells, 4, "GRAD", "P_Reprod_Low").verdict == FAIL


def test_value_cells_are_mean_sd_and_n_of_the_chosen_model(cells):
    scores = synthetic_scores()
    mine = scores[(scores.test == "utility") & (scores.metric == "auprc") & (scores.group == "GRAD")
                  & (scores.model == "r1")]["score"]
    c = cell(cells, 3, "GRAD", "AUPRC")
    assert c["mean"] == pytest.approx(round(mine.mean(), 4)) and c["sd"] == pytest.approx(round(mine.std(), 4))
    assert c["n"] == 25 and c["form"] == "per_image"


def test_randomization_forms():
    scores = synthetic_scores()
    fully = scores[(scores.test == "randomization") & (scores.group == "GRAD") & (scores.state == "mixed1")]
    baseline = scores[(scores.test == "randomization") & (scores.group == "GRAD") & (scores.state == "baseline")]
    replicate_means = fully.groupby("model")["score"].mean()
    authors = cells_of(scores, form="replicates")
    c = cell(authors, 3, "GRAD", "FullyRandomized")
    assert c["mean"] == pytest.approx(round(replicate_means.mean(), 4))
    assert c["sd"] == pytest.approx(round(replicate_means.std(ddof=0), 4))    # np.std, as their script
    b = cell(authors, 3, "GRAD", "RandBaseline")                              # replicate 1's, as their script
    assert b["mean"] == pytest.approx(round(baseline[baseline.model == "r1"]["score"].mean(), 4))
    per_image = cells_of(scores, form="per_image")
    image_means = fully.groupby("image")["score"].mean()
    c = cell(per_image, 3, "GRAD", "FullyRandomized")
    assert c["mean"] == pytest.approx(round(image_means.mean(), 4)) and c["sd"] == pytest.approx(round(image_means.std(), 4))
    assert c["form"] == "per_image" and cell(authors, 3, "GRAD", "P_Randomization").form == "replicates"


def test_degenerate_scores_are_dropped_and_counted():
    scores = synthetic_scores()
    drop = (scores.group == "GCAM") & (scores.model == "r1") & (scores.test == "utility") & \
        scores.image.isin(["img0", "img1", "img2"])
    scores.loc[drop, "score"] = np.nan
    cells = cells_of(scores)
    assert cell(cells, 3, "GCAM", "AUPRC")["n"] == 22 and cell(cells, 3, "GRAD", "AUPRC")["n"] == 25
    assert cell(cells, 3, "GCAM", "P_AVG").verdict == FAIL and cell(cells, 3, "GCAM", "P_AVG")["n"] == 22 + 25


def test_a_method_with_no_finite_score_is_not_measured():
    scores = synthetic_scores()
    scores.loc[scores.group == "GCAM", "score"] = np.nan
    cells = cells_of(scores)
    assert cell(cells, 3, "GCAM", "P_AVG").verdict == NOT_MEASURED
    assert cell(cells, 3, "XRAI", "P_AVG").verdict == PASS          # the rest of the family still fitted


def test_tests_without_their_models_are_not_measured():
    scores = synthetic_scores()
    choice = main_choice()
    from dataclasses import replace
    alone = replace(choice, repeatability=None, reproducibility=None, localizer=None, localizer_pair=None)
    cells = cells_of(scores, alone)
    assert cell(cells, 4, "GRAD", "P_Repeat_Low").verdict == NOT_MEASURED
    assert cell(cells, 4, "GRAD", "P_Reprod_High").verdict == NOT_MEASURED
    assert cell(cells, 3, "GRAD", "P_High").verdict == NOT_MEASURED
    assert cell(cells, 3, "GRAD", "P_AVG").verdict == FAIL


def test_any_subset_of_methods():
    scores = synthetic_scores(methods=("GRAD", "IG"))
    cells = cells_of(scores, methods=("GRAD", "IG"))
    assert set(cells.method) == {"AVG", "U-Net", "LOW", "GRAD", "IG"}
    assert cell(cells, 3, "IG", "P_Randomization").verdict in (PASS, FAIL, UNCERTAIN)
