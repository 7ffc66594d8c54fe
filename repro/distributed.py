"""Running the work on a Dask cluster: `repro all | train | maps --cluster SPEC`.

SPEC is `local:N`, a dask.distributed.LocalCluster of N single-threaded worker processes on this
machine, or the address of a scheduler you started (`tcp://host:8786`): dask-jobqueue on SLURM,
dask-kubernetes, or dask-cuda's LocalCUDACluster for the GPUs of one machine (docs/cluster.md).

The driver only plans, submits, tracks and reports. Units of work: each model's training; the maps
of one (data set, model, state, method, chunk of images); XRAI's segmentation of a chunk of images
(CPU work that never asks for a GPU). Workers read their inputs from and write their results to the
run directory through the same atomic, checked store as an in-process run, so the run directory
must be on a file system every worker sees; the driver checks that first and stops with a
one-line error naming the workers that do not see it. A worker that dies mid-task (killed, out of
memory) costs only its task: the scheduler gives it to another worker (the nanny restarts the dead
one), and since chunks are fixed and maps are checked on read, the run ends with the same tables.
GPU-heavy tasks ask for a `GPU` resource when the cluster's workers advertise one
(`dask worker --resources GPU=1`, one GPU per worker): then no worker runs two at a time.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Callable

from tqdm.auto import tqdm

from repro.evaluation.maps import compute_chunk, segment_chunk
from repro.models.jobs import train_group

log = logging.getLogger(__name__)

ALLOWED_FAILURES = 5        # worker deaths a task may witness before the run gives up on it


class DaskExecutor:
    def __init__(self, spec: str, *, progress: bool = True):
        import dask
        from distributed import Client, LocalCluster
        self.progress = progress
        self._cluster = None
        dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                         "distributed.worker.daemon": False,
                         "distributed.scheduler.worker-ttl": None})
        if logging.getLogger().getEffectiveLevel() > logging.INFO:     # quiet unless -v
            logging.getLogger("distributed").setLevel(logging.WARNING)
        local = re.fullmatch(r"local:(\d+)", spec.strip())
        if local:
            workers = int(local.group(1))
            if workers < 1:
                raise ValueError(f"--cluster {spec!r}: local:N needs N >= 1")
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
            self.description = f"Dask, {workers} local worker processes"
        elif re.match(r"^(tcp|tls|ucx|inproc)://", spec.strip()):
            try:
                self.client = Client(spec.strip(), timeout="10s")
            except (OSError, TimeoutError) as err:
                raise OSError(f"--cluster {spec}: cannot reach a Dask scheduler there "
                              f"({' '.join(str(err).split())[:120]})") from None
            self.description = f"Dask scheduler {spec.strip()}"
        else:
            raise ValueError(f"--cluster {spec!r}: expected local:N or a scheduler address such as tcp://host:8786")

    # --- the executor's three calls --------------------------------------------------------------

    def train(self, context, jobs: list[tuple[str, tuple[str, ...]]], *, progress: bool = True) -> list[dict]:
        self._check_shared(context.layout.root)
        futures = [self.client.submit(train_group, context, dataset, names, key=f"train-{dataset}-{names[0]}",
                                      pure=False, resources=self._gpu()) for dataset, names in jobs]
        return [record for group in self._gather(futures, [len(names) for _, names in jobs], "train", "model",
                                                 progress) for record in group]

    def maps(self, context, tasks, *, progress: bool = True) -> None:
        self._check_shared(context.layout.root)
        segmenting = {}
        for task in tasks:
            if task.method == "XRAI" and (task.dataset, task.image_ids) not in segmenting:
                segmenting[(task.dataset, task.image_ids)] = self.client.submit(
                    segment_chunk, context, task.dataset, task.image_ids, pure=False,
                    key=f"segments-{task.dataset}-{len(segmenting)}")
        futures = []
        for index, task in enumerate(tasks):
            after = segmenting.get((task.dataset, task.image_ids)) if task.method == "XRAI" else None
            futures.append(self.client.submit(_after, after, compute_chunk, context, task, pure=False,
                                              priority=-index, resources=self._gpu(),
                                              key=f"maps-{task.dataset}-{task.model}-{task.state}-{task.method}-{index}"))
        self._gather(futures, [len(t.image_ids) for t in tasks], "maps", "map", progress)

    def map(self, function: Callable, jobs: list[tuple], *, progress: str | None = None) -> list:
        scattered = {}

        def ship(argument):
            if hasattr(argument, "to_numpy") and id(argument) not in scattered:   # pandas: send once
                scattered[id(argument)] = self.client.scatter(argument, broadcast=True)
            return scattered.get(id(argument), argument)

        futures = [self.client.submit(function, *map(ship, job), pure=False) for job in jobs]
        return self._gather(futures, [1] * len(futures), progress, "job", progress is not None)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- helpers ---------------------------------------------------------------------------------------

    def _gpu(self) -> dict | None:
        """Ask for a GPU only where workers have them (a request no worker can meet never runs)."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        has_gpu = any(w.get("resources", {}).get("GPU") for w in workers.values())
        return {"GPU": 1} if has_gpu else None

    def _check_shared(self, root) -> None:
        seen = self.client.run(_sees, str(root))
        blind = sorted(worker for worker, sees in seen.items() if not sees)
        if blind:
            raise OSError(f"Dask worker(s) {', '.join(blind)} cannot see the run directory {root}: it must be on "
                          "a file system shared by the driver and every worker (or pass --run-dir on one)")

    def _gather(self, futures, weights, desc, unit, progress) -> list:
        from distributed import as_completed
        weight = dict(zip((f.key for f in futures), weights))
        with tqdm(total=sum(weights), desc=desc, unit=unit, disable=not (progress and self.progress)) as bar:
            for future in as_completed(futures):
                future.result()          # raises the task's own error, with its message
                bar.update(weight[future.key])
        return self.client.gather(futures)


def _after(dependency, function, *args):
    """Run `function(*args)` once `dependency` (a finished future's value, or None) is done."""
    return function(*args)


def _sees(path: str) -> bool:
    return os.path.isdir(path)
