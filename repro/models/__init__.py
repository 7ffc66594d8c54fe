"""The paper's models: classifiers, the U-Net and RetinaNet baselines, training, cascading randomization.

- classifiers: InceptionV3 / DenseNet121 with a two-logit head ("logits"), one flat graph whose
  first layer is the architecture's input scaling; input float32 (N, S, S, 3) in [0, 255].
- unet / retinanet: the segmentation (SIIM) and detection (RSNA) baselines of the utility test;
  `detections_to_score_map` turns detections into the per-pixel map that test needs.
- batchnorm: `recalibrate_batchnorm`, run before every evaluation and before saving.
- cascade: `cascade_states`, the 12 states of the model randomization test (InceptionV3).
- training: `train_experiment`, what `repro train --experiment NAME [--only MODEL]` runs.
"""
from repro.models.batchnorm import recalibrate_batchnorm
from repro.models.cascade import STATES, cascade_states
from repro.models.classifiers import (LOGITS, build_classifier, classifier_loss, input_scaling,
                                      positive_probability)
from repro.models.errors import WeightsUnavailableError
from repro.models.retinanet import build_retinanet, detections_to_score_map, score_maps
from repro.models.training import load_trained_model, model_path, train_experiment
from repro.models.unet import build_unet, dice_bce_loss

__all__ = ["LOGITS", "STATES", "WeightsUnavailableError", "build_classifier", "build_retinanet",
           "build_unet", "cascade_states", "classifier_loss", "detections_to_score_map", "dice_bce_loss",
           "input_scaling", "load_trained_model", "model_path", "positive_probability",
           "recalibrate_batchnorm", "score_maps", "train_experiment"]
