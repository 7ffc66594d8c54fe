"""Map store: maps tied to what made them, checked on read, damaged and stale files recomputed;
safe names; XRAI segments computed once per image and reused."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from repro.saliency.store import MapMissingError, MapStore

KEY = ("inception_r1", "original", "SG")
SHAPE = (8, 8)     # what the plan expects of every map here


def written(tmp_path, n=3):
    store = MapStore(tmp_path)
    maps = np.random.default_rng(0).random((n, 8, 8)).astype(np.float32)
    for i, smap in enumerate(maps):
        store.write(*KEY, f"img{i}", smap, "fp-1")
    return store, maps


def test_round_trip_exactly(tmp_path):
    store, maps = written(tmp_path)
    np.testing.assert_array_equal(store.stack(*KEY, ["img0", "img1", "img2"], "fp-1", shape=SHAPE), maps)
    nan_map = np.full((8, 8), np.nan, np.float32)           # degenerate maps are stored as they are
    store.write(*KEY, "img9", nan_map, "fp-1")
    assert np.isnan(store.read(*KEY, "img9", "fp-1", shape=SHAPE)).all()
    assert store.missing(*KEY, ["img0", "img5"], "fp-1", shape=SHAPE) == ["img5"]


def test_stale_maps_count_as_missing(tmp_path):
    store, _ = written(tmp_path)
    assert store.read(*KEY, "img0", "fp-2", shape=SHAPE) is None      # made from other settings or another model
    assert store.missing(*KEY, ["img0", "img1"], "fp-2", shape=SHAPE) == ["img0", "img1"]
    with pytest.raises(MapMissingError, match="img0"):
        store.stack(*KEY, ["img0"], "fp-2", shape=SHAPE)


@pytest.mark.parametrize("damage", ["empty", "truncated", "foreign npy", "random values", "wrong shape", "null meta",
                                    "meta not JSON", "another shape, checksum and all"])
def test_damaged_maps_are_named_and_count_as_missing(tmp_path, damage, caplog):
    store, maps = written(tmp_path)
    path = store.path(*KEY, "img1")
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "foreign npy":
        np.save(open(path, "wb"), maps[1])
    elif damage == "random values":       # a plausible map of the right shape, with our own meta data
        with np.load(path) as stored:
            meta = stored["meta"]
        np.savez(open(path, "wb"), map=np.random.default_rng(5).random((8, 8)).astype(np.float32), meta=meta)
    elif damage == "wrong shape":
        with np.load(path) as stored:
            meta = stored["meta"]
        np.savez(open(path, "wb"), map=np.zeros((4, 4), np.float32), meta=meta)
    elif damage in ("null meta", "meta not JSON"):
        np.savez(open(path, "wb"), map=maps[1], meta=np.array("null" if damage == "null meta" else "{half"))
    else:     # a whole map of another size with its own meta data: only the plan's shape tells
        MapStore(tmp_path).write(*KEY, "img1", np.zeros((4, 4), np.float32), "fp-1")
    with caplog.at_level(logging.WARNING):
        assert store.read(*KEY, "img1", "fp-1", shape=SHAPE) is None
        assert store.missing(*KEY, ["img0", "img1", "img2"], "fp-1", shape=SHAPE) == ["img1"]   # computed again
        with pytest.raises(MapMissingError, match="no valid map of img1"):
            store.stack(*KEY, ["img0", "img1"], "fp-1", shape=SHAPE)
    assert str(path) in caplog.text and "damaged" in caplog.text
    assert store.read(*KEY, "img0", "fp-1", shape=SHAPE) is not None


def test_a_damaged_settings_record_is_written_again(tmp_path):
    store = MapStore(tmp_path)
    store.record_settings(*KEY, {"nsamples": 2})
    path = tmp_path.joinpath(*KEY, "settings.json")
    for damage in ("null", "{half", ""):
        path.write_text(damage)
        store.record_settings(*KEY, {"nsamples": 2})
        assert json.loads(path.read_text()) == {"nsamples": 2}


def test_names_are_safe(tmp_path):
    store = MapStore(tmp_path)
    store.write("m", "mixed10", "GRAD", "1.2.276.0.7230010", np.ones((4, 4)), "fp")
    assert store.path("m", "mixed10", "GRAD", "1.2.276.0.7230010").name == "1.2.276.0.7230010.npz"
    for bad in ("../up", "a/b", ".hidden", "", "has space"):
        with pytest.raises(ValueError, match="must match"):
            store.path("m", "original", "GRAD", bad)
    assert not list(tmp_path.rglob("*.tmp"))                    # nothing half-written left behind


def test_xrai_segments_computed_once_per_image_then_reused(tmp_path, monkeypatch):
    import repro.saliency.segments as segments_module
    from repro.saliency import SegmentCache
    calls = []
    segment = segments_module._get_segments_felzenszwalb
    monkeypatch.setattr(segments_module, "_get_segments_felzenszwalb",
                        lambda image: calls.append(1) or segment(image))
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    cache = SegmentCache(tmp_path)
    first = [cache.get(image) for image in images]
    [cache.get(image) for image in images]
    assert len(calls) == 2                                    # the second model state reused them from memory
    again = [SegmentCache(tmp_path).get(image) for image in images]
    assert len(calls) == 2                                    # a new cache (a new process) read them from disk
    for a, b in zip(first, again):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("damage", ["truncated", "another image's segments"])
def test_damaged_xrai_segments_are_named_and_made_again(tmp_path, damage, caplog):
    from repro.saliency import SegmentCache
    image = np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    segments = SegmentCache(tmp_path).get(image)
    path = next(tmp_path.iterdir())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    else:
        np.save(open(path, "wb"), np.zeros((3, 16, 2), np.uint8))
    with caplog.at_level(logging.WARNING):
        again = SegmentCache(tmp_path).get(image)
    assert f"{path} is damaged" in caplog.text and "segmenting the image again" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(segments, again)) and len(again) == len(segments)
    assert all(np.array_equal(a, b) for a, b in zip(segments, SegmentCache(tmp_path).get(image)))   # rewritten whole
