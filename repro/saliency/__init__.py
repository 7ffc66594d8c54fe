"""Saliency maps: the paper's eight methods and six more, through PAIR saliency, batched for speed.

    from repro.saliency import saliency_maps, load_preset, is_degenerate
    maps = saliency_maps(model, images, "SIG", **load_preset("authors_code")["SIG"])

Modules, in the order a map is made:
  params.py       method parameters, checks and the named presets (presets.yaml, sources in
                  PARAMETERS.md); imports no TensorFlow, so configs are checked before it starts
  api.py          saliency_maps and the method registry
  engine.py       compiled gradients of the target logit; PAIR's call_model_function
  blocks.py       rows of model inputs per attribution, streamed through the engine in batches
  gradients.py    GRAD, GBP, SG          integrated.py   IG, SIG, baselines
  gradcam.py      GCAM, GGCAM            xrai.py         XRAI    segments.py  XRAI segment cache
  extra.py        GIG, BIG, OCC (PAIR), GCAMPP, SCAM, LCAM (tf-keras-vis): beyond the paper
  pairpath.py     backend="pair": the eight methods through PAIR's classes, image by image
  smoothing.py    SmoothGrad noise per (seed, image)
  postprocessing.py  raw attributions -> [0, 1] maps as the authors did; degenerate maps -> NaN
  store.py        MapStore: maps on disk, checksummed, tied to what made them
"""
from .params import PRESETS, load_preset, method_parameters, resolve_params

# The rest imports TensorFlow: loaded on first use, so that `repro.saliency.params` (and the
# experiment loader that checks parameters with it) starts in a fraction of a second.
_LAZY = {"METHODS": "api", "saliency_maps": "api", "is_degenerate": "postprocessing",
         "postprocess": "postprocessing", "SegmentCache": "segments"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "PRESETS", "SegmentCache", "is_degenerate", "load_preset",
           "method_parameters", "postprocess", "resolve_params", "saliency_maps"]
