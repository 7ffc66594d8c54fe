"""Cascading randomization (Adebayo et al. 2018, as the paper ran it on InceptionV3).

The 12 states of PROTOCOL-NOTES.md: "original", "logits" (the classification head), then the
Inception blocks "mixed10", "mixed9", ..., "mixed1", each randomized on top of the previous ones
(mode="cascading") or alone (mode="independent"). mixed0 and the stem are never randomized.

A block is found from the graph: block k is every layer after mixed{k-1} up to and including
mixed{k} in the model's (topological) layer order; the head is every layer after mixed10.
A randomized layer gets fresh values from its own initializers (kernel, bias, BatchNorm gamma and
beta, and the moving mean / variance reset to their initial values), seeded from (seed, layer name),
so a block's random values are the same in both modes and for every call with the same seed.
"""
from __future__ import annotations

import zlib
from typing import Iterator

import keras

BLOCKS = tuple(f"mixed{k}" for k in range(10, 0, -1))   # top to bottom
STATES = ("original", "logits", *BLOCKS)
MODES = ("cascading", "independent")


def cascade_states(model: keras.Model, seed: int = 0, mode: str = "cascading"
                   ) -> Iterator[tuple[str, keras.Model]]:
    """Yield (state name, model) for the 12 states, on a copy of `model` (never modified).

    The same copy is yielded every time, re-randomized in place between states (one copy, and
    compiled functions built on it stay valid): use or copy each state before asking for the next.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    blocks = _block_layers(model)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    yield "original", copy
    for state in STATES[1:]:
        if mode == "independent":
            copy.set_weights(model.get_weights())
        for layer in blocks[state]:
            _reinitialize(copy.get_layer(layer.name), seed)
        yield state, copy


def _block_layers(model: keras.Model) -> dict[str, list[keras.layers.Layer]]:
    """State name -> the model's layers it randomizes (alone, not counting the blocks above)."""
    names = [layer.name for layer in model.layers]
    missing = [f"mixed{k}" for k in range(11) if f"mixed{k}" not in names]
    if missing:
        raise ValueError(f"cascading randomization is defined for InceptionV3 (blocks mixed0 ... mixed10); "
                         f"model {model.name!r} has no layer {missing[0]!r}")
    position = {name: names.index(name) for name in ("mixed0", *reversed(BLOCKS))}
    blocks = {"logits": model.layers[position["mixed10"] + 1:]}
    for k in range(1, 11):
        blocks[f"mixed{k}"] = model.layers[position[f"mixed{k - 1}"] + 1:position[f"mixed{k}"] + 1]
    return blocks


def _reinitialize(layer: keras.layers.Layer, seed: int) -> None:
    """Give each weight of the layer a fresh value from the layer's initializer for it."""
    for variable in layer.weights:
        initializer = getattr(layer, f"{variable.name}_initializer", None)
        if initializer is None:
            raise ValueError(f"layer {layer.name!r}: no initializer found for its weight {variable.name!r}")
        config = keras.initializers.serialize(initializer)
        if "seed" in config["config"]:   # random initializers: a seed of their own, for repeatability
            config["config"]["seed"] = zlib.crc32(f"{seed}/{layer.name}/{variable.name}".encode()) & 0x7FFFFFFF
        variable.assign(keras.initializers.deserialize(config)(variable.shape, variable.dtype))
