"""benchmarks/gpu_check.py in its CI-sized form: on a machine without a GPU it runs the CPU part and exits 0."""
import json
import subprocess
import sys
from pathlib import Path

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

