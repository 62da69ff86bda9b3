"""Each plotting helper draws on an Agg figure and returns its axes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from falign.measure import metrics  # noqa: E402
from falign.kit import plots
from falign.kit.train import History  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _colours(ax) -> list[tuple]:
    return [tuple(mcolors.to_rgba(c.get_facecolor()[0])) for c in ax.collections]


def test_landmarks_visible_and_hidden_in_two_colours(ax):
    rng = np.random.default_rng(0)
    image = rng.random((3, 40, 50)).astype(np.float32)  # CHW float in [0, 1]
    points = rng.uniform(0, 40, (10, 2))
    visible = np.arange(10) < 7
    assert plots.landmarks(ax, image, points, visible) is ax
    assert ax.images[0].get_array().shape == (40, 50, 3)
    assert len(ax.collections) == 2
    assert [len(c.get_offsets()) for c in ax.collections] == [7, 3]
    colours = _colours(ax)
    assert colours[0] != colours[1]
    assert colours == [mcolors.to_rgba(plots.VISIBLE), mcolors.to_rgba(plots.HIDDEN)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["visible", "hidden"]


def test_landmarks_all_visible_no_legend_grey_uint8_hwc(ax):
    image = np.zeros((30, 20, 1), np.uint8)
    plots.landmarks(ax, image, np.ones((5, 2)))
    assert len(ax.collections) == 1 and ax.get_legend() is None
    shown = ax.images[0]
    assert shown.get_array().shape == (30, 20) and shown.get_cmap().name == "gray"
    assert shown.get_clim() == (0.0, 255.0)


@pytest.mark.parametrize("image, shape, top", [
    (torch.rand(1, 24, 24), (24, 24), 1.0),                   # torch grey CHW
    (np.full((24, 24), 200.0), (24, 24), 255.0),              # float 0-255 grey
    (np.zeros((24, 24, 3), np.uint8), (24, 24, 3), None),     # uint8 RGB HWC
    (np.full((3, 24, 24), 128.0, np.float32), (24, 24, 3), None),  # float 0-255 CHW
])
def test_display_image_layouts(image, shape, top):
    img, kw = plots.as_display_image(image)
    assert img.shape == shape
    if top is not None:
        assert kw["vmax"] == top
    elif img.dtype != np.uint8:
        assert img.max() <= 1.0
    with pytest.raises(ValueError):
        plots.as_display_image(np.zeros((2, 3, 4, 5)))


def test_ced_uses_metrics_and_names_the_normaliser(ax):
    rng = np.random.default_rng(1)
    errors = {"ours": rng.uniform(0, 0.1, 200), "baseline": rng.uniform(0.02, 0.12, 200)}
    assert plots.ced(ax, errors, "inter_ocular", max_error=0.08) is ax
    assert "inter-ocular" in ax.get_xlabel()
    assert len(ax.lines) == 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for label, (name, e) in zip(labels, errors.items()):
        assert label == f"{name} (AUC@0.08 = {metrics.auc(e, 0.08):.3f})"
    x, y = metrics.ced(errors["ours"], 0.08, 0.08 / 400)
    np.testing.assert_allclose(ax.lines[0].get_xydata(), np.c_[x, y])
    assert ax.get_xlim() == (0, 0.08) and ax.get_ylim() == (0, 1)


def test_ced_in_pixels(ax):
    plots.ced(ax, {"final block": np.array([1.0, 2.0, 3.0])}, "none", max_error=5.0, unit="px")
    assert "pixels" in ax.get_xlabel() and "none" in ax.get_xlabel()


def test_loss_curve_from_history_and_lists(ax):
    history = History([{"epoch": 1, "loss": 4.0}, {"epoch": 2, "loss": 2.0}, {"epoch": 3, "loss": 1.0}])
    assert plots.loss_curve(ax, history) is ax
    np.testing.assert_allclose(ax.lines[0].get_xydata(), [[1, 4], [2, 2], [3, 1]])
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"

    fig, ax2 = plt.subplots()
    plots.loss_curve(ax2, [3.0, 2.0, -1.0], label="train", validation=[3.5, 2.5, 2.0])
    assert len(ax2.lines) == 2 and ax2.get_yscale() == "linear"  # a negative loss: linear axis
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["train", "validation"]
    plt.close(fig)


def test_a_one_epoch_loss_curve_draws_its_fifths(ax):
    plots.loss_curve(ax, History([{"epoch": 1, "loss": 2.0, "loss_fifths": [5.0, 2.0, 1.0, 0.6, 0.5]}]))
    np.testing.assert_allclose(ax.lines[0].get_xydata(), [[0.2, 5], [0.4, 2], [0.6, 1], [0.8, 0.6], [1, 0.5]])


def test_loss_curve_reads_validation_from_records(ax):
    records = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "validation": [2.5, 1.5]})
    plots.loss_curve(ax, records)
    assert len(ax.lines) == 2


def test_paper_vs_ours_grouped_bars(ax):
    df = pd.DataFrame({"block": [1, 2, 3], "paper": [9.26, 6.77, np.nan], "ours": [10.0, 8.0, 7.0]})
    assert plots.paper_vs_ours(ax, df, "block", "paper", "ours", ylabel="NME (%)") is ax
    assert len(ax.patches) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["paper", "ours"]
    assert not ax.patches[2].get_visible()  # the paper's missing value leaves a gap
    heights = [p.get_height() for p in ax.patches if p.get_visible()]
    assert heights == pytest.approx([9.26, 6.77, 10.0, 8.0, 7.0])
    assert ax.get_ylabel() == "NME (%)"
