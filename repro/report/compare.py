"""Are two runs of an experiment the same, byte for byte? Compares their results/ folders.

Each run directory holds provenance.json (with the SHA-256 of every file in its results/) and
results/; a published folder (figures/: the results' files beside their provenance.json) stands
for the run it was copied from, so a new run can be checked against the committed one. The
comparison lists the files that differ, if any, and how many method verdicts two runs share.
benchmarks/compare_runs.py writes it to a file; the HTML report shows it (`repro report --compare`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from repro.io import sha256_file
from repro.protocol import CONTROLS, NOT_MEASURED


def compare(a: Path, b: Path) -> dict:
    runs = []
    for run in (a, b):
        provenance = json.loads((run / "provenance.json").read_text())
        digests = _digests(run, provenance)
        if digests != {name: provenance["results_sha256"].get(name) for name in digests} or not digests:
            raise ValueError(f"{run}: its results no longer match its provenance.json")
        machine = provenance.get("machine", {})
        runs.append({"run_dir": str(run), "commit": provenance["commit"], "finished": provenance["finished"],
                     "wall_seconds": provenance["wall_seconds"], "peak_memory_gb": provenance["peak_memory_gb"],
                     "cpu": {key: machine[key] for key in ("cpu", "vector_extensions") if key in machine},
                     "results_sha256": digests})
    first, second = (r["results_sha256"] for r in runs)
    compared = sorted(set(first) & set(second))   # a published folder holds some of a run's files
    differing = [name for name in compared if first[name] != second[name]]
    identical = not differing and set(first) == set(second)
    commits = list(dict.fromkeys(str(r["commit"])[:7] for r in runs))
    runs_of = (f"two runs of commit {commits[0]}" if len(commits) == 1
               else f"runs of commits {commits[0]} and {commits[1]}")
    summary = (f"{runs_of} from fresh clones gave byte-identical results/ ({len(first)} files)" if identical
               else f"{runs_of} differ in {len(differing)} of {len(compared)} result files: {', '.join(differing)}"
               if differing else f"{runs_of} agree in the {len(compared)} result files both hold")
    verdicts = None
    if "cells.csv" in differing and all((_results(run) / "cells.csv").is_file() for run in (a, b)):
        verdicts = verdict_agreement(_results(a) / "cells.csv", _results(b) / "cells.csv")
        summary += (f"; {verdicts['same']} of {verdicts['verdicts']} method verdicts the same (firm in both runs: "
                    f"{verdicts['same_firm']} of {verdicts['firm_in_both']}; fragile in either: "
                    f"{verdicts['same_fragile']} of {verdicts['fragile_in_either']})")
    extensions = [r["cpu"].get("vector_extensions") for r in runs]
    if None not in extensions and extensions[0] != extensions[1]:
        summary += " (on CPUs with different vector extensions, whose kernels sum in other orders)"
    elif None in extensions:
        summary += " (a run's record does not say its CPU's vector extensions)"
    return {"identical": identical, "differing_files": differing, "summary": summary, "verdicts": verdicts,
            "results_sha256": first, "runs": runs}


def verdict_agreement(first: Path, second: Path) -> dict[str, int]:
    """How many of the methods' verdicts (Tables 2-4, the controls left out) two cells.csv files
    share, counted apart for the verdicts firm in both runs and those fragile in either: a firm
    verdict is one that should survive a rerun that changes the last bits."""
    key = ["table", "dataset", "method", "column"]
    cells = [pd.read_csv(path, dtype=str, keep_default_na=False) for path in (first, second)]
    cells = [c[c["column"].str.startswith("P_") & ~c["verdict"].isin(["", NOT_MEASURED]) & ~c["method"].isin(CONTROLS)]
             for c in cells]
    both = cells[0].merge(cells[1], on=key, suffixes=("_a", "_b"))
    same = both["verdict_a"] == both["verdict_b"]
    firm = (both["fragile_a"] == "False") & (both["fragile_b"] == "False")
    return {"verdicts": len(both), "same": int(same.sum()), "firm_in_both": int(firm.sum()),
            "same_firm": int((same & firm).sum()), "fragile_in_either": int((~firm).sum()),
            "same_fragile": int((same & ~firm).sum())}


def _results(run: Path) -> Path:
    return run / "results" if (run / "results").is_dir() else run


def _digests(run: Path, provenance: dict) -> dict[str, str]:
    """The SHA-256 of every file in a run's results/, or of the files its provenance lists that a
    published folder holds (figures/ leaves the LaTeX tables out)."""
    if (run / "results").is_dir():
        return {p.name: sha256_file(p) for p in sorted(_results(run).iterdir()) if p.is_file()}
    return {name: sha256_file(run / name) for name in sorted(provenance["results_sha256"]) if (run / name).is_file()}
