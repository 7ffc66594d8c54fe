import numpy as np

from repro.protocol import PAPER_METHODS, VERDICTS
from repro.report.published import published_cells, published_value


def test_shape_of_the_transcription():
    cells = published_cells()
    assert set(cells["table"]) == {2, 3, 4} and set(cells["dataset"]) == {"siim", "rsna"}
    per_method = {2: {"AUC", "P_AVG", "P_High"},
                  3: {"AUPRC", "P_AVG", "P_High", "RandBaseline", "FullyRandomized", "P_Randomization"},
                  4: {"Repeatability", "P_Repeat_High", "P_Repeat_Low", "Reproducibility",
                      "P_Reprod_High", "P_Reprod_Low"}}
    for (table, dataset), group in cells.groupby(["table", "dataset"]):
        for method in PAPER_METHODS:
            assert set(group.loc[group.method == method, "column"]) == per_method[table], (table, dataset, method)
    assert len(cells) == 2 * (8 * 3 + 2) + 2 * (8 * 6 + 2) + 2 * (8 * 6) + 4 + 2  # 254 cells
    values = cells[~cells.column.str.startswith("P_")]
    assert values["mean"].between(0, 1).all() and values["p"].eq("").all()
    pvalues = cells[cells.column.str.startswith("P_")]
    assert pvalues["mean"].isna().all() and pvalues["p"].str.match(r"^(<\.001|\.\d+)$").all()
    assert set(pvalues["verdict"]) == set(VERDICTS) | {""}


def test_known_cells_and_oddities():
    assert published_value(3, "siim", "XRAI", "AUPRC") == (0.15, 0.20)
    assert published_value(4, "rsna", "GBP", "Repeatability") == (0.56, 0.83)  # sd typo kept as printed
    mean, sd = published_value(4, "siim", "LOW", "Repeatability")
    assert mean == 0.5 and np.isnan(sd)
    cells = published_cells()
    unmarked = cells[(cells.column.str.startswith("P_")) & (cells.verdict == "")]
    assert list(unmarked[["dataset", "method", "column"]].itertuples(index=False, name=None)) == [
        ("siim", "GGCAM", "P_Randomization")]
