"""The HTML report of the session's smoke run (results/report/): every page there, every picture
and link resolving offline, the verdicts linking to the maps behind them, the same bytes when
written again; then in a real browser (headless Chromium), where one exists."""
from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest

from repro import pipeline, results
from repro.experiments import load_experiment
from repro.report import browser
from tests.helpers import copy_run

PAGES = ("index.html", "tables.html", "images-siim.html", "images-rsna.html", "cascade.html", "pairs.html",
         "provenance.html")


class _Page(HTMLParser):
    """The links, pictures, scripts and ids of one HTML file."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.matrix_links = [], set(), []
        self._in_matrix = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table" and "matrix" in (attrs.get("class") or ""):
            self._in_matrix = True
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append((tag, attrs[key]))
                if self._in_matrix and tag == "a":
                    self.matrix_links.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_matrix = False


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def report(smoke_run) -> Path:
    return smoke_run.results / "report"


def test_every_page_is_written_and_every_link_and_picture_resolves_offline(report):
    assert [name for name in PAGES if not (report / name).is_file()] == []
    pages = {path: parse(path) for path in report.rglob("*.html")}
    assert len(pages) > len(PAGES)                      # and one page per image
    problems = []
    for path, page in pages.items():
        for tag, ref in page.refs:
            parts = urlsplit(ref)
            if tag in ("script", "link", "img") and (parts.scheme or parts.netloc) and not ref.startswith("data:"):
                problems.append(f"{path.name}: {ref} is fetched from elsewhere")
            if parts.scheme or parts.netloc:
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.is_file():
                problems.append(f"{path.relative_to(report)}: {ref} does not exist")
            elif parts.fragment and "=" not in parts.fragment and parts.fragment not in pages[target].ids:
                problems.append(f"{path.relative_to(report)}: {ref} has no such id")
    assert problems == []
    size = sum(p.stat().st_size for p in report.rglob("*") if p.is_file())
    assert size < 15e6, f"{size / 1e6:.1f} MB"


def test_the_verdict_matrix_links_every_measured_verdict_to_its_maps(report, smoke_run):
    index = parse(report / "index.html")
    cells = smoke_run.cells
    shown = [(3, "P_AVG"), (3, "P_High"), (3, "P_Randomization"), (4, "P_Repeat_Low"), (4, "P_Reprod_Low")]
    rows = [*smoke_run.experiment.settings.saliency.methods, "EDGE", "ORACLE"]
    in_matrix = pd.Series([(t, c) in shown for t, c in zip(cells.table, cells.column)], index=cells.index)
    verdicts = cells[in_matrix & cells.method.isin(rows) & ~cells.verdict.isin(["", "not measured"])]
    assert len(index.matrix_links) == len(verdicts)
    assert "images-siim.html#metric=utility_auprc&sort=XRAI&order=asc" in index.matrix_links
    assert "cascade.html#siim-XRAI" in index.matrix_links
    assert "pairs.html#rsna-repeatability-SG" in index.matrix_links
    # The images page holds each image's score per method, for the sort: XRAI's utility is replicate 1's.
    text = (report / "images-siim.html").read_text()
    scores = results.read_scores(smoke_run.experiment)
    xrai = scores[(scores.dataset == "siim") & (scores.test == "utility") & (scores.metric == "auprc")
                  & (scores.group == "XRAI") & (scores.model == "inception_r1") & (scores.state == "trained")]
    for image, score in zip(xrai.image, xrai.score):
        row = re.search(rf'<tr id="image-{re.escape(image)}">.*?</tr>', text, flags=re.S).group(0)
        cell = re.search(r'data-group="XRAI" data-scores=\'([^\']*)\'', row).group(1)
        assert f'"utility_auprc": {round(score, 4)}' in cell


def test_the_report_names_what_the_run_holds(report, smoke_run):
    index = (report / "index.html").read_text()
    assert "inception_r1 vs inception_r2" in index and "inception_r1 vs densenet" in index
    assert "SIIM-ACR pneumothorax segmentation" in index and "◊" in index
    tables = (report / "tables.html").read_text()
    assert "paper 0." in tables and "ours − paper" in tables        # the paper's numbers beside ours
    assert "Classifiers near chance" in index      # one epoch of training: the smoke models learned nothing
    from repro.report.summary import localizers_below_avg
    for below in localizers_below_avg(smoke_run.cells):   # the localizers too: each said under its data set
        assert f"<strong>Warning</strong>: {below.finding}: it is no ceiling" in index
    provenance = (report / "provenance.html").read_text()
    assert "wall time" in provenance and "results_sha256" not in provenance


def test_written_again_it_is_the_same_bytes_but_its_provenance_page(smoke_run, tmp_path):
    copy_run(smoke_run, tmp_path)
    shutil.copy2(smoke_run.run_dir / "provenance.json", tmp_path / "provenance.json")
    experiment = load_experiment("smoke", run_dir=tmp_path)
    first = smoke_run.results / "report"
    index = pipeline.rewrite_report(experiment, compare=[smoke_run.run_dir], progress=False)
    second = index.parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    differing = [str(f) for f in files if (first / f).read_bytes() != (second / f).read_bytes()]
    assert differing == ["provenance.html"]
    assert "byte-identical results/" in (second / "provenance.html").read_text()   # --compare with the original


def test_in_a_real_browser_every_page_loads_clean_and_two_clicks_reach_the_maps(report, tmp_path):
    if browser.find_chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    pytest.importorskip("playwright", reason="the playwright package is not installed (pip install -e .[test])")
    screenshot = tmp_path / "overview.png"
    checks = browser.crawl(report / "index.html", screenshot=screenshot)
    assert len(checks) == len(list(report.rglob("*.html")))          # every page reachable from the overview
    assert {str(p.name): c.errors for p, c in checks.items() if c.errors} == {}
    assert {str(p.name): c.broken_images for p, c in checks.items() if c.broken_images} == {}
    assert browser.link_problems(checks) == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000

    # Where does XRAI fail? The matrix cell, then the worst image.
    with browser.browser_page() as page:
        page.goto((report / "index.html").resolve().as_uri())
        page.click('#verdicts-siim ~ table.matrix a[href^="images-siim.html#metric=utility_auprc&sort=XRAI"]')
        page.wait_for_url(re.compile(r"images-siim\.html#"))
        shown = page.eval_on_selector_all('td[data-group="XRAI"] .score', "cells => cells.map(c => c.textContent)")
        values = [float(v) for v in shown if v != "-"]
        assert values == sorted(values) and len(values) >= 3
        assert page.get_attribute('button.sort[data-group="XRAI"]', "data-order") == "asc"
        page.click("table#images tbody tr:first-child td.image a.id")
        page.wait_for_url(re.compile(r"image/siim/.+\.html$"))
        assert page.locator("table.grid img").count() > 0
        assert float(page.inner_text("table.scores tr:has(th:text-is('XRAI')) td:nth-child(2)")) == values[0]


# --- the sanity checks' page (sanity.html) ------------------------------------------------------------

SANITY_COLUMNS = ["test", "dataset", "method", "column", "mean", "sd", "n", "p", "verdict", "comparison", "fit", "icc",
                  "bootstrap_agreement", "bootstrap_resamples", "fragile"]


def test_without_sanity_checks_there_is_no_sanity_page(report):
    assert not (report / "sanity.html").exists()
    assert "sanity" not in (report / "index.html").read_text().lower()
    assert "sanity" not in (report / "pages.json").read_text()


def test_with_sanity_checks_the_report_has_their_page(smoke_run, tmp_path):
    """Hand-made sanity cells (sanity_cells.csv's columns) through stage_report on a copy of the smoke
    run: the page is in every page's navigation, its tables show the cells as table_sanity.md does,
    with the verdict's class and stability, its figure is copied in, and it counts AP's moves."""
    from repro.data.prepare import prepare_data
    copy_run(smoke_run, tmp_path)
    shutil.copy2(smoke_run.results / "figure2.png", tmp_path / "results" / "figure_sanity_emprt.png")
    experiment = load_experiment("smoke", run_dir=tmp_path)
    main = smoke_run.cells
    utility = main[(main.table == 3) & (main.dataset == "siim") & (main.column == "P_AVG")
                   & main.verdict.isin(["pass", "did not pass", "uncertain"])].iloc[0]
    moved = "pass" if utility.verdict != "pass" else "uncertain"
    sanity = pd.DataFrame([
        ["emprt", "siim", "GRAD", "eMPRT", 0.2204, 0.0443, 40, "", "", "", "", None, None, None, False],
        ["emprt", "siim", "GRAD", "P_Zero", None, None, 40, "<.001", "pass", "GRAD eMPRT vs 0", "mixed", 0.0667,
         0.97, 100, False],
        ["emprt", "siim", "GCAM", "eMPRT", -0.031, 0.07, 40, "", "", "", "", None, None, None, False],
        ["emprt", "siim", "GCAM", "P_Zero", None, None, 40, ".01", "did not pass", "GCAM eMPRT vs 0", "mixed", 0.1,
         0.6, 100, True],
        ["average_precision", "siim", utility.method, "AP", 0.5, 0.1, 20, "", "", "", "", None, None, None, False],
        ["average_precision", "siim", utility.method, "P_AP_AVG", None, None, 20, ".03", moved, "", "", None, None,
         None, False]], columns=SANITY_COLUMNS)
    datasets = prepare_data(experiment, progress=False)
    plans = {name: pipeline.plan_maps(experiment, dataset) for name, dataset in datasets.items()}
    index = pipeline.stage_report(experiment, results.read_scores(smoke_run.experiment), main, datasets, plans,
                                  None, sanity_cells=sanity, progress=False)
    report = index.parent
    page = parse(report / "sanity.html")
    for name in ("index.html", "tables.html", "sanity.html"):
        assert ("a", "sanity.html") in parse(report / name).refs
    assert {"emprt", "average_precision", "directions", "ap-moves"} <= page.ids
    assert ("img", "figure_sanity_emprt.png") in page.refs and (report / "figure_sanity_emprt.png").is_file()
    assert [ref for tag, ref in page.refs if tag == "img" and not (report / ref).is_file()] == []
    text = (report / "sanity.html").read_text()
    assert '<td class="">0.220 ± 0.04</td>' in text and '<td class="">-0.031 ± 0.07</td>' in text
    passed = re.search(r'<td class="pass" title="([^"]*)">&lt;.001 ‡</td>', text)
    assert passed and "the same verdict in 97% of 100 bootstrap resamples" in passed.group(1)
    assert re.search(r'<td class="fail" title="[^"]*60% of 100[^"]*">.01 † ◊</td>', text)
    assert "passes when its mean eMPRT is significantly above 0" in text       # the rule, from RULES
    assert f"moves 1 of 1 of Table 3&#39;s utility verdicts: siim {utility.method} P_AVG: {utility.verdict} -&gt; {moved}" in text
    assert text.count('class="outcome not-measured"') == 2     # neither published claim's cells are here
    # the grade of a run with the checks has their papers' directions as rows of its own, on the Tables page
    grade = pipeline.stage_grade(experiment, main, sanity)
    assert [f["outcome"] for f in grade["beyond_the_paper"]["findings"]] == ["not measured"] * 2
    pipeline.stage_report(experiment, results.read_scores(smoke_run.experiment), main, datasets, plans, grade,
                          sanity_cells=sanity, progress=False)
    assert "beyond" in parse(report / "tables.html").ids
    assert "Grad-CAM generally localized pathologies" in (report / "tables.html").read_text()
