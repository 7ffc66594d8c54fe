"""Map store: resumable computation, settings guard, safe names, XRAI segments reused."""
from __future__ import annotations

import numpy as np
import pytest

import repro.saliency.segments as segments_module
import repro.saliency.store as store_module
from repro.saliency import SegmentCache, load_preset, saliency_maps
from repro.saliency.store import MapStore, compute_missing
from tests.test_saliency_models import cnn, images

SG = {**load_preset("paper")["SG"], "nsamples": 3}


@pytest.fixture(scope="module")
def model():
    return cnn(seed=2)


def _ids(n):
    return [f"img{i}" for i in range(n)]


def test_interrupted_run_resumes_and_equals_an_uninterrupted_one(tmp_path, model, monkeypatch):
    x, ids = images(7, seed=20), _ids(7)
    assert compute_missing(MapStore(tmp_path / "whole"), model, "original", "SG", x, ids, SG,
                           progress=False, chunk_size=3) == 7

    calls = []

    def failing_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return saliency_maps(*args, **kwargs)

    monkeypatch.setattr(store_module, "saliency_maps", failing_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        compute_missing(MapStore(tmp_path / "parts"), model, "original", "SG", x, ids, SG,
                        progress=False, chunk_size=3)
    monkeypatch.undo()

    resumed = MapStore(tmp_path / "parts")  # a new process would build a new store object
    assert [resumed.has("original", "SG", i) for i in ids] == [True] * 3 + [False] * 4
    assert compute_missing(resumed, model, "original", "SG", x, ids, SG, progress=False,
                           chunk_size=3) == 4
    assert compute_missing(resumed, model, "original", "SG", x, ids, SG, progress=False) == 0
    whole = MapStore(tmp_path / "whole")
    for image_id in ids:
        stored = resumed.get("original", "SG", image_id)
        assert stored.dtype == np.float32 and stored.shape == (32, 32)
        np.testing.assert_allclose(stored, whole.get("original", "SG", image_id), atol=1e-5)


def test_store_refuses_maps_made_with_other_settings(tmp_path, model):
    store, x = MapStore(tmp_path), images(2)
    compute_missing(store, model, "original", "SG", x, _ids(2), SG, progress=False)
    with pytest.raises(ValueError, match="holds maps made with"):
        compute_missing(store, model, "original", "SG", x, _ids(2), {**SG, "nsamples": 4},
                        progress=False)
    with pytest.raises(ValueError, match="holds maps made with"):
        compute_missing(store, model, "original", "SG", x, _ids(2), SG, seed=1, progress=False)


def test_store_writes_whole_files_under_safe_names(tmp_path):
    store = MapStore(tmp_path)
    store.put("mixed10", "GRAD", "1.2.276.0.7230010", np.ones((4, 4)))
    assert store.get("mixed10", "GRAD", "1.2.276.0.7230010").dtype == np.float32
    assert [p.name for p in (tmp_path / "mixed10" / "GRAD").iterdir()] == ["1.2.276.0.7230010.npy"]
    for bad in ("../up", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="must match"):
            store.has("original", "GRAD", bad)


def test_xrai_segments_computed_once_per_image_then_reused(tmp_path, model, monkeypatch):
    calls = []
    segment = segments_module._get_segments_felzenszwalb
    monkeypatch.setattr(segments_module, "_get_segments_felzenszwalb",
                        lambda image: calls.append(1) or segment(image))
    x, params = images(2, seed=21), {**load_preset("paper")["XRAI"], "x_steps": 4}
    store = MapStore(tmp_path)
    compute_missing(store, model, "original", "XRAI", x, _ids(2), params, progress=False)
    compute_missing(store, cnn(seed=3), "logits", "XRAI", x, _ids(2), params, progress=False)
    assert len(calls) == 2  # two images; the second model state reused them from memory
    compute_missing(MapStore(tmp_path), model, "other", "XRAI", x, _ids(2), params,
                    progress=False)
    assert len(calls) == 2  # a new store object (a new run) read them from disk
    np.testing.assert_array_equal(store.get("other", "XRAI", "img1"),
                                  store.get("original", "XRAI", "img1"))
    fresh = saliency_maps(model, x, "XRAI", segment_cache=SegmentCache(), **params)
    np.testing.assert_array_equal(fresh[1], store.get("original", "XRAI", "img1"))
