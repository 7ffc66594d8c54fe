"""What a run found, as data: the verdicts of the four tests per method, the control check, the
check of the localization networks against AVG and the grade's headline. The command line prints
from a `RunReport`; `report_markdown` writes the same as results/report.md, for the paper's
experiments and for a user's own models alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from repro.protocol import AVG, CONTROLS, EXIT_CONTROLS_FAILED, EXIT_OK, FAIL, LOCALIZER_NAMES, NOT_MEASURED, PASS
from repro.report.tables import FRAGILE, MARKERS

# The verdict columns of the summary: (table, cell column, heading). Table 3 holds utility by AUPRC,
# the paper's utility metric.
VERDICT_COLUMNS = ((3, "P_AVG", "utility vs AVG"), (3, "P_High", "utility vs localizer"),
                   (3, "P_Randomization", "randomization"), (4, "P_Repeat_Low", "repeatability vs 0.5"),
                   (4, "P_Reprod_Low", "reproducibility vs 0.5"))


# Test ROC AUC below which a classifier has learned next to nothing: its maps explain noise, and
# its verdicts say little about the method (the README and the report say so beside its score).
NEAR_CHANCE = 0.6


def near_chance(models: dict) -> dict[str, float]:
    """The classifiers of models.json ("dataset/model": record) whose test ROC AUC is below
    NEAR_CHANCE, with that ROC AUC."""
    found = {}
    for name, record in sorted(models.items()):   # models.json's order, however the records came
        auc = (record.get("test") or {}).get("auc")
        if record.get("monitor", "auc") == "auc" and auc is not None and auc < NEAR_CHANCE:
            found[name] = auc
    return found


def near_chance_line(models: dict) -> str | None:
    """The warning the console and report.md give about classifiers near chance, if any."""
    found = near_chance(models)
    if not found:
        return None
    return (f"classifiers near chance (test ROC AUC below {NEAR_CHANCE}): "
            + ", ".join(f"{name} {auc:.2f}" for name, auc in found.items())
            + "; their maps explain models that learned next to nothing, so the verdicts drawn from them "
              "say little about the methods")


# Below this many utility images the controls' verdicts say more about chance than about the
# harness (the smoke run has three): the check is then reported as not made.
MIN_CONTROL_IMAGES = 10


def check_controls(cells: pd.DataFrame) -> list[str]:
    """What the harness controls must show; each problem is one line (empty when all is well).
    Data sets with fewer than MIN_CONTROL_IMAGES utility images are not judged."""
    problems = []
    for dataset in _checkable(cells, True):
        mine = cells[cells["dataset"] == dataset]

        def verdict(method, column):
            row = mine[(mine.table == 3) & (mine.method == method) & (mine.column == column)]
            return row["verdict"].iloc[0] if len(row) else None

        edge = verdict("EDGE", "P_Randomization")
        if edge is not None and edge != FAIL:
            problems.append(f"{dataset}: the EDGE control (ignores the model) should FAIL the randomization "
                            f"test, but its verdict is '{edge}'")
        oracle = verdict("ORACLE", "P_AVG")
        if oracle is not None and oracle != PASS:
            problems.append(f"{dataset}: the ORACLE control (the true evidence) should beat AVG on utility, "
                            f"but its verdict is '{oracle}'")
    return problems


def unchecked_controls(cells: pd.DataFrame) -> list[str]:
    """One line per data set whose controls were not judged, saying why."""
    return [f"{dataset}: controls not checked ({_utility_images(cells, dataset)} utility images; the check "
            f"needs {MIN_CONTROL_IMAGES})" for dataset in _checkable(cells, False)]


def _utility_images(cells: pd.DataFrame, dataset: str) -> int:
    row = cells[(cells.dataset == dataset) & (cells.table == 3) & (cells.method == "AVG") & (cells.column == "AUPRC")]
    return int(row["n"].iloc[0]) if len(row) else 0


def _checkable(cells: pd.DataFrame, enough: bool) -> list[str]:
    with_controls = cells[cells["method"].isin(CONTROLS)]
    return [d for d in dict.fromkeys(with_controls["dataset"])
            if (_utility_images(cells, d) >= MIN_CONTROL_IMAGES) == enough]


@dataclass(frozen=True)
class LocalizerBelowAvg:
    """A localization network that scored below the AVG mask on utility: the paper's ceiling under
    its floor. The paper's high baselines are networks trained to localize; one that localizes worse
    than the average of the training masks has not learned its task, so the comparisons with it
    (Table 3's P value*, Table 4's high baselines) say nothing about the paper's claims."""
    dataset: str
    localizer: str    # its row in the tables: U-Net, RetinaNet
    auprc: float      # its mean utility AUPRC over the test images
    avg: float        # AVG's, on the same images
    images: int | None   # how many (None: cells without counts, as the published ones)

    CONSEQUENCE = ("it is no ceiling, so the comparisons with it do not test the paper's claims, and the "
                   "grade counts the findings that rest on it as not measured")

    @property
    def finding(self) -> str:
        on = f" on {self.images} test images" if self.images is not None else ""
        return f"the {self.localizer} scores below AVG on utility (AUPRC {self.auprc:.2f} against {self.avg:.2f}{on})"

    def __str__(self) -> str:
        return f"{self.dataset}: {self.finding}: {self.CONSEQUENCE}"


def localizers_below_avg(cells: pd.DataFrame) -> list[LocalizerBelowAvg]:
    """Each data set whose localization network's mean utility AUPRC (Table 3) is below AVG's, in
    the cells' order. Also reads cells.csv as published (its numbers may come as text)."""
    utility = cells[(cells["table"].astype(int) == 3) & (cells["column"] == "AUPRC")]
    found = []
    for dataset in dict.fromkeys(utility["dataset"]):
        mine = utility[utility["dataset"] == dataset].set_index("method")
        means = pd.to_numeric(mine["mean"], errors="coerce")
        for localizer in LOCALIZER_NAMES.values():
            if localizer in means.index and AVG in means.index and means[localizer] < means[AVG]:
                images = int(mine.loc[localizer, "n"]) if "n" in mine else None
                found.append(LocalizerBelowAvg(dataset, localizer, float(means[localizer]), float(means[AVG]), images))
    return found


@dataclass
class RunReport:
    """What a run produced: its cells, the grade (paper experiments only) and the control check."""
    experiment: object                   # repro.experiments.Experiment
    cells: pd.DataFrame
    grade: dict | None
    control_problems: list[str]
    provenance: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)   # models.json: each model's validation and test scores

    @property
    def near_chance_line(self) -> str | None:
        return near_chance_line(self.models)

    @property
    def exit_code(self) -> int:
        return EXIT_CONTROLS_FAILED if self.control_problems else EXIT_OK

    @property
    def has_controls(self) -> bool:
        return bool(set(CONTROLS) & set(self.cells["method"]))

    @property
    def control_lines(self) -> list[str]:
        """What the control check found, one line each (failures first)."""
        if not self.has_controls:
            return []
        judged = _checkable(self.cells, True)   # in the cells' order: a set's order changes from run to run
        lines = [f"CONTROL CHECK FAILED: {p}" for p in self.control_problems]
        if judged and not self.control_problems:
            # Only the controls the run has: a folder data set has no true evidence, so no ORACLE.
            shown = [must for control, must in (("EDGE", "EDGE fails the randomization test"),
                                                ("ORACLE", "ORACLE beats AVG")) if control in set(self.cells["method"])]
            lines.append(f"controls ({', '.join(judged)}): {' and '.join(shown)}, as they must")
        return lines + unchecked_controls(self.cells)

    def verdicts(self, dataset: str, *, with_p: bool = True) -> pd.DataFrame:
        """One row per method (in the cells' order), one column per test: the verdict (and its P
        value), ◊ if fragile."""
        mine = self.cells[self.cells["dataset"] == dataset]
        methods = list(dict.fromkeys(mine.loc[(mine.table == 3) & (mine.column == "P_AVG"), "method"]))
        rows = []
        for method in methods:
            row = {"method": method}
            for table, column, heading in VERDICT_COLUMNS:
                cell = mine[(mine.table == table) & (mine.method == method) & (mine.column == column)]
                if cell.empty:
                    row[heading] = "-"
                    continue
                cell = cell.iloc[0]
                text = cell["verdict"] if cell["verdict"] else "-"
                if with_p and text not in (NOT_MEASURED, "-") and cell["p"]:
                    text += f" (P {cell['p']})"
                row[heading] = text + (f" {FRAGILE}" if bool(cell["fragile"]) else "")
            rows.append(row)
        return pd.DataFrame(rows, columns=["method", *(h for _, _, h in VERDICT_COLUMNS)])

    def verdict_lines(self) -> list[str]:
        """The console summary: per data set, a line per method with its verdicts, and a warning
        under them when its localization network scored below AVG."""
        weak = {below.dataset: below for below in localizers_below_avg(self.cells)}
        lines = []
        for dataset in dict.fromkeys(self.cells["dataset"]):
            table = self.verdicts(dataset, with_p=False)
            widths = [max(len(str(v)) for v in [h, *table[h]]) for h in table.columns]
            lines.append(f"{dataset}:")
            for values in [list(table.columns), *table.astype(str).values.tolist()]:
                lines.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip())
            if dataset in weak:
                lines.append(f"  warning: {weak[dataset]}")
        return lines

    def grade_line(self) -> str | None:
        return self.grade["headline"] if self.grade else None


def report_markdown(report: RunReport) -> str:
    """results/report.md: the verdicts per data set, what was not measured and why, the controls
    and, for the paper's experiments, the grade's headline."""
    experiment = report.experiment
    settings = experiment.settings
    lines = [f"# Saliency-map trustworthiness report: {experiment.name}", ""]
    if settings.description:
        lines += [settings.description, ""]
    roles = experiment.roles
    if report.near_chance_line:
        lines += [f"**Warning**: {report.near_chance_line}.", ""]
    lines += [f"- methods: {', '.join(settings.saliency.methods)} (preset `{settings.saliency.preset}`)",
              f"- models: utility and randomization on {', '.join(roles.replicates)}; repeatability "
              f"{' vs '.join(roles.repeatability) if roles.repeatability else 'not measured (needs two models of one architecture)'}; "
              f"reproducibility {' vs '.join(roles.reproducibility) if roles.reproducibility else 'not measured (needs models of two architectures)'}",
              f"- markers: {MARKERS[FAIL]} did not pass, {MARKERS[PASS]} passed; {FRAGILE} fragile (the verdict flips in more "
              f"than {settings.evaluation.stability.fragile_above:.0%} of bootstrap resamples or replicates)", ""]
    weak = {below.dataset: below for below in localizers_below_avg(report.cells)}
    for name, spec in experiment.datasets.items():
        if name not in set(report.cells["dataset"]):
            continue
        lines += [f"## {spec.title}", "", report.verdicts(name).to_markdown(index=False), ""]
        if name in weak:
            lines += [f"**Warning**: {weak[name].finding}: {weak[name].CONSEQUENCE}.", ""]
        mine = report.cells[(report.cells["dataset"] == name) & (report.cells["verdict"] == NOT_MEASURED)]
        reasons = mine.groupby("comparison", sort=False)["method"].apply(lambda m: ", ".join(dict.fromkeys(m)))
        for why, methods in reasons.items():
            lines.append(f"- not measured ({why}): {methods}")
        lines.append("")
    if report.has_controls:
        lines += ["## Harness controls", "", *(f"- {line}" for line in report.control_lines), ""]
    if report.grade:
        lines += ["## Fidelity grade", "", f"{report.grade['headline']} (grade.md)", ""]
    lines += ["Tables: table2.md, table3.md, table4.md; every cell with n and stability: cells.csv; "
              "figures: figure2-4.png; the maps behind every verdict: report/index.html.", ""]
    return "\n".join(lines)
