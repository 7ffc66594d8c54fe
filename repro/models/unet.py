"""A compact U-Net for the SIIM pneumothorax masks: the segmentation baseline of the utility test.

No maintained Keras 3 U-Net package exists, so this is the classic encoder-decoder (Ronneberger et
al. 2015) with configurable depth and width: `depth` times [two 3x3 conv-BN-ReLU, 2x2 max-pool]
with `width` * 2^level filters, a bottleneck, then `depth` times [2x2 transposed conv, concatenate
the skip connection, two 3x3 conv-BN-ReLU], and a 1x1 conv with a sigmoid: a per-pixel probability.
Input: float32 (N, S, S, 3) in [0, 255], scaled to [0, 1] by the first layer; S must be divisible
by 2^depth.
"""
from __future__ import annotations

import keras
from keras import ops

MASK = "mask"
# The output starts at probability 0.01 everywhere rather than 0.5 (the prior-probability start of
# Lin et al. 2017, as RetinaNet's head): masks cover ~1% of the pixels, and from 0.5 the first
# hundreds of steps only learn that most pixels are background.
PRIOR_LOGIT = -4.595   # log(0.01 / 0.99)


def build_unet(size: int, *, depth: int = 4, width: int = 32) -> keras.Model:
    if size % 2 ** depth:
        raise ValueError(f"U-Net: the input size ({size}) must be divisible by 2^depth = {2 ** depth}")
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="input_scaling")(image)
    skips = []
    for level in range(depth):
        x = _conv_block(x, width * 2 ** level, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(name=f"down{level}_pool")(x)
    x = _conv_block(x, width * 2 ** depth, "bottleneck")
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(width * 2 ** level, 2, strides=2, name=f"up{level}_upsample")(x)
        x = keras.layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        x = _conv_block(x, width * 2 ** level, f"up{level}")
    probability = keras.layers.Conv2D(1, 1, activation="sigmoid", name=MASK,
                                      bias_initializer=keras.initializers.Constant(PRIOR_LOGIT))(x)
    return keras.Model(image, probability, name="unet")


def _conv_block(x, filters: int, name: str):
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


@keras.saving.register_keras_serializable(package="repro")
def dice_bce_loss(y_true, y_pred):
    """Per-pixel binary cross-entropy + (1 - soft Dice over the whole batch).

    The usual loss of segmentation baselines. Dice is pooled over the batch rather than taken per
    image: most SIIM images have an empty mask, and a per-image Dice scores any faint prediction
    on them as a near-total miss, which drives the network to predict nothing at all.
    Returns BCE_i + 1 - Dice_batch per image i; Keras' mean over the batch is the loss.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    dice = (2 * ops.sum(y_true * y_pred) + 1) / (ops.sum(y_true) + ops.sum(y_pred) + 1)
    return bce + 1 - dice
