"""Models stage: the paper's classifiers, the localization baselines, training, randomization.

Import from the modules (each loads only what it needs):
  classifiers.py  InceptionV3 / DenseNet121 with a two-logit head ("logits"), one flat graph whose
                  first layer is the architecture's input scaling; input float32 (N, S, S, 3) in [0, 255]
  files.py        a user's own trained Keras classifier, wrapped to the same contract
  unet.py, retinanet.py   the segmentation (SIIM) and detection (RSNA) baselines of the utility test
  localizers.py   per-pixel maps of those baselines (what the utility and SSIM tests score)
  batchnorm.py    recalibrate_batchnorm, run before every evaluation and before saving
  cascade.py      the states of the model randomization test, as weights
  records.py      what a model is made from (its fingerprint), whether a finished one can be reused
  jobs.py         the units of training work (TrainContext, train_group), in any process
  training.py     train_model: one model, resumably, tied to its settings and data
  resident.py     trained models held by a process for the saliency stage, one per architecture
"""
