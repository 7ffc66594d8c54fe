"""The three kinds of model, behind one interface for the training loop.

Each task knows how to build and compile its model, what the model learns from (targets for a batch
of images and masks), what the network itself is fed (for BatchNorm recalibration) and how it is
scored on a split. Every score is "higher is better"; `monitor` names the one early stopping uses.

- classification (InceptionV3, DenseNet121; both data sets): image ROC AUC of P(finding).
- segmentation (U-Net; SIIM masks) and detection (RetinaNet; RSNA boxes, as a per-pixel score
  map): over the positive images of the split, mean Dice of the map thresholded at 0.5 and mean
  pixel average precision; over all images, the ROC AUC of the map's maximum as an image score.
  Average precision (step-wise) rather than the authors' trapezoidal AUPRC, which scores an empty
  map (1 + mask fraction) / 2 and would reward a detector that finds nothing.
"""
from __future__ import annotations

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from repro.data.dataset import Dataset
from repro.experiments import ModelSpec, TrainSettings
from repro.metrics import auprc
from repro.models import retinanet
from repro.models.batchnorm import set_bn_momentum
from repro.models.classifiers import build_classifier, classifier_loss, positive_probability
from repro.models.unet import build_unet, dice_bce_loss


class Task:
    """One model to train: its spec (architecture, seed, settings) and its training settings."""
    monitor: str

    def __init__(self, spec: ModelSpec, settings: TrainSettings, dataset: Dataset):
        self.spec, self.settings, self.size = spec, settings, dataset.size

    def model(self) -> keras.Model:
        """The model before compilation, initialised from Keras' global seed (set it first)."""
        model = self._model()
        if self.settings.bn_momentum is not None:
            set_bn_momentum(model, self.settings.bn_momentum)
        return model

    def build(self) -> keras.Model:
        """The model compiled for training, its optimizer's variables made: Keras would otherwise make
        them while tracing the first training step, which TensorFlow then traces a second time (for
        InceptionV3 at 128 px: 29 s and 0.2 GB more than tracing once)."""
        model = self.model()
        model.compile(optimizer=self.optimizer(), run_eagerly=self.settings.eager, **self._loss())
        model.optimizer.build(model.trainable_variables)
        return model

    def optimizer(self) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(self.settings.learning_rate)

    def targets(self, labels: np.ndarray, masks: np.ndarray):
        raise NotImplementedError

    def network_inputs(self, model: keras.Model, images: np.ndarray):
        """What model(x) takes for [0, 255] model inputs (the detector scales them outside)."""
        return images

    def evaluate(self, model: keras.Model, dataset: Dataset, split: str) -> dict[str, float]:
        raise NotImplementedError

    def _model(self) -> keras.Model:
        raise NotImplementedError

    def _loss(self) -> dict:
        raise NotImplementedError


class ClassificationTask(Task):
    monitor = "auc"

    def _model(self):
        return build_classifier(self.spec.arch, self.size, weights=self.spec.settings.weights)

    def _loss(self):
        return {"loss": classifier_loss()}

    def targets(self, labels, masks):
        return np.eye(2, dtype=np.float32)[labels]

    def evaluate(self, model, dataset, split):
        indices = dataset.indices(split)
        probability = positive_probability(model, dataset.model_inputs(indices))
        return {"auc": _image_auc(dataset.labels[indices], probability)}


class SegmentationTask(Task):
    monitor = "pixel_ap"

    def _model(self):
        return build_unet(self.size, depth=self.spec.settings.depth, width=self.spec.settings.width)

    def _loss(self):
        return {"loss": dice_bce_loss}

    def targets(self, labels, masks):
        return masks[..., None].astype(np.float32)

    def evaluate(self, model, dataset, split):
        indices = dataset.indices(split)
        maps = model.predict(dataset.model_inputs(indices), batch_size=32, verbose=0)[..., 0]
        return map_scores(maps, dataset.masks[indices], dataset.labels[indices])


class DetectionTask(Task):
    monitor = "pixel_ap"

    def __init__(self, spec, settings, dataset):
        super().__init__(spec, settings, dataset)
        # Room for the most boxes any training image has (augmentation never adds any).
        train_masks = dataset.masks[dataset.indices("train")]
        self.max_boxes = max([1, *(len(retinanet.masks_to_boxes(mask)) for mask in train_masks)])

    def _model(self):
        settings = self.spec.settings
        return retinanet.build_retinanet(self.size, backbone=settings.backbone, levels=settings.levels,
                                         head_convs=settings.head_convs, score_threshold=settings.score_threshold,
                                         max_detections=settings.max_detections)

    def _loss(self):
        return {}   # keras_hub's own: focal loss for the classes, Huber for the box offsets

    def targets(self, labels, masks):
        return retinanet.box_targets(masks, self.max_boxes)

    def network_inputs(self, model, images):
        return retinanet.network_inputs(model, images)

    def evaluate(self, model, dataset, split):
        indices = dataset.indices(split)
        maps = retinanet.score_maps(model, dataset.model_inputs(indices))
        return map_scores(maps, dataset.masks[indices], dataset.labels[indices])


TASKS = {"inception_v3": ClassificationTask, "densenet121": ClassificationTask,
         "unet": SegmentationTask, "retinanet": DetectionTask}


def map_scores(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Localization scores of per-pixel maps in [0, 1] (see the module docstring)."""
    positive = np.flatnonzero(labels == 1)
    dice = [_dice(maps[i] >= 0.5, masks[i]) for i in positive]
    ap = [auprc(masks[i], maps[i], method="average_precision") for i in positive]
    return {"dice": _mean(dice), "pixel_ap": _mean(ap),
            "image_auc": _image_auc(labels, maps.reshape(len(maps), -1).max(axis=1))}


def _dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    total = predicted.sum() + truth.sum()
    return 2.0 * np.logical_and(predicted, truth).sum() / total if total else 1.0


def _image_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC over images; NaN when the split holds only one class (tiny smoke splits)."""
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
