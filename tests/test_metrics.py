"""Metrics against independent, deliberately plain re-implementations (explicit loops)."""

import math
import warnings

import numpy as np
import pytest
import torch

from falign.measure.metrics import ExcludedFacesWarning, auc, ced, failure_rate, landmark_boxes, mape, mean_error, nme, normaliser, per_landmark_errors, summary

TOL = dict(rtol=1e-6, atol=1e-9)


def _faces(n_points=68, n_images=7, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(20, 180, (n_images, n_points, 2))
    pred = gt + rng.normal(0, 4, gt.shape)
    boxes = np.concatenate([gt.min(axis=1) - 5, gt.max(axis=1) + 5], axis=1)
    visible = rng.random((n_images, n_points)) > 0.3
    return pred, gt, boxes, visible


def _loop_normaliser(gt_face, norm, box):
    """One face's normaliser, written out by hand for iBUG 68."""
    if norm == "inter-ocular":
        return math.dist(gt_face[36], gt_face[45])
    if norm == "inter-pupil":
        left = [sum(gt_face[i][c] for i in range(36, 42)) / 6 for c in (0, 1)]
        right = [sum(gt_face[i][c] for i in range(42, 48)) / 6 for c in (0, 1)]
        return math.dist(left, right)
    x1, y1, x2, y2 = box
    return {"box": math.sqrt((x2 - x1) * (y2 - y1)), "box-width": x2 - x1,
            "box-diagonal": math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2), "none": 1.0}[norm]


def _loop_nme(pred, gt, norm, boxes, visible=None):
    out = []
    for k in range(len(gt)):
        total, count = 0.0, 0
        for i in range(gt.shape[1]):
            if visible is None or visible[k][i]:
                total += math.dist(pred[k][i], gt[k][i])
                count += 1
        out.append(total / count / _loop_normaliser(gt[k], norm, boxes[k]) if count else None)
    return out


NORMS = ["inter-ocular", "inter-pupil", "box", "box-width", "box-diagonal", "none"]


@pytest.mark.parametrize("norm", NORMS)
def test_nme_matches_loops(norm):
    pred, gt, boxes, visible = _faces()
    np.testing.assert_allclose(nme(pred, gt, norm=norm, scheme="ibug68", boxes=boxes),
                               _loop_nme(pred, gt, norm, boxes), **TOL)
    np.testing.assert_allclose(nme(pred, gt, norm=norm, scheme="ibug68", boxes=boxes,
                                   visible=visible),
                               _loop_nme(pred, gt, norm, boxes, visible), **TOL)


@pytest.mark.parametrize("norm", NORMS)
def test_per_landmark_errors_match_loops(norm):
    pred, gt, boxes, _ = _faces(n_images=3)
    errors = per_landmark_errors(pred, gt, norm, "ibug68", boxes)
    assert errors.shape == (3, 68)
    for k in range(3):
        d = _loop_normaliser(gt[k], norm, boxes[k])
        for i in range(68):
            assert errors[k, i] == pytest.approx(math.dist(pred[k][i], gt[k][i]) / d, rel=1e-9)


def test_ocular_norms_on_other_schemes():
    pred, gt, _, _ = _faces(n_points=29, n_images=4)
    expected = [sum(math.dist(p, g) for p, g in zip(pred[k], gt[k])) / 29
                / math.dist(gt[k][16], gt[k][17]) for k in range(4)]
    np.testing.assert_allclose(nme(pred, gt, norm="inter-pupil", scheme="cofw29"), expected, **TOL)
    pred, gt, _, _ = _faces(n_points=5, n_images=4)
    expected = [sum(math.dist(p, g) for p, g in zip(pred[k], gt[k])) / 5
                / math.dist(gt[k][0], gt[k][1]) for k in range(4)]
    np.testing.assert_allclose(nme(pred, gt, norm="inter-pupil", scheme="five"), expected, **TOL)
    with pytest.raises(ValueError, match="outer eye corners"):
        nme(pred, gt, norm="inter-ocular", scheme="five")
    with pytest.raises(ValueError, match="68 points"):
        nme(pred, gt, norm="inter-ocular", scheme="ibug68")


def test_mape_is_the_mean_visible_pixel_error():
    pred, gt, boxes, visible = _faces(n_points=6)
    np.testing.assert_allclose(mape(pred, gt, visible=visible),
                               _loop_nme(pred, gt, "none", boxes, visible), **TOL)


def test_visibility_masks_hidden_points():
    pred, gt, boxes, visible = _faces(n_images=2)
    wild = pred.copy()
    wild[~visible] += 1e4
    wild[0, ~visible[0]] = np.nan          # hidden points may even be missing
    np.testing.assert_allclose(nme(wild, gt, "box", boxes=boxes, visible=visible),
                               nme(pred, gt, "box", boxes=boxes, visible=visible), **TOL)


def test_torch_and_numpy_inputs_agree():
    pred, gt, boxes, visible = _faces()
    expected = nme(pred, gt, norm="inter-ocular", visible=visible)
    got = nme(torch.tensor(pred, dtype=torch.float64, requires_grad=True), torch.tensor(gt),
              norm="inter-ocular", visible=torch.tensor(visible))
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, **TOL)
    got32 = nme(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32),
                norm="box", boxes=torch.tensor(boxes))
    np.testing.assert_allclose(got32, nme(pred, gt, norm="box", boxes=boxes), rtol=1e-5)


def test_single_face_is_a_batch_of_one():
    pred, gt, boxes, visible = _faces(n_images=1)
    assert nme(pred[0], gt[0]).shape == (1,)
    np.testing.assert_allclose(nme(pred[0], gt[0], "box", boxes=boxes[0], visible=visible[0]),
                               nme(pred, gt, "box", boxes=boxes, visible=visible))


def test_zero_normaliser_names_the_image():
    pred, gt, boxes, _ = _faces(n_images=4)
    gt[2, 45] = gt[2, 36]
    with pytest.raises(ValueError, match=r"image\(s\) \[2\]"):
        nme(pred, gt, norm="inter-ocular")
    boxes[1, 2] = boxes[1, 0]
    with pytest.raises(ValueError, match=r"image\(s\) \[1\]"):
        nme(pred, gt, norm="box-width", boxes=boxes)
    boxes[3, 3] = boxes[3, 1] - 1
    with pytest.raises(ValueError, match=r"image\(s\) \[3\]"):
        nme(pred, gt, norm="box", boxes=boxes)


def test_bad_arguments_are_rejected():
    pred, gt, boxes, _ = _faces(n_images=2)
    with pytest.raises(ValueError, match="unknown norm"):
        nme(pred, gt, norm="eyes")
    with pytest.raises(ValueError, match="needs boxes"):
        nme(pred, gt, norm="box")
    with pytest.raises(ValueError, match="shape"):
        nme(pred[:, :5], gt)
    with pytest.raises(ValueError, match="visible"):
        nme(pred, gt, visible=np.ones((2, 5), bool))


def test_face_without_visible_points_is_excluded_everywhere():
    pred, gt, boxes, visible = _faces(n_images=6)
    visible[3] = False
    errors = nme(pred, gt, "inter-ocular", visible=visible)
    assert np.isnan(errors[3]) and np.isfinite(np.delete(errors, 3)).all()
    kept = np.delete(errors, 3)
    with pytest.warns(ExcludedFacesWarning, match="1 of 6"):
        assert mean_error(errors) == pytest.approx(sum(kept) / 5, rel=1e-12)
    with pytest.warns(ExcludedFacesWarning):
        assert auc(errors, 0.1) == pytest.approx(auc(kept, 0.1), rel=1e-12)
    with pytest.warns(ExcludedFacesWarning):
        assert failure_rate(errors, 0.05) == failure_rate(kept, 0.05)
    with pytest.warns(ExcludedFacesWarning):
        np.testing.assert_array_equal(ced(errors, 0.1, 0.01)[1], ced(kept, 0.1, 0.01)[1])
    table = summary(errors)
    assert table.loc[0, "n"] == 5 and table.loc[0, "excluded"] == 1
    assert table.loc[0, "mean"] == pytest.approx(sum(kept) / 5, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # nothing to warn about without NaNs
        mean_error(kept)


def _random_errors(seed, n=40):
    rng = np.random.default_rng(seed)
    errors = rng.gamma(2.0, 0.025, n)
    errors[:3] = [0.0, 0.08, 0.05]           # include ties with the thresholds used below
    return errors


@pytest.mark.parametrize("seed", range(3))
def test_ced_matches_counting(seed):
    errors = _random_errors(seed)
    thresholds, fraction = ced(errors, 0.1, 0.005)
    assert len(thresholds) == 21 and thresholds[-1] == pytest.approx(0.1)
    for t, f in zip(thresholds, fraction):
        assert f == pytest.approx(sum(1 for e in errors if e <= t) / len(errors), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha", [0.05, 0.08, 0.1])
def test_auc_matches_a_fine_grid_trapezoid(seed, alpha):
    errors = _random_errors(seed)
    grid = np.linspace(0.0, alpha, 2_000_001)
    counts = np.zeros(grid.size)
    for e in errors:                          # CED on the grid, one image at a time
        counts += grid >= e
    cdf = counts / len(errors)
    trapezoid = float(np.sum((cdf[1:] + cdf[:-1]) / 2 * np.diff(grid))) / alpha
    assert auc(errors, alpha) == pytest.approx(trapezoid, abs=1e-6)


def test_auc_edge_cases():
    assert auc([0.0, 0.0], 0.08) == 1.0
    assert auc([0.08, 0.5, np.inf], 0.08) == 0.0
    assert auc([0.04], 0.08) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="alpha"):
        auc([0.1], 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        auc([-0.1], 0.08)


@pytest.mark.parametrize("seed", range(3))
def test_failure_rate_matches_counting(seed):
    errors = _random_errors(seed)
    for alpha in (0.05, 0.08, 0.1):
        assert failure_rate(errors, alpha) == pytest.approx(
            sum(1 for e in errors if e >= alpha) / len(errors), abs=1e-12)


def test_summary_table():
    a, b = _random_errors(0), _random_errors(1, n=25)
    table = summary({"ours": a, "baseline": torch.tensor(b)}, alphas=(0.08, 0.1), label="subset")
    assert list(table.columns) == ["subset", "n", "excluded", "mean", "median", "auc@0.08",
                                   "failure@0.08", "auc@0.1", "failure@0.1"]
    assert list(table["subset"]) == ["ours", "baseline"]
    row = table.iloc[1]
    assert row["n"] == 25 and row["excluded"] == 0
    assert row["mean"] == pytest.approx(sum(b) / 25, rel=1e-12)
    assert row["median"] == pytest.approx(sorted(b)[12], rel=1e-12)
    assert row["auc@0.1"] == pytest.approx(auc(b, 0.1), rel=1e-12)
    assert row["failure@0.08"] == pytest.approx(failure_rate(b, 0.08), rel=1e-12)
    empty = summary({"none": [np.nan, np.nan]})
    assert empty.loc[0, "n"] == 0 and empty.loc[0, "excluded"] == 2
    assert np.isnan(empty.loc[0, "auc@0.08"])
    with pytest.raises(ValueError, match="no errors"), pytest.warns(ExcludedFacesWarning):
        mean_error([np.nan])


def test_landmark_boxes_and_normaliser():
    _, gt, _, visible = _faces(n_images=3)
    boxes = landmark_boxes(gt, visible)
    for k in range(3):
        xs = [gt[k][i][0] for i in range(68) if visible[k][i]]
        ys = [gt[k][i][1] for i in range(68) if visible[k][i]]
        np.testing.assert_allclose(boxes[k], [min(xs), min(ys), max(xs), max(ys)])
    np.testing.assert_allclose(landmark_boxes(gt)[:, :2], gt.min(axis=1))
    np.testing.assert_allclose(normaliser(gt, "inter-ocular", "ibug68"),
                               [math.dist(g[36], g[45]) for g in gt], **TOL)


def test_normaliser_spellings_are_aliases():
    from falign.measure import metrics

    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 100, (4, 68, 2))
    pred = gt + rng.normal(0, 2, gt.shape)
    boxes = np.array([[0.0, 0.0, 100.0, 80.0]] * 4)
    for alias, name in [("inter_ocular", "inter-ocular"), ("interocular", "inter-ocular"),
                        ("inter_pupil", "inter-pupil"), ("bbox", "box"), ("box_diagonal", "box-diagonal"),
                        (None, "none")]:
        np.testing.assert_array_equal(metrics.nme(pred, gt, norm=alias, boxes=boxes),
                                      metrics.nme(pred, gt, norm=name, boxes=boxes))
    with pytest.raises(ValueError, match="unknown norm"):
        metrics.nme(pred, gt, norm="cheek")
