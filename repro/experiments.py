"""The experiment registry and its schema: YAML files in experiments/, validated whole at load.

An experiment says which data (`data`), which models and how they are trained (`models`, `train`),
how saliency maps are made (`saliency`), how the four tests score them (`evaluation`) and how the
run executes (`runtime`). Every default lives in the schema below; an unknown key, a wrong type
or a value out of range is an error at load time that names the key path and, for a misspelt
key, suggests the nearest valid one. Stages receive these typed settings, never the raw dict.

    experiment = load_experiment("demo", overrides=["evaluation.utility_images=10"])
    experiment.settings.evaluation.pairs_per_image   # 50

Relative paths in an experiment file are relative to its project root: the repository for the
kit's own experiments/, otherwise the folder that holds the file. A run writes under
<project root>/runs/<name> unless `run_dir` or --run-dir says otherwise; `publish_dir` and
`run_dir` must stay inside the project root unless `allow_outside_project: true`.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from repro.io import fingerprint
from repro.layout import RunLayout
from repro.protocol import (DATASETS, INCEPTION_STATES, KAGGLE_DATASETS, METHODS, PAPER_METHODS,
                            SANITY_TESTS, DatasetSpec)
from repro.versions import CODE_VERSIONS

REPOSITORY = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = REPOSITORY / "experiments"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"   # experiment and model names: safe as file names


class ExperimentError(ValueError):
    """An experiment that cannot be used; the message names the file and the key path."""


class _Section(BaseModel):
    """Strict: no unknown keys, no type coercion (a "4" is not 4, true is not 1)."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Fraction = Field(ge=0.0, le=1.0)


# --- data ---------------------------------------------------------------------------------------

class Phantoms(_Section):
    """The synthetic chest radiographs (repro.data.phantoms.PhantomConfig)."""
    n: int = Field(ge=3, description="images per data set")
    seed: int = Field(0, ge=0)
    size: int = Field(256, ge=64, description="pixels of the written DICOMs")
    conspicuity: float = Field(1.0, gt=0.0)
    siim_prevalence: float = Field(0.22, ge=0.0, le=1.0)
    rsna_prevalence: float = Field(0.40, ge=0.0, le=1.0)
    rsna_not_normal_fraction: float = Field(0.15, ge=0.0, le=1.0)
    confounder_rate: float = Field(0.0, ge=0.0, le=1.0)
    confounder_negative_rate: float = Field(0.0, ge=0.0, le=1.0)
    format: Literal["plain", "release"] = Field(
        "plain", description="plain DICOMs, or 'release': the Kaggle releases' files (JPEG baseline, their tags)")


class SplitFractions(_Section):
    """The authors' two-step split with other fractions: test off the whole list, then
    validation off the rest (scikit-learn's train_test_split, unstratified)."""
    test_fraction: float = Field(gt=0.0, lt=1.0)
    val_fraction: float = Field(gt=0.0, lt=1.0)
    seed: int = Field(1, ge=0)


class FolderData(_Section):
    """A data set of your own: images (PNG/JPEG/DICOM) with labels and masks (PNG) or boxes."""
    root: str
    labels: str = Field("labels.csv", description="CSV: image, label (0/1), optional split")
    masks: Optional[str] = Field(None, description="folder of PNG masks named like the images")
    boxes: Optional[str] = Field(None, description="CSV: image, x, y, width, height (pixels)")
    title: Optional[str] = None

    @model_validator(mode="after")
    def _one_kind_of_truth(self):
        if (self.masks is None) == (self.boxes is None):
            raise ValueError("give exactly one of 'masks' (a folder of PNG masks) or 'boxes' (a CSV)")
        return self


class Data(_Section):
    source: Literal["phantoms", "kaggle", "folder"]
    datasets: list[str] = Field(default_factory=lambda: list(DATASETS), min_length=1)
    input_size: int = Field(ge=16, description="model input in pixels (InceptionV3 accepts 75 and up)")
    split: Union[Literal["paper"], SplitFractions, str] = Field(
        "paper", description="'paper' (the authors' procedure), fractions, or a split CSV path")
    drop_not_normal: bool = True
    phantoms: Optional[Phantoms] = None
    siim_root: Optional[str] = None
    rsna_root: Optional[str] = None
    folder: Optional[dict[str, FolderData]] = None

    @model_validator(mode="after")
    def _sources(self):
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets lists a data set twice: {self.datasets}")
        if self.source == "folder":
            if not self.folder:
                raise ValueError("source 'folder' needs a 'folder' mapping: data set name -> {root, labels, ...}")
            missing = [d for d in self.datasets if d not in self.folder]
            if missing or set(self.folder) - set(self.datasets):
                raise ValueError(f"'datasets' {self.datasets} and the names under 'folder' "
                                 f"{sorted(self.folder)} must be the same")
            for name in self.datasets:
                if not re.match(NAME, name):
                    raise ValueError(f"data set name {name!r} must be letters, digits, _ and -")
            return self
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"datasets: unknown {unknown}; the Kaggle data sets are {list(DATASETS)}")
        if self.source == "phantoms" and self.phantoms is None:
            raise ValueError("source 'phantoms' needs a 'phantoms' mapping with at least 'n'")
        if self.source == "kaggle":
            for name in self.datasets:
                if not getattr(self, f"{name}_root"):
                    raise ValueError(f"{name}_root is required when source is 'kaggle'")
        return self


# --- models and training ------------------------------------------------------------------------

Replicates = dict[str, int]


class _Trained(_Section):
    replicates: Replicates = Field(min_length=1, description="model name -> seed")


class Classifier(_Trained):
    weights: Optional[str] = Field(None, description="null (random init), 'imagenet' or a weights file")


class UNet(_Trained):
    depth: int = Field(4, ge=1)
    width: int = Field(32, ge=1)


class RetinaNet(_Trained):
    backbone: Union[str, dict[str, Any]] = Field(
        "resnet_50_imagenet", description="a keras_hub ResNet preset, or ResNetBackbone arguments")
    levels: list[int] = Field(default_factory=lambda: [3, 7], min_length=2, max_length=2)
    head_convs: int = Field(4, ge=0)
    score_threshold: float = Field(0.05, ge=0.0, le=1.0)
    max_detections: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _levels(self):
        if not 2 <= self.levels[0] <= self.levels[1]:
            raise ValueError(f"levels must be [min, max] pyramid levels with 2 <= min <= max, got {self.levels}")
        # keras-hub's ResNetBackbone refuses these only when it is built, after the classifiers' training.
        backbone = self.backbone if isinstance(self.backbone, dict) else {}
        filters, stem = backbone.get("stackwise_num_filters"), backbone.get("input_conv_filters")
        if filters and filters[0] != 64:
            raise ValueError(f"backbone.stackwise_num_filters must start with 64 (keras-hub's ResNetBackbone), "
                             f"got {filters}")
        if filters and stem and backbone.get("block_type") == "basic_block" and stem[-1] != filters[0]:
            # its first basic block adds its input to its output without a projection
            raise ValueError(f"backbone.input_conv_filters must end with {filters[0]} (the first of "
                             f"stackwise_num_filters) for basic_block, got {stem}")
        return self


class FileModel(_Section):
    """An already-trained Keras classifier of yours."""
    file: str = Field(description=".keras file")
    architecture: str = Field(description="any name; models sharing it are replicates of each other")
    preprocessing: Literal["none", "unit", "inception", "imagenet"] = Field(
        "none", description="what the model expects of [0, 255] images: none (it scales them itself), "
                            "unit (x/255), inception (x/127.5 - 1), imagenet ((x/255 - mean)/std)")
    output: Literal["logits", "probabilities"] = "logits"


class Models(_Section):
    inception_v3: Optional[Classifier] = None
    densenet121: Optional[Classifier] = None
    unet: Optional[UNet] = None
    retinanet: Optional[RetinaNet] = None
    files: Optional[dict[str, FileModel]] = None


class Augment(_Section):
    flip: bool = False
    shift: float = Field(0.0, ge=0.0, le=0.25, description="fraction of the image")


class Recalibration(_Section):
    batches: int = Field(4, ge=0)
    batch_size: int = Field(64, ge=1)


class Restart(_Section):
    """Training from scratch at a high learning rate sometimes leaves a model at chance (its loss
    never leaves the plateau); a researcher would train it again from another seed. This does so,
    openly: each attempt is in the model's record and the report."""
    below: Optional[float] = Field(None, ge=0.0, le=1.0, description=(
        "train a model again, from a new seed, when its best validation score (the task's monitor: "
        "ROC AUC for a classifier) stays below this; null: never"))
    attempts: int = Field(2, ge=0, description="new seeds tried at most")


class TrainOverrides(_Section):
    """Per-architecture training settings; what is absent comes from the shared ones."""
    epochs: Optional[int] = Field(None, ge=1)
    batch_size: Optional[int] = Field(None, ge=1)
    learning_rate: Optional[float] = Field(None, gt=0.0, le=1.0)
    patience: Optional[int] = Field(None, ge=1)
    bn_momentum: Optional[float] = Field(None, ge=0.0, le=1.0)
    augment: Optional[Augment] = None
    recalibration: Optional[Recalibration] = None
    restart: Optional[Restart] = None
    eager: Optional[bool] = None


class TrainSettings(_Section):
    """The settings one model is trained with."""
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0, le=1.0)
    patience: int = Field(ge=1)
    bn_momentum: Optional[float] = Field(None, ge=0.0, le=1.0, description="null keeps the architecture's")
    augment: Augment = Augment()
    recalibration: Recalibration = Recalibration()
    restart: Restart = Restart()
    eager: bool = False


class Train(TrainSettings):
    inception_v3: Optional[TrainOverrides] = None
    densenet121: Optional[TrainOverrides] = None
    unet: Optional[TrainOverrides] = None
    retinanet: Optional[TrainOverrides] = None

    def for_architecture(self, arch: str) -> TrainSettings:
        shared = {name: getattr(self, name) for name in TrainSettings.model_fields}
        own = getattr(self, arch, None)
        if own is not None:
            shared.update({k: v for k, v in own if v is not None})
        return TrainSettings(**shared)


# --- saliency and evaluation --------------------------------------------------------------------

Method = Literal[METHODS]


class Saliency(_Section):
    preset: Literal["paper", "authors_code"] = "paper"
    methods: list[Method] = Field(default_factory=lambda: list(PAPER_METHODS), min_length=1)
    overrides: dict[Method, dict[str, Any]] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, description="SmoothGrad noise")
    noise: Literal["independent", "shared"] = Field(
        "independent", description="independent: noise seeded per (seed, image, model, state); "
                                   "shared: per (seed, image), the same under every model and state")
    backend: Literal["batched", "pair"] = "batched"
    batch_size: Optional[int] = Field(None, ge=1, description="rows per model call (default 16)")
    chunk_size: int = Field(8, ge=1, description="images per unit of work")

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        return self


class Cascade(_Section):
    mode: Literal["cascading", "independent"] = "cascading"
    seed: int = Field(0, ge=0)
    groups: int = Field(10, ge=1, description="randomization groups for a model that is not InceptionV3")


class Stability(_Section):
    resamples: int = Field(200, ge=0, description="bootstrap resamples of the test images (0: off)")
    seed: int = Field(0, ge=0)
    fragile_above: float = Field(0.10, gt=0.0, lt=1.0, description="flip rate above which a verdict is fragile")


Images = Union[Literal["all"], int]


class SanityChecks(_Section):
    """The sanity checks adopted after the paper (docs/sanity-checks.md), scored beside the four
    tests on the same images and maps; absent (the paper, the demo): none."""
    tests: list[Literal[SANITY_TESTS]] = Field(min_length=1, description=(
        "any of emprt, null_maps, localization, average_precision (maps already made), random_logit "
        "(maps of the other class), deletion, road (model calls on replicate 1's trained maps of the SSIM sample)"))
    seed: int = Field(0, ge=0, description="the noise maps, ROAD's tie-breaking and imputation noise")
    deletion_steps: int = Field(32, ge=2, description="pixel steps of the deletion and insertion curves "
                                                      "(RISE: one row a step, 128 at 128 px)")
    faithfulness_images: Images = Field("all", description="images of the SSIM sample the deletion, "
                                                           "insertion and ROAD curves are computed on")

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.tests)) != len(self.tests):
            raise ValueError(f"tests lists a test twice: {self.tests}")
        if self.faithfulness_images != "all" and self.faithfulness_images < 3:
            raise ValueError(f"faithfulness_images must be 'all' or an integer >= 3, got {self.faithfulness_images!r}")
        return self


class Evaluation(_Section):
    utility_images: Images = Field("all", description="positive test images scored for utility")
    ssim_images: int = Field(100, ge=3, description="the random sample of positive test images for "
                                                    "the randomization, repeatability and reproducibility tests")
    sample_seed: int = Field(1, ge=0, description="Python random.seed of that sample (the authors': 1)")
    curve_images: Images = Field("all", description="images of the sample at the intermediate cascade states")
    pairs_per_image: int = Field(50, ge=1)
    pair_seed: int = Field(0, ge=0)
    auprc: Literal["trapezoid", "average_precision"] = "trapezoid"
    ssim_data_range: float = Field(2.0, gt=0.0)
    unet_ssim: Literal["uint8", "float"] = "uint8"
    randomization_cells: Literal["replicates", "per_image"] = "replicates"
    constant_comparison: Literal["studentized_range", "single_step", "constant_group"] = Field(
        "studentized_range", description="how a method is compared with the constant SSIM 0.5 "
        "(repro.statistics.mixed; docs/protocol.md, Statistics)")
    cascade: Cascade = Cascade()
    replicates: Optional[list[str]] = Field(None, description="default: the InceptionV3 models, in file order")
    repeatability: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    reproducibility: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    controls: bool = True
    stability: Stability = Stability()
    sanity: Optional[SanityChecks] = Field(None, description="the checks adopted after the paper; null: none")

    @model_validator(mode="after")
    def _caps(self):
        for name, least in (("utility_images", 3), ("curve_images", 1)):
            value = getattr(self, name)
            if value != "all" and value < least:
                raise ValueError(f"{name} must be 'all' or an integer >= {least}, got {value!r}")
        return self


class TrainingRuntime(_Section):
    isolated: bool = Field(False, description="train in fresh processes that exit afterwards, one per architecture, "
                                              "so that the memory goes back to the system (TensorFlow keeps what a "
                                              "process once held: ten models in one process took 10 GB)")
    process_per_dataset: list[str] = Field([], description="architectures whose models of each data set train in "
                                                           "a process of their own (isolated only): a lower peak, "
                                                           "for one more traced training step per data set")


class Runtime(_Section):
    deterministic: bool = Field(False, description="TensorFlow op determinism: byte-identical reruns")
    threads: Optional[int] = Field(None, ge=1, description="TensorFlow threads per process (null: its default)")
    cluster: Optional[str] = Field(None, description="'local:N' or a Dask scheduler address; null: in-process")
    training: TrainingRuntime = TrainingRuntime()
    weights_dir: Optional[str] = Field(None, description="pretrained weights from this folder (repro weights fetch), "
                                                         "never downloaded; null: downloaded on first use")
    reuse_from: Optional[str] = Field(None, description=(
        "another run directory (the demo's: runs/demo) whose trained models and maps this run links to "
        "before its own stages; each is then used only where its fingerprint is this run's, as this run's own"))


class ExperimentSettings(_Section):
    name: str = Field(pattern=NAME)
    description: str = ""
    run_dir: Optional[str] = None
    publish_dir: Optional[str] = None
    publish_readme: Optional[str] = Field(None, description="a README whose results section is rewritten "
                                                            "from publish_dir (repro.report.readme)")
    allow_outside_project: bool = False
    data: Data
    models: Models = Models()
    train: Optional[Train] = None
    saliency: Saliency = Saliency()
    evaluation: Evaluation = Evaluation()
    runtime: Runtime = Runtime()

    @model_validator(mode="after")
    def _cross_checks(self):
        trained = [arch for arch in ("inception_v3", "densenet121", "unet", "retinanet")
                   if getattr(self.models, arch) is not None]
        for arch, least in (("inception_v3", 75), ("densenet121", 32)):
            if arch in trained and self.data.input_size < least:
                raise ValueError(f"data.input_size {self.data.input_size}: {arch} accepts inputs of {least} px and up")
        if trained and self.train is None:
            raise ValueError(f"models {trained} are trained by the kit: a 'train' section is required")
        unknown = [arch for arch in self.runtime.training.process_per_dataset if arch not in trained]
        if unknown:
            raise ValueError(f"runtime.training.process_per_dataset: {unknown} not among the architectures this "
                             f"experiment trains ({', '.join(trained) or 'none'})")
        names = []
        for arch in trained:
            names += list(getattr(self.models, arch).replicates)
        names += list(self.models.files or {})
        for name in names:
            if not re.match(NAME, name):
                raise ValueError(f"model name {name!r} must be letters, digits, _ and -")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique, {duplicates} appear twice")
        if any(seed < 0 for arch in trained for seed in getattr(self.models, arch).replicates.values()):
            raise ValueError("model seeds must be integers >= 0")
        return self


# --- the loaded experiment ----------------------------------------------------------------------

CLASSIFIERS = ("inception_v3", "densenet121")
LOCALIZERS = ("unet", "retinanet")


@dataclass(frozen=True)
class ModelSpec:
    """One model of an experiment: trained by the kit (arch + seed + settings) or read from a file."""
    name: str
    arch: str                      # inception_v3, densenet121, unet, retinanet, or a user's architecture
    seed: int | None = None
    settings: dict | None = None   # the architecture's settings (depth, backbone, weights, ...)
    file: Path | None = None       # an already-trained model
    preprocessing: str = "none"
    output: str = "logits"

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
    name: str
    path: Path
    settings: ExperimentSettings
    layout: RunLayout
    project_root: Path
    overrides: tuple[str, ...] = ()   # the --set KEY.PATH=VALUE it was loaded with

    @property
    def models(self) -> dict[str, ModelSpec]:
        """Model name -> spec, in file order (architecture by architecture)."""
        specs = {}
        for arch in (*CLASSIFIERS, *LOCALIZERS):
            section = getattr(self.settings.models, arch)
            if section is None:
                continue
            settings = section.model_dump(mode="json", exclude={"replicates"})
            for name, seed in section.replicates.items():
                specs[name] = ModelSpec(name, arch, seed=seed, settings=settings)
        for name, entry in (self.settings.models.files or {}).items():
            specs[name] = ModelSpec(name, entry.architecture, file=self.resolve(entry.file),
                                    preprocessing=entry.preprocessing, output=entry.output)
        return specs

    @property
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

    @property
    def roles(self) -> Roles:
        return _roles(self.settings.evaluation, self.models)

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
RUN_ONLY_SETTINGS = ("description", "run_dir", "publish_dir", "publish_readme", "allow_outside_project", "runtime")


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


def _check_roles(settings: ExperimentSettings, models: dict[str, ModelSpec]) -> None:
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


# --- loading ------------------------------------------------------------------------------------

def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def load_experiment(name_or_path: str | Path, *, run_dir: str | Path | None = None,
                    overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read, override (`key.path=value`, the value read as YAML) and validate an experiment."""
    path = _experiment_path(name_or_path)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML ({_one_line(err)})") from None
    except RecursionError:
        raise ExperimentError(f"{path}: nested too deeply to be an experiment") from None
    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: expected a mapping at the top level")
    raw.setdefault("name", path.stem)
    for override in overrides:
        _apply_override(raw, override, path)
    _check_alias_expansion(raw, len(text.encode()) + sum(len(o.encode()) for o in overrides), path)
    try:
        settings = ExperimentSettings.model_validate(raw)
    except ValidationError as err:
        raise ExperimentError(_validation_message(err, path)) from None
    project_root = REPOSITORY if path.parent.resolve() == EXPERIMENTS_DIR else path.parent.resolve()
    try:
        experiment = _experiment(settings, path, project_root, run_dir, tuple(overrides))
        _check_roles(settings, experiment.models)
        _check_saliency_parameters(settings.saliency)
    except ValueError as err:
        raise ExperimentError(f"{path}: {err}") from None
    return experiment


def _experiment(settings: ExperimentSettings, path: Path, project_root: Path, run_dir,
                overrides: tuple[str, ...]) -> Experiment:
    probe = Experiment(settings.name, path, settings, RunLayout(Path()), project_root)
    if run_dir is not None:        # the command line asked explicitly: anywhere goes
        root = Path(run_dir).expanduser()
    else:
        root = probe.resolve(settings.run_dir or f"runs/{settings.name}")
        _inside_project(root, "run_dir", settings, project_root)
    for key in ("publish_dir", "publish_readme"):
        if getattr(probe, key) is not None:
            _inside_project(getattr(probe, key), key, settings, project_root)
    if probe.publish_readme is not None and probe.publish_dir is None:
        raise ValueError("publish_readme needs a publish_dir: the README's results are written from it")
    return Experiment(settings.name, path, settings, RunLayout(root), project_root, overrides)


def _inside_project(target: Path, key: str, settings: ExperimentSettings, project_root: Path) -> None:
    if settings.allow_outside_project:
        return
    resolved, root = target.resolve(), project_root.resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(f"{key} {str(getattr(settings, key, None) or target)!r} is outside the project folder {root}; "
                         f"set allow_outside_project: true if that is what you want")


def _check_saliency_parameters(saliency: Saliency) -> None:
    """Each override names a parameter of its method with a valid value (the presets' checks)."""
    from repro.saliency.params import resolve_params
    for method, params in saliency.overrides.items():
        try:
            resolve_params(method, saliency.preset, **params)
        except ValueError as err:
            raise ValueError(f"saliency.overrides.{method}: {err}") from None


def resolved_parameters(saliency: Saliency) -> dict[str, dict]:
    """Every selected method's parameters: the preset's, updated with the overrides."""
    from repro.saliency.params import resolve_params
    return {m: resolve_params(m, saliency.preset, **saliency.overrides.get(m, {})) for m in saliency.methods}


def _experiment_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ExperimentError(f"experiment file not found: {path}")
        return path
    path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ExperimentError(f"unknown experiment {str(name_or_path)!r}; known: "
                              f"{', '.join(list_experiments())} (or give a path to a YAML file)")
    return path


# YAML aliases (*name) repeat a block by reference; nested ones multiply ("billion laughs": 500
# bytes that stand for 10^8 values). PyYAML builds them as shared objects, cheaply, but pydantic
# validates every repetition: a file whose aliases expand it beyond this many values per byte
# (plus a floor for small files) is refused before validation. Plain files hold fewer values than bytes.
ALIAS_EXPANSION_PER_BYTE, ALIAS_EXPANSION_FLOOR = 10, 10_000


def _check_alias_expansion(raw: dict, size_bytes: int, path: Path) -> None:
    """ExperimentError when `raw`, its aliases written out, would hold more values than a file of
    `size_bytes` bytes plausibly does, or when an alias holds itself (a structure without end)."""
    counted: dict[int, int] = {}   # id of a mapping or list -> its values, aliases written out
    open_blocks: set[int] = set()

    def values(node) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in counted:
            return counted[id(node)]
        if id(node) in open_blocks:
            raise ExperimentError(f"{path}: an alias refers to a block that holds it (a structure without end)")
        open_blocks.add(id(node))
        items = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        counted[id(node)] = 1 + sum(values(item) for item in items)
        open_blocks.discard(id(node))
        return counted[id(node)]

    limit = ALIAS_EXPANSION_FLOOR + ALIAS_EXPANSION_PER_BYTE * size_bytes
    expanded = values(raw)
    if expanded > limit:
        raise ExperimentError(f"{path}: its aliases (*name) expand {size_bytes:,} bytes to {expanded:,} values, "
                              f"more than the {limit:,} an experiment of that size may hold; refused before validation")


def _apply_override(raw: dict, override: str, path: Path) -> None:
    """`a.b.c=value`: set raw[a][b][c] to the value read as YAML (so 5 is a number, [x, y] a list)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ExperimentError(f"--set {override!r}: expected KEY.PATH=VALUE, e.g. evaluation.utility_images=10")
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as err:
        raise ExperimentError(f"--set {override!r}: the value is not valid YAML ({_one_line(err)})") from None
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ExperimentError(f"--set {override!r}: {'.'.join(parts[:i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _validation_message(error: ValidationError, path: Path) -> str:
    lines = []
    for item in error.errors():
        location = _location(item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key {location}{_suggestion(item['loc'])}")
        elif item["type"] == "missing":
            lines.append(f"{location}: required but missing")
        else:
            lines.append(f"{location}: {item['msg'][0].lower()}{item['msg'][1:]}, got {item.get('input')!r}"
                         if location else item["msg"].removeprefix("Value error, "))
    unique = list(dict.fromkeys(lines))
    # A union reports one error per member; the first says enough.
    return f"{path}: " + "; ".join(line.replace("Value error, ", "") for line in unique[:3]) + (
        f" (and {len(unique) - 3} more)" if len(unique) > 3 else "")


def _location(loc: tuple) -> str:
    """('saliency', 'overrides', 'SG', 'nsamples') -> saliency.overrides.SG.nsamples; the
    union-member tags pydantic appends ('literal[...]', 'int', 'SplitFractions') are dropped."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif re.match(r"^(literal\[|function-|[A-Z]\w*$|int$|str$|float$|bool$|list\[|dict\[|nullable)", part):
            continue
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts)


def _suggestion(loc: tuple) -> str:
    """'; did you mean X?' for a misspelt key, from the valid keys at that place of the schema."""
    model, valid = ExperimentSettings, None
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            return ""
        field = model.model_fields.get(part)
        model = _section_type(field.annotation) if field else None
    if model is not None:
        valid = list(model.model_fields)
    matches = difflib.get_close_matches(str(loc[-1]), valid or [], n=1, cutoff=0.6)
    if matches:
        return f"; did you mean {'.'.join(map(str, loc[:-1] + (matches[0],)))}?"
    return f"; valid keys here: {', '.join(valid)}" if valid else ""


def _section_type(annotation):
    """The _Section class inside an annotation such as Optional[Models]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


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
            "saliency_parameters": resolved_parameters(settings.saliency),
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
