"""Figures 2-4 from planted scores and cells: panels, titles, labels, verdict markers, any subset."""
import numpy as np
import pandas as pd
import pytest

from repro.protocol import INCEPTION_STATES, KAGGLE_DATASETS, PAPER_METHODS
from repro.report.figures import Example, Examples, figure2, figure3, figure4, save_figure
from repro.statistics.cells import result_cells
from tests.helpers import main_choice, synthetic_scores


def run_of(methods=PAPER_METHODS):
    scores = pd.concat([synthetic_scores("siim", methods=methods), synthetic_scores("rsna", seed=1, methods=methods)])
    cells = pd.concat([result_cells(scores, KAGGLE_DATASETS[d], main_choice(d), methods=methods)
                       for d in ("siim", "rsna")]).assign(fragile=False)
    return scores, cells


def example(rows, methods=PAPER_METHODS):
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    return Example(image=rng.random((16, 16)), mask=mask,
                   rows={r: {m: rng.random((16, 16)) for m in methods} for r in rows},
                   scores={rows[0]: {m: 0.5 for m in methods}})


def examples(methods=PAPER_METHODS):
    one = Examples(utility=example(("InceptionV3",), methods), cascade=example(INCEPTION_STATES, methods),
                   similarity=example(("r1", "r2", "densenet"), methods))
    return {"siim": one, "rsna": one}


def draw(figure, methods=PAPER_METHODS, **kwargs):
    scores, cells = run_of(methods)
    return figure(scores, cells, examples(methods), datasets=KAGGLE_DATASETS,
                  choices={d: main_choice(d) for d in ("siim", "rsna")}, methods=methods, **kwargs)


def test_figure2_panels_titles_labels_and_verdicts(tmp_path):
    figure = draw(figure2)
    titled = [a for a in figure.axes if a.get_ylabel()]
    assert [a.get_title() for a in titled] == ["A  SIIM-ACR pneumothorax segmentation",
                                               "B  RSNA pneumonia detection"]
    assert all(a.get_ylabel() == "AUPRC (test set)" for a in titled)
    assert [t.get_text() for t in titled[0].get_xticklabels()] == ["AVG", "U-Net", *PAPER_METHODS]
    assert [t.get_text() for t in titled[1].get_xticklabels()][:2] == ["AVG", "RetinaNet"]
    marks = [t.get_text() for t in titled[0].texts]
    assert marks[PAPER_METHODS.index("XRAI")] == "‡" and marks[PAPER_METHODS.index("GRAD")] == "†"
    assert any(a.get_title(loc="left").startswith("C  Example") for a in figure.axes)
    assert any(a.get_title() == "XRAI\n0.50" for a in figure.axes)
    paths = save_figure(figure, tmp_path, "figure2")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_figure3_cascade_curves_baselines_and_strip():
    figure = draw(figure3)
    curves = [a for a in figure.axes if a.get_ylabel() == "SSIM to the original map"]
    assert len(curves) == 2
    assert [t.get_text() for t in curves[0].get_xticklabels()][:3] == ["Orig", "Logits", "10"]
    assert len(curves[0].get_lines()) == 2 * len(PAPER_METHODS)  # a curve and a dotted baseline per method
    assert {line.get_linestyle() for line in curves[0].get_lines()} == {"-", ":"}
    legend = [t.get_text() for t in curves[0].get_legend().get_texts()]
    assert "GRAD ‡" in legend and "XRAI †" in legend
    assert any(a.get_title(loc="left").startswith("B  Map degradation") for a in figure.axes)


@pytest.mark.parametrize("form", ["replicates", "per_image"])
def test_figure3_curve_is_the_cells_form(form):
    figure = draw(figure3, form=form)
    scores, _ = run_of()
    fully = scores[(scores.dataset == "siim") & (scores.test == "randomization") & (scores.group == "GRAD")
                   & (scores.state == "mixed1")]
    expected = fully.groupby("model" if form == "replicates" else "image")["score"].mean().mean()
    curve = [a for a in figure.axes if a.get_ylabel() == "SSIM to the original map"][0].get_lines()[0]
    assert curve.get_ydata()[-1] == pytest.approx(expected)


def test_figure4_boxes_low_line_and_a_subset():
    figure = draw(figure4)
    boxes = [a for a in figure.axes if a.get_ylabel() == "SSIM between maps"]
    assert [a.get_title()[:1] for a in boxes] == ["A", "B"]
    assert [t.get_text() for t in boxes[0].get_xticklabels()] == ["U-Net", *PAPER_METHODS]
    assert any(line.get_ydata()[0] == 0.5 and line.get_linestyle() == "--" for line in boxes[0].get_lines())
    assert any(a.get_title(loc="left").startswith("C  Example") for a in figure.axes)
    legend = [t.get_text() for t in boxes[0].get_legend().get_texts()]
    assert legend[:2] == ["repeatability (r1 vs r2)", "reproducibility (r1 vs densenet)"]   # the experiment's names
    assert "U-Net (unet_r1 vs unet_r2)" in legend
    subset = draw(figure4, methods=("GRAD", "IG"))
    boxes = [a for a in subset.axes if a.get_ylabel() == "SSIM between maps"]
    assert [t.get_text() for t in boxes[0].get_xticklabels()] == ["U-Net", "GRAD", "IG"]


def _extents(figure, artists):
    renderer = figure.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists if a.get_visible() and a.get_text()]


def _overlaps(first, second) -> list:
    return [(a, b) for a in first for b in second if a.overlaps(b)]


@pytest.mark.parametrize("make", [figure2, figure4], ids=["figure2", "figure4"])
def test_nothing_prints_over_anything_else(make):
    """The plots' axis labels, tick labels and legend stay clear of the example maps' titles; the
    verdict markers clear of the panel titles; figure 4's legend clear of the boxes."""
    figure = draw(make)
    figure.canvas.draw()
    plots = [a for a in figure.axes if a.get_ylabel()]
    examples = [a for a in figure.axes if a not in plots]
    below = [t for a in plots for t in [a.xaxis.label, *a.get_xticklabels()]]
    example_titles = [t for a in examples for t in (a.title, a._left_title)]
    assert not _overlaps(_extents(figure, below), _extents(figure, example_titles))
    for axis in plots:
        assert not _overlaps(_extents(figure, axis.texts), _extents(figure, [axis.title]))
        legend = axis.get_legend()
        if legend is not None:
            box = legend.get_window_extent(figure.canvas.get_renderer())
            assert not [p for p in axis.patches if p.get_window_extent().overlaps(box)]
            assert not _overlaps([box], _extents(figure, example_titles))
