"""The experiment schema: every section of an experiment file, its defaults and its checks.

An experiment says which data (`data`), which models and how they are trained (`models`, `train`),
how saliency maps are made (`saliency`), how the four tests score them (`evaluation`) and how the
run executes (`runtime`). Every default lives here; an unknown key, a wrong type or a value out of
range is an error at load time (repro.experiments.loading names the key path). Stages receive
these typed settings, never the raw dict.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from repro.protocol import DATASETS, METHODS, PAPER_METHODS, SANITY_TESTS

REPOSITORY = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPOSITORY / "experiments"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"   # experiment and model names: safe as file names


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
        "any of emprt, null_maps, localization, average_precision (maps already made), bottom_up (maps of the "
        "bottom-up states), random_logit (maps of the other class), smprt (noise-averaged maps), deletion, "
        "road (model calls on replicate 1's trained maps of the SSIM sample)"))
    seed: int = Field(0, ge=0, description="the noise maps, ROAD's tie-breaking and imputation noise, sMPRT's noise")
    deletion_steps: int = Field(32, ge=2, description="pixel steps of the deletion and insertion curves "
                                                      "(RISE: one row a step, 128 at 128 px)")
    faithfulness_images: Images = Field("all", description="images of the SSIM sample the deletion, "
                                                           "insertion and ROAD curves are computed on")
    smprt_samples: int = Field(50, ge=2, description="sMPRT: maps averaged per image and state, the last of the "
                                                     "image itself (Quantus' SmoothMPRT: 50)")
    smprt_noise: float = Field(0.1, gt=0.0, description="sMPRT: the noise sd as a fraction of each image's range "
                                                        "(Quantus: 0.1)")
    smprt_images: Images = Field("all", description="images of the SSIM sample sMPRT averages maps of")

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.tests)) != len(self.tests):
            raise ValueError(f"tests lists a test twice: {self.tests}")
        for name in ("faithfulness_images", "smprt_images"):
            value = getattr(self, name)
            if value != "all" and value < 3:
                raise ValueError(f"{name} must be 'all' or an integer >= 3, got {value!r}")
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
    publish_report: bool = Field(True, description="copy the HTML report (results/report/, its thumbnails "
                                                   "included) to publish_dir too")
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
