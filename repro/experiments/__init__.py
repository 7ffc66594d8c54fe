"""Experiments: the schema of an experiment file (schema.py), loading and validating one with
errors that name the key path (loading.py), and the loaded Experiment with what its settings imply,
computed once (experiment.py). The rest of the package imports these names from here.
"""
from repro.experiments.experiment import (CLASSIFIERS, LOCALIZERS, RUN_ONLY_SETTINGS, Experiment, ModelSpec, Roles,
                                          resolved_config, resolved_parameters, results_fingerprint_of,
                                          results_settings, settings_changes)
from repro.experiments.loading import ExperimentError, list_experiments, load_experiment
from repro.experiments.schema import (EXPERIMENTS_DIR, NAME, REPOSITORY, Augment, Cascade, Classifier, Data,
                                      Evaluation, ExperimentSettings, FileModel, FolderData, Models, Phantoms,
                                      Recalibration, Restart, RetinaNet, Runtime, Saliency, SanityChecks, SplitFractions,
                                      Stability, Train, TrainingRuntime, TrainOverrides, TrainSettings, UNet)

__all__ = ["CLASSIFIERS", "EXPERIMENTS_DIR", "LOCALIZERS", "NAME", "REPOSITORY", "RUN_ONLY_SETTINGS", "Augment",
           "Cascade", "Classifier", "Data", "Evaluation", "Experiment", "ExperimentError", "ExperimentSettings",
           "FileModel", "FolderData", "ModelSpec", "Models", "Phantoms", "Recalibration", "Restart", "RetinaNet",
           "Roles", "Runtime", "Saliency", "SanityChecks", "SplitFractions", "Stability", "Train", "TrainOverrides", "TrainSettings",
           "TrainingRuntime", "UNet", "list_experiments", "load_experiment", "resolved_config", "resolved_parameters",
           "results_fingerprint_of", "results_settings", "settings_changes"]
