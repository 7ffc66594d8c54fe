"""The walk-through notebooks run top to bottom on the session's smoke run (read-only)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(notebook, smoke_run, monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_EXPERIMENT", "smoke")
    monkeypatch.setenv("REPRO_RUN_DIR", str(smoke_run.run_dir))
    monkeypatch.setenv("REPRO_SCRATCH", str(tmp_path))     # where a notebook may write (07: its own run)
    book = nbformat.read(notebook, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), "stored with outputs"
    NotebookClient(book, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    # No start-up noise from TensorFlow's C++ side, and tqdm finds its notebook widgets.
    stderr = "".join(output.get("text", "") for cell in book.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []) if output.get("name") == "stderr")
    for noise in ("absl::", "oneDNN", "cudart", "cuInit", "IProgress not found", "cpu_feature_guard"):
        assert noise not in stderr, stderr[-1500:]
