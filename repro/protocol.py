"""The protocol's names, in one place: methods, model states, tests, verdicts, data sets and the
command line's exit codes.

Every stage imports its names from here, and nothing here imports anything heavier than the
standard library (importing this module never imports TensorFlow). Adding a data set of the
Kaggle kind means adding one `DatasetSpec` below.
"""
from __future__ import annotations

from dataclasses import dataclass

# --- saliency methods --------------------------------------------------------------------------

# The paper's eight (Table 1), in the paper's order: the default set and the tables' row order.
PAPER_METHODS = ("GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM")
# Six later methods graded with the same tests (not in the paper): Guided IG, Blur IG and
# Occlusion from PAIR saliency; Grad-CAM++, Score-CAM and LayerCAM from tf-keras-vis.
EXTRA_METHODS = ("GIG", "BIG", "OCC", "GCAMPP", "SCAM", "LCAM")
METHODS = PAPER_METHODS + EXTRA_METHODS
METHOD_TITLES = {
    "GRAD": "Gradient", "SG": "SmoothGrad", "IG": "Integrated Gradients", "SIG": "Smooth IG",
    "GCAM": "Grad-CAM", "XRAI": "XRAI", "GBP": "Guided Backprop", "GGCAM": "Guided Grad-CAM",
    "GIG": "Guided IG", "BIG": "Blur IG", "OCC": "Occlusion", "GCAMPP": "Grad-CAM++",
    "SCAM": "Score-CAM", "LCAM": "LayerCAM",
}
# The harness controls: maps that ignore the model (EDGE) or are the truth (ORACLE).
CONTROLS = ("EDGE", "ORACLE")

# --- model states of the randomization test ----------------------------------------------------

ORIGINAL = "original"
LOGITS = "logits"
# InceptionV3's 12 states: the trained model, the classification head randomized, then the
# Inception blocks mixed10 ... mixed1 randomized on top, one by one (the paper's Figure 3).
INCEPTION_BLOCKS = tuple(f"mixed{k}" for k in range(10, 0, -1))
INCEPTION_STATES = (ORIGINAL, LOGITS, *INCEPTION_BLOCKS)
STATE_LABELS = {ORIGINAL: "Orig", LOGITS: "Logits", **{f"mixed{k}": str(k) for k in range(1, 11)}}
# Bottom-up randomization (a sanity check after the paper): state "up_to_<group>" randomizes every
# group from the lowest one up to <group> ("up_to_mixed3": mixed1-3), never a top-down state's name.
BOTTOM_UP_PREFIX = "up_to_"


def bottom_up_state(group: str) -> str:
    """The bottom-up state that randomizes every group from the lowest up to `group`."""
    return f"{BOTTOM_UP_PREFIX}{group}"

# --- the four tests and their verdicts ---------------------------------------------------------

UTILITY, RANDOMIZATION, REPEATABILITY, REPRODUCIBILITY = (
    "utility", "randomization", "repeatability", "reproducibility")
TESTS = (UTILITY, RANDOMIZATION, REPEATABILITY, REPRODUCIBILITY)
SSIM_TESTS = (RANDOMIZATION, REPEATABILITY, REPRODUCIBILITY)

# The sanity checks adopted after the paper (docs/sanity-checks.md), off unless an experiment lists
# them in evaluation.sanity.tests: eMPRT, sMPRT (the randomization test on noise-averaged maps),
# bottom-up randomization, the null-map controls under the randomization rule, the random-logit
# test, cheXlocalize's localization (Otsu IoU, hit rate), the utility verdicts again with average
# precision, and the faithfulness curves (deletion / insertion, ROAD) on replicate 1.
EMPRT, SMPRT, BOTTOM_UP, NULL_MAPS, RANDOM_LOGIT, LOCALIZATION, AVERAGE_PRECISION, DELETION, ROAD = (
    "emprt", "smprt", "bottom_up", "null_maps", "random_logit", "localization", "average_precision", "deletion",
    "road")
SANITY_TESTS = (EMPRT, SMPRT, BOTTOM_UP, NULL_MAPS, RANDOM_LOGIT, LOCALIZATION, AVERAGE_PRECISION, DELETION, ROAD)
# The null maps of Binder et al. (2023), scored raw beside the methods: a constant and a noise map.
NULL_CONTROLS = ("CONST", "NOISE")

PASS, FAIL, UNCERTAIN = "pass", "did not pass", "uncertain"
VERDICTS = (PASS, FAIL, UNCERTAIN)
NOT_MEASURED = "not measured"

# The paper's utility low baseline, its similarity low baseline, and the row names the tables use.
AVG = "AVG"
LOW = "LOW"
LOW_SSIM = 0.5


# --- data sets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetSpec:
    """One data set of the paper: where its Kaggle files are and how the tests treat it."""
    name: str              # as experiments and score tables name it
    title: str             # the paper's table heading
    short: str             # as the paper's text names it
    task: str              # "segmentation" (masks) or "detection" (boxes)
    label_files: tuple[str, ...]  # the CSVs a complete layout has, relative to its root
    image_dir: str         # the DICOM folder, relative to its root
    localizer: str         # architecture of the high baseline ("unet" / "retinanet")
    high_baseline: str     # its row name in the tables
    # The release as the paper used it (`repro data check` compares a download with it):
    images: int = 0                      # images after the paper's exclusions
    split: tuple[int, int, int] = (0, 0, 0)   # the paper's train / val / test counts
    image_size: int = 0                  # rows = columns of every DICOM


KAGGLE_DATASETS = {
    "siim": DatasetSpec(
        name="siim", title="SIIM-ACR pneumothorax segmentation", short="SIIM-ACR",
        task="segmentation", label_files=("train-rle.csv",), image_dir="dicom-images-train",
        localizer="unet", high_baseline="U-Net", images=10675, split=(8646, 961, 1068), image_size=1024),
    "rsna": DatasetSpec(
        name="rsna", title="RSNA pneumonia detection", short="RSNA", task="detection",
        label_files=("stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"),
        image_dir="stage_2_train_images", localizer="retinanet", high_baseline="RetinaNet",
        images=14863, split=(12039, 1338, 1486), image_size=1024),
}
DATASETS = tuple(KAGGLE_DATASETS)
LOCALIZER_NAMES = {"unet": "U-Net", "retinanet": "RetinaNet"}

# --- pairs of models ------------------------------------------------------------------------------

def pair_label(a: str, b: str) -> str:
    """Two models compared with each other (repeatability, reproducibility, the localizers' SSIM), as
    the score table's `model` column and the cells name them."""
    return f"{a}~{b}"


# --- exit codes of the `repro` command (repro.cli says what each means) -----------------------------

EXIT_OK, EXIT_ERROR, EXIT_CONTROLS_FAILED = 0, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143   # 128 + SIGINT, 128 + SIGTERM
