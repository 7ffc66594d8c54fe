"""Saliency maps on disk, one self-checking file per (model, state, method, image).

Layout under a data set's maps folder (repro.layout.RunLayout.maps_dir):
  <model>/<state>/<method>/<image_id>.npz    {"map": (H, W) float32, "meta": JSON text}
  <model>/<state>/<method>/settings.json     what those maps were made with (for people to read)
"meta" holds the fingerprint of everything the map was made from (the model's own fingerprint,
which covers its settings and data, the state, the method's parameters, the seed, ...) and the
SHA-256 of the map's bytes. A read verifies both, and the map's shape against the one its reader
expects (the model input's): a file that is unreadable, of another shape or whose bytes do not
match its checksum is damaged; one made from other settings is stale. Either
way it counts as missing, so the run computes it again (damaged files are named in a warning).
Every file is written atomically (temp file + os.replace): a killed run leaves whole maps only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from repro.io import atomic_path, json_object, read_json_object, write_json

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class MapMissingError(LookupError):
    """A map the caller needs is absent, stale or damaged (compute it first)."""


class MapStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, model: str, state: str, method: str, image_id: str) -> Path:
        return self._folder(model, state, method) / f"{_name(image_id, 'image id')}.npz"

    def write(self, model: str, state: str, method: str, image_id: str, smap: np.ndarray,
              fingerprint: str) -> Path:
        smap = np.ascontiguousarray(smap, dtype=np.float32)
        meta = json.dumps({"fingerprint": fingerprint, "sha256": _digest(smap), "shape": list(smap.shape)})
        path = self.path(model, state, method, image_id)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, map=smap, meta=np.array(meta))
        return path

    def read(self, model: str, state: str, method: str, image_id: str, fingerprint: str,
             *, shape: tuple[int, int]) -> np.ndarray | None:
        """The stored map if it is whole, of `shape` (the plan's: the model input's) and made from
        `fingerprint`, else None."""
        path = self.path(model, state, method, image_id)
        if not path.exists():
            return None
        try:
            stored = np.load(path, allow_pickle=False)
            if not isinstance(stored, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive of a map and its meta data")
            with stored:
                if set(stored.files) != {"map", "meta"}:
                    raise ValueError(f"holds {sorted(stored.files)}, not a map and its meta data")
                smap, meta = stored["map"], json_object(str(stored["meta"]), "its meta data")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("%s is damaged (%s): it will be computed again", path, _short(err))
            return None
        if meta.get("fingerprint") != fingerprint:
            log.info("%s was made from other settings or another model: it will be computed again", path)
            return None
        problem = None
        if smap.dtype != np.float32 or smap.ndim != 2 or list(smap.shape) != meta.get("shape"):
            problem = f"a {smap.dtype} array of shape {smap.shape}"
        elif smap.shape != tuple(shape):
            problem = f"shape {smap.shape}, expected {tuple(shape)}"
        elif _digest(smap) != meta.get("sha256"):
            problem = "its bytes do not match its checksum"
        if problem:
            log.warning("%s is damaged (%s): it will be computed again", path, problem)
            return None
        return smap

    def stack(self, model: str, state: str, method: str, image_ids, fingerprint: str,
              *, shape: tuple[int, int]) -> np.ndarray:
        """(N, H, W) maps of `image_ids`, each of `shape`; MapMissingError names the first one not
        in the store."""
        maps = []
        for image_id in image_ids:
            smap = self.read(model, state, method, image_id, fingerprint, shape=shape)
            if smap is None:
                raise MapMissingError(f"no valid map of {image_id} for {model} / {state} / {method} in "
                                      f"{self.root}: compute the maps first (repro maps)")
            maps.append(smap)
        return np.stack(maps)

    def missing(self, model: str, state: str, method: str, image_ids, fingerprint: str,
                *, shape: tuple[int, int]) -> list[str]:
        return [i for i in image_ids if self.read(model, state, method, i, fingerprint, shape=shape) is None]

    def record_settings(self, model: str, state: str, method: str, settings: dict) -> None:
        """settings.json beside the maps: what made them, for a person reading the folder."""
        path = self._folder(model, state, method) / "settings.json"
        settings = json.loads(json.dumps(settings, default=str))
        try:
            same = read_json_object(path) == settings
        except ValueError:   # absent or damaged: written afresh
            same = False
        if not same:
            write_json(path, settings)

    def _folder(self, model: str, state: str, method: str) -> Path:
        return self.root / _name(model, "model") / _name(state, "state") / _name(method, "method")


def _digest(smap: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(smap).tobytes()).hexdigest()


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:120] or type(error).__name__


def _name(value: str, what: str) -> str:
    """A path component: letters, digits, '.', '_', '-', not starting with '.' (no traversal)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match {_NAME.pattern}")
    return value
