"""experiments/rehearsal.yaml is experiments/paper.yaml with only counts, epochs and sampling cut:
its resolved settings are diffed against the paper's, key by key, so the rehearsal cannot drift."""
import re

from repro.experiments import load_experiment, resolved_config

# Each key path (a regular expression over the flattened resolved config) that may differ, and why.
ALLOWED = {
    r"name|description|resolved\.experiment_hash|resolved\.run_dir": "another experiment",
    # the data: phantoms written in the releases' format instead of the downloads
    r"data\.source|data\.phantoms(\..*)?|data\.(siim|rsna)_root": "the data",
    # no downloads: random initial weights, the same architectures (the backbone is checked below)
    r"models\.(inception_v3|densenet121)\.weights|models\.retinanet\.backbone(\..*)?": "weights",
    r"train\.epochs|train\.recalibration\.batches": "epochs and counts",
    r"evaluation\.curve_images|resolved\.images\.intermediate_cascade_states|evaluation\.stability\.resamples": "counts",
    r"saliency\.overrides(\..*)?|resolved\.saliency_parameters\.\w+\.(nsamples|x_steps)": "sampling",
    r"runtime\..*": "how it runs (threads, determinism, processes), not what",
}


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def test_the_rehearsal_differs_from_the_paper_only_in_counts_epochs_and_sampling():
    paper = flatten(resolved_config(load_experiment("paper")))
    rehearsal = flatten(resolved_config(load_experiment("rehearsal")))
    forbidden = [k for k in differences(paper, rehearsal) if not any(re.fullmatch(p, k) for p in ALLOWED)]
    assert forbidden == [], f"rehearsal.yaml departs from paper.yaml in {forbidden}"
    # what shapes the work is the paper's
    for key in ("data.input_size", "data.split", "models.inception_v3.replicates.inception_r3",
                "models.unet.width", "models.retinanet.levels", "saliency.preset", "evaluation.ssim_images",
                "evaluation.utility_images", "train.batch_size", "resolved.cascade_states"):
        assert rehearsal[key] == paper[key], key
    assert len(rehearsal["resolved.cascade_states"]) == 12 and rehearsal["data.input_size"] == 320
    assert rehearsal["data.phantoms.format"] == "release" and rehearsal["data.phantoms.size"] == 1024


def test_the_check_would_catch_a_drift():
    paper = flatten(resolved_config(load_experiment("paper")))
    drifted = flatten(resolved_config(load_experiment("rehearsal", overrides=["data.input_size=128"])))
    assert [k for k in differences(paper, drifted) if not any(re.fullmatch(p, k) for p in ALLOWED)] == [
        "data.input_size"]


def test_the_rehearsal_retinanet_backbone_is_resnet_50_as_the_paper_preset():
    """keras_hub's resnet_50_imagenet preset has 23,561,152 parameters (its presets file); the
    rehearsal's backbone arguments build the same network without its weights."""
    import keras_hub
    backbone = load_experiment("rehearsal").settings.models.retinanet.backbone
    assert keras_hub.models.ResNetBackbone(**backbone, image_shape=(None, None, 3)).count_params() == 23_561_152
    from keras_hub.src.models.resnet.resnet_presets import backbone_presets
    assert backbone_presets["resnet_50_imagenet"]["metadata"]["params"] == 23_561_152
