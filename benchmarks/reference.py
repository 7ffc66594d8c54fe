"""The two references our saliency engine is measured against, independent of it on purpose:

- stock PAIR usage (the naive path tests and benchmarks compare with): PAIR's documented TF2
  call_model_function, an eager GradientTape per call, one image per row,
  call_model_args={"target": class};
- the hardware limit: a plain batched tf.function of input gradients, nothing else.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from saliency.core.base import CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS, INPUT_OUTPUT_GRADIENTS


def stock_call_model_function(model: keras.Model, layer: str | None = None):
    """PAIR's documented TF2 usage, independent of repro.saliency: an eager GradientTape per call,
    call_model_args={"target": class}."""
    conv_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.output]) \
        if layer else None

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        target = call_model_args["target"]
        x = tf.convert_to_tensor(np.asarray(x_value_batch, np.float32))
        with tf.GradientTape() as tape:
            if conv_model is None:
                tape.watch(x)
                output = model(x)[:, target]
                return {INPUT_OUTPUT_GRADIENTS: tape.gradient(output, x).numpy()}
            conv, logits = conv_model(x)
            output = logits[:, target]
        return {CONVOLUTION_LAYER_VALUES: conv.numpy(),
                CONVOLUTION_OUTPUT_GRADIENTS: tape.gradient(output, conv).numpy()}

    return call_model_function


def raw_input_gradients(model: keras.Model):
    """The limit's path: a traced function of the input gradients of class 1's logit, any batch."""
    @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logit = tf.reduce_sum(model(x, training=False)[:, 1])
        return tape.gradient(logit, x)

    return gradients
