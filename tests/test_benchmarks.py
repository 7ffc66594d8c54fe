"""benchmarks/gpu_check.py in its CI-sized form (on a machine without a GPU it runs the CPU part and exits 0),
and compare_runs.py on hand-made run folders."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def test_gpu_check_without_a_gpu_says_so_and_exits_0_after_the_cpu_part(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--size", "75", "--images", "1", "--quick",
                           "--no-smoke", "--out", str(tmp_path)], cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=600, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["gpu"] is False and "no GPU" in result["note"]
    assert set(result["cpu_seconds_per_map"]) == {"GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM"}
    assert all(seconds > 0 for seconds in result["cpu_seconds_per_map"].values())
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")



def _run(root: Path, commit: str, files: dict[str, bytes], extensions=("avx2", "fma")) -> Path:
    from repro.io import sha256_file
    (root / "results").mkdir(parents=True)
    for name, content in files.items():
        (root / "results" / name).write_bytes(content)
    digests = {name: sha256_file(root / "results" / name) for name in sorted(files)}
    (root / "provenance.json").write_text(json.dumps({"commit": commit, "finished": "now", "wall_seconds": 1.0,
                                                      "peak_memory_gb": 1.0, "results_sha256": digests,
                                                      "machine": {"cpu": "x", "vector_extensions": list(extensions)}}))
    return root


def test_compare_runs_names_the_files_that_differ_and_the_commits(tmp_path):
    sys.path.insert(0, str(REPOSITORY))
    from benchmarks.compare_runs import compare
    a = _run(tmp_path / "a", "a" * 40, {"cells.csv": b"1,2", "report.md": b"controls (siim, rsna)"})
    b = _run(tmp_path / "b", "a" * 40, {"cells.csv": b"1,2", "report.md": b"controls (siim, rsna)"})
    c = _run(tmp_path / "c", "c" * 40, {"cells.csv": b"1,2", "report.md": b"controls (rsna, siim)"})
    same = compare(a, b)
    assert same["identical"] and same["summary"].startswith("two runs of commit aaaaaaa from fresh clones gave "
                                                            "byte-identical results/ (2 files)")
    different = compare(a, c)
    assert not different["identical"] and different["differing_files"] == ["report.md"]
    assert different["summary"] == "runs of commits aaaaaaa and ccccccc differ in 1 of 2 result files: report.md"
    # another CPU: other last bits; the verdicts are compared, the firm ones apart, the controls left out
    header = "table,dataset,method,column,verdict,fragile\n2,siim,AVG,AUC,,False\n"
    cells = {"first": header + "3,siim,GRAD,P_Randomization,pass,False\n3,siim,XRAI,P_Randomization,pass,True\n"
                      "3,siim,EDGE,P_Randomization,did not pass,False\n",
             "second": header + "3,siim,GRAD,P_Randomization,pass,False\n3,siim,XRAI,P_Randomization,uncertain,False\n"
                       "3,siim,EDGE,P_Randomization,uncertain,False\n"}
    first = _run(tmp_path / "e", "a" * 40, {"cells.csv": cells["first"].encode()})
    second = _run(tmp_path / "f", "a" * 40, {"cells.csv": cells["second"].encode()}, extensions=("avx2", "fma", "avx512f"))
    other_cpu = compare(first, second)
    assert other_cpu["verdicts"] == {"verdicts": 2, "same": 1, "firm_in_both": 1, "same_firm": 1,
                                     "fragile_in_either": 1, "same_fragile": 0}
    assert other_cpu["summary"] == (
        "two runs of commit aaaaaaa differ in 1 of 1 result files: cells.csv; 1 of 2 method verdicts the same "
        "(firm in both runs: 1 of 1; fragile in either: 0 of 1) (on CPUs with different vector extensions, whose "
        "kernels sum in other orders)")
    (c / "results" / "cells.csv").write_bytes(b"edited after the run")
    with pytest.raises(SystemExit, match="no longer match its provenance"):
        compare(a, c)
    # a published folder: the results' files beside provenance.json, among files that are not results
    published = tmp_path / "figures"
    published.mkdir()
    for path in (a / "results").iterdir():
        (published / path.name).write_bytes(path.read_bytes())
    (published / "provenance.json").write_bytes((a / "provenance.json").read_bytes())
    (published / "reproducibility.json").write_text("{}")
    assert compare(published, b)["identical"]
    (published / "report.md").unlink()   # figures/ holds some of a run's files: those are compared
    later = _run(tmp_path / "g", "c" * 40, {"cells.csv": b"1,2", "report.md": b"controls (rsna, siim)"})
    assert compare(published, later)["summary"] == ("runs of commits aaaaaaa and ccccccc agree in the 1 result "
                                                    "files both hold")
    (published / "cells.csv").write_bytes(b"edited after publication")
    with pytest.raises(SystemExit, match="figures: its results no longer match"):
        compare(published, b)
