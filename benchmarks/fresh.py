"""A benchmark's worker function run in a fresh Python process: what is process-wide (TensorFlow's
threads and op determinism, fixed once it starts; a process's peak memory, which only grows)
starts clean there. The arguments must be Python literals; the result must be JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent


def in_fresh_process(module: str, function: str, *args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(BENCHMARKS)!r}); from {module} import {function}; "
            f"print('RESULT', json.dumps({function}(*{args!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])
