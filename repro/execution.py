"""Where the units of work run: in this process (the default), or on a Dask cluster.

Both executors offer the same three calls, so the pipeline does not care which it has:
  train(context, jobs)   every model's training (jobs: (data set, model) pairs), in order
  maps(context, tasks)   every chunk of saliency maps (repro.evaluation.plan.MapTask)
  map(function, jobs)    any other independent work (the stability resamples)
`executor_for(None)` runs in-process; `executor_for("local:2")` or a scheduler address gives a
repro.distributed.DaskExecutor.
"""
from __future__ import annotations

from typing import Callable


class InProcess:
    description = "in-process"

    def train(self, context, jobs: list[tuple[str, str]], *, progress: bool = True) -> list[dict]:
        from repro.models.training import train_job
        return [train_job(context, dataset, name, progress=progress) for dataset, name in jobs]

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


def executor_for(cluster: str | None, runtime, *, progress: bool = True):
    """The executor of a cluster spec; `runtime` (the experiment's runtime settings) is how every
    worker process starts TensorFlow."""
    if not cluster:
        return InProcess()
    from repro.distributed import DaskExecutor
    return DaskExecutor(cluster, runtime, progress=progress)
