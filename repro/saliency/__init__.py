"""Saliency maps of the paper's eight methods, through PAIR saliency, batched for speed.

    from repro.saliency import saliency_maps, load_preset, is_degenerate
    maps = saliency_maps(model, images, "SIG", **load_preset("authors_code")["SIG"])

Modules, in the order a map is made:
  api.py          saliency_maps, METHODS, the method registry, parameter checks
  presets.py      load_preset: the "paper" and "authors_code" parameters (presets.yaml,
                  sources in PARAMETERS.md)
  engine.py       compiled gradients of the target logit; PAIR's call_model_function
  blocks.py       rows of model inputs per attribution, streamed through the engine in batches
  gradients.py    GRAD, GBP, SG          integrated.py   IG, SIG, baselines
  gradcam.py      GCAM, GGCAM            xrai.py         XRAI    segments.py  XRAI segment cache
  smoothing.py    SmoothGrad noise per (seed, image)
  postprocess.py  raw attributions -> [0, 1] maps as the authors did; degenerate maps
  store.py        MapStore and compute_missing: maps on disk, resumable
"""
from .api import METHODS, method_parameters, resolve_params, saliency_maps
from .postprocess import is_degenerate, postprocess
from .presets import PRESETS, load_preset
from .segments import SegmentCache

__all__ = ["METHODS", "PRESETS", "SegmentCache", "is_degenerate", "load_preset",
           "method_parameters", "postprocess", "resolve_params", "saliency_maps"]
