"""The 300-W protocol shared by the RCSR, CFDRNN and MSRRN chapters."""

import matplotlib
import numpy as np
import pytest

from falign.kit import protocol300w as p300w

matplotlib.use("Agg")


def face_set(n: int, seed: int = 0) -> np.ndarray:
    """n 68-point faces whose outer eye corners (36, 45) are 100 px apart."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 200, (n, 68, 2))
    gt[:, 36], gt[:, 45] = [50.0, 80.0], [150.0, 80.0]
    return gt


def shifted(gt: np.ndarray, pixels) -> np.ndarray:
    """Every point of face i moved right by pixels[i]: NME = pixels[i] / 100."""
    out = gt.copy()
    out[..., 0] += np.asarray(pixels, float)[:, None]
    return out


def test_perfect_predictions():
    gt = {"common": face_set(5), "challenging": face_set(2, 1)}
    table = p300w.evaluate(gt, gt)
    assert table["subset"].tolist() == ["common", "challenging", "full"]
    assert table["n"].tolist() == [5, 2, 7]
    assert (table["NME (%, inter-ocular)"] == 0).all()
    assert (table["AUC@0.08"] == 1).all() and (table["failure@0.08 (%)"] == 0).all()


def test_full_pools_images_so_it_is_weighted_by_count():
    gt = {"common": face_set(3), "challenging": face_set(1, 1)}
    pred = {"common": shifted(gt["common"], [2, 2, 2]), "challenging": shifted(gt["challenging"], [10])}
    table = p300w.evaluate(pred, gt, method="m").set_index("subset")
    assert table.loc["common", "NME (%, inter-ocular)"] == pytest.approx(2.0)
    assert table.loc["challenging", "NME (%, inter-ocular)"] == pytest.approx(10.0)
    assert table.loc["full", "NME (%, inter-ocular)"] == pytest.approx((3 * 2 + 10) / 4)
    assert table.loc["full", "failure@0.08 (%)"] == pytest.approx(25.0)          # 0.10 >= 0.08
    assert table.loc["full", "AUC@0.08"] == pytest.approx((3 * (1 - 0.02 / 0.08) + 0) / 4)
    assert (table["method"] == "m").all()


def test_explicit_full_is_used_as_given():
    gt = {"common": face_set(2), "challenging": face_set(2, 1), "full": face_set(1, 2)}
    errors = p300w.subset_errors(gt, gt)
    assert len(errors["full"]) == 1


def test_inter_pupil_norm():
    gt = face_set(2)
    gt[:, 36:42] = [50.0, 80.0]
    gt[:, 42:48] = [130.0, 80.0]                                                  # pupils 80 px apart
    errors = p300w.subset_errors({"common": shifted(gt, [4, 8])}, {"common": gt}, norm="inter-pupil")
    assert np.allclose(errors["common"], [0.05, 0.10])
    with pytest.raises(ValueError, match="norm"):
        p300w.evaluate({"common": gt}, {"common": gt}, norm="box")


def test_49_point_evaluation_ignores_the_jaw():
    gt = face_set(3)
    pred = gt.copy()
    pred[:, :17] += 30.0                                                          # only the jaw is wrong
    full68 = p300w.subset_errors({"common": pred}, {"common": gt})["common"]
    only49 = p300w.subset_errors({"common": pred}, {"common": gt}, eval_scheme="ibug49")["common"]
    assert (full68 > 0).all() and np.allclose(only49, 0)


def test_missing_predictions_raise():
    gt = {"common": face_set(2), "challenging": face_set(2)}
    with pytest.raises(ValueError, match="challenging"):
        p300w.evaluate({"common": gt["common"]}, gt)


def test_ced_data_and_figure():
    gt = {"common": face_set(4)}
    errors = {name: p300w.subset_errors({"common": shifted(gt["common"], px)}, gt)
              for name, px in [("good", [1, 2, 3, 4]), ("bad", [5, 6, 12, 20])]}
    data = p300w.ced_data(errors, "common", max_error=0.1, step=0.01)
    good = data[data["method"] == "good"]
    assert list(data.columns) == ["method", "error", "fraction"]
    assert good["fraction"].iloc[-1] == 1 and good["fraction"].iloc[0] == 0
    fig = p300w.ced_figure(errors, "common")
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(KeyError):
        p300w.ced_data(errors, "challenging")
