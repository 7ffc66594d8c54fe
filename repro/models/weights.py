"""Pretrained weights: where the paper's ImageNet weights come from, and the route for a machine
without internet.

Online, Keras downloads the classifiers' ImageNet weights (keras.applications, include_top=False)
into ~/.keras/models/ on first use, and keras-hub the RetinaNet backbone preset into
~/.cache/kagglehub/. A GPU node without internet reads them from a folder filled elsewhere:

    repro weights fetch --experiment paper --to DIR            # on a machine with internet
    repro all --experiment paper --set runtime.weights_dir=DIR  # on the GPU node (DIR copied there)

DIR/keras/<file>.h5 are the files keras.applications downloads (checked by the MD5 Keras itself
checks); DIR/keras_hub/<preset>/ is keras-hub's own preset format (`save_to_preset`), which
`from_preset` reads from a folder. The processes that build models learn the folder from the
environment variable REPRO_WEIGHTS_DIR, which `use_weights_dir` sets from runtime.weights_dir in the
driver and in every training process (repro.models.jobs.TrainContext carries it to workers).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from repro.models.errors import WeightsUnavailableError

ENVIRONMENT = "REPRO_WEIGHTS_DIR"
_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# architecture -> (URL folder, file, MD5): keras.applications' own (inception_v3.py, densenet.py)
IMAGENET_FILES = {
    "inception_v3": (_KERAS_APPLICATIONS + "inception_v3/",
                     "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "bcbd6486424b2319ff4ef7d526e38f63"),
    "densenet121": (_KERAS_APPLICATIONS + "densenet/",
                    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "30ee3e1110167f948a6b9946edeeb738"),
}
OFFLINE_ROUTE = ("on a machine with internet run `repro weights fetch --experiment NAME --to DIR`, copy DIR "
                 "to this machine and add `--set runtime.weights_dir=DIR` (docs/real-data.md)")


def use_weights_dir(directory: str | os.PathLike | None) -> None:
    """Make this process (and the processes it starts) read pretrained weights from `directory`."""
    if directory is not None:
        os.environ[ENVIRONMENT] = str(Path(directory).expanduser().resolve())


def weights_dir() -> Path | None:
    value = os.environ.get(ENVIRONMENT)
    return Path(value) if value else None


def classifier_weights(arch: str, weights: str | None) -> str | None:
    """keras.applications' `weights` argument: "imagenet" (download) or, with a weights folder,
    the file in it."""
    if weights != "imagenet" or weights_dir() is None:
        return weights
    path = weights_dir() / "keras" / IMAGENET_FILES[arch][1]
    if not path.is_file():
        raise WeightsUnavailableError(f"the ImageNet weights of {arch} are not in the weights folder: {path} is "
                                      f"missing; {OFFLINE_ROUTE}")
    return str(path)


def backbone_preset(preset: str) -> str:
    """keras-hub's preset argument: the preset's name (download) or its folder in the weights folder."""
    if weights_dir() is None:
        return preset
    path = weights_dir() / "keras_hub" / preset
    if not (path / "config.json").is_file():
        raise WeightsUnavailableError(f"the keras_hub preset {preset} is not in the weights folder: {path} is "
                                      f"missing; {OFFLINE_ROUTE}")
    return str(path)


def download_failed(what: str, random_start: str, error: Exception) -> WeightsUnavailableError:
    """The one line a failed download gives: the offline route, or random weights (`random_start`)."""
    return WeightsUnavailableError(f"could not download {what}: {' '.join(str(error).split())}; {OFFLINE_ROUTE}; "
                                   f"or start from random weights ({random_start}, as experiments/rehearsal.yaml)")


def pretrained(experiment) -> dict[str, list[str]]:
    """The pretrained weights an experiment needs: {"keras": [architectures], "keras_hub": [presets]}."""
    models = experiment.settings.models
    keras = [arch for arch in IMAGENET_FILES if getattr(models, arch) is not None
             and getattr(models, arch).weights == "imagenet"]
    presets = [models.retinanet.backbone] if models.retinanet is not None and isinstance(
        models.retinanet.backbone, str) else []
    return {"keras": keras, "keras_hub": presets}


def missing(experiment) -> list[str]:
    """With runtime.weights_dir set, the weights it lacks, one line each (checked before training)."""
    directory = experiment.settings.runtime.weights_dir
    if directory is None:
        return []
    root = experiment.resolve(directory)
    needed = pretrained(experiment)
    lines = [f"runtime.weights_dir {root}: no {IMAGENET_FILES[arch][1]} under keras/ ({arch})"
             for arch in needed["keras"] if not (root / "keras" / IMAGENET_FILES[arch][1]).is_file()]
    lines += [f"runtime.weights_dir {root}: no keras_hub/{preset}/ (models.retinanet.backbone)"
              for preset in needed["keras_hub"] if not (root / "keras_hub" / preset / "config.json").is_file()]
    return [f"{line}; {OFFLINE_ROUTE}" for line in lines]


def fetch(experiment, to: str | os.PathLike) -> list[Path]:
    """Download (or copy from this machine's Keras cache) every pretrained weight the experiment
    needs into `to`, in the layout `use_weights_dir` reads."""
    import keras
    to = Path(to).expanduser().resolve()
    written = []
    for arch in pretrained(experiment)["keras"]:
        url, filename, md5 = IMAGENET_FILES[arch]
        try:
            written.append(Path(keras.utils.get_file(filename, url + filename, cache_dir=str(to), cache_subdir="keras",
                                                     file_hash=md5)))
        except Exception as err:   # Keras raises a bare Exception when a download fails
            raise download_failed(f"the ImageNet weights of {arch} from {url}{filename}",
                                  f"weights: null under models.{arch}", err) from err
    for preset in pretrained(experiment)["keras_hub"]:
        import keras_hub
        try:
            backbone = keras_hub.models.ResNetBackbone.from_preset(preset)
        except Exception as err:   # keras-hub and kagglehub raise various errors when offline
            raise download_failed(f"the keras_hub preset {preset}", "models.retinanet.backbone as a mapping",
                                  err) from err
        target = to / "keras_hub" / preset
        if target.exists():
            shutil.rmtree(target)
        backbone.save_to_preset(str(target))
        written.append(target)
    return written
