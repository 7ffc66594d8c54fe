"""benchmarks/gpu_check.py in its CI-sized form (on a machine without a GPU it runs the CPU part and exits 0),
and compare_runs.py on hand-made run folders."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.rehearsal     # two minutes on 2 cores: run by .ci/run after make test
def test_gpu_check_quick_runs_every_part_on_the_cpu_and_says_it_is_no_gpu(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path)],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=900,
                          env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["gpu"] is False and "no GPU" in result["note"] and result["complete"]
    for arch in ("inception_v3", "densenet121"):
        row = result["architectures"][arch]
        assert set(row["methods"]) == {"GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM"}
        assert all(r["gpu_maps_per_s"] > 0 and r["limit_maps_per_s"] > 0 for r in row["methods"].values())
        assert row["training_images_per_s"] > 0 and "CPU" in row["gradient_device"]
    # on a CPU under op determinism the maps and the training steps repeat bit for bit
    assert all(result["repeatable"]["op_determinism"]["maps"].values()) and result["repeatable"]["op_determinism"]["training"]
    assert set(result["tf32"]) == {"GRAD", "IG", "GCAM", "XRAI"}      # no TF32 on a CPU: the same maps
    assert all(r["identical"] for r in result["tf32"].values())
    assert set(result["batch_sizes"]) == {"1", "2"} and result["best_batch_size"] in (1, 2)
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")


def test_the_projection_reads_a_gpu_check_only_from_a_gpu(tmp_path):
    """bench_scale's projection takes the GPU's rates from gpu_check.json when it came from a GPU."""
    sys.path.insert(0, str(REPOSITORY))
    from benchmarks import bench_scale
    assert bench_scale.read_json(tmp_path / "absent.json") is None
    methods = {m: {"gpu_maps_per_s": 10.0} for m in ("GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM")}
    check = {"gpu": True, "device": "H100 x1", "architectures": {
        a: {"methods": methods, "training_images_per_s": 100.0} for a in ("inception_v3", "densenet121")}}
    costs = {"gradient_seconds": {"inception_v3": 0.2, "densenet121": 0.3},
             "training_seconds_per_image": {"inception_v3": 0.3, "densenet121": 0.5},
             "xrai": {"segmentation_seconds": 2.0, "ranking_seconds": 0.1}}
    args = bench_scale.parse(["--gpu-check", str(tmp_path / "g.json"), "--data", str(tmp_path / "absent.json")])
    (tmp_path / "g.json").write_text(json.dumps(check))
    projected = bench_scale.projection(costs, args)
    assert projected["gpu_costs"] == "measured on H100 x1 by gpu_check.py"
    maps = sum(c["maps"] for c in projected["counts"].values())
    # every map costs 1/10 s on the GPU: the maps stage on one GPU is maps / 10 seconds
    assert projected["predictions"][1]["stages_hours"]["maps (GPU)"] == round(maps / 10 / 3600, 2)
    check["gpu"] = False
    (tmp_path / "g.json").write_text(json.dumps(check))
    assert "assumed GPU speed-up" in bench_scale.projection(costs, args)["gpu_costs"]


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
    with pytest.raises(ValueError, match="no longer match its provenance"):
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
    with pytest.raises(ValueError, match="figures: its results no longer match"):
        compare(published, b)
