"""Where the units of work run: in this process (the default), or on a Dask cluster.

Both executors offer the same three calls, so the pipeline does not care which it has:
  train(context, jobs)   every model's training (jobs: (data set, models of one architecture)), in order
  maps(context, tasks)   every chunk of saliency maps (repro.evaluation.plan.MapTask)
  map(function, jobs)    any other independent work (the stability resamples)
`executor_for(None)` runs in-process; `executor_for("local:2")` or a scheduler address gives a
repro.distributed.DaskExecutor.
"""
from __future__ import annotations

import sys
from typing import Callable


class InProcess:
    description = "in-process"

    def train(self, context, jobs: list[tuple[str, tuple[str, ...]]], *, progress: bool = True) -> list[dict]:
        from repro.models.records import train_group
        records = [record for dataset, names in jobs for record in train_group(context, dataset, names,
                                                                               progress=progress)]
        if "repro.models.training" in sys.modules:     # this process trained: free what it holds
            sys.modules["repro.models.training"].release_models()
        return records

    def maps(self, context, tasks, *, progress: bool = True) -> None:
        from repro.evaluation.maps import compute_in_process
        compute_in_process(context, tasks, progress=progress)

    def map(self, function: Callable, jobs: list[tuple]) -> list:
        return [function(*job) for job in jobs]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def executor_for(cluster: str | None, *, progress: bool = True):
    if not cluster:
        return InProcess()
    from repro.distributed import DaskExecutor
    return DaskExecutor(cluster, progress=progress)
