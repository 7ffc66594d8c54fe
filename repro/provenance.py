"""Where a run's outputs came from: code, versions, experiment, time and memory.

`StageClock` times each stage of a run and samples the resident memory of the run's whole process
tree (the driver and any worker processes it started) a few times a second, so every stage has a
wall time and a peak. `provenance_record` gathers that with the commit, the package versions and
the experiment's hash and seeds. The record lives beside the results, not in results/, because
results/ is byte-identical from run to run and times are not.
"""
from __future__ import annotations

import platform
import subprocess
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import psutil

from repro.io import sha256_file
from repro.versions import CODE_VERSIONS

PACKAGES = ("tensorflow", "keras", "keras-hub", "saliency", "tf-keras-vis", "numpy", "scipy", "scikit-image",
            "scikit-learn", "pandas", "pydicom", "matplotlib", "dask", "distributed", "pydantic")


class StageClock:
    """Wall time and peak resident memory (bytes, all processes of the run) per stage."""

    def __init__(self, interval: float = 0.25, on_stage_end=None):
        self.interval = interval
        self.on_stage_end = on_stage_end   # called with (name, {"seconds", "peak_memory_gb"}) after each stage
        self.stages: dict[str, dict[str, float]] = {}
        self.started = time.perf_counter()
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @contextmanager
    def stage(self, name: str):
        self._peak = _tree_rss()
        started, finished = time.perf_counter(), False
        try:
            yield
            finished = True
        finally:
            self.stages[name] = {"seconds": round(time.perf_counter() - started, 1),
                                 "peak_memory_gb": round(max(self._peak, _tree_rss()) / 1e9, 2)}
            if finished and self.on_stage_end is not None:   # an interrupted stage is not "done"
                self.on_stage_end(name, self.stages[name])

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def peak_memory_gb(self) -> float:
        return max((s["peak_memory_gb"] for s in self.stages.values()), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _tree_rss())


def _tree_rss() -> int:
    """Resident memory of this process and all its descendants."""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def git_commit(repository: Path) -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "uncommitted_changes": bool(git("status", "--porcelain", "--", "repro",
                                                                       "experiments")) if commit else None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# The vector extensions oneDNN and Eigen choose their kernels by: two CPUs that differ in them sum
# in other orders, so bitwise equality of runs holds only between machines that agree on them.
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and the vector extensions it offers, from /proc/cpuinfo (Linux; an
    empty record elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())   # the first processor's
    flags = set(fields.get("flags", "").split())
    return {"cpu": fields.get("model name", ""), "vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags]}


def provenance_record(experiment, clock: StageClock, *, cluster: str | None, repository: Path) -> dict:
    settings = experiment.settings
    return {
        "experiment": experiment.name,
        "experiment_hash": experiment.fingerprint,
        # What results/ was made from: every command that reads results checks it (repro.pipeline).
        "results_fingerprint": experiment.results_fingerprint,
        "code_versions": CODE_VERSIONS,
        "seeds": {"saliency": settings.saliency.seed, "image_sample": settings.evaluation.sample_seed,
                  "random_pairs": settings.evaluation.pair_seed, "cascade": settings.evaluation.cascade.seed,
                  "bootstrap": settings.evaluation.stability.seed,
                  "models": {name: spec.seed for name, spec in experiment.models.items() if spec.seed is not None}},
        "deterministic": settings.runtime.deterministic,
        **git_commit(repository),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": {"processor": platform.processor() or platform.machine(), "cores": psutil.cpu_count(),
                    "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "system": platform.platform(),
                    **cpu_identity()},
        "cluster": cluster or "in-process",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        # The digest of every result file: two runs gave the same results when these are equal.
        "results_sha256": {path.name: sha256_file(path) for path in sorted(experiment.layout.results_dir.iterdir())
                           if path.is_file() and not path.name.startswith(".")},
        "wall_seconds": round(clock.seconds, 1),
        "peak_memory_gb": clock.peak_memory_gb,
        "stages": clock.stages,
    }
