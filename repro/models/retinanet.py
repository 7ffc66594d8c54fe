"""RetinaNet (keras_hub) for the RSNA boxes: the detection baseline of the utility test.

The detector is keras_hub.models.RetinaNetObjectDetector with one class (opacity) on a ResNet
backbone: a keras_hub preset name (ImageNet weights, downloaded; the paper profile) or a mapping of
keras_hub.models.ResNetBackbone arguments (random initialisation; the embedded profiles). Its
preprocessor scales the [0, 255] input to ImageNet mean/std inside Keras' data pipeline.

Boxes are (top, left, bottom, right) in pixels ("yxyx"), bottom and right exclusive: pixel (i, j)
covers [i, i+1) x [j, j+1), and a box covers the pixels whose centres lie inside it. The RSNA data
only keep the filled boxes as a mask, so training boxes are the bounding boxes of the mask's
connected components (two overlapping RSNA boxes become one box around both).

The heads' output biases are set as the RetinaNet paper sets them (Lin et al. 2017, "Focal Loss for
Dense Object Detection", section 4.1, Initialization): the classification head's so that every
anchor starts at confidence 0.01, the box head's at 0. keras-hub 0.32's RetinaNetObjectDetector gives
that prior to the box head instead (its two PredictionHead calls: use_prior_probability=True on the
box head) and leaves the classification head at 0, every anchor at confidence 0.5: its first steps
then go to unlearning thousands of false detections per image and to undoing box offsets of -4.6
(docs/training-from-scratch.md measures what that cost the demo). A preset of the whole detector
would overwrite both.

The utility test needs a per-pixel map: `detections_to_score_map` gives each pixel the highest
confidence of the detected boxes covering it, and 0 elsewhere.
"""
from __future__ import annotations

import math

import keras
import keras_hub
import numpy as np
from scipy import ndimage

from repro.models.classifiers import IMAGENET_MEAN, IMAGENET_STD
from repro.models.weights import backbone_preset, download_failed

BOX_FORMAT = "yxyx"
PADDING = -1   # label (and box coordinates) of the padding rows of a fixed-size box list
PRIOR_PROBABILITY = 0.01   # every anchor's confidence before training (the RetinaNet paper's pi)


def build_retinanet(size: int, *, backbone: str | dict, levels: list[int], head_convs: int,
                    score_threshold: float, max_detections: int) -> keras_hub.models.RetinaNetObjectDetector:
    """A one-class RetinaNet for S x S inputs; it keeps the detections scoring above score_threshold."""
    image_shape = (size, size, 3)
    features = keras_hub.models.RetinaNetBackbone(
        image_encoder=_resnet(backbone, image_shape), min_level=levels[0], max_level=levels[1],
        use_p5=False, image_shape=image_shape)
    converter = keras_hub.layers.RetinaNetImageConverter(
        scale=1 / 255, mean=IMAGENET_MEAN.tolist(), variance=(IMAGENET_STD ** 2).tolist())
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format=BOX_FORMAT, from_logits=True, confidence_threshold=score_threshold,
        max_detections=max_detections)
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=features, num_classes=1, bounding_box_format=BOX_FORMAT,
        pre_logits_num_conv_layers=head_convs, prediction_decoder=decoder,
        preprocessor=keras_hub.models.RetinaNetObjectDetectorPreprocessor(image_converter=converter))
    _initialize_head_biases(detector)
    return detector


def _initialize_head_biases(detector: keras_hub.models.RetinaNetObjectDetector) -> None:
    """The focal-loss prior on the classification head, zero on the box head (module docstring)."""
    classes = detector.classification_head.prediction_layer.bias
    classes.assign(keras.ops.full(classes.shape, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)))
    boxes = detector.box_head.prediction_layer.bias
    boxes.assign(keras.ops.zeros(boxes.shape))


def masks_to_boxes(mask: np.ndarray) -> np.ndarray:
    """(K, 4) float32 yxyx boxes: the bounding box of each connected component of a 2-D mask."""
    labelled, _ = ndimage.label(mask)
    return np.array([[rows.start, cols.start, rows.stop, cols.stop]
                     for rows, cols in ndimage.find_objects(labelled)], dtype=np.float32).reshape(-1, 4)


def box_targets(masks: np.ndarray, max_boxes: int) -> dict[str, np.ndarray]:
    """Training labels for keras_hub: {"boxes": (N, max_boxes, 4), "labels": (N, max_boxes)}.

    Real boxes have label 0 (the one class); the rest of each row is padding (PADDING everywhere).
    """
    boxes = np.full((len(masks), max_boxes, 4), PADDING, dtype=np.float32)
    labels = np.full((len(masks), max_boxes), PADDING, dtype=np.int32)
    for i, mask in enumerate(masks):
        found = masks_to_boxes(mask)[:max_boxes]
        boxes[i, :len(found)] = found
        labels[i, :len(found)] = 0
    return {"boxes": boxes, "labels": labels}


def network_inputs(model: keras.Model, images: np.ndarray):
    """What the detector's network sees: the [0, 255] images after its preprocessor's scaling."""
    return model.preprocessor(images)


def detect(model: keras.Model, images: np.ndarray, *, batch_size: int = 32
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, (boxes (K, 4) yxyx, confidences (K,)) of the detections kept by the decoder.

    The network and the decoder run eagerly, batch by batch: keras_hub's compiled predict() fails in
    NonMaxSuppression when the batch dimension is unknown (keras-hub 0.32).
    """
    found = []
    for start in range(0, len(images), batch_size):
        x = network_inputs(model, images[start:start + batch_size])
        decoded = model.decode_predictions(model(x, training=False), x)
        boxes = keras.ops.convert_to_numpy(decoded["boxes"])
        scores = keras.ops.convert_to_numpy(decoded["confidence"])
        found += [(b[s > 0], s[s > 0]) for b, s in zip(boxes, scores)]   # padding rows score -1
    return found


def detections_to_score_map(boxes: np.ndarray, scores: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32: each pixel the highest score of the boxes covering it, 0 elsewhere.

    A box (top, left, bottom, right) covers pixel (i, j) when the pixel centre (i + .5, j + .5)
    satisfies top <= i + .5 < bottom and left <= j + .5 < right. Boxes scoring <= 0 are ignored, and
    so are boxes that are not finite (an untrained detector's decoded offsets can overflow: the
    rehearsal's one-epoch RetinaNet gave NaN corners).
    """
    score_map = np.zeros((size, size), dtype=np.float32)
    for (top, left, bottom, right), score in zip(np.asarray(boxes, dtype=np.float64), scores):
        if not score > 0 or not np.isfinite([top, left, bottom, right]).all():
            continue
        rows = slice(*np.clip(np.ceil(np.array([top, bottom]) - 0.5).astype(int), 0, size))
        cols = slice(*np.clip(np.ceil(np.array([left, right]) - 0.5).astype(int), 0, size))
        score_map[rows, cols] = np.maximum(score_map[rows, cols], score)
    return score_map


def score_maps(model: keras.Model, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """(N, S, S) per-pixel score maps of the detector on [0, 255] model inputs."""
    size = images.shape[1]
    return np.stack([detections_to_score_map(boxes, scores, size)
                     for boxes, scores in detect(model, images, batch_size=batch_size)])


def _resnet(backbone: str | dict, image_shape: tuple) -> keras.Model:
    if isinstance(backbone, dict):
        return keras_hub.models.ResNetBackbone(**backbone, image_shape=image_shape)
    source = backbone_preset(backbone)
    try:
        return keras_hub.models.ResNetBackbone.from_preset(source, image_shape=image_shape)
    except Exception as err:  # keras_hub / kagglehub raise various errors when offline
        raise download_failed(f"the keras_hub preset {backbone!r} (into ~/.cache/kagglehub/)",
                              "a mapping of ResNetBackbone arguments as models.retinanet.backbone", err) from err
