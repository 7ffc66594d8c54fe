"""What a trained model is made from, and whether a finished one can be reused; without TensorFlow.

The driver of a cluster run plans the work with these (fingerprints, finished records) and with
repro.models.jobs (the picklable TrainContext and the units of training work) without importing
TensorFlow: only the processes that train or compute maps do (repro.models.training). See
repro.models.training for the files a finished model has.
"""
from __future__ import annotations

import logging

from repro.experiments import ModelSpec, TrainSettings
from repro.io import fingerprint, read_json_object, sha256_file
from repro.layout import RunLayout
from repro.versions import ARCHITECTURE_REVISIONS, TRAINING_VERSION

log = logging.getLogger(__name__)



def model_fingerprint(spec: ModelSpec, settings: TrainSettings | None, dataset) -> str:
    """What a model is made from: its architecture's settings, seed and training settings, the
    input size and the exact data (for a user's model: the file's own bytes)."""
    if spec.file is not None:
        return fingerprint({"file": sha256_file(spec.file), "preprocessing": spec.preprocessing,
                            "output": spec.output, "size": dataset.size})
    made_from = {"arch": spec.arch, "seed": spec.seed, "settings": spec.settings_json,
                 "train": settings.model_dump(mode="json"), "size": dataset.size,
                 "data": dataset.fingerprint, "version": TRAINING_VERSION}
    if spec.arch in ARCHITECTURE_REVISIONS:
        made_from["revision"] = ARCHITECTURE_REVISIONS[spec.arch]
    return fingerprint(made_from)


def finished_record(layout: RunLayout, dataset: str, name: str, wanted: str) -> dict | None:
    """For training: the record of a finished model made from `wanted`, or None (absent, stale or
    damaged: the last two said once, as the model is trained again)."""
    record, reason = _finished(layout, dataset, name, wanted)
    if reason is not None:
        notice(f"{dataset}/{name}: {reason}: training it again")
    return record


def unusable_model(layout: RunLayout, dataset: str, name: str, wanted: str) -> str | None:
    """For the stages that only read models: why the finished model `name` cannot be used for
    `wanted`, or None when it can (nothing said: the caller reports it)."""
    record, reason = _finished(layout, dataset, name, wanted)
    return None if record is not None else reason or "not trained yet"


# What a model's record must hold for the stages that read it (model_summary, the report).
RECORD_KEYS = ("fingerprint", "sha256", "weights_sha256", "arch", "monitor", "val", "test", "epochs", "best_epoch",
               "seed", "restarts")
# What results/models.json keeps of each record: no times, so that a rerun writes the same bytes.
SUMMARY_KEYS = ("arch", "monitor", "val", "test", "epochs", "best_epoch", "seed", "restarts")


def model_summary(records: list[dict]) -> dict:
    """Each model's validation and test scores by "<data set>/<model>" (results/models.json)."""
    return {f"{r['dataset']}/{r['model']}": {k: r[k] for k in SUMMARY_KEYS} for r in records}


def _finished(layout: RunLayout, dataset: str, name: str, wanted: str) -> tuple[dict | None, str | None]:
    """(the record, None) for a usable model; (None, why not) for one on disk that is stale or
    damaged; (None, None) for one never finished."""
    record_path, model_path = layout.model_record(dataset, name), layout.model_file(dataset, name)
    if not record_path.is_file():
        return None, None
    try:
        record = read_json_object(record_path)
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"{record_path}: lacks {', '.join(missing)}")
    except ValueError as err:
        return None, f"its record is damaged ({err})"
    if record["fingerprint"] != wanted:
        return None, "the experiment's settings or data changed since it was trained"
    for path, key in ((model_path, "sha256"), (layout.model_weights(dataset, name), "weights_sha256")):
        if not path.is_file() or sha256_file(path) != record[key]:
            return None, f"{path} is missing or damaged (checksum)"
    return record, None


def notice(message: str) -> None:
    """A one-line notice the user sees whatever the log level: stale or damaged files being rebuilt."""
    log.warning(message)
