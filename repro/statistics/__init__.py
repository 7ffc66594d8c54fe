"""Statistics stage: the paper's mixed model with Tukey-adjusted contrasts (mixed.py), every cell
of Tables 2-4 from per-image scores (cells.py), and how firm each verdict is (stability.py)."""
