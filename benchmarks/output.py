"""How every benchmark ends: its table on stdout, its full result as JSON where --out names a file."""
from __future__ import annotations

from repro.io import write_json


def show_and_save(result, table: str, out=None):
    print(table)
    if out:
        write_json(out, result)
    return result
