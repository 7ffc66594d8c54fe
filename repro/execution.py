"""Where the units of work run: in this process (the default), or on a Dask cluster.

Both executors offer the same three calls, so the pipeline does not care which it has:
  train(context, jobs)   every model's training (jobs: (data set, models of one architecture))
  maps(context, tasks)   every chunk of saliency maps (repro.evaluation.plan.MapTask)
  map(function, jobs)    any other independent work (the stability resamples), with a progress bar
`executor_for(None)` runs in-process; `executor_for("local:2")` or a scheduler address gives a
repro.distributed.DaskExecutor.
"""
from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

from tqdm.auto import tqdm

from repro.distributed import DaskExecutor
from repro.evaluation.maps import compute_in_process, is_done, segment_chunk, xrai_images
from repro.models.jobs import train_groups
from repro.worker import WORKER


class InProcess:
    """Training and maps in this process (training in fresh child processes with
    runtime.training.isolated); `map` spreads its jobs over `workers` child processes, since the
    stability resamples are pure Python and numpy that one process runs on one core."""
    description = "in-process"

    def __init__(self, workers: int = 1):
        self.workers = workers

    def train(self, context, jobs: list[tuple[str, tuple[str, ...]]], *, progress: bool = True) -> list[dict]:
        """One process per architecture (each data set's replicates, then the next data set's):
        the training step is traced once per architecture, not once per data set; one per data set
        for the architectures in runtime.training.process_per_dataset (their peak creeps up with
        every model a process trains)."""
        groups: dict[tuple, list] = {}
        for dataset, names in jobs:
            arch = context.models[names[0]].arch
            groups.setdefault((arch, dataset) if arch in context.process_per_dataset else (arch,), []).append((dataset, names))
        records = [record for group in groups.values() for record in train_groups(context, group, progress=progress)]
        WORKER.release("training")     # what this process trained: the maps stage wants the memory
        return records

    def maps(self, context, tasks, *, progress: bool = True) -> None:
        self.segment(context, tasks)
        compute_in_process(context, tasks, progress=progress)

    def segment(self, context, tasks) -> None:
        """XRAI's segmentation runs on one core while the maps' TensorFlow calls use them all: with
        `workers` processes it is done first, each process segmenting a share of the images, into
        the segment cache the maps then read (the same files; images already there are read back).
        Only the images of maps still to compute: a resumed run whose XRAI maps are done starts no process."""
        if self.workers < 2:
            return
        todo = [task for task in tasks if task.method == "XRAI" and not is_done(context, task)]
        self.map(segment_chunk, [(context, name, tuple(ids[share::self.workers]))
                                 for name, ids in xrai_images(todo).items() for share in range(self.workers)])

    def map(self, function: Callable, jobs: list[tuple], *, progress: str | None = None) -> list:
        """function(*job) for every job, in the jobs' order; a progress bar named `progress`."""
        parallel = self.workers >= 2 and len(jobs) >= 2
        pool = (ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
                if parallel else contextlib.nullcontext())
        results = []
        with pool, tqdm(total=len(jobs), desc=progress, unit="job", disable=None if progress else True) as bar:
            done = pool.map(function, *zip(*jobs)) if parallel else (function(*job) for job in jobs)
            for result in done:
                results.append(result)
                bar.update()
        return results

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def executor_for(cluster: str | None, *, progress: bool = True, workers: int = 1):
    if not cluster:
        return InProcess(workers)
    return DaskExecutor(cluster, progress=progress)
