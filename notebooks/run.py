"""Run the walk-through notebooks top to bottom (`make notebooks`), one after another, and write each
executed copy, outputs included, to runs/notebooks/ (the notebooks in notebooks/ stay without outputs).

    python notebooks/run.py [NOTEBOOK ...]     # default: every notebook here, in order

Notebooks 02-06 read a finished run (the demo's, else the smoke run, made by the first of them
that needs it); 07 makes its own. Needs the `notebooks` extra: pip install -e ".[notebooks]".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=sorted(HERE.glob("*.ipynb")))
    parser.add_argument("--out", type=Path, default=HERE.parent / "runs" / "notebooks")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one cell may take")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for number, path in enumerate(args.notebooks, 1):
        print(f"[{number}/{len(args.notebooks)}] {path.name} ...", end=" ", flush=True)
        started = time.perf_counter()
        book = nbformat.read(path, as_version=4)
        try:
            NotebookClient(book, timeout=args.timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
        except CellExecutionError as err:
            failed.append(path.name)
            print(f"FAILED\n{str(err)[-2000:]}", flush=True)
        else:
            print(f"{time.perf_counter() - started:.0f} s", flush=True)
        nbformat.write(book, args.out / path.name)
    print(f"executed copies: {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
