"""The HTML report of a run: results/report/index.html and the pages it links to.

A static folder that opens from the file system, with no server and no internet (no CDN scripts or
fonts: one style sheet and one small script of its own):
  index.html                  the verdict matrix (method x test x data set), each cell linking to
                              its evidence; classifiers near chance; the controls; the figures
  tables.html                 Tables 2-4, the paper's numbers beside ours with the difference, and
                              the fidelity grade (the paper's experiments)
  sanity.html                 only for a run with the sanity checks (evaluation.sanity): per check,
                              its rule, table and figure; the published directions of effect beside
                              the run's; the Table 3 verdicts average precision moves
  images-<dataset>.html       every image the tests used with each method's map and the image's
                              scores, sortable by any method's score under any test
  image/<dataset>/<id>.html   one image: every model's and cascade state's maps, with scores
  cascade.html                the cascading-randomization strips, per method
  pairs.html                  the repeatability and reproducibility pairs, per method, worst first
  provenance.html             code, versions, times, memory, and the comparison with other runs:
                              the only page that holds times (written after provenance.json)
Maps are small JPEG thumbnails (repro.report.thumbnails) read from the run's map store. The folder
is written beside the old one and replaces it whole; the same run gives the same bytes (but for
provenance.html). Labels are the experiment's own: its model names, data set titles and methods.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from repro.evaluation.scores import edge_control, oracle_control
from repro.io import atomic_folder, write_text
from repro.protocol import (AVERAGE_PRECISION, AVG, CONTROLS, FAIL, LOW, NOT_MEASURED, ORIGINAL, PASS, SANITY_TESTS, STATE_LABELS,
                            UNCERTAIN)
from repro.report.summary import (NEAR_CHANCE, VERDICT_COLUMNS, RunReport, check_controls, localizers_below_avg,
                                  near_chance)
from repro.report.sanity import COLUMNS as SANITY_COLUMNS
from repro.report.sanity import RULES, TITLES, ap_moves, format_sanity_cell, published_directions
from repro.report.tables import LAYOUT, MARKERS, format_cell, note
from repro.report.thumbnails import map_thumbnail, radiograph_thumbnail
from repro.saliency.store import MapStore

LOCALIZER = "LOCALIZER"        # the method name of a localization network's own map (repro.evaluation.plan)
TEMPLATES = Path(__file__).with_name("templates")
STATIC = ("report.css", "report.js")
FIGURES = ("figure2.png", "figure3.png", "figure4.png")

# The per-image scores the images pages sort by: key -> (title, test, metric, which model, worst first).
METRICS = {
    "utility_auprc": ("utility AUPRC", "utility", "auprc", "utility", "asc"),
    "utility_roc_auc": ("utility ROC AUC", "utility", "roc_auc", "utility", "asc"),
    "randomization": ("SSIM to the original map, fully randomized", "randomization", "ssim", "utility", "desc"),
    "repeatability": ("repeatability SSIM", "repeatability", "ssim", "repeatability", "asc"),
    "reproducibility": ("reproducibility SSIM", "reproducibility", "ssim", "reproducibility", "asc"),
}
_VERDICT_CLASS = {PASS: "pass", FAIL: "fail", UNCERTAIN: "uncertain", NOT_MEASURED: "not-measured"}


@dataclass
class Thumb:
    """One picture of a page: its path relative to the report folder, and a caption."""
    src: str | None              # None: no map stored (a partial run)
    caption: str = ""
    link: str | None = None
    values: dict = field(default_factory=dict)   # metric key -> score, for sorting


# --- the report ----------------------------------------------------------------------------------

def write_html_report(experiment, *, cells: pd.DataFrame, scores: pd.DataFrame, datasets: dict, plans: dict,
                      choices: dict, grade: dict | None, models: dict, sanity: pd.DataFrame | None = None,
                      progress: bool = False) -> Path:
    """Write results/report/ (every page but provenance.html) and return its index.html; `progress`
    shows a bar over the images (the demo's: some 6,000 thumbnails). `sanity`: the run's sanity cells
    (sanity_cells.csv), which add sanity.html; None for a run without the sanity checks."""
    out = experiment.layout.report_dir
    with atomic_folder(out) as folder:
        _Report(folder, experiment, cells, scores, datasets, plans, choices, grade, models, progress, sanity).write()
    return out / "index.html"


def write_provenance_page(report_dir: Path, provenance: dict, comparisons=()) -> Path:
    """provenance.html: where the run came from, and what other runs it was compared with."""
    stages = [(name, stage["seconds"], stage.get("peak_memory_gb")) for name, stage in provenance.get("stages", {}).items()]
    facts = [("experiment", provenance.get("experiment")), ("experiment hash", provenance.get("experiment_hash")),
             ("commit", provenance.get("commit")), ("uncommitted changes", provenance.get("uncommitted_changes")),
             ("finished", provenance.get("finished")), ("where", provenance.get("cluster")),
             ("wall time", f"{provenance['wall_seconds'] / 60:.1f} minutes" if "wall_seconds" in provenance else None),
             ("peak memory", f"{provenance['peak_memory_gb']:.2f} GB (all processes)"
              if "peak_memory_gb" in provenance else None),
             ("op determinism", provenance.get("deterministic")), ("Python", provenance.get("python"))]
    page = _render("provenance.html", root="", title=f"Provenance · {provenance.get('experiment', '')}",
                   heading="Provenance", experiment=provenance.get("experiment", ""), active="provenance.html",
                   facts=[(k, v) for k, v in facts if v is not None], stages=stages,
                   machine=provenance.get("machine", {}), packages=provenance.get("packages", {}),
                   seeds=json.dumps(provenance.get("seeds", {}), indent=1, sort_keys=True),
                   digests=provenance.get("results_sha256", {}), comparisons=list(comparisons),
                   pages=_nav_pages(report_dir))
    return write_text(report_dir / "provenance.html", page)


def comparisons_of(provenance: dict, folders) -> list[dict]:
    """The comparisons with other runs recorded beside a run's results (benchmarks/compare_runs.py
    --out reproducibility*.json in the published folder) that are about these very results."""
    found = []
    for folder in folders:
        for path in sorted(Path(folder).glob("reproducibility*.json")) if folder and Path(folder).is_dir() else []:
            check = json.loads(path.read_text())
            if check.get("results_sha256") == provenance.get("results_sha256"):
                found.append({"source": path.name, **check})
    return found


def _nav_pages(report_dir: Path) -> list[tuple[str, str]]:
    """The navigation links of provenance.html: pages.json, which the other pages' writer leaves
    (provenance.html is written later, once the provenance record exists)."""
    index = report_dir / "pages.json"
    return [tuple(p) for p in json.loads(index.read_text())] if index.is_file() else [("index.html", "Overview")]


class _Report:
    """The pages of one run's report, written into `folder`; thumbnails are written once, when a
    page first shows them."""

    def __init__(self, folder: Path, experiment, cells, scores, datasets, plans, choices, grade, models, progress,
                 sanity=None):
        self.folder, self.experiment, self.progress = folder, experiment, progress
        self.sanity = None if sanity is None or sanity.empty else _typed(sanity)
        self.cells, self.grade, self.models = _typed(cells), grade, models
        self.datasets, self.plans, self.choices = datasets, plans, choices
        self.specs = {name: spec for name, spec in experiment.datasets.items() if name in datasets}
        self.methods = list(experiment.settings.saliency.methods)
        present = set(scores["group"])
        self.controls = [c for c in CONTROLS if c in present]
        self.score = {tuple(key): value for key, value in
                      zip(scores[["dataset", "test", "metric", "group", "model", "state", "image"]].itertuples(index=False),
                          scores["score"])}
        self.written: set[str] = set()       # thumbnails written so far (paths in the folder)
        self.degenerate: set[str] = set()    # those of degenerate maps
        self.positions = {name: {str(image): k for k, image in enumerate(data.ids)} for name, data in datasets.items()}

    # pages -------------------------------------------------------------------------------------

    def write(self) -> None:
        for name in STATIC:
            shutil.copyfile(TEMPLATES / name, self.folder / name)
        results = self.experiment.layout.results_dir
        figures = [name for name in FIGURES if (results / name).is_file()]
        for name in figures:
            shutil.copyfile(results / name, self.folder / name)
        self.pages = [("index.html", "Overview"), ("tables.html", "Tables")]
        if self.sanity is not None:
            self.pages.append(("sanity.html", "Sanity checks"))
        self.pages += [(f"images-{d}.html", f"Images: {spec.short}") for d, spec in self.specs.items()]
        self.pages += [("cascade.html", "Randomization"), ("pairs.html", "Repeatability, reproducibility"),
                       ("provenance.html", "Provenance")]
        write_text(self.folder / "pages.json", json.dumps(self.pages) + "\n")
        self._page("index.html", "Overview", **self._overview(figures))
        self._page("tables.html", "Tables 2-4", tables=self._tables(), grade=self._grade())
        if self.sanity is not None:
            self._page("sanity.html", "Sanity checks adopted after the paper", **self._sanity(results))
        for dataset in self.specs:
            self._images_page(dataset)
        self._page("cascade.html", "Cascading randomization", sections=self._cascade())
        self._page("pairs.html", "Repeatability and reproducibility", sections=self._pairs())

    def _page(self, path: str, title: str, *, template: str | None = None, root: str = "", **context) -> None:
        template = template or path
        text = _render(template, root=root, title=f"{title} · {self.experiment.name}", heading=title,
                       active=path, pages=self.pages, experiment=self.experiment.name, **context)
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def _overview(self, figures) -> dict:
        experiment, settings = self.experiment, self.experiment.settings
        roles = experiment.roles
        facts = [("methods", f"{', '.join(self.methods)} (preset {settings.saliency.preset})"),
                 ("utility and randomization", ", ".join(roles.replicates)),
                 ("repeatability", " vs ".join(roles.repeatability) if roles.repeatability
                  else "not measured (needs two models of one architecture)"),
                 ("reproducibility", " vs ".join(roles.reproducibility) if roles.reproducibility
                  else "not measured (needs models of two architectures)")]
        for dataset, spec in self.specs.items():
            selection = self.plans[dataset].selection
            facts.append((spec.title, f"{len(selection.utility)} images for utility, {len(selection.sample)} in the "
                                      f"sample of the SSIM tests, {len(selection.curve)} with every cascade state"))
        report = RunReport(experiment, self.cells, self.grade, check_controls(self.cells))
        matrices = [self._matrix(dataset) for dataset in self.specs]
        return {"description": settings.description, "facts": facts, "near_chance": near_chance(self.models),
                "near_chance_below": NEAR_CHANCE,
                "controls": report.control_lines, "control_rows": self.controls, "grade": self.grade["headline"] if self.grade else None,
                "matrices": matrices, "figures": figures, "fragile_above": settings.evaluation.stability.fragile_above,
                "headings": [heading for _, _, heading in VERDICT_COLUMNS]}

    def _matrix(self, dataset: str) -> dict:
        mine = self.cells[self.cells["dataset"] == dataset]
        rows = []
        for method in [*self.methods, *self.controls]:
            cells = []
            for table, column, _ in VERDICT_COLUMNS:
                cell = _one(mine, table, method, column)
                cells.append(self._verdict(dataset, method, table, column, cell))
            rows.append({"method": method, "control": method in self.controls, "cells": cells})
        below = {weak.dataset: weak for weak in localizers_below_avg(self.cells)}.get(dataset)
        return {"dataset": dataset, "title": self.specs[dataset].title, "rows": rows,
                "no_ceiling": f"{below.finding}: {below.CONSEQUENCE}" if below else None}

    def _verdict(self, dataset, method, table, column, cell) -> dict:
        if cell is None or not cell.get("verdict"):
            return {"text": "-", "marker": "", "fragile": False, "class": "not-measured", "p": "", "title": "",
                    "link": None}
        verdict = cell["verdict"]
        fragile = bool(cell.get("fragile", False))
        measured = verdict != NOT_MEASURED
        return {"text": verdict, "marker": MARKERS.get(verdict, ""), "fragile": fragile,
                "class": _VERDICT_CLASS.get(verdict, "not-measured"), "p": cell.get("p") if measured else "",
                "title": _details(cell),
                "link": self._evidence(dataset, method, table, column) if measured else None}

    def _evidence(self, dataset: str, group: str, table: int, column: str) -> str | None:
        """Where the maps behind a cell are: the images sorted worst first, the cascade strips, the pairs."""
        high = self.specs[dataset].high_baseline
        if group in (AVG, LOW):      # the fixed baselines: one map (or a number) for every image
            return None
        if column.startswith("P_Repeat") or column == "Repeatability":
            return f"pairs.html#{dataset}-repeatability-{group}"
        if column.startswith("P_Reprod") or column == "Reproducibility":
            return f"pairs.html#{dataset}-reproducibility-{group}"
        if column in ("P_Randomization", "FullyRandomized", "RandBaseline"):
            if group in self.methods:
                return f"cascade.html#{dataset}-{group}"
            return _sorted_images(dataset, "randomization", group)
        if group in (*self.methods, *self.controls, high) and group:
            return _sorted_images(dataset, "utility_roc_auc" if table == 2 else "utility_auprc", group)
        return None

    # Tables 2-4 --------------------------------------------------------------------------------

    def _tables(self) -> list[dict]:
        published = {}
        if self.grade:
            published = {(c["table"], c["dataset"], c["method"], c["column"]): c for c in self.grade["cells"]}
        tables = []
        for number, layout in LAYOUT.items():
            mine = self.cells[self.cells["table"] == number]
            blocks = []
            for dataset, spec in self.specs.items():
                rows_here = mine[mine["dataset"] == dataset]
                full_n = rows_here[~rows_here["column"].str.startswith("P_")].groupby("column")["n"].max()
                rows = []
                for method in dict.fromkeys(rows_here["method"]):
                    by_column = {row.column: row for row in rows_here[rows_here["method"] == method].itertuples()}
                    row = []
                    for key, _ in layout:
                        cell = by_column.get(key)
                        paper = published.get((number, dataset, method, key))
                        row.append(self._table_cell(dataset, method, number, key, cell, full_n.get(key), paper))
                    rows.append({"method": method, "cells": row})
                blocks.append({"title": spec.title, "rows": rows})
            tables.append({"number": number, "columns": [title for _, title in layout], "blocks": blocks,
                           "note": note(mine, number, datasets=self.specs, replicates=self.experiment.roles.replicates)})
        return tables

    def _table_cell(self, dataset, method, table, column, cell, full_n, paper) -> dict:
        ours = format_cell(cell, full_n)
        out = {"text": ours, "class": "", "paper": "", "agreement": "", "link": None, "title": ""}
        if cell is not None and column.startswith("P_"):
            out["class"] = _VERDICT_CLASS.get(cell.verdict, "")
            if cell.verdict and cell.verdict != NOT_MEASURED:
                out["link"] = self._evidence(dataset, method, table, column)
        elif cell is not None and not (isinstance(cell.mean, float) and math.isnan(cell.mean)):
            out["link"] = self._evidence(dataset, method, table, column)
        if paper:
            if column.startswith("P_"):
                if paper.get("p_paper") or paper.get("verdict_paper"):
                    agreement = paper.get("verdict_agreement") or ""
                    out["paper"] = f"paper {paper.get('p_paper') or ''} {MARKERS.get(paper.get('verdict_paper') or '', '')}".rstrip()
                    out["agreement"] = agreement
            elif _finite(paper.get("mean_paper")):
                text = f"paper {paper['mean_paper']:.2f}" + (f" ± {paper['sd_paper']:.2f}" if _finite(paper.get("sd_paper")) else "")
                if _finite(paper.get("difference")):
                    text += f"; ours − paper {paper['difference']:+.2f}"
                    if _finite(paper.get("difference_in_sd")):
                        text += f" ({paper['difference_in_sd']:+.1f} sd)"
                out["paper"] = text
        return out

    def _grade(self) -> dict | None:
        if not self.grade:
            return None
        return {"headline": self.grade["headline"], "findings": self.grade.get("findings", []),
                "correlations": self.grade.get("rank_correlations", []),
                "contradictions": self.grade.get("contradictions_in_the_paper", []),
                "beyond": self.grade.get("beyond_the_paper")}

    # the sanity checks adopted after the paper ---------------------------------------------------

    def _sanity(self, results: Path) -> dict:
        """sanity.html: per check its rule, its table (repro.report.sanity's cells and columns) and its
        figure (copied in, as the paper's figures are); the published directions; AP's moves."""
        checks = []
        for test in [t for t in SANITY_TESTS if t in set(self.sanity["test"])]:
            mine = self.sanity[self.sanity["test"] == test]
            blocks = []
            for dataset, spec in self.specs.items():
                here = mine[mine["dataset"] == dataset]
                rows = []
                for method in dict.fromkeys(here["method"]):
                    by_column = {row["column"]: row for row in here[here["method"] == method].to_dict("records")}
                    rows.append({"method": method, "cells": [self._sanity_cell(by_column.get(column))
                                                             for column in SANITY_COLUMNS[test]]})
                if rows:
                    blocks.append({"title": spec.title, "rows": rows})
            figure = f"figure_sanity_{test}.png"
            if (results / figure).is_file():
                shutil.copyfile(results / figure, self.folder / figure)
            checks.append({"test": test, "title": TITLES[test], "rule": RULES[test], "columns": SANITY_COLUMNS[test],
                           "blocks": blocks, "figure": figure if (results / figure).is_file() else None})
        moves = ""
        if AVERAGE_PRECISION in {c["test"] for c in checks}:
            count, compared, moved = ap_moves(self.sanity, self.cells)
            moves = f"{count} of {compared} of Table 3's utility verdicts" + (f": {'; '.join(moved)}" if moved else "")
        directions = published_directions(self.sanity, datasets=self.specs)
        return {"checks": checks, "ap_moves": moves,
                "directions": [{**row, "dataset": self.specs[row["dataset"]].short}
                               for row in directions.to_dict("records")]}

    @staticmethod
    def _sanity_cell(cell: dict | None) -> dict:
        out = {"text": format_sanity_cell(cell), "class": "", "paper": "", "agreement": "", "link": None, "title": ""}
        if cell is not None and cell["column"].startswith("P_"):
            out["class"] = _VERDICT_CLASS.get(cell["verdict"], "")
            out["title"] = _details(cell)
        return out

    # images -------------------------------------------------------------------------------------

    def _groups(self, dataset: str) -> list[str]:
        """The columns of an images page: the localization network (if any), the methods, the controls."""
        high = self.specs[dataset].high_baseline
        return ([high] if high and self.choices[dataset].localizer else []) + self.methods + self.controls

    def _images_page(self, dataset: str) -> None:
        plan, choice = self.plans[dataset], self.choices[dataset]
        selection = plan.selection
        groups = self._groups(dataset)
        rows = []
        for image in tqdm(selection.all, desc=f"report {dataset}", unit="image", disable=not self.progress):
            tests = [name for name, ids in (("utility", selection.utility), ("sample", selection.sample),
                                            ("cascade", selection.curve)) if image in ids]
            cells = []
            for group in groups:
                thumb = self._group_thumb(dataset, group, image, prefix="")
                thumb.values = {key: self._metric(dataset, key, group, image) for key in METRICS}
                thumb.link = _image_page(dataset, image)
                cells.append(thumb)
            rows.append({"image": image, "label": _short(image), "link": _image_page(dataset, image),
                         "tests": ", ".join(tests),
                         "radiograph": self._radiograph(dataset, image), "cells": cells,
                         "avg": self._fmt(self.score.get((dataset, "utility", "auprc", "AVG", "AVG", "trained", image)))})
            self._image_page(dataset, image, tests)
        metrics = [(key, title) for key, (title, *_rest) in METRICS.items()]
        who = {"utility": choice.utility, "repeatability": _pair(choice.repeatability),
               "reproducibility": _pair(choice.reproducibility)}
        self._page(f"images-{dataset}.html", f"{self.specs[dataset].title}: images", template="images.html",
                   dataset=dataset, groups=groups, rows=rows, metrics=metrics, who=who)

    def _metric(self, dataset: str, key: str, group: str, image: str) -> float | None:
        _, test, metric, role, _ = METRICS[key]
        choice, high = self.choices[dataset], self.specs[dataset].high_baseline
        state = "trained"
        if group == high:
            model = choice.localizer if test == "utility" else choice.localizer_pair
            if test == "randomization":
                return None
        elif test == "randomization":
            model, state = choice.utility, self.plans[dataset].states[choice.utility][-1]
        else:
            model = getattr(choice, role)
        value = self.score.get((dataset, test, metric, group, model, state, image))
        return None if value is None or not np.isfinite(value) else round(float(value), 4)

    def _group_thumb(self, dataset: str, group: str, image: str, *, prefix: str) -> Thumb:
        """The map of one column of an images page: replicate 1's (the localizer's for the high
        baseline, the control's own for EDGE and ORACLE)."""
        choice = self.choices[dataset]
        if group in self.controls:
            return self._control(dataset, group, image, prefix)
        if group == self.specs[dataset].high_baseline:
            return self._map(dataset, choice.localizer, ORIGINAL, LOCALIZER, image, prefix)
        return self._map(dataset, choice.utility, ORIGINAL, group, image, prefix)

    def _image_page(self, dataset: str, image: str, tests: list[str]) -> None:
        plan, choice = self.plans[dataset], self.choices[dataset]
        prefix = "../../"
        stored = {}
        for task in plan.tasks:
            if image in task.image_ids:
                stored.setdefault(task.model, {}).setdefault(task.state, set()).add(task.method)
        grids = []
        for model, states in stored.items():
            if set().union(*states.values()) == {LOCALIZER}:
                continue
            cascade = [s for s in plan.states.get(model, (ORIGINAL,)) if s in states]
            order = cascade + [s for s in states if s not in cascade]   # then the sanity checks' (bottom-up)
            rows = []
            for state in order:
                maps = []
                for method in self.methods:
                    thumb = self._map(dataset, model, state, method, image, prefix)
                    thumb.caption = thumb.caption or self._caption(dataset, model, state, method, image)
                    maps.append(thumb)
                rows.append({"label": STATE_LABELS.get(state, state) if state != ORIGINAL else "trained",
                             "state": state, "maps": maps})
            grids.append({"model": model, "rows": rows})
        localizers = [self._map(dataset, model, ORIGINAL, LOCALIZER, image, prefix) for model in plan.localizers
                      if LOCALIZER in stored.get(model, {}).get(ORIGINAL, ())]
        for thumb, model in zip(localizers, plan.localizers):
            thumb.caption = model
        controls = [self._control(dataset, group, image, prefix) for group in self.controls]
        for thumb, group in zip(controls, self.controls):
            thumb.caption = group
        table = [{"group": group, "values": [self._fmt(self._metric(dataset, key, group, image)) for key in METRICS]}
                 for group in self._groups(dataset)]
        self._page(_image_page(dataset, image), f"{self.specs[dataset].short} image {image}", template="image.html",
                   root=prefix, dataset=dataset, image=image, tests=", ".join(tests), methods=self.methods,
                   radiograph=self._radiograph(dataset, image, prefix), grids=grids, localizers=localizers,
                   controls=controls, metrics=[title for title, *_ in METRICS.values()], table=table,
                   back=f"images-{dataset}.html", who=choice.utility)

    def _caption(self, dataset, model, state, method, image) -> str:
        """Under a map: its utility AUPRC (trained, and replicate 1 fully randomized) or its SSIM to
        the trained map (a cascade state)."""
        if state == ORIGINAL:
            value = self.score.get((dataset, "utility", "auprc", method, model, "trained", image))
            return f"AUPRC {self._fmt(value)}" if value is not None else ""
        value = self.score.get((dataset, "randomization", "ssim", method, model, state, image))
        if value is not None:
            return f"SSIM {self._fmt(value)}"
        value = self.score.get((dataset, "utility", "auprc", method, model, "randomized", image))
        return f"AUPRC {self._fmt(value)}" if value is not None else ""

    # randomization and the pairs ---------------------------------------------------------------

    def _cascade(self) -> list[dict]:
        sections = []
        for dataset, spec in self.specs.items():
            plan, choice = self.plans[dataset], self.choices[dataset]
            mine = self.cells[self.cells["dataset"] == dataset]
            for method in self.methods:
                strips = []
                for image in plan.selection.curve:
                    for replicate in choice.replicates:
                        states = plan.states[replicate]
                        maps = []
                        for state in states:
                            thumb = self._map(dataset, replicate, state, method, image, "")
                            value = None if state == ORIGINAL else self.score.get(
                                (dataset, "randomization", "ssim", method, replicate, state, image))
                            thumb.caption = "trained" if state == ORIGINAL else (
                                f"{STATE_LABELS.get(state, state)}: {self._fmt(value)}")
                            maps.append(thumb)
                        strips.append({"image": image, "replicate": replicate, "link": _image_page(dataset, image),
                                       "radiograph": self._radiograph(dataset, image), "maps": maps})
                cell = _one(mine, 3, method, "P_Randomization")
                sections.append({"id": f"{dataset}-{method}", "dataset": spec.title, "method": method,
                                 "verdict": self._verdict(dataset, method, 3, "P_Randomization", cell),
                                 "values": self._values(mine, 3, method, ("RandBaseline", "FullyRandomized")),
                                 "strips": strips,
                                 "sorted": _sorted_images(dataset, "randomization", method)})
        return sections

    def _pairs(self) -> list[dict]:
        sections = []
        for dataset, spec in self.specs.items():
            plan, choice = self.plans[dataset], self.choices[dataset]
            mine = self.cells[self.cells["dataset"] == dataset]
            high = spec.high_baseline
            for test, column, low in (("repeatability", "Repeatability", "P_Repeat_Low"),
                                      ("reproducibility", "Reproducibility", "P_Reprod_Low")):
                pair = getattr(choice, test)
                for group in self._groups(dataset):
                    models = (choice.localizer_pair if group == high else pair)
                    if models is None:
                        continue
                    first, second = models.split("~")
                    rows = []
                    for image in plan.selection.sample:
                        value = self.score.get((dataset, test, "ssim", group, models, "trained", image))
                        if group in self.controls:
                            a = b = self._control(dataset, group, image, "")
                        else:
                            method = LOCALIZER if group == high else group
                            a, b = (self._map(dataset, m, ORIGINAL, method, image, "") for m in (first, second))
                        rows.append({"image": image, "link": _image_page(dataset, image), "value": value,
                                     "text": self._fmt(value), "radiograph": self._radiograph(dataset, image),
                                     "a": a, "b": b})
                    rows.sort(key=lambda r: (r["value"] is None or not np.isfinite(r["value"]),
                                             r["value"] if r["value"] is not None else 0.0))
                    cell = _one(mine, 4, group, low)
                    sections.append({"id": f"{dataset}-{test}-{group}", "dataset": spec.title, "test": test,
                                      "group": group, "first": first, "second": second, "rows": rows,
                                      "verdict": self._verdict(dataset, group, 4, low, cell),
                                      "values": self._values(mine, 4, group, (column,))})
        return sections

    def _values(self, mine, table, method, columns) -> list[tuple[str, str]]:
        titles = dict(LAYOUT[table])
        out = []
        for column in columns:
            cell = _one_row(mine, table, method, column)
            if cell is not None:
                out.append((titles[column], format_cell(cell, None)))
        return out

    # pictures ------------------------------------------------------------------------------------

    def _map(self, dataset, model, state, method, image, prefix) -> Thumb:
        path = f"maps/{dataset}/{model}/{state}/{method}/{image}.jpg"
        if path not in self.written:
            plan = self.plans[dataset]
            try:
                fingerprint = plan.fingerprint(model, state, method)
            except KeyError:
                return Thumb(None, "no map")
            smap = MapStore(self.experiment.layout.maps_dir(dataset)).read(model, state, method, image, fingerprint,
                                                                        shape=plan.shape)
            if smap is None:
                return Thumb(None, "no map")
            self._save(path, map_thumbnail(smap))
            if np.isnan(smap).all():
                self.degenerate.add(path)
        return Thumb(prefix + path, "degenerate" if path in self.degenerate else "")

    def _control(self, dataset, group, image, prefix) -> Thumb:
        path = f"controls/{dataset}/{group}/{image}.jpg"
        if path not in self.written:
            data = self.datasets[dataset]
            index = self._index(dataset, image)
            if group == "EDGE":
                smap = edge_control(data.pixels([index]))[0]
            elif data.evidence is not None:
                smap = oracle_control(data.evidence[[index]])[0]
            else:
                return Thumb(None, "no map")
            self._save(path, map_thumbnail(smap))
        return Thumb(prefix + path)

    def _radiograph(self, dataset, image, prefix="") -> Thumb:
        path = f"radiographs/{dataset}/{image}.jpg"
        if path not in self.written:
            data = self.datasets[dataset]
            index = self._index(dataset, image)
            self._save(path, radiograph_thumbnail(data.pixels([index])[0], data.masks[index]))
        return Thumb(prefix + path)

    def _index(self, dataset, image) -> int:
        return self.positions[dataset][image]

    def _save(self, path: str, data: bytes) -> None:
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.written.add(path)

    @staticmethod
    def _fmt(value) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


# --- helpers ---------------------------------------------------------------------------------------

def _render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # StrictUndefined: a name a template uses but the page's data lacks is an error, not a blank.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


# The cells' numeric columns, where present: a run's own frame and one read back from cells.csv
# (where some of them come as text) must give the same pages.
NUMERIC = ("mean", "sd", "n", "bootstrap_agreement", "bootstrap_resamples", "replicate_agreement", "replicates",
           "icc")


def _typed(cells: pd.DataFrame) -> pd.DataFrame:
    cells = cells.copy()
    for column in NUMERIC:
        if column in cells:
            cells[column] = pd.to_numeric(cells[column].replace("", np.nan), errors="coerce")
    for column in ("p", "verdict", "comparison", "fit"):
        if column in cells:
            cells[column] = cells[column].fillna("").astype(str)
    return cells


def _one(cells: pd.DataFrame, table: int, method: str, column: str) -> dict | None:
    row = _one_row(cells, table, method, column)
    return None if row is None else row._asdict()


def _one_row(cells: pd.DataFrame, table: int, method: str, column: str):
    rows = cells[(cells["table"] == table) & (cells["method"] == method) & (cells["column"] == column)]
    return next(rows.itertuples(index=False), None)


def _details(cell: dict) -> str:
    """A verdict's P value, n, stability and fit, for the title a reader points at."""
    details = [f"P {cell['p']}" if cell.get("p") else "", f"n {_int(cell.get('n'))}" if _int(cell.get("n")) else "",
               _agreement("bootstrap resamples", cell.get("bootstrap_agreement"), cell.get("bootstrap_resamples")),
               _agreement("replicates", cell.get("replicate_agreement"), cell.get("replicates")),
               str(cell.get("comparison") or ""),
               # The statistics' own account of the fit, where cells.csv has it.
               f"fit: {cell['fit']}" if isinstance(cell.get("fit"), str) and cell["fit"] else "",
               f"image ICC {cell['icc']:.2f}" if _finite(cell.get("icc")) else ""]
    return "; ".join(d for d in details if d)


def _agreement(what: str, share, count) -> str:
    if not _finite(share):
        return ""
    return f"the same verdict in {share:.0%} of {_int(count) or 'the'} {what}"


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value)


def _int(value) -> int | None:
    return int(value) if _finite(value) else None


def _pair(label: str | None) -> str:
    return label.replace("~", " vs ") if label else "not measured"


def _short(image: str, keep: int = 14) -> str:
    """An image id short enough for a table column (its end, which tells ids apart)."""
    return image if len(image) <= keep + 1 else "…" + image[-keep:]


def _image_page(dataset: str, image: str) -> str:
    return f"image/{dataset}/{image}.html"


def _sorted_images(dataset: str, metric: str, group: str) -> str:
    order = METRICS[metric][4]
    return f"images-{dataset}.html#metric={metric}&sort={group}&order={order}"
