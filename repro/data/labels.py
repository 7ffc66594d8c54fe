"""Reading the competitions' label CSVs: strings only, stripped names and cells, a 1-based `row`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_label_csv(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Read a label CSV, checking it has `columns`; `row` numbers data rows from 1 (header = 0).

    Column names are stripped because the original SIIM header is "ImageId, EncodedPixels".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise ValueError(f"{path}: cannot read CSV ({err})") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; found {list(table.columns)}")
    for column in columns:
        table[column] = table[column].str.strip()
    table["row"] = np.arange(1, len(table) + 1)
    return table
