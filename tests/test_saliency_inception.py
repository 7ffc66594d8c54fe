"""The keras.applications architectures of the paper: Grad-CAM layers and guided backprop."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation
from tf_keras_vis.utils.scores import CategoricalScore

from repro.saliency import is_degenerate, saliency_maps
from repro.saliency.engine import default_conv_layer


def _classifier(architecture, size: int) -> keras.Model:
    """The paper's head (GlobalAveragePooling2D + Dense(2)), logits out, built flat."""
    keras.utils.set_random_seed(0)
    base = architecture(weights=None, include_top=False, input_shape=(size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    return keras.Model(base.input, keras.layers.Dense(2)(pooled))


@pytest.mark.filterwarnings("ignore:The structure of `inputs`")  # tf-keras-vis passes a list
def test_grad_cam_layers_of_densenet121_and_inceptionv3_and_guided_backprop_on_inceptionv3():
    assert default_conv_layer(_classifier(keras.applications.DenseNet121, 32)) == "relu"

    model = _classifier(keras.applications.InceptionV3, 75)
    assert default_conv_layer(model) == "mixed10"
    x = np.random.default_rng(0).uniform(0, 255, (2, 75, 75, 3)).astype(np.float32)
    weights = [w.copy() for w in model.get_weights()]

    ours = saliency_maps(model, x, "GBP", raw=True)
    targets = np.argmax(model(x).numpy(), axis=1)
    reference = Saliency(model, model_modifier=GuidedBackpropagation())(
        CategoricalScore(list(targets)), x, gradient_modifier=None, normalize_map=False,
        keepdims=True)
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-5 * np.abs(reference).max())

    # At 75 px mixed10 is 1x1: every Grad-CAM is constant, so GCAM and GGCAM maps are degenerate.
    ggcam = saliency_maps(model, x, "GGCAM")
    assert ggcam.shape == (2, 75, 75) and np.isnan(ggcam).all() and is_degenerate(ggcam).all()
    assert not is_degenerate(saliency_maps(model, x, "GBP")).any()
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
