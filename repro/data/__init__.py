"""Data stage: DICOM decoding, the SIIM-ACR and RSNA Kaggle layouts, splits, the array cache and
the synthetic chest-radiograph phantoms."""
