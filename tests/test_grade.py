import numpy as np
import pandas as pd
import pytest

from repro.report.grade import (AGREE, DISAGREE, FINDINGS, NOT_MEASURED, check_findings, compare_cells,
                                grade, rank_correlations, write_grade)
from repro.report.published import published_cells


def test_the_paper_graded_against_itself():
    paper = published_cells()
    cells = compare_cells(paper)
    values = cells[~cells.column.str.startswith("P_")]
    assert np.allclose(values["difference"], 0)
    agreement = cells.loc[cells.column.str.startswith("P_"), "verdict_agreement"]
    assert set(agreement) == {AGREE, "paper printed no verdict"}
    assert np.allclose(rank_correlations(paper)["spearman_rho"].dropna(), 1.0)
    findings = check_findings(paper)
    assert len(FINDINGS) >= 12
    # Every finding holds in the paper's own tables but the one where its text and Table 4 disagree.
    disagreeing = findings.loc[findings.outcome != AGREE, "finding"].tolist()
    assert disagreeing == ["RSNA: no method is more repeatable than the RetinaNets except XRAI"]


def shifted(paper: pd.DataFrame) -> pd.DataFrame:
    """Known differences: every SIIM AUPRC +0.1; XRAI SIIM loses its randomization failure;
    SG becomes the best SIIM AUPRC; RSNA Table 4 removed (not measured)."""
    ours = paper.copy()
    siim_auprc = (ours.table == 3) & (ours.dataset == "siim") & (ours.column == "AUPRC")
    ours.loc[siim_auprc, "mean"] += 0.1
    ours.loc[siim_auprc & (ours.method == "SG"), "mean"] = 0.9
    xrai = (ours.table == 3) & (ours.dataset == "siim") & (ours.method == "XRAI") & (ours.column == "P_Randomization")
    ours.loc[xrai, "verdict"] = "pass"
    return ours[~((ours.table == 4) & (ours.dataset == "rsna"))]


def test_known_differences_are_reported():
    ours = shifted(published_cells())
    cells = compare_cells(ours)
    xrai_auprc = cells[(cells.table == 3) & (cells.dataset == "siim") & (cells.method == "XRAI")
                       & (cells.column == "AUPRC")].iloc[0]
    assert xrai_auprc["difference"] == pytest.approx(0.1)
    assert xrai_auprc["difference_in_sd"] == pytest.approx(0.1 / 0.20)
    xrai_rand = cells[(cells.dataset == "siim") & (cells.method == "XRAI") & (cells.column == "P_Randomization")]
    assert xrai_rand["verdict_agreement"].item() == DISAGREE
    rsna4 = cells[(cells.table == 4) & (cells.dataset == "rsna") & cells.column.str.startswith("P_")]
    assert set(rsna4["verdict_agreement"]) == {NOT_MEASURED}
    outcome = check_findings(ours).set_index("finding")["outcome"]
    assert outcome["SIIM-ACR: XRAI has the highest utility (AUPRC) of the eight methods"] == DISAGREE
    assert outcome["SIIM-ACR: XRAI fails the randomization test"] == DISAGREE
    assert outcome["RSNA: XRAI fails the randomization test"] == AGREE
    assert outcome["RSNA: XRAI has the highest repeatability of the eight methods"] == NOT_MEASURED
    rho = rank_correlations(ours).set_index(["table", "dataset", "criterion"])["spearman_rho"]
    assert rho[(3, "siim", "AUPRC")] < 1.0 and rho[(3, "rsna", "AUPRC")] == pytest.approx(1.0)


def test_report_files(tmp_path):
    report = write_grade(shifted(published_cells()), tmp_path)
    assert report["summary"]["findings_disagreeing"] >= 2
    markdown = (tmp_path / "grade.md").read_text()
    assert "## The paper's findings" in markdown and "Where the paper contradicts itself" in markdown
    assert (tmp_path / "grade.json").read_text().startswith("{")
    assert grade(published_cells())["failed_randomization_counts"]["paper_table3"]["siim"]["did not pass"] == 1


def test_findings_resting_on_a_localizer_below_avg_are_not_measured():
    """The demo of commit 81dd7b7: its RSNA-like RetinaNet (AUPRC 0.32) sat below AVG (there 0.58;
    the paper's AVG is 0.47), so every method came out 'no significant difference' against it, and
    the grade counted the paper's "the localization network beats every method" as a disagreement.
    A network that localizes worse than the average mask is no ceiling: what rests on it is not
    measured. The SIIM-ACR side, whose U-Net is above AVG, is graded as before."""
    from repro.report.summary import LocalizerBelowAvg, localizers_below_avg
    ours = published_cells()
    assert localizers_below_avg(ours) == []
    retinanet = (ours.table == 3) & (ours.dataset == "rsna") & (ours.method == "RetinaNet") & (ours.column == "AUPRC")
    ours.loc[retinanet, "mean"] = 0.32
    rsna_high = (ours.dataset == "rsna") & (ours.column == "P_High") & (ours.table == 3)
    ours.loc[rsna_high, "verdict"] = "uncertain"     # what the demo's weak RetinaNet gave
    assert localizers_below_avg(ours) == [LocalizerBelowAvg("rsna", "RetinaNet", 0.32, 0.47, None)]

    findings = check_findings(ours).set_index("finding")
    assert findings.loc["RSNA: the localization network beats every method on utility", "outcome"] == NOT_MEASURED
    assert findings.loc["RSNA: no method is more repeatable than the RetinaNets except XRAI", "outcome"] == NOT_MEASURED
    assert findings.loc["RSNA: the localization network beats every method on utility", "caveat"] == (
        "not measured: the RetinaNet scores below AVG on utility (AUPRC 0.32 against 0.47)")
    assert findings.loc["SIIM-ACR: the localization network beats every method on utility", "outcome"] == AGREE
    assert findings.loc["RSNA: XRAI fails the randomization test", "outcome"] == AGREE

    cells = compare_cells(ours)
    against_retinanet = (cells.dataset == "rsna") & cells.column.isin(["P_High", "P_Repeat_High", "P_Reprod_High"])
    assert set(cells.loc[against_retinanet, "verdict_agreement"]) == {NOT_MEASURED}
    assert set(cells.loc[(cells.dataset == "siim") & (cells.column == "P_High"), "verdict_agreement"]) == {AGREE}
    # The two RSNA findings leave the count; so do the verdicts against the RetinaNet.
    paper, summary = grade(published_cells())["summary"], grade(ours)["summary"]
    assert summary["findings_not_measured"] == paper["findings_not_measured"] + 2
    assert summary["verdict_cells_measured"] == paper["verdict_cells_measured"] - int(
        (cells.loc[against_retinanet, "verdict_agreement"] == NOT_MEASURED).sum())


def test_the_sanity_checks_published_directions_are_rows_beyond_the_headline(tmp_path):
    """With the sanity checks' cells, their papers' directions are graded in a part of their own,
    out of the headline; a run without them has no such part (its grade.json is as before)."""
    from repro.protocol import KAGGLE_DATASETS, LOCALIZATION
    from repro.report.sanity import published_directions
    ours = shifted(published_cells())
    plain = write_grade(ours, tmp_path)
    assert "beyond_the_paper" not in plain and "Beyond the paper" not in (tmp_path / "grade.md").read_text()
    sanity = pd.DataFrame([[LOCALIZATION, "siim", "GCAM", "IoU", 0.30, "", ""],
                           [LOCALIZATION, "siim", "IG", "IoU", 0.20, "", ""]],
                          columns=["test", "dataset", "method", "column", "mean", "verdict", "p"])
    beyond = published_directions(sanity, datasets=KAGGLE_DATASETS)
    report = write_grade(ours, tmp_path, beyond=beyond)
    assert report["headline"] == plain["headline"] and report["summary"] == plain["summary"]
    part = report["beyond_the_paper"]
    assert part["summary"].startswith("1 of 1 measured") and "1 not measured" in part["summary"]
    assert [(f["dataset"], f["outcome"]) for f in part["findings"]] == [("siim", AGREE), ("siim", NOT_MEASURED)]
    markdown = (tmp_path / "grade.md").read_text()
    assert "## Beyond the paper" in markdown and "mean IoU (Otsu): GCAM 0.300, IG 0.200" in markdown
