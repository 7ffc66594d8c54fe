"""Compiled gradients of a model's target logit, served through PAIR saliency's call_model_function.

One `GradientEngine` per (model, Grad-CAM layer, guided) holds the tf.functions; `engine_for` caches
them, so each is traced once. Every function takes a whole batch of rows and one target class per
row, and returns, in one call, whichever of PAIR's keys were asked for:
INPUT_OUTPUT_GRADIENTS, CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES.

Target -1 (`PREDICTED`) means "the class this row itself predicts": when the rows are the
unperturbed images (GRAD, GBP, GCAM) the paper's predicted class comes out of the same forward
pass. Perturbed rows (noise, interpolation paths) get explicit targets from `predicted_classes`.

Guided backprop (`guided=True`) gives every ReLU op in the traced graph the guided gradient, as
PAIR's TF1 GuidedBackprop did with gradient_override_map({'Relu': 'GuidedRelu'}): the original
model is never modified or cloned, and in-place weight changes (cascading randomization) are seen.
"""
from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf
from saliency.core.base import (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS,
                                INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES)

PREDICTED = -1
KEYS = (INPUT_OUTPUT_GRADIENTS, CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS,
        OUTPUT_LAYER_VALUES)
_CONV_KEYS = {CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS}

# A name of our own: PAIR's TF1 GuidedBackprop registers "GuidedRelu" and a second registration
# of the same name raises.
_GUIDED_RELU = "ReproSaliencyGuidedRelu"


@tf.RegisterGradient(_GUIDED_RELU)
def _guided_relu_gradient(op, grad):
    """PAIR's GuidedRelu, grad * (grad > 0) * (output > 0): only positive gradients through
    units whose ReLU output is positive. ReluGrad(g, f) = g * (f > 0): two native kernels, fewer
    passes over the activations than PAIR's two casts and two products."""
    return tf.raw_ops.ReluGrad(gradients=tf.nn.relu(grad), features=op.outputs[0])


class GradientEngine:
    """Batched gradients of one model's target logit (the model outputs pre-softmax logits)."""

    def __init__(self, model: keras.Model, *, layer: str | None = None, guided: bool = False):
        self.model = model
        self.layer = layer
        self.guided = guided
        self._graph_model = model if layer is None else keras.Model(
            model.inputs, [model.output, _layer(model, layer).output])
        self._signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32),
                           tf.TensorSpec((None,), tf.int32)]
        self._functions: dict[frozenset, tf.types.experimental.PolymorphicFunction] = {}
        self._predict = self._compile(self._logits, self._signature[:1])

    def __call__(self, rows: np.ndarray, targets: np.ndarray, keys=(INPUT_OUTPUT_GRADIENTS,)
                 ) -> dict[str, np.ndarray]:
        """The requested PAIR keys for a batch of rows, from one call of a compiled function."""
        keys = frozenset(keys)
        if keys - set(KEYS):
            raise ValueError(f"unknown keys {sorted(keys - set(KEYS))}; valid: {KEYS}")
        if keys & _CONV_KEYS and self.layer is None:
            raise ValueError(f"{sorted(keys & _CONV_KEYS)} need an engine built with a layer")
        if keys not in self._functions:
            self._functions[keys] = self._compile(functools.partial(self._compute, keys),
                                                  self._signature)
        outputs = self._functions[keys](np.asarray(rows, np.float32), np.asarray(targets, np.int32))
        return {key: value.numpy() for key, value in outputs.items()}

    def input_gradients(self, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return self(rows, targets)[INPUT_OUTPUT_GRADIENTS]

    def logits(self, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """(N, classes) logits, forward passes only, `batch_size` rows per call."""
        return np.concatenate([self._predict(np.asarray(rows[start:start + batch_size], np.float32)).numpy()
                               for start in range(0, len(rows), batch_size)])

    def predicted_classes(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """The argmax logit of each image, in forward passes of `batch_size` images."""
        return np.concatenate([np.argmax(self._predict(images[start:start + batch_size]), axis=1)
                               for start in range(0, len(images), batch_size)]).astype(np.int32)

    def call_model_function(self, x_value_batch, call_model_args=None, expected_keys=None):
        """PAIR's call_model_function; call_model_args={"target": class} (default: predicted)."""
        target = (call_model_args or {}).get("target", PREDICTED)
        targets = np.full(len(x_value_batch), target, np.int32)
        return self(x_value_batch, targets, expected_keys or (INPUT_OUTPUT_GRADIENTS,))

    @staticmethod
    def _compile(function, signature):
        # A fixed signature with a free batch dimension: one trace serves every batch size.
        return tf.function(function, input_signature=signature, reduce_retracing=True,
                           autograph=False)

    def _forward(self, x):
        """The logits and the Grad-CAM layer's output (None without a layer)."""
        outputs = self._graph_model(x, training=False)
        return (outputs, None) if self.layer is None else tuple(outputs)

    def _logits(self, x):
        return self._forward(x)[0]

    def _compute(self, keys, x, targets):
        # Ops created under the override map get the guided ReLU gradient; the map is empty
        # for ordinary gradients, so both kinds of engine share this code.
        override = {"Relu": _GUIDED_RELU} if self.guided else {}
        with tf.compat.v1.get_default_graph().gradient_override_map(override):
            logits, conv = self._forward(x)
        targets = tf.where(targets < 0, tf.argmax(logits, axis=1, output_type=tf.int32), targets)
        target_logits = tf.gather(logits, targets, batch_dims=1)
        # Rows are independent (inference mode), so the gradient of the sum is each row's own.
        sources = {INPUT_OUTPUT_GRADIENTS: x, CONVOLUTION_OUTPUT_GRADIENTS: conv}
        wanted = [key for key in sources if key in keys]
        # tf.gradients, not GradientTape: only graph gradients honour gradient_override_map.
        gradients = tf.gradients(tf.reduce_sum(target_logits), [sources[key] for key in wanted],
                                 unconnected_gradients=tf.UnconnectedGradients.ZERO)
        outputs = dict(zip(wanted, gradients))
        if CONVOLUTION_LAYER_VALUES in keys:
            outputs[CONVOLUTION_LAYER_VALUES] = conv
        if OUTPUT_LAYER_VALUES in keys:
            outputs[OUTPUT_LAYER_VALUES] = target_logits
        return outputs


@functools.lru_cache(maxsize=8)
def engine_for(model: keras.Model, layer: str | None = None, guided: bool = False
               ) -> GradientEngine:
    """The cached engine of `model` (by identity); the 8 most recent stay alive."""
    return GradientEngine(model, layer=layer, guided=guided)


def default_conv_layer(model: keras.Model) -> str:
    """The last layer with a 4-D output: mixed10 in InceptionV3, relu in DenseNet121."""
    names = [layer.name for layer in model.layers
             if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]
    if not names:
        raise ValueError("the model has no layer with a 4-D output: pass layer=<name> for Grad-CAM")
    return names[-1]


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    names = [layer.name for layer in model.layers]
    if name not in names:
        raise ValueError(f"layer {name!r} is not a layer of the model (nested models are not "
                         f"searched: build the model flat); the last layers are {names[-5:]}")
    return model.get_layer(name)
