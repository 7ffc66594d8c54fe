"""A user's own trained Keras classifier, wrapped to the kit's classifier contract.

The kit's classifiers take float32 (N, S, S, 3) images in [0, 255] and output (N, K) logits, with
any input scaling inside the model, so that saliency is taken with respect to the image itself.
A user's model is brought to that contract without retraining or changing its weights:
- input: the experiment's `preprocessing` is put in front as a Keras layer ("none": the model takes
  [0, 255] images as they are; "unit": x / 255; "inception": x / 127.5 - 1; "imagenet": ImageNet
  mean and std per channel); a one-channel model gets the grey image (the channels are equal);
- graph: the model's layers are called on the new input one by one, so the result is one flat graph
  (Grad-CAM and the CAM methods find the user's layers by name; nothing is nested);
- output: "logits" is used as it is. "probabilities" (a softmax over K >= 2 classes, or one sigmoid
  unit) is traced back to its logits: the pre-activation of a final Dense / Conv layer whose
  activation is softmax or sigmoid, or the input of a final Softmax / Activation layer. One sigmoid
  logit z (a one-unit output) becomes the two logits (-z/2, z/2), whose softmax is
  (1 - sigmoid(z), sigmoid(z)).
The explained class is the predicted one (the argmax logit), as in the paper.
"""
from __future__ import annotations

import numpy as np

from repro.runtime import import_tensorflow

import_tensorflow()   # quietly: TensorFlow's start-up lines (absl, oneDNN, cudart, cuInit) kept off stderr

import keras  # noqa: E402

from repro.experiments import ModelSpec  # noqa: E402
from repro.models.classifiers import IMAGENET_MEAN, IMAGENET_STD, positive_probability  # noqa: E402

_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


class ModelFileError(ValueError):
    """A user's model that cannot be used; the message names the file and what is wrong."""


def load_file_model(spec: ModelSpec, size: int | None = None) -> keras.Model:
    """The user's model of `spec.file`, wrapped as the module docstring says."""
    path = spec.file
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found (models.files.{spec.name}.file)")
    try:
        user = keras.models.load_model(path, compile=False)
    except Exception as err:   # Keras raises many kinds for a foreign or damaged file
        raise ModelFileError(f"{path}: cannot be read as a Keras model ({' '.join(str(err).split())[:160]})") from None
    if not isinstance(user, keras.Model) or not hasattr(user, "_run_through_graph") or len(user.inputs) != 1:
        raise ModelFileError(f"{path}: expected a functional or Sequential Keras model with one image input")
    shape = tuple(user.input_shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ModelFileError(f"{path}: expected an image input (H, W, 1 or 3), got {shape}")
    height, width = shape[:2]
    if size is None:
        if height is None or height != width:
            raise ModelFileError(f"{path}: the input size {shape} is not square and fixed; state data.input_size")
        size = height
    if (height, width) != (None, None) and (height, width) != (size, size):
        raise ModelFileError(f"{path}: the model takes {height}x{width} images but the experiment's input size is "
                             f"{size}x{size}")
    image = keras.Input((size, size, 3), name="image")
    x = _preprocessing(spec.preprocessing)(image)
    if shape[-1] == 1:
        x = keras.layers.Lambda(lambda t: t[..., :1], name="grey")(x)
    logits = _logits(user, x, spec, path)
    return keras.Model(image, logits, name=spec.name)


def file_model_records(specs: list[ModelSpec], datasets: dict, input_size: int | None) -> list[dict]:
    """Load each of the user's model files once before any work: a wrong input size, an output
    that is not (N, classes), or probabilities without a softmax / sigmoid to trace back to their
    logits is an error naming the file, not a failure hours into the maps. Each model is scored on
    every data set's validation and test images: its records for models.json, as the kit's own
    trained models have (a classifier near chance is then named in the report)."""
    records = []
    for spec in specs:
        model = load_file_model(spec, input_size)
        for name, dataset in datasets.items():
            records.append({"dataset": name, "model": spec.name, "arch": spec.arch, "monitor": "auc",
                            **file_model_scores(model, dataset), "epochs": None, "best_epoch": None, "seed": None,
                            "restarts": []})
    return records


def file_model_scores(model: keras.Model, dataset) -> dict[str, dict[str, float | None]]:
    """A wrapped user's model's ROC AUC on the data set's validation and test images (P(class 1),
    the softmax of its logits), as models.json records the kit's own classifiers; None where a
    split holds one class only."""
    scores = {}
    for split in ("val", "test"):
        indices = dataset.indices(split)
        labels = dataset.labels[indices]
        if len(np.unique(labels)) < 2:
            scores[split] = {"auc": None}
            continue
        from sklearn.metrics import roc_auc_score
        scores[split] = {"auc": float(roc_auc_score(labels, positive_probability(model, dataset.model_inputs(indices))))}
    return scores


def _preprocessing(kind: str) -> keras.layers.Layer:
    if kind == "none":
        return keras.layers.Identity(name="input_scaling")
    if kind == "unit":
        return keras.layers.Rescaling(1 / 255, name="input_scaling")
    if kind == "inception":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="input_scaling")
    if kind == "imagenet":
        return keras.layers.Rescaling((1 / (255 * IMAGENET_STD)).tolist(),
                                      offset=(-IMAGENET_MEAN / IMAGENET_STD).tolist(), name="input_scaling")
    raise ValueError(f"unknown preprocessing {kind!r}")


def _logits(user: keras.Model, x, spec: ModelSpec, path):
    """The user's layers on x, as fresh copies with the user's weights (so that each layer of the
    result has one call, in this graph, and `layer.output` is this graph's), and its logits tensor."""
    last = user.layers[-1]
    body, linear_last, sigmoid = user, False, False
    if spec.output == "probabilities":
        name = getattr(getattr(last, "activation", None), "__name__", "")
        if isinstance(last, keras.layers.Softmax) or (isinstance(last, keras.layers.Activation)
                                                      and name in _PROBABILITY_ACTIVATIONS):
            body = keras.Model(user.inputs, last.input)   # the probabilities layer left out: its input is the logits
        elif name in _PROBABILITY_ACTIVATIONS:
            linear_last = True                            # the same layer without its activation
        else:
            raise ModelFileError(f"{path}: output 'probabilities' but the last layer {last.name!r} has no softmax or "
                                 "sigmoid to trace the logits back through; give a model that outputs logits")
        sigmoid = name == "sigmoid"
    copies = {}

    def copy_of(layer):
        if layer not in copies:
            config = layer.get_config()
            if linear_last and layer is last:
                config = {**config, "activation": "linear"}
            copies[layer] = layer.__class__.from_config(config)
        return copies[layer]

    out = _check_output(body._run_through_graph(x, operation_fn=copy_of), path)
    for layer, copy in copies.items():
        copy.set_weights(layer.get_weights())
    if sigmoid and out.shape[-1] != 1:
        raise ModelFileError(f"{path}: a sigmoid output must have one unit, got {out.shape[-1]}")
    return _two_logits(out) if out.shape[-1] == 1 else out


def _two_logits(z):
    """One logit z of P(class 1) = sigmoid(z) as two logits with the same softmax: (-z/2, z/2)."""
    return keras.layers.Lambda(lambda t: keras.ops.concatenate([-t / 2, t / 2], axis=-1), name="two_logits")(z)


def _check_output(out, path):
    if len(out.shape) != 2:
        raise ModelFileError(f"{path}: expected a (N, classes) output, got {tuple(out.shape)}")
    return out
