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


# --- the pieces the book's own chapters draw faces with ---------------------------------------------

def _face68():
    from falign.chapters import landmarks as chapter

    gt, _, _ = chapter.toy_faces(1, seed=0)
    return gt[0]


def test_face_and_box(ax):
    image = np.zeros((40, 50, 3), np.uint8)
    assert plots.face(ax, image, title="t", xlim=(5, 45), ylim=(35, 5)) is ax
    assert ax.get_xlim() == (5, 45) and ax.get_ylim() == (35, 5) and ax.get_title() == "t"
    plots.box(ax, torch.tensor([1.0, 2.0, 11.0, 22.0]), ls="--")
    (rect,) = ax.patches
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (1, 2, 10, 20)
    assert rect.get_linestyle() == "--" and not rect.get_fill()


def test_number_points_from_a_start_with_offsets(ax):
    points = np.array([[1.0, 2.0], [3.0, 4.0]])
    plots.number_points(ax, points, start=48, offsets=[[0, -11], [0, 5]], ha="center")
    assert [t.get_text() for t in ax.texts] == ["48", "49"]
    assert [t.xyann for t in ax.texts] == [(0, -11), (0, 5)]


def test_eye_centres_are_the_means_of_each_eyes_points():
    points = _face68()
    centres = plots.eye_centres(points, "ibug68")
    assert np.allclose(centres, [points[36:42].mean(0), points[42:48].mean(0)])


def test_scheme_points_mark_kept_averaged_and_normaliser_points(ax):
    plots.scheme_points(ax, _face68(), "five", numbered=True)
    sizes = [len(c.get_offsets()) for c in ax.collections]
    # context (68), kept (nose tip, mouth corners), averaged (eye centres), eye centres (inter-pupil)
    assert sizes == [68, 3, 2, 2] and len(ax.texts) == 5
    ax.clear()
    plots.scheme_points(ax, _face68(), "ibug68")
    assert [len(c.get_offsets()) for c in ax.collections] == [68, 68, 0, 2, 2]


def test_normalisers_and_flip_pairs(ax):
    points = _face68()
    plots.normalisers(ax, points)
    assert len(ax.patches) == 1 and len(ax.get_legend().get_texts()) == 3
    ax.clear()
    plots.flip_pairs(ax, points)
    from falign.measure import landmarks

    perm = landmarks.get_scheme("ibug68").flip_perm
    own = int((perm == np.arange(68)).sum())
    assert [len(c.get_offsets()) for c in ax.collections] == [68 - own, own]
    assert len(ax.lines) == (68 - own) // 2


def test_per_landmark_bars_and_visible_means(ax):
    errors = np.tile(np.arange(68) / 100, (3, 1))
    visible = np.ones((3, 68), bool)
    visible[:, 0] = False
    plots.per_landmark(ax, errors, visible)
    assert len(ax.patches) == 68 and np.isclose(ax.patches[5].get_height(), 5.0)
    dots = ax.lines[0].get_ydata()
    assert np.isnan(dots[0]) and np.isclose(dots[5], 5.0)
    assert [t.get_text() for t in ax.texts] == [name for _, name in plots.IBUG68_REGIONS]


def test_ced_area_reads_auc_and_failure_from_metrics(ax):
    errors = np.array([0.01, 0.03, 0.05, 0.2])
    plots.ced_area(ax, errors, 0.08)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[1] == f"AUC@0.08 = {metrics.auc(errors, 0.08):.3f}"
    assert labels[2] == f"failure rate@0.08 = {metrics.failure_rate(errors, 0.08):.1%}"


def test_crops_grid_draws_every_split_as_a_row():
    class Split:  # what crops_grid reads of a falign.kit.crops.Crops
        images, landmarks = torch.zeros(10, 3, 16, 16, dtype=torch.uint8), torch.full((10, 5, 2), 8.0)

        def __len__(self):
            return 10

    split = Split()
    fig = plots.crops_grid({"train": split, "test": split}, ["train", "test"], shown=3)
    axes = fig.axes
    assert len(axes) == 6 and axes[0].get_title(loc="left") == "train" and axes[3].get_title(loc="left") == "test"
    plt.close(fig)
