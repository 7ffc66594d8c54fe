"""Are two runs of an experiment the same, byte for byte? Compares their results/ folders.

    python benchmarks/compare_runs.py RUN_DIR_A RUN_DIR_B [--out figures/reproducibility.json]

Each run directory holds provenance.json (with the SHA-256 of every file in its results/) and
results/; a published folder (figures/: the results' files beside their provenance.json) stands
for the run it was copied from, so a new run can be checked against the committed one
(repro.report.compare, which the HTML report shows too). With --out it writes the verdict,
both runs' commits, start machines and times, and the digests compared; the README's results
section quotes it only while those digests are the published run's (repro.report.readme).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from benchmarks.output import show_and_save  # noqa: E402
from repro.report.compare import compare  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        result = compare(args.first, args.second)
    except ValueError as err:   # a run whose results no longer match its provenance
        raise SystemExit(str(err)) from None
    show_and_save(result, result["summary"], args.out)
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
