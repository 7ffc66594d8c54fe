"""Cascading randomization (Adebayo et al. 2018, as the paper ran it on InceptionV3).

InceptionV3 has the paper's 12 states (repro.protocol.INCEPTION_STATES): "original", "logits" (the
classification head), then the Inception blocks "mixed10", "mixed9", ..., "mixed1", each
randomized on top of the previous ones (mode "cascading") or alone (mode "independent"). mixed0
and the stem are never randomized. Block k is every layer after mixed{k-1} up to and including
mixed{k} in the model's (topological) layer order; the head is every layer after mixed10.

Any other classifier (DenseNet121, a user's model) gets `groups` states below "logits": its
weighted layers below the head, split top-down into that many groups of consecutive layers
("block1" is the top group), so the test runs on any architecture.

A randomized layer gets fresh values from its own initializers (kernel, bias, BatchNorm gamma and
beta, and the moving mean / variance reset to their initial values), seeded from (seed, model
name, the layer's position in the model, weight), so a state's weights are the same in both modes, for every call, in every
process, and different between replicates.

A bottom-up state "up_to_<group>" (repro.protocol.bottom_up_state) randomizes the groups from the
lowest up to <group> instead (Binder et al. 2023's order; docs/sanity-checks.md), cumulative in
either mode: "up_to_logits" randomizes the same weights as the cascading mode's last state.

The API hands out weights, never a model re-randomized in place: `cascade_weights(model, state)`
returns the weight list of one state and `cascade_states(model)` yields (state, weights) pairs,
each a fresh list, so `dict(cascade_states(model))` really holds every state.
"""
from __future__ import annotations

import zlib
from typing import Iterator

import keras
import numpy as np

from repro.protocol import BOTTOM_UP_PREFIX, INCEPTION_BLOCKS, INCEPTION_STATES, LOGITS, ORIGINAL

MODES = ("cascading", "independent")


def states_of(model: keras.Model, *, groups: int = 10) -> tuple[str, ...]:
    """The states of the randomization test for this model, original first."""
    return tuple(_plan(model, groups))


def cascade_weights(model: keras.Model, state: str, *, seed: int = 0, mode: str = "cascading",
                    groups: int = 10, model_name: str | None = None,
                    fresh: dict | None = None, base: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The weights of `model` in `state`: its own weights (or `base`, a weight list of the same
    architecture in get_weights() order) with the state's layers (and, when cascading, every layer
    above) re-initialized. The model itself is not modified.

    fresh: a dict kept by the caller across the states of one model: the re-initialized values,
    which depend only on (seed, model name, layer, weight), are drawn once and reused (the
    cascade's lower states re-randomize everything above them again)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    plan = _plan(model, groups)
    names = list(plan)
    if state.startswith(BOTTOM_UP_PREFIX) and state[len(BOTTOM_UP_PREFIX):] in names[1:]:
        # Bottom-up (a sanity check after the paper): every group from the lowest up to this one,
        # cumulative whatever the mode; the fresh values are the top-down states' own.
        randomized = names[names.index(state[len(BOTTOM_UP_PREFIX):]):]
    elif state in plan:
        position = names.index(state)
        randomized = names[1:position + 1] if mode == "cascading" else names[position:position + 1][:position]
    else:
        raise ValueError(f"unknown state {state!r}; {model.name} has {', '.join(plan)}, and "
                         f"{BOTTOM_UP_PREFIX}<group> for each of {', '.join(names[1:])} (bottom-up)")
    layers = {layer for name in randomized for layer in plan[name]}
    fresh = {} if fresh is None else fresh
    kept = iter(base) if base is not None else None
    weights = []
    for index, layer in enumerate(model.layers):
        randomized = layer.name in layers
        for variable in layer.weights:
            own = next(kept) if kept is not None else None
            if randomized:
                key = (seed, model_name or model.name, index, variable.name)
                if key not in fresh:
                    fresh[key] = _fresh_value(layer, index, variable, seed, model_name or model.name)
                weights.append(fresh[key])
            else:
                weights.append(own if own is not None else np.array(variable.numpy()))
    return weights


def cascade_states(model: keras.Model, *, seed: int = 0, mode: str = "cascading", groups: int = 10,
                   model_name: str | None = None) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(state, weights) for every state of the test, original first; each a fresh weight list."""
    fresh: dict = {}
    for state in states_of(model, groups=groups):
        yield state, cascade_weights(model, state, seed=seed, mode=mode, groups=groups, model_name=model_name,
                                     fresh=fresh)


def _plan(model: keras.Model, groups: int) -> dict[str, list[str]]:
    """State name -> names of the layers that state randomizes (alone, not counting those above)."""
    names = [layer.name for layer in model.layers]
    if all(f"mixed{k}" in names for k in range(11)):
        position = {f"mixed{k}": names.index(f"mixed{k}") for k in range(11)}
        plan = {ORIGINAL: [], LOGITS: names[position["mixed10"] + 1:]}
        for k in range(10, 0, -1):
            plan[f"mixed{k}"] = names[position[f"mixed{k - 1}"] + 1:position[f"mixed{k}"] + 1]
        assert tuple(plan) == INCEPTION_STATES and tuple(plan)[2:] == INCEPTION_BLOCKS
        return plan
    return _grouped_plan(model, groups)


def _grouped_plan(model: keras.Model, groups: int) -> dict[str, list[str]]:
    """Any other classifier: the head (layers from the last weighted layer's block, i.e. every
    layer after the last 4-D output), then its weighted layers in `groups` groups, top down."""
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    last_4d = max((i for i, layer in enumerate(layers) if len(layer.output.shape) == 4), default=-1)
    head = [layer.name for layer in layers[last_4d + 1:]]
    body = [layer for layer in layers[:last_4d + 1] if layer.weights]
    if not body:
        raise ValueError(f"model {model.name!r} has no weighted layer below its head to randomize")
    groups = min(groups, len(body))
    # Consecutive groups of about equal size, counted from the top.
    bounds = np.linspace(0, len(body), groups + 1).round().astype(int)
    top_down = body[::-1]
    plan = {ORIGINAL: [], LOGITS: head}
    for g in range(groups):
        plan[f"block{g + 1}"] = [layer.name for layer in top_down[bounds[g]:bounds[g + 1]]]
    return plan


def _fresh_value(layer: keras.layers.Layer, index: int, variable, seed: int, model_name: str) -> np.ndarray:
    """A new value for one weight from the layer's initializer for it, seeded by the layer's
    position, not its name: Keras names layers "conv2d_94" or "conv2d_376" depending on what the
    process built before, and the same model must get the same state wherever it is loaded."""
    short = variable.name
    initializer = getattr(layer, f"{short}_initializer", None)
    if initializer is None:
        raise ValueError(f"layer {layer.name!r}: no initializer found for its weight {short!r}")
    config = keras.initializers.serialize(initializer)
    if "seed" in config["config"]:
        key = f"{seed}/{model_name}/{index}/{short}"
        config["config"]["seed"] = zlib.crc32(key.encode()) & 0x7FFFFFFF
    value = keras.initializers.deserialize(config)(variable.shape, variable.dtype)
    return np.array(keras.ops.convert_to_numpy(value))
