"""Reproduction kit for Arun et al. 2021 (Radiology: AI), saliency-map trustworthiness.

Laid out by stage: data -> models -> saliency -> evaluation -> statistics -> reports.
"""
__version__ = "0.1.0"
