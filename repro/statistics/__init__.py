"""Statistics stage: the paper's mixed model with Tukey-adjusted contrasts (mixed.py), every cell
of Tables 2-4 from per-image scores (cells.py), how firm each verdict is (stability.py), and a
run's cells with their stability, reused while unchanged (run.py)."""
