"""Small pictures for the HTML report: radiographs with their findings outlined and saliency maps in
the figures' colour map, as JPEG bytes. The same array always gives the same bytes (Pillow's
encoder with fixed settings and no metadata), so a rerun rewrites the report unchanged.
"""
from __future__ import annotations

import io

import matplotlib
import numpy as np
from PIL import Image

MAP_SIZE = 96          # pixels of a map thumbnail
RADIOGRAPH_SIZE = 160  # pixels of a radiograph thumbnail
OUTLINE = (255, 221, 0)     # the findings' outline: the figures' yellow
DEGENERATE = (136, 136, 136)  # a degenerate (all NaN) map: plain grey, its caption says why
_INFERNO = (matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def map_thumbnail(smap: np.ndarray, size: int = MAP_SIZE) -> bytes:
    """A saliency map in [0, 1] (NaN where degenerate) in the inferno colour map, as the figures
    draw it (0 black, 1 pale yellow)."""
    smap = np.asarray(smap, dtype=np.float32)
    if np.isnan(smap).all():
        return _jpeg(np.full((size, size, 3), DEGENERATE, np.uint8), sharp=False)
    scaled = Image.fromarray(np.nan_to_num(smap, nan=0.0)).resize((size, size), Image.BILINEAR)
    levels = np.round(np.clip(np.asarray(scaled), 0.0, 1.0) * 255).astype(np.uint8)
    return _jpeg(_INFERNO[levels], sharp=False)


def radiograph_thumbnail(image: np.ndarray, mask: np.ndarray | None, size: int = RADIOGRAPH_SIZE) -> bytes:
    """A grey image in [0, 255] with its mask (or box mask) outlined in yellow."""
    grey = Image.fromarray(np.clip(np.asarray(image, np.float32), 0, 255).round().astype(np.uint8))
    pixels = np.repeat(np.asarray(grey.resize((size, size), Image.BILINEAR))[..., None], 3, axis=-1)
    if mask is not None and np.any(mask):
        small = np.asarray(Image.fromarray(np.asarray(mask, bool)).resize((size, size), Image.NEAREST))
        pixels[outline(small)] = OUTLINE
    return _jpeg(pixels, sharp=True)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean mask that touch a pixel outside it (4-neighbourhood)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def _jpeg(pixels: np.ndarray, *, sharp: bool) -> bytes:
    """JPEG bytes; `sharp` keeps every pixel's colour (no chroma subsampling, for the radiographs'
    thin outline), else the colour is halved as usual (a map: half the bytes, the same look)."""
    buffer = io.BytesIO()
    quality, subsampling = (88, 0) if sharp else (80, 2)
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality,
                                                       subsampling=subsampling, optimize=False)
    return buffer.getvalue()
