"""Model building blocks: classifiers, BatchNorm recalibration, cascading randomization, baselines."""
import keras
import keras_hub
import numpy as np
import pytest

from repro.models.augment import augment
from repro.models.batchnorm import batchnorm_layers, recalibrate_batchnorm
from repro.models.cascade import _plan, cascade_states, cascade_weights, states_of
from repro.models.classifiers import build_classifier, classifier_loss, input_scaling
from repro.models.errors import WeightsUnavailableError
from repro.models.retinanet import (box_targets, build_retinanet, detect, detections_to_score_map, masks_to_boxes,
                                    network_inputs, score_maps)
from repro.models.unet import build_unet, dice_bce_loss
from repro.protocol import INCEPTION_STATES

TINY_RESNET = {"input_conv_filters": [64], "input_conv_kernel_sizes": [3], "stackwise_num_filters": [64, 64, 64],
               "stackwise_num_blocks": [1, 1, 1], "stackwise_num_strides": [1, 2, 2], "block_type": "basic_block"}


@pytest.fixture(scope="module")
def inception():
    keras.utils.set_random_seed(0)
    return build_classifier("inception_v3", 75)


def images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


# --- classifiers -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, reference", [("inception_v3", keras.applications.inception_v3.preprocess_input),
                                             ("densenet121", keras.applications.densenet.preprocess_input)])
def test_input_scaling_is_keras_preprocessing(arch, reference):
    x = images(2, 8)
    np.testing.assert_allclose(input_scaling(arch)(x), reference(x.copy()), rtol=1e-5, atol=1e-5)


def test_inception_is_flat_with_logits_and_mixed10_at_2x2():
    model = build_classifier("inception_v3", 128)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.layers[1].name == "input_scaling"
    assert model.get_layer("mixed10").output.shape == (None, 2, 2, 2048)
    logits = model.get_layer("logits")
    assert model.layers[-1] is logits and logits.activation is keras.activations.linear
    assert model.input_shape == (None, 128, 128, 3) and model.output_shape == (None, 2)


def test_densenet_is_flat_with_logits():
    model = build_classifier("densenet121", 64)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.layers[-1].name == "logits" and model.output_shape == (None, 2)
    # logits, not probabilities: rows need not sum to one
    assert not np.allclose(np.asarray(model(images(2, 64))).sum(axis=1), 1.0)


def test_loss_is_binary_cross_entropy_over_the_softmax():
    logits = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32) * 3
    onehot = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1, 0]]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)   # numpy: see classifier_loss
    bce = keras.losses.BinaryCrossentropy()(onehot, probabilities)
    assert float(classifier_loss()(onehot, logits)) == pytest.approx(float(bce), rel=1e-5)


def test_a_few_steps_lower_the_classifier_loss(inception):
    model = keras.models.clone_model(inception)
    model.compile(keras.optimizers.Adam(1e-3), classifier_loss(), run_eagerly=True)  # no graph tracing
    x, y = images(8, 75), np.eye(2, dtype=np.float32)[[0, 1] * 4]
    losses = [float(model.train_on_batch(x, y)) for _ in range(5)]
    assert losses[-1] < losses[0]


def test_failed_imagenet_download_says_what_to_do(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as error:
        build_classifier("inception_v3", 75, weights="imagenet")
    message = str(error.value)
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "~/.keras/models/" in message and "weights: null" in message
    assert "repro weights fetch --experiment NAME --to DIR" in message and "runtime.weights_dir=DIR" in message
    assert isinstance(error.value, OSError)   # the CLI prints OSErrors as one line


def test_failed_preset_download_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Kaggle is unreachable")
    monkeypatch.setattr(keras_hub.models.ResNetBackbone, "from_preset", offline)
    with pytest.raises(WeightsUnavailableError, match="resnet_50_imagenet.*models.retinanet.backbone"):
        build_retinanet(64, backbone="resnet_50_imagenet", levels=[3, 5], head_convs=1,
                        score_threshold=0.05, max_detections=5)


@pytest.mark.parametrize("name", ["smoke", "demo"])
def test_the_kit_s_retinanet_configurations_build(name):
    """What the schema cannot see: keras-hub accepts the experiment's backbone when it is built."""
    from repro.experiments import load_experiment
    experiment = load_experiment(name)
    spec = next(spec for spec in experiment.models.values() if spec.arch == "retinanet")
    settings = experiment.settings.models.retinanet
    model = build_retinanet(experiment.settings.data.input_size, backbone=settings.backbone, levels=settings.levels,
                            head_convs=settings.head_convs, score_threshold=settings.score_threshold,
                            max_detections=settings.max_detections)
    assert model.count_params() > 0 and spec.arch == "retinanet"


# --- BatchNorm recalibration -------------------------------------------------------------------

def tiny_bn_model():
    keras.utils.set_random_seed(3)
    x = inputs = keras.Input((12, 12, 3))
    for i in range(2):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_recalibration_sets_the_moments_of_each_layers_inputs():
    model, x = tiny_bn_model(), images(24, 12) * 2 + 30     # far from the initial mean 0 / variance 1
    layers = batchnorm_layers(model)
    trained_mode = [np.asarray(model(x[i:i + 8], training=True)) for i in range(0, 24, 8)]
    before = [np.asarray(model(x[i:i + 8], training=False)) for i in range(0, 24, 8)]

    recalibrate_batchnorm(model, x, batches=3, batch_size=8)

    moving = [(np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)) for bn in layers]
    probe = keras.Model(model.input, [bn.input for bn in layers])   # each BN layer's input, batch by batch
    per_batch = [probe(x[i:i + 8], training=True) for i in range(0, 24, 8)]
    for k, (mean, variance) in enumerate(moving):
        inputs = np.concatenate([np.asarray(batch[k]) for batch in per_batch]).reshape(-1, 4)
        np.testing.assert_allclose(mean, inputs.mean(axis=0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(variance, inputs.var(axis=0), rtol=1e-4, atol=1e-4)
    assert [bn.momentum for bn in layers] == [0.99, 0.99]   # restored

    after = [np.asarray(model(x[i:i + 8], training=False)) for i in range(0, 24, 8)]
    gap_before = np.mean([np.abs(b - t).mean() for b, t in zip(before, trained_mode)])
    gap_after = np.mean([np.abs(a - t).mean() for a, t in zip(after, trained_mode)])
    assert gap_after < 0.2 * gap_before


def test_the_compiled_recalibration_pass_gives_the_eager_pass_s_bits(monkeypatch):
    """The pass is compiled to save memory (repro.models.batchnorm.training_forward): the moving
    statistics come out as the eager pass makes them, to the last bit."""
    from repro.models import batchnorm
    x = images(24, 12) * 2 + 30
    compiled = tiny_bn_model()
    recalibrate_batchnorm(compiled, x, batches=3, batch_size=8)
    recalibrate_batchnorm(compiled, x[::-1], batches=3, batch_size=8)   # the second call reuses the trace
    monkeypatch.setattr(batchnorm, "training_forward", lambda model: lambda batch: model(batch, training=True))
    eager = tiny_bn_model()
    recalibrate_batchnorm(eager, x, batches=3, batch_size=8)
    recalibrate_batchnorm(eager, x[::-1], batches=3, batch_size=8)
    assert all(np.array_equal(a, b) for a, b in zip(compiled.get_weights(), eager.get_weights()))
    assert all(np.asarray(bn.moving_mean).std() > 0 for bn in batchnorm_layers(compiled))  # they moved


# --- cascading randomization -------------------------------------------------------------------

def kernels(model, weights, names):
    """Each named layer's kernel in a weight list laid out like model.get_weights()."""
    positions, i = {}, 0
    for layer in model.layers:
        for variable in layer.weights:
            if variable.name == "kernel":
                positions[layer.name] = i
            i += 1
    return {name: weights[positions[name]] for name in names}


def test_blocks_cover_everything_above_mixed0(inception):
    plan = _plan(inception, 10)
    assert tuple(plan) == INCEPTION_STATES
    assert plan["logits"][-1] == "logits" and plan["mixed10"][-1] == "mixed10" and "mixed9_1" in plan["mixed10"]
    covered = [name for state in reversed(INCEPTION_STATES[1:]) for name in plan[state]]
    start = [layer.name for layer in inception.layers].index("mixed0") + 1
    assert covered == [layer.name for layer in inception.layers[start:]]
    # In the graph, a block's layers read only from the block itself or from the block below's output.
    below = {"logits": "mixed10", **{f"mixed{k}": f"mixed{k - 1}" for k in range(1, 11)}}
    for state, names in list(plan.items())[1:]:
        inside = set(names) | {below[state]}
        parents = {parent.operation.name for name in names for node in inception.get_layer(name)._inbound_nodes
                   for parent in node.parent_nodes}
        assert parents <= inside, state


def test_cascade_weights_randomize_from_the_top(inception):
    trained = keras.models.clone_model(inception)   # moving statistics away from their initial values
    trained.set_weights([w + 0.5 if w.ndim == 1 else w for w in inception.get_weights()])
    original = trained.get_weights()
    plan = _plan(trained, 10)
    states = list(plan)
    convs = {s: [n for n in plan[s] if hasattr(trained.get_layer(n), "kernel")] for s in states[1:]}
    stem = next(layer.name for layer in trained.layers if hasattr(layer, "kernel"))
    weights = cascade_weights(trained, "mixed5", model_name="r1")
    randomized = [n for s in states[1:states.index("mixed5") + 1] for n in convs[s]]
    kept = [n for s in states[states.index("mixed5") + 1:] for n in convs[s]] + [stem]
    now, then = kernels(trained, weights, randomized + kept), kernels(trained, original, randomized + kept)
    assert all(not np.array_equal(now[n], then[n]) for n in randomized)
    assert all(np.array_equal(now[n], then[n]) for n in kept)
    probe = keras.models.clone_model(trained)
    probe.set_weights(weights)
    last_bn = [n for n in plan["mixed10"] if isinstance(trained.get_layer(n), keras.layers.BatchNormalization)][-1]
    assert np.all(np.asarray(probe.get_layer(last_bn).moving_mean) == 0)     # back to the initial values
    assert all(np.array_equal(a, b) for a, b in zip(original, trained.get_weights()))   # the model is untouched


def test_materialized_states_are_all_different(inception):
    """dict(cascade_states(model)) holds twelve real states, not twelve references to the last."""
    states = dict(cascade_states(inception, seed=0, model_name="r1"))
    assert list(states) == list(INCEPTION_STATES)
    x = images(2, 75)
    probe = keras.models.clone_model(inception)
    outputs = []
    for weights in states.values():
        probe.set_weights(weights)
        outputs.append(np.asarray(probe(x)))
    assert all(not np.allclose(a, b) for a, b in zip(outputs, outputs[1:]))
    assert all(np.array_equal(a, b) for a, b in zip(states["original"], inception.get_weights()))
    # The re-initialized values drawn once for the whole cascade are those each state draws alone.
    alone = cascade_weights(inception, "mixed5", seed=0, model_name="r1")
    assert all(np.array_equal(a, b) for a, b in zip(states["mixed5"], alone))


def test_independent_mode_seeds_and_replicates(inception):
    plan = _plan(inception, 10)
    mixed9 = [n for n in plan["mixed9"] if hasattr(inception.get_layer(n), "kernel")]
    others = [n for s in INCEPTION_STATES[1:] if s != "mixed9" for n in plan[s]
              if hasattr(inception.get_layer(n), "kernel")]
    alone = cascade_weights(inception, "mixed9", seed=7, mode="independent", model_name="r1")
    cascading = cascade_weights(inception, "mixed9", seed=7, model_name="r1")
    other_seed = cascade_weights(inception, "mixed9", seed=8, model_name="r1")
    other_replicate = cascade_weights(inception, "mixed9", seed=7, model_name="r2")
    trained = kernels(inception, inception.get_weights(), others)
    assert all(np.array_equal(kernels(inception, alone, others)[n], trained[n]) for n in others)
    same = kernels(inception, alone, mixed9), kernels(inception, cascading, mixed9)
    assert all(np.array_equal(same[0][n], same[1][n]) for n in mixed9)
    for different in (other_seed, other_replicate):
        assert not any(np.array_equal(same[0][n], kernels(inception, different, mixed9)[n]) for n in mixed9)


def test_other_classifiers_get_grouped_states():
    model = tiny_bn_model()
    head = keras.layers.Dense(2, name="logits")(model.output)
    model = keras.Model(model.input, head)
    assert states_of(model, groups=2) == ("original", "logits", "block1", "block2")
    plan = _plan(model, 2)
    assert len(plan["logits"]) == 2 and plan["logits"][-1] == "logits"      # pooling and the head
    assert plan["block1"] == ["bn1", "conv1"] and plan["block2"] == ["bn0", "conv0"]   # weighted layers, top down
    weights = cascade_weights(model, "block2", model_name="m")
    assert sum(not np.array_equal(a, b) for a, b in zip(weights, model.get_weights())) > 0


# --- baselines ---------------------------------------------------------------------------------

def test_unet_gives_probabilities():
    model = build_unet(32, depth=2, width=4)
    out = np.asarray(model(images(3, 32)))
    assert out.shape == (3, 32, 32, 1) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="divisible"):
        build_unet(30, depth=2, width=4)


def test_dice_bce_loss():
    masks = np.zeros((2, 8, 8, 1), np.float32)
    masks[0, 2:5, 2:5] = 1                          # one positive image, one empty
    assert float(keras.ops.mean(dice_bce_loss(masks, masks))) == pytest.approx(0, abs=1e-4)
    nothing = float(keras.ops.mean(dice_bce_loss(masks, np.zeros_like(masks))))
    assert nothing == pytest.approx(1 - 1 / 10 + float(keras.losses.binary_crossentropy(
        masks.ravel(), np.zeros(128, np.float32))), rel=1e-3)   # Dice (0 + 1) / (9 + 0 + 1)


def test_detections_to_score_map_takes_the_highest_covering_box():
    boxes = np.array([[2, 3, 6, 8],          # rows 2-5, columns 3-7
                      [4, 5, 10, 12],        # rows 4-9, columns 5-9 (clipped at the edge)
                      [0, 0, 10, 10],        # ignored: padding score
                      [0.6, 0.6, 1.6, 1.6]]) # holds the pixel centre (1.5, 1.5), not (0.5, *) or (*, 0.5)
    scores = np.array([0.5, 0.9, -1.0, 0.3])
    expected = np.zeros((10, 10), np.float32)
    expected[2:6, 3:8] = 0.5
    expected[4:10, 5:10] = 0.9
    expected[1, 1] = 0.3
    np.testing.assert_array_equal(detections_to_score_map(boxes, scores, 10), expected)
    assert not detections_to_score_map(np.zeros((0, 4)), np.zeros(0), 10).any()
    # an untrained detector's non-finite boxes or scores are ignored, not cast to garbage slices
    garbage = np.array([[np.nan, 0, 5, 5], [0, 0, np.inf, 5], [0, 0, 5, 5]])
    assert not detections_to_score_map(garbage, np.array([0.9, 0.9, np.nan]), 10).any()


def test_box_masks_round_trip_through_boxes():
    mask = np.zeros((16, 16), bool)
    mask[1:4, 2:9] = mask[10:16, 12:14] = True
    boxes = masks_to_boxes(mask)
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 9], [10, 12, 16, 14]])
    assert np.array_equal(detections_to_score_map(boxes, np.ones(len(boxes)), 16) == 1, mask)
    targets = box_targets(np.stack([mask, np.zeros_like(mask)]), 3)
    assert targets["labels"].tolist() == [[0, 0, -1], [-1, -1, -1]]
    assert np.all(targets["boxes"][1] == -1)


def test_retinanet_heads_start_as_the_retinanet_paper_sets_them():
    """Every anchor starts at confidence 0.01 and every box at its anchor (Lin et al. 2017, 4.1):
    keras-hub 0.32 puts the prior on the box head and leaves the classes at 0.5."""
    keras.utils.set_random_seed(0)
    model = build_retinanet(64, backbone=TINY_RESNET, levels=[3, 4], head_convs=0, score_threshold=0.0,
                            max_detections=5)
    assert np.allclose(model.classification_head.prediction_layer.bias.numpy(), -np.log(99))
    assert np.all(model.box_head.prediction_layer.bias.numpy() == 0)
    confidence = keras.ops.sigmoid(model(network_inputs(model, images(2, 64)))["cls_logits"]).numpy()
    assert np.median(confidence) < 0.05


def test_retinanet_score_maps():
    keras.utils.set_random_seed(0)
    model = build_retinanet(64, backbone=TINY_RESNET, levels=[3, 4], head_convs=0, score_threshold=0.0,
                            max_detections=5)
    box_layer = model.box_head.prediction_layer   # zero box offsets: the detections are anchor boxes
    box_layer.set_weights([np.zeros_like(w) for w in box_layer.get_weights()])
    x = images(3, 64)
    found = detect(model, x)
    maps = score_maps(model, x)
    assert maps.shape == (3, 64, 64) and maps.min() == 0
    for (boxes, scores), score_map in zip(found, maps):
        assert 0 < len(scores) <= 5 and np.all((scores > 0) & (scores <= 1))
        assert score_map.max() == pytest.approx(scores.max())


def test_augmentation_moves_masks_with_images():
    base = np.zeros((1, 20, 20), np.uint8)
    base[0, 5:8, 2:4] = 200
    stack = np.repeat(base, 50, axis=0)
    moved, masks = augment(stack[..., None].repeat(3, axis=-1), stack > 0, np.random.default_rng(0),
                           flip=True, shift=0.1)
    assert moved.shape == (50, 20, 20, 3)
    assert all(np.array_equal(m[..., 0] > 0, k) for m, k in zip(moved, masks))
    assert len({m.tobytes() for m in masks}) > 10                  # fresh draws per image
    assert all(k.sum() == 6 for k in masks)                        # the finding stays whole in reach
    assert any(k[:, 10:].any() for k in masks) and any(k[:, :10].any() for k in masks)   # flips
    assert np.array_equal(stack[0], base[0])                       # inputs untouched
    edge, edge_mask = augment(base, base > 0, np.random.default_rng(0), flip=False, shift=0.5)
    assert edge_mask.sum() <= 6 and np.array_equal(edge[0] > 0, edge_mask[0])   # shifted out: cropped


def test_an_architecture_s_revision_retrains_its_models_only(monkeypatch):
    """A change to how the RetinaNet is built (its heads' biases) must not reuse a detector trained
    before it, and must keep every other finished model."""
    from types import SimpleNamespace

    from repro.experiments import ModelSpec, RetinaNet, TrainSettings, UNet
    from repro.models import records
    settings = TrainSettings(epochs=1, batch_size=8, learning_rate=1e-3, patience=1)
    data = SimpleNamespace(size=64, fingerprint="data-1")
    detector = ModelSpec("retinanet_r1", "retinanet", seed=1, settings=RetinaNet(replicates={"retinanet_r1": 1},
                                                                                 levels=[3, 4]))
    unet = ModelSpec("unet_r1", "unet", seed=1, settings=UNet(replicates={"unet_r1": 1}, depth=2, width=4))
    before = {spec.name: records.model_fingerprint(spec, settings, data) for spec in (detector, unet)}
    monkeypatch.setitem(records.ARCHITECTURE_REVISIONS, "retinanet", records.ARCHITECTURE_REVISIONS["retinanet"] + 1)
    assert records.model_fingerprint(detector, settings, data) != before["retinanet_r1"]
    assert records.model_fingerprint(unet, settings, data) == before["unet_r1"]
