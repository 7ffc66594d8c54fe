"""Evaluation stage: the four trustworthiness tests (utility, cascading randomization,
repeatability, reproducibility) and the harness controls EDGE and ORACLE."""
