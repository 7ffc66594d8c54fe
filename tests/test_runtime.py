import os
import subprocess
import sys
from pathlib import Path

import pytest

THREADS_AFTER_CONFIGURE = """
import sys
from repro.runtime import configure, import_tensorflow
configure(deterministic=sys.argv[1] == "deterministic", threads=2)
threading = import_tensorflow().config.threading
print(threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
"""


@pytest.mark.parametrize("mode, expected", [("deterministic", "2 1"), ("default", "2 2")])
def test_op_determinism_runs_one_kernel_at_a_time_over_all_the_threads(mode, expected):
    """Two kernels side by side on shared threads gave InceptionV3 gradients other last bits in about
    a third of identical calls; a deterministic runtime therefore runs kernels one at a time.
    A fresh process: threads are fixed once TensorFlow starts, and this test process already did."""
    done = subprocess.run([sys.executable, "-c", THREADS_AFTER_CONFIGURE, mode], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == expected


@pytest.mark.parametrize("module", ["repro.models.files", "repro.models.training", "repro.saliency.api"])
def test_the_modules_a_user_or_notebook_imports_start_tensorflow_quietly(module):
    """An own-model run and notebooks 02 / 07 import these first: TensorFlow's C++ start-up lines
    (absl, oneDNN, cudart, cuInit) must not reach stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
