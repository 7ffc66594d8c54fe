"""The paper's classifiers: Keras InceptionV3 / DenseNet121 with a two-logit head, as one flat graph.

Input: float32 (N, S, S, 3) in [0, 255] (`Dataset.model_inputs`). The architecture's own input scaling
is the model's first layer, so saliency gradients are taken with respect to the [0, 255] image.
Output: the two pre-softmax logits of the Dense layer "logits" (saliency explains the predicted
class's logit); the softmax lives in the loss (`classifier_loss`).

The backbone is built on the scaled input tensor and the head continues from its output, so its
layers (mixed0 ... mixed10 for InceptionV3) are layers of the model itself, not of a nested model.
"""
from __future__ import annotations

import keras
import numpy as np

from repro.models.weights import IMAGENET_FILES, classifier_weights, download_failed

CLASSIFIERS = ("inception_v3", "densenet121")
LOGITS = "logits"

_APPLICATIONS = {"inception_v3": keras.applications.InceptionV3,
                 "densenet121": keras.applications.DenseNet121}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])   # the per-channel statistics ImageNet models expect
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def input_scaling(arch: str) -> keras.layers.Rescaling:
    """The architecture's input scaling from [0, 255], as keras.applications' preprocess_input does it.

    inception_v3: x / 127.5 - 1, to [-1, 1] (preprocess_input mode "tf").
    densenet121: (x / 255 - mean) / std per channel with the ImageNet mean and std (mode "torch").
    A Rescaling layer has no weights, so ImageNet weight files load into the model unchanged.
    """
    if arch == "inception_v3":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="input_scaling")
    if arch == "densenet121":
        return keras.layers.Rescaling((1 / (255 * IMAGENET_STD)).tolist(),
                                      offset=(-IMAGENET_MEAN / IMAGENET_STD).tolist(), name="input_scaling")
    raise ValueError(f"unknown classifier {arch!r}; expected one of {', '.join(CLASSIFIERS)}")


def build_classifier(arch: str, size: int, *, weights: str | None = None) -> keras.Model:
    """InceptionV3 or DenseNet121 (include_top=False) + global average pooling + Dense(2) logits.

    weights: None (random init), "imagenet" (downloaded by Keras, or read from the weights folder:
    repro.models.weights) or a path to a weights file.
    Initialisation draws from Keras' global seed: call keras.utils.set_random_seed first.
    """
    image = keras.Input((size, size, 3), name="image")
    backbone = _backbone(arch, input_scaling(arch)(image), weights)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    logits = keras.layers.Dense(2, name=LOGITS)(pooled)
    return keras.Model(image, logits, name=arch)


def classifier_loss() -> keras.losses.Loss:
    """The authors' loss: binary cross-entropy over the softmax of the two one-hot outputs.

    With p = softmax(logits) and one-hot y, BCE averages -[y_k log p_k + (1 - y_k) log(1 - p_k)] over
    k = 0, 1; since p_1 = 1 - p_0 and y_1 = 1 - y_0 both terms equal -log p_true, so the BCE equals
    the categorical cross-entropy of the logits. That form is used: it is the same number, computed
    stably from the logits (tests/test_models.py checks the identity). Keras 3 would not compute the
    authors' loss from Dense(2, softmax) + BinaryCrossentropy: a softmax output carries its logits,
    which the TensorFlow backend's binary cross-entropy then reads as sigmoid logits.
    """
    return keras.losses.CategoricalCrossentropy(from_logits=True)


def positive_probability(model: keras.Model, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """P(finding) = softmax(logits)[:, 1] for float32 [0, 255] model inputs (inference mode)."""
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))[:, 1]


def _backbone(arch: str, scaled: keras.KerasTensor, weights: str | None) -> keras.Model:
    source = classifier_weights(arch, weights)
    try:
        return _APPLICATIONS[arch](input_tensor=scaled, include_top=False, weights=source)
    except Exception as err:  # Keras raises a bare Exception when a download fails
        if source != "imagenet":
            raise
        url, filename, _ = IMAGENET_FILES[arch]
        raise download_failed(f"the ImageNet weights of {arch} ({url}{filename}, which Keras keeps in "
                              f"~/.keras/models/)", f"weights: null under models.{arch}", err) from err
