"""The loaded experiment: its settings with what they imply (models, roles, saliency parameters),
computed once, and the fingerprints that tie results to the settings that made them.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from repro.experiments.schema import (EXPERIMENTS_DIR, Classifier, Evaluation, ExperimentSettings, RetinaNet, Saliency,
                                      TrainSettings, UNet)
from repro.io import fingerprint
from repro.layout import RunLayout
from repro.protocol import INCEPTION_STATES, KAGGLE_DATASETS, DatasetSpec
from repro.saliency.params import resolve_params
from repro.versions import CODE_VERSIONS

CLASSIFIERS = ("inception_v3", "densenet121")
LOCALIZERS = ("unet", "retinanet")


@dataclass(frozen=True)
class ModelSpec:
    """One model of an experiment: trained by the kit (arch + seed + settings) or read from a file."""
    name: str
    arch: str                      # inception_v3, densenet121, unet, retinanet, or a user's architecture
    seed: int | None = None
    settings: Classifier | UNet | RetinaNet | None = None   # its architecture's section (depth, backbone, weights, ...)
    file: Path | None = None       # an already-trained model
    preprocessing: str = "none"
    output: str = "logits"

    @property
    def settings_json(self) -> dict | None:
        """The architecture's settings as JSON values, the replicates left out: what the model's
        fingerprint and training record hold."""
        return None if self.settings is None else self.settings.model_dump(mode="json", exclude={"replicates"})

    @property
    def is_classifier(self) -> bool:
        return self.file is not None or self.arch in CLASSIFIERS

    def applies_to(self, dataset: DatasetSpec) -> bool:
        """Classifiers serve every data set; a localizer only the data sets of its kind."""
        return self.is_classifier or dataset.localizer == self.arch


@dataclass(frozen=True)
class Roles:
    """Which model plays which part in the four tests (names of ModelSpecs)."""
    replicates: tuple[str, ...]              # replicate 1 first: utility; cascading randomization on all
    repeatability: tuple[str, str] | None    # two models of one architecture (None: not measured)
    reproducibility: tuple[str, str] | None  # models of two architectures (None: not measured)

    @property
    def replicate_1(self) -> str:
        return self.replicates[0]


@dataclass(frozen=True)
class Experiment:
    """An experiment as loaded (repro.experiments.loading): frozen; what its settings imply (models,
    data sets, roles, saliency parameters) is computed on first use and kept."""
    name: str
    path: Path
    settings: ExperimentSettings
    layout: RunLayout
    project_root: Path
    overrides: tuple[str, ...] = ()   # the --set KEY.PATH=VALUE it was loaded with

    @cached_property
    def models(self) -> dict[str, ModelSpec]:
        """Model name -> spec, in file order (architecture by architecture)."""
        specs = {}
        for arch in (*CLASSIFIERS, *LOCALIZERS):
            section = getattr(self.settings.models, arch)
            if section is None:
                continue
            for name, seed in section.replicates.items():
                specs[name] = ModelSpec(name, arch, seed=seed, settings=section)
        for name, entry in (self.settings.models.files or {}).items():
            specs[name] = ModelSpec(name, entry.architecture, file=self.resolve(entry.file),
                                    preprocessing=entry.preprocessing, output=entry.output)
        return specs

    @cached_property
    def datasets(self) -> dict[str, DatasetSpec]:
        data = self.settings.data
        if data.source != "folder":
            return {name: KAGGLE_DATASETS[name] for name in data.datasets}
        return {name: DatasetSpec(name=name, title=folder.title or name, short=name,
                                  task="segmentation" if folder.masks else "detection",
                                  label_files=(folder.labels,), image_dir="", localizer="", high_baseline="")
                for name, folder in data.folder.items()}

    def dataset_root(self, dataset: str) -> Path:
        data = self.settings.data
        if data.source == "phantoms":
            return self.layout.phantom_root(dataset)
        if data.source == "folder":
            return self.resolve(data.folder[dataset].root)
        return self.resolve(getattr(data, f"{dataset}_root"))

    def localizers(self, dataset: str) -> tuple[str, ...]:
        """The localization networks of a data set (its high baseline), in file order."""
        spec = self.datasets[dataset]
        return tuple(name for name, model in self.models.items() if model.arch == spec.localizer)

    @cached_property
    def roles(self) -> Roles:
        return _roles(self.settings.evaluation, self.models)

    @cached_property
    def saliency_parameters(self) -> dict[str, dict]:
        """Every selected method's parameters (resolved_parameters of the saliency settings)."""
        return resolved_parameters(self.settings.saliency)

    def train_settings(self, arch: str) -> TrainSettings:
        return self.settings.train.for_architecture(arch)

    def resolve(self, path: str | Path) -> Path:
        """A path of the experiment file: ~ expanded, relative to the project root."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.project_root / path

    @property
    def publish_dir(self) -> Path | None:
        target = self.settings.publish_dir
        return None if target is None else self.resolve(target)

    @property
    def publish_readme(self) -> Path | None:
        target = self.settings.publish_readme
        return None if target is None else self.resolve(target)

    def command(self, stage: str) -> str:
        """The command that runs `stage` of this experiment, for hints in messages: the name of a
        kit experiment or the path of a file, --run-dir when it is not the default one, and the
        --set overrides it was loaded with."""
        named = self.path.parent.resolve() == EXPERIMENTS_DIR and self.path.stem == self.name
        text = f"repro {stage} --experiment {self.name if named else self.path}"
        default = self.resolve(self.settings.run_dir or f"runs/{self.settings.name}")
        if self.layout.root.resolve() != default.resolve():
            text += f" --run-dir {self.layout.root}"
        return text + "".join(f" --set {shlex.quote(override)}" for override in self.overrides)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the resolved settings: the experiment hash in provenance records."""
        text = json.dumps(self.settings.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def results_fingerprint(self) -> str:
        """What results/ is made from (results_settings and the code's versions), as one string: a
        run's provenance record holds it, and every command that reads results compares it with this one."""
        return results_fingerprint_of(self.settings.model_dump(mode="json"))


# Settings that say where a run writes and how it executes, never what a result holds.
RUN_ONLY_SETTINGS = ("description", "run_dir", "publish_dir", "publish_readme", "publish_report", "allow_outside_project",
                     "runtime")


def results_fingerprint_of(settings: dict) -> str:
    """The results fingerprint of these settings (a model_dump, or a run's experiment.json) made by
    this version of the code (repro.versions)."""
    return fingerprint({"settings": results_settings(settings), "code": CODE_VERSIONS})


def results_settings(settings: dict) -> dict:
    """The part of an experiment's settings (a model_dump, or the experiment.json a run wrote) that
    its results are made from: every setting but RUN_ONLY_SETTINGS."""
    kept = {key: value for key, value in settings.items()
            if key in ExperimentSettings.model_fields and key not in RUN_ONLY_SETTINGS}
    evaluation = kept.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("sanity") is None:
        # No sanity checks: the results are those of a run made before they existed (same fingerprint).
        kept["evaluation"] = {key: value for key, value in evaluation.items() if key != "sanity"}
    return kept


def settings_changes(before: dict, now: dict, *, prefix: str = "") -> list[str]:
    """'key.path: old then, new now' for every setting that differs between two settings dicts."""
    changes = []
    for key in sorted(set(before) | set(now), key=str):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += settings_changes(old, new, prefix=f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {json.dumps(old)} then, {json.dumps(new)} now")
    return changes


def resolved_parameters(saliency: Saliency) -> dict[str, dict]:
    """Every selected method's parameters: the preset's, updated with the overrides."""
    return {m: resolve_params(m, saliency.preset, **saliency.overrides.get(m, {})) for m in saliency.methods}


def _roles(evaluation: Evaluation, models: dict[str, ModelSpec]) -> Roles:
    classifiers = {name: spec for name, spec in models.items() if spec.is_classifier}
    if evaluation.replicates is not None:
        replicates = tuple(evaluation.replicates)
    elif any(spec.arch == "inception_v3" for spec in classifiers.values()):
        replicates = tuple(n for n, s in classifiers.items() if s.arch == "inception_v3")
    else:   # the user's models: the first architecture listed
        first = next((s.arch for s in classifiers.values()), None)
        replicates = tuple(n for n, s in classifiers.items() if s.arch == first)
    repeatability = reproducibility = None
    if evaluation.repeatability is not None:
        repeatability = tuple(evaluation.repeatability)
    elif len(replicates) >= 2:
        repeatability = replicates[:2]
    if evaluation.reproducibility is not None:
        reproducibility = tuple(evaluation.reproducibility)
    elif replicates:
        arch = classifiers[replicates[0]].arch if replicates[0] in classifiers else None
        other = next((n for n, s in classifiers.items() if s.arch != arch), None)
        if other is not None:
            reproducibility = (replicates[0], other)
    return Roles(replicates, repeatability, reproducibility)


def check_roles(settings: ExperimentSettings, models: dict[str, ModelSpec]) -> None:
    """Every model the evaluation names exists and is a classifier."""
    evaluation = settings.evaluation
    for key in ("replicates", "repeatability", "reproducibility"):
        named = getattr(evaluation, key) or []
        for name in named:
            if name not in models:
                raise ValueError(f"evaluation.{key}: unknown model {name!r}; models: {sorted(models)}")
            if not models[name].is_classifier:
                raise ValueError(f"evaluation.{key}: {name!r} is a {models[name].arch}, not a classifier")
        if len(set(named)) != len(named):
            raise ValueError(f"evaluation.{key} names a model twice: {named}")


# --- what `repro config` prints -------------------------------------------------------------------

def resolved_config(experiment: Experiment) -> dict:
    """The experiment as it will run: every setting with its default filled in, plus what the
    settings imply (each method's parameters, the models' roles, the image selection rules)."""
    settings = experiment.settings
    evaluation = settings.evaluation
    roles = experiment.roles
    utility = ("all positive test images" if evaluation.utility_images == "all"
               else f"the first {evaluation.utility_images} positive test images in test-list order")
    sample = (f"a sample of {evaluation.ssim_images} positive test images (all of them when there are "
              f"fewer): Python random.seed({evaluation.sample_seed}), random.shuffle of the positive "
              "test images in test-list order, the first ones kept (the authors' create_maps rule)")
    curves = ("every image of that sample" if evaluation.curve_images == "all"
              else f"the first {evaluation.curve_images} images of that sample")
    return {
        **settings.model_dump(mode="json"),
        "resolved": {
            "run_dir": str(experiment.layout.root),
            "experiment_hash": experiment.fingerprint,
            "saliency_parameters": experiment.saliency_parameters,
            "models": {name: {"arch": spec.arch, **({"seed": spec.seed} if spec.seed is not None else {}),
                              **({"file": str(spec.file)} if spec.file else {})}
                       for name, spec in experiment.models.items()},
            "roles": {
                "replicates": list(roles.replicates),
                "utility": roles.replicates[0] if roles.replicates else None,
                "cascading_randomization": list(roles.replicates),
                "repeatability": list(roles.repeatability) if roles.repeatability else "not measured",
                "reproducibility": list(roles.reproducibility) if roles.reproducibility else "not measured",
                "localizers": {d: list(experiment.localizers(d)) or "not measured" for d in experiment.datasets},
            },
            "images": {"utility": utility, "randomization_repeatability_reproducibility": sample,
                       "intermediate_cascade_states": curves},
            "cascade_states": list(INCEPTION_STATES),
        },
    }
