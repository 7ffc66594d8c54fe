import numpy as np
import pandas as pd

from repro.report.figures import CASCADE_STATES, Example, figure2, figure3, figure4, save_figure
from repro.report.published import METHODS
from tests.test_tables import synthetic_scores


def scores_both():
    scores = pd.concat([synthetic_scores("siim"), synthetic_scores("rsna", seed=1)])
    rng = np.random.default_rng(0)
    cascade = [(d, "randomization", "ssim", m, s, f"img{i}", rng.random())
               for d in ("siim", "rsna") for m in METHODS for s in CASCADE_STATES[1:] for i in range(5)]
    return pd.concat([scores, pd.DataFrame(cascade, columns=scores.columns)])


def example(rows=("InceptionV3 r1",)):
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    return Example(image=rng.random((16, 16)), mask=mask,
                   rows={r: {m: rng.random((16, 16)) for m in METHODS} for r in rows},
                   scores={rows[0]: {m: 0.5 for m in METHODS}})


def test_figure2_panels_titles_labels(tmp_path):
    figure = figure2(scores_both(), {"siim": example(), "rsna": example()})
    titled = [a for a in figure.axes if a.get_ylabel()]
    assert [a.get_title() for a in titled] == ["A  SIIM-ACR pneumothorax segmentation",
                                               "B  RSNA pneumonia detection"]
    assert all(a.get_ylabel() == "AUPRC (test set)" and a.get_xlabel() == "Method" for a in titled)
    ticks = [t.get_text() for t in titled[0].get_xticklabels()]
    assert ticks == ["AVG", "U-Net", *METHODS]
    assert [t.get_text() for t in titled[1].get_xticklabels()][:2] == ["AVG", "RetinaNet"]
    assert any(a.get_title().startswith("C  Example") for a in figure.axes)
    assert any(a.get_title() == "XRAI 0.50" for a in figure.axes)
    paths = save_figure(figure, tmp_path, "figure2")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_figure3_cascade_curves_and_strip():
    strip = example(rows=CASCADE_STATES)
    figure = figure3(scores_both(), strip)
    curves = [a for a in figure.axes if a.get_ylabel() == "SSIM to the original map"]
    assert len(curves) == 2
    assert [t.get_text() for t in curves[0].get_xticklabels()][:3] == ["Orig", "Logits", "10"]
    assert len(curves[0].get_lines()) == 2 * len(METHODS)  # a curve and a dotted baseline per method
    assert {line.get_linestyle() for line in curves[0].get_lines()} == {"-", ":"}
    assert any(a.get_title().startswith("B  Map degradation") for a in figure.axes)


def test_figure4_boxes_and_low_line():
    figure = figure4(scores_both(), {"siim": example(("InceptionV3 r1", "InceptionV3 r2", "DenseNet121"))})
    boxes = [a for a in figure.axes if a.get_ylabel() == "SSIM between maps"]
    assert [a.get_title()[:1] for a in boxes] == ["A", "B"]
    assert [t.get_text() for t in boxes[0].get_xticklabels()] == ["U-Net", *METHODS]
    assert any(line.get_ydata()[0] == 0.5 and line.get_linestyle() == "--" for line in boxes[0].get_lines())
    assert any(a.get_title().startswith("C  Example") for a in figure.axes)
