"""The sanity checks the field adopted after the paper: per-image metrics and map-level procedures.

Plain functions on arrays, beside repro/metrics.py and in its style: maps are 2-D float arrays
(the kit stores them in [0, 1]; a degenerate map is all NaN and every score of it is NaN), masks are
2-D bool (or 0/1) arrays, images are model-ready (H, W, C) arrays, and a model enters only as a
callable on batches. Nothing here imports TensorFlow. Definitions, sources and the kit's choices:
docs/sanity-checks.md.

  randomization.py  eMPRT (histogram entropy and its relative rise), sMPRT's noisy averaging,
                    bottom-up randomization order, the null-map controls (Hedstroem et al. 2024;
                    Binder et al. 2023), the random-logit similarity (Sixt et al. 2020)
  faithfulness.py   deletion / insertion curves (Petsiuk et al. 2018), ROAD with noisy linear
                    imputation (Rong et al. 2022)
  localization.py   cheXlocalize's binarizations, IoU / mIoU, threshold tuning and hit rate
                    (Saporta et al. 2022); average precision beside the authors' trapezoid
"""
from .faithfulness import (ROAD_FRACTIONS, ROAD_NOISE, Curve, curve_auc, deletion_curve,
                           insertion_curve, noisy_linear_imputation, rise_blur, road_curve)
from .localization import (CHEXLOCALIZE_THRESHOLDS, PrecisionScores, Tuning, binarize_otsu,
                           binarize_threshold, hit_rate, iou, localization_iou, mean_iou,
                           pointing_hit, precision_scores, tune_threshold)
from .randomization import (EMPRT_BINS, SMPRT_NOISE, SMPRT_SAMPLES, bottom_up_split, bottom_up_states, constant_map,
                            emprt, histogram_entropy, logit_similarity, noise_map, noisy_average,
                            top_down_states)

__all__ = [
    "EMPRT_BINS", "SMPRT_NOISE", "SMPRT_SAMPLES", "histogram_entropy", "emprt", "noisy_average",
    "bottom_up_states", "bottom_up_split", "top_down_states", "constant_map", "noise_map", "logit_similarity",
    "Curve", "curve_auc", "deletion_curve", "insertion_curve", "rise_blur", "ROAD_FRACTIONS",
    "ROAD_NOISE", "noisy_linear_imputation", "road_curve",
    "CHEXLOCALIZE_THRESHOLDS", "binarize_otsu", "binarize_threshold", "iou", "localization_iou",
    "mean_iou", "Tuning", "tune_threshold", "pointing_hit", "hit_rate", "PrecisionScores", "precision_scores",
]
