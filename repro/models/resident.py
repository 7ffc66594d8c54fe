"""Trained models held by one process for the saliency stage.

A process that computes maps (the driver, or a Dask worker) asks for "model M of data set D in
randomization state S". Tracing the compiled gradient functions of an InceptionV3 costs seconds,
and they follow weights changed in place (repro.saliency.engine), so one working Keras model is
kept per architecture and input size and the weights of the requested model and state are loaded
into it: the three InceptionV3 replicates and their 36 randomization states share one traced
graph. Trained weights are read once per model and kept (a few at a time); a replicate of an
architecture already held is read from its .weights.npz, without building another model. The
re-initialized values of the cascade are drawn once per model and reused by all its states.
"""
from __future__ import annotations

import collections

import keras
import numpy as np

from repro.experiments import Cascade, ModelSpec
from repro.layout import RunLayout
from repro.models.cascade import cascade_weights
from repro.models.training import load_trained_model, load_trained_weights
from repro.protocol import ORIGINAL


class ResidentModels:
    def __init__(self, layout: RunLayout, models: dict[str, ModelSpec], cascade: Cascade,
                 sizes: dict[str, int], *, keep_weights: int = 4):
        self.layout, self.models, self.cascade, self.sizes = layout, models, cascade, sizes
        self.keep_weights = keep_weights
        self._working: dict[tuple, keras.Model] = {}
        self._loaded: dict[tuple, tuple[str, str, str]] = {}   # working key -> (dataset, model, state)
        self._weights: collections.OrderedDict[tuple, list[np.ndarray]] = collections.OrderedDict()
        self._fresh: tuple[tuple, dict] = ((), {})   # (dataset, model) -> its cascade's fresh values

    def in_state(self, dataset: str, name: str, state: str = ORIGINAL) -> keras.Model:
        """The working model of `name`'s architecture with the weights of `name` of `dataset` in
        `state` loaded into it. The working model is shared: the next call may load other weights
        into the same object, so use it before asking for another."""
        trained, key = self._trained(dataset, name)
        model = self._working[key]
        if self._loaded.get(key) != (dataset, name, state):
            if state == ORIGINAL:
                model.set_weights(trained)
            else:
                if self._fresh[0] != (dataset, name):   # one model's at a time: they are a model's size
                    self._fresh = ((dataset, name), {})
                model.set_weights(cascade_weights(model, state, seed=self.cascade.seed, mode=self.cascade.mode,
                                                  groups=self.cascade.groups, model_name=name,
                                                  fresh=self._fresh[1], base=trained))
            self._loaded[key] = (dataset, name, state)
        return model

    def _trained(self, dataset: str, name: str) -> tuple[list[np.ndarray], tuple]:
        """The model's trained weights and the key of the working model they load into."""
        cached = self._weights.get((dataset, name))
        if cached is not None:
            self._weights.move_to_end((dataset, name))
            return cached
        spec = self.models[name]
        key = ("file", str(spec.file)) if spec.file is not None else (spec.arch, self.sizes[dataset])
        model = self._working.get(key)
        if model is None or spec.file is not None:
            model = self._working[key] = load_trained_model(self.layout, dataset, spec, size=self.sizes[dataset])
            self._loaded[key] = (dataset, name, ORIGINAL)
            weights = [np.array(w) for w in model.get_weights()]
        else:
            weights = load_trained_weights(self.layout, dataset, spec)
        entry = (weights, key)
        self._weights[(dataset, name)] = entry
        while len(self._weights) > self.keep_weights:
            self._weights.popitem(last=False)
        return entry
