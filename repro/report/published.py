"""The paper's Tables 2-4 as data (published.csv beside this file, transcribed cell by cell)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

PUBLISHED_CSV = Path(__file__).with_name("published.csv")


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    table = pd.read_csv(PUBLISHED_CSV, comment="#", dtype={"p": str, "verdict": str},
                        keep_default_na=False, na_values={"mean": [""], "sd": [""]})
    return table


def published_cells() -> pd.DataFrame:
    """Long table: table, dataset, method, column, mean, sd, p (as printed), verdict."""
    return _load().copy()


def published_value(table: int, dataset: str, method: str, column: str) -> tuple[float, float]:
    """(mean, sd) of one value cell; sd is NaN where none was printed (the LOW baseline)."""
    cells = _load()
    row = cells[(cells.table == table) & (cells.dataset == dataset) & (cells.method == method)
                & (cells.column == column)]
    if len(row) != 1:
        raise KeyError(f"no published cell table {table}, {dataset}, {method}, {column}")
    return float(row["mean"].iloc[0]), float(row["sd"].iloc[0])
