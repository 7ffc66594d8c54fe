"""Where a run keeps everything: one object owns the run directory's layout.

    <run_dir>/
      .lock                                   held by the run using the directory (io.RunLock)
      experiment.json                         the resolved settings of the last run
      data/<dataset>/                         the phantoms' Kaggle layouts (phantom experiments)
      cache/                                  decoded arrays at model resolution
      models/<dataset>/<model>.keras|.weights.npz|.json    trained models, their weights, their records;
                                              <model>.partial/ while training
      maps/<dataset>/<model>/<state>/<method>/<image>.npz    one saliency map per file
      maps/<dataset>/xrai-segments/           XRAI's segments, shared by every model and state
      sanity/<dataset>/<test>-<group>.json    the faithfulness checks' scores of one group (model calls)
      results/                                scores, tables, figures, grade
      results/report/                         the HTML report (index.html), a folder that opens offline
      provenance.json                         what the results were made from and by (written last)
      previews/<dataset>.png, data-summary.json

Stages receive a RunLayout (or the paths it gives) and never build paths of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path
    # What another run may lend this one (runtime.reuse_from): the phantoms (their files' times are
    # part of the data's fingerprint), the decoded arrays, the trained models and the maps.
    REUSABLE = ("data", "cache", "models", "maps")

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def settings_file(self) -> Path:
        return self.root / "experiment.json"

    def phantom_root(self, dataset: str) -> Path:
        return self.root / "data" / dataset

    @property
    def phantom_stamp(self) -> Path:
        return self.root / "data" / "phantoms.json"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def models_dir(self, dataset: str) -> Path:
        return self.root / "models" / dataset

    def model_file(self, dataset: str, model: str) -> Path:
        return self.models_dir(dataset) / f"{model}.keras"

    def model_weights(self, dataset: str, model: str) -> Path:
        """The trained weights alone (np.savez of get_weights()): a process that already holds a
        model of the architecture reads these instead of building another model from the .keras."""
        return self.models_dir(dataset) / f"{model}.weights.npz"

    def model_record(self, dataset: str, model: str) -> Path:
        """The JSON written last when a model is finished: its metrics, settings and fingerprint."""
        return self.models_dir(dataset) / f"{model}.json"

    def training_dir(self, dataset: str, model: str) -> Path:
        return self.models_dir(dataset) / f"{model}.partial"

    def maps_dir(self, dataset: str) -> Path:
        return self.root / "maps" / dataset

    def segments_dir(self, dataset: str) -> Path:
        return self.maps_dir(dataset) / "xrai-segments"

    def sanity_dir(self, dataset: str) -> Path:
        """The sanity checks' units of model-call work, one file each (repro.evaluation.sanity)."""
        return self.root / "sanity" / dataset

    @property
    def provenance_file(self) -> Path:
        """Where the results came from (repro.provenance), written last by a finished run."""
        return self.root / "provenance.json"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def result(self, name: str) -> Path:
        return self.results_dir / name

    @property
    def report_dir(self) -> Path:
        """The HTML report: index.html and the pages, pictures and style it links to."""
        return self.results_dir / "report"

    def preview(self, dataset: str) -> Path:
        return self.root / "previews" / f"{dataset}.png"

    @property
    def data_summary(self) -> Path:
        return self.root / "data-summary.json"
