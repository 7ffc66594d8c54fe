"""The offline route for pretrained weights: `repro weights fetch` fills a folder in the layout that
runtime.weights_dir reads, and a machine without internet builds the paper's models from it."""
import numpy as np
import pytest

from repro.cli import main
from repro.experiments import load_experiment
from repro.models import weights
from repro.models.errors import WeightsUnavailableError


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENVIRONMENT, "")     # restored after each test
    return tmp_path / "weights"


def test_classifier_imagenet_weights_come_from_the_folder(folder, monkeypatch):
    """A stand-in for Keras' notop file (the same HDF5 layout keras.applications loads): the model
    built with weights "imagenet" holds its values, and nothing is downloaded."""
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    from repro.models.classifiers import build_classifier
    keras.utils.set_random_seed(7)
    source = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    path = folder / "keras" / weights.IMAGENET_FILES["inception_v3"][1]
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    from keras.src.utils import file_utils
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: pytest.fail("downloaded"))
    weights.use_weights_dir(folder)
    model = build_classifier("inception_v3", 75, weights="imagenet")
    def convolutions(m):
        return [layer.get_weights()[0] for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions(model)) == len(convolutions(source)) == 94
    for ours, theirs in zip(convolutions(model), convolutions(source)):
        np.testing.assert_array_equal(ours, theirs)


def test_a_folder_without_the_weights_says_how_to_fill_it(folder):
    from repro.models.classifiers import build_classifier
    weights.use_weights_dir(folder)
    with pytest.raises(WeightsUnavailableError, match=r"the ImageNet weights of densenet121 are not in the weights "
                                                      r"folder: .*densenet121_weights_tf_dim_ordering_tf_kernels_notop"
                                                      r".h5 is missing; on a machine with internet run `repro weights "
                                                      r"fetch --experiment NAME --to DIR`"):
        build_classifier("densenet121", 64, weights="imagenet")


def test_backbone_preset_comes_from_the_folder(folder):
    import keras_hub

    from repro.models.retinanet import _resnet
    small = dict(input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
                 stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block")
    saved = keras_hub.models.ResNetBackbone(**small, image_shape=(None, None, 3))
    saved.save_to_preset(str(folder / "keras_hub" / "resnet_50_imagenet"))
    weights.use_weights_dir(folder)
    loaded = _resnet("resnet_50_imagenet", (64, 64, 3))
    for a, b in zip(saved.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fetch_fills_the_folder_and_says_the_next_step(folder, monkeypatch, capsys):
    """Without internet here, the downloads are stood in for: what fetch asks Keras and keras-hub
    for, and where it puts their answers."""
    import keras
    import keras_hub
    asked = []

    def get_file(fname, origin, cache_dir, cache_subdir, file_hash):
        asked.append((fname, origin, file_hash))
        path = weights.Path(cache_dir) / cache_subdir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"h5")
        return str(path)

    small = dict(input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
                 stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block")
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setattr(keras_hub.models.ResNetBackbone, "from_preset",
                        lambda preset: keras_hub.models.ResNetBackbone(**small, image_shape=(None, None, 3)))
    assert main(["weights", "fetch", "--experiment", "paper", "--to", str(folder)]) == 0
    assert [a[0] for a in asked] == [weights.IMAGENET_FILES[a][1] for a in ("inception_v3", "densenet121")]
    assert asked[0][2] == "bcbd6486424b2319ff4ef7d526e38f63"       # the MD5 keras.applications checks
    assert (folder / "keras_hub" / "resnet_50_imagenet" / "config.json").is_file()
    out = capsys.readouterr().out
    assert out.strip().endswith(f"repro all --experiment paper --set runtime.weights_dir={folder.resolve()}")
    # the folder is complete for the paper: nothing missing before training
    paper = load_experiment("paper", overrides=[f"runtime.weights_dir={folder}"])
    assert weights.missing(paper) == []
    (folder / "keras" / weights.IMAGENET_FILES["densenet121"][1]).unlink()
    assert weights.missing(paper) == [
        f"runtime.weights_dir {folder}: no {weights.IMAGENET_FILES['densenet121'][1]} under keras/ (densenet121); "
        f"{weights.OFFLINE_ROUTE}"]


def test_fetch_for_an_experiment_without_pretrained_weights(capsys):
    assert main(["weights", "fetch", "--experiment", "rehearsal", "--to", "/nonexistent"]) == 0
    assert "no pretrained weights to fetch" in capsys.readouterr().out
