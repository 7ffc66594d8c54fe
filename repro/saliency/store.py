"""Saliency maps on disk, one file per (model state, method, image), computed only once.

Layout under the run directory `root`:
  <state>/<method>/<image_id>.npy   one post-processed map, (H, W) float32 exactly as
                                    saliency_maps returned it (a cached map equals a fresh one)
  <state>/<method>/settings.json    the parameters, target, seed and input range of those maps
  xrai-segments/<image hash>.npy    XRAI's segments, shared by every state (segments.py)
Every file is written atomically (temp file + os.replace): a killed run leaves whole maps only,
and `compute_missing` continues where it stopped.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from repro.io import atomic_path, write_json

from .api import DEFAULT_INPUT_RANGE, resolve_params, saliency_maps
from .segments import SegmentCache

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class MapStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.segments = SegmentCache(self.root / "xrai-segments")

    def has(self, state: str, method: str, image_id: str) -> bool:
        return self._path(state, method, image_id).exists()

    def get(self, state: str, method: str, image_id: str) -> np.ndarray:
        return np.load(self._path(state, method, image_id))

    def put(self, state: str, method: str, image_id: str, smap: np.ndarray) -> None:
        with atomic_path(self._path(state, method, image_id)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.asarray(smap, dtype=np.float32))

    def check_settings(self, state: str, method: str, settings: dict) -> None:
        """Record the settings of a (state, method) folder, or refuse ones that differ from it."""
        path = self._folder(state, method) / "settings.json"
        settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
        if not path.exists():
            write_json(path, settings)
        elif json.loads(path.read_text()) != settings:
            raise ValueError(f"{path} holds maps made with {path.read_text().strip()}, "
                             f"not {settings}: use another run directory or state name")

    def _folder(self, state: str, method: str) -> Path:
        return self.root / _name(state, "state") / _name(method, "method")

    def _path(self, state: str, method: str, image_id: str) -> Path:
        return self._folder(state, method) / f"{_name(image_id, 'image_id')}.npy"


def compute_missing(store: MapStore, model: keras.Model, state: str, method: str,
                    images: np.ndarray, image_ids: list[str], params: dict, *,
                    progress: bool = True, target: int | str = "predicted", seed: int = 0,
                    input_range: tuple[float, float] = DEFAULT_INPUT_RANGE,
                    batch_size: int | None = None, chunk_size: int = 16) -> int:
    """Compute and store the maps of the images not yet stored; return how many were computed.

    params: the method's parameters, e.g. load_preset("authors_code")[method] (missing ones take
    the "paper" preset's value). images[i] is the model-ready image of image_ids[i]; it may be a
    memory map, only the missing images are read. Maps are stored `chunk_size` images at a time,
    so an interrupted run loses at most one chunk.
    """
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
    params = resolve_params(method, **params)
    store.check_settings(state, method, {
        "params": params, "target": target if target == "predicted" else int(target),
        "seed": int(seed), "input_range": [float(v) for v in input_range]})
    todo = [i for i, image_id in enumerate(image_ids) if not store.has(state, method, image_id)]
    with tqdm(total=len(image_ids), initial=len(image_ids) - len(todo), disable=not progress,
              desc=f"{state} {method}", unit="map") as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            maps = saliency_maps(model, images[chunk], method, target=target, seed=seed,
                                 input_range=input_range, batch_size=batch_size,
                                 segment_cache=store.segments, **params)
            for i, smap in zip(chunk, maps):
                store.put(state, method, image_ids[i], smap)
            bar.update(len(chunk))
    return len(todo)


def _name(value: str, what: str) -> str:
    """A path component: letters, digits, '.', '_', '-', not starting with '.' (no traversal)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match {_NAME.pattern}")
    return value
