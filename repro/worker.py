"""What one process keeps between units of work, with one owner and an explicit release.

A process that trains keeps the compiled model of the last architecture it trained, whose traced
training step serves the next replicate (repro.models.training); a process that computes maps
keeps its run's data sets, models and segment caches (repro.evaluation.maps); saliency_maps
called without a segment cache keeps XRAI's segments in memory (repro.saliency.api). Each lives
in a slot of this process's `WORKER`, and nothing else holds it: `WORKER.release(...)` lets go
(an executor after its trainings, the driver after its maps, a test between runs), calling the
held object's own `release()` where it has one (the training slot clears Keras' session).
No imports beyond the standard library: every stage can hold its state here.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class WorkerState:
    training: object = None    # repro.models.training.HeldModels: the models of the last architecture trained
    maps: object = None        # repro.evaluation.maps.Resident: a run's data sets, models, segment caches
    segments: object = None    # repro.saliency.segments.SegmentCache in memory, for calls without one

    def release(self, *slots: str) -> None:
        """Let go of the named slots (all of them when none is named)."""
        names = [f.name for f in fields(self)]
        unknown = [slot for slot in slots if slot not in names]
        if unknown:
            raise ValueError(f"no worker state {unknown}; the slots are {', '.join(names)}")
        for slot in slots or names:
            held = getattr(self, slot)
            setattr(self, slot, None)
            if held is not None and hasattr(held, "release"):
                held.release()


WORKER = WorkerState()   # this process's: the one place a process keeps state between units of work
