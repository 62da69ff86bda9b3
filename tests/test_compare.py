"""The comparison chapter: the peer wrapper, the sweep generator, the metric presets, and that the
leaderboard takes every registered aligner with shipped weights without naming it."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from falign.kit import aligner
from falign.base import paths
from falign.measure import conventions, metrics
from falign.data import detect
from falign.baselines import dlib_ert as peers
from falign.synthface.dataset import SynthFaceConfig, synthface_arrays
from falign.chapters import compare


def _faces(n=3, size=192, **changes):
    overrides = {**compare.NEUTRAL, **changes}
    return synthface_arrays("300w-like", "common", n, size=size, seed=3, cache=False, **overrides)


# --- the peer -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered():
    """Frontal, neutral SynthFace faces large enough for dlib's detector, and its boxes."""
    faces = _faces(yaw=(10.0, 10.0))
    boxes = np.stack([detect.detect_faces(im)[0] for im in faces["images"]])
    return faces, boxes


def test_the_peer_returns_68_points_near_the_truth(rendered):
    faces, boxes = rendered
    peer = peers.dlib_ert(68)
    points = peer.predict(faces["images"], boxes)
    assert points.shape == (len(boxes), 68, 2) and points.dtype == torch.float32
    assert peer.kind == "dlib-ert" and aligner.KINDS["dlib-ert"] is peers.DlibERT and peer.n_points == 68
    nme = metrics.nme(points, faces["landmarks68"], "inter-ocular")
    assert nme.max() < 0.10, nme                 # dlib's ERT lands on a rendered face, with its own boxes
    # and it reads the photo, not the box: a box-only guess (the truth's mean shape) is clearly worse
    spread = np.linalg.norm(faces["landmarks68"] - faces["landmarks68"].mean(1, keepdims=True), axis=-1).mean()
    assert np.linalg.norm(points.numpy() - faces["landmarks68"], axis=-1).mean() < 0.3 * spread


def test_the_five_point_model_sits_on_its_ibug_points(rendered):
    faces, boxes = rendered
    points = peers.dlib_ert(5).predict(faces["images"], boxes).numpy()
    assert points.shape == (len(boxes), 5, 2)
    truth = faces["landmarks68"]
    iod = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)[:, None, None]
    distance = (np.linalg.norm(points[:, :, None] - truth[:, None], axis=-1) / iod).mean(0)   # (5, 68)
    for k, on in enumerate(peers.FIVE_ON_IBUG68):
        # its iBUG point, within a tenth of the eye-corner distance; an eye's outer corner and the eyelid
        # point beside it can swap places as the nearest, so the second nearest is allowed
        assert distance[k, on] < 0.1 and on in np.argsort(distance[k])[:2], (k, on, np.argsort(distance[k])[:3])


def test_the_peer_reads_a_detector_box_as_dlib_does(rendered):
    """falign boxes run over pixel edges (detect.py adds half a pixel to dlib's rectangles): the peer
    undoes that exactly, so it predicts from dlib's own rectangle."""
    import dlib

    faces, _ = rendered
    photo = faces["images"][0]
    rect = dlib.get_frontal_face_detector()(photo, 1)[0]
    direct = peers._predictor(str(peers.model_path(68)))(photo, rect)
    expected = np.array([[p.x, p.y] for p in direct.parts()], np.float32)
    assert np.array_equal(peers.dlib_ert(68).predict(photo, detect.detect_faces(photo)[:1])[0].numpy(), expected)


# --- the sweep generator --------------------------------------------------------------------------

@pytest.mark.parametrize("factor", list(compare.FACTORS))
def test_a_sweep_changes_only_its_own_fields(factor):
    f = compare.FACTORS[factor]
    for value in (*f.values, *f.edges[:1]):
        o = compare.overrides(factor, value, 128)
        changed = {k for k in o if o[k] != compare.NEUTRAL.get(k)}
        assert changed <= set(f.fields), (factor, value, changed)
        assert set(o) <= {x.name for x in dataclasses.fields(SynthFaceConfig)}


def test_sweep_points_render_the_same_faces_with_one_factor_changed():
    """Same identities, expressions and the other angles at every yaw; only yaw moves."""
    a, b = (_faces(n=2, size=64, **{k: v for k, v in compare.overrides("yaw", y, 64).items()}) for y in (0, 60))
    assert np.array_equal(a["p"], b["p"])                       # identity and expression coefficients
    assert np.allclose(a["pose"][:, 1:], b["pose"][:, 1:])      # pitch and roll
    assert np.allclose(a["pose"][:, 0], 0) and np.allclose(b["pose"][:, 0], 60)
    c = _faces(n=2, size=64, **compare.overrides("noise", 0.1, 64))
    assert np.array_equal(a["p"], c["p"]) and np.allclose(a["pose"], c["pose"])
    assert np.allclose(a["landmarks68"], c["landmarks68"])      # noise moves pixels, not the face


def test_sweep_values_keep_the_ends():
    cfg = dataclasses.replace(compare.SCALES["smoke"], sweep_points=2)
    assert compare.sweep_values("yaw", cfg) == (0, 90)
    assert compare.sweep_values("yaw", dataclasses.replace(cfg, sweep_points=None)) == compare.FACTORS["yaw"].values


def test_coverage_counts_landmarks_hidden_by_the_occluder():
    bare = compare.Faces.from_arrays(_faces(n=4, size=64, **compare.overrides("occlusion", 0.0, 64)))
    occluded = compare.Faces.from_arrays(_faces(n=4, size=64, **compare.overrides("occlusion", 1.0, 64)))
    share = compare.coverage(bare, occluded)
    assert share.shape == (4,) and (share >= 0).all() and (share <= 1).all() and share.max() > 0


def test_bootstrap_interval_brackets_the_mean():
    values = np.random.default_rng(0).normal(1.0, 0.1, 50)
    lo, hi = compare.bootstrap_interval(values, 500, seed=1)
    assert lo < values.mean() < hi and hi - lo < 0.1
    assert compare.bootstrap_interval(values, 500, seed=1) == (lo, hi)
    assert np.isnan(compare.bootstrap_interval(values[:1], 500)).all()     # one face: no interval, not a zero-width one


def test_the_neutral_box_is_a_detector_box_not_the_truth():
    common = compare.SYNTHFACE["300w-like"].splits["common"]     # the leaderboard's boxes
    assert compare.NEUTRAL["detector_shift"] == common.detector_shift > 0
    assert compare.NEUTRAL["detector_scale"] == common.detector_scale > 0
    faces = _faces(n=2, size=64, **compare.overrides("yaw", 30, 64))
    assert not np.allclose(faces["detector_boxes"], faces["boxes"])
    exact = _faces(n=2, size=64, **compare.overrides("box shift", 0.0, 64))    # only its own half of the jitter
    assert not np.allclose(exact["detector_boxes"], exact["boxes"])


def test_small_coverage_bins_merge_into_their_neighbour():
    # the first small run's bins held 1, 5, 12 and 12 faces
    assert compare.merge_bins([1, 5, 12, 12, 0], 10) == [(0, 3), (3, 4)]
    assert compare.merge_bins([12, 3], 10) == [(0, 2)]          # a short last bin joins the one before
    assert compare.merge_bins([3, 4], 10) == []                 # too few faces in all: no point
    with pytest.raises(ValueError, match="at least 2"):
        compare.merge_bins([5, 5], 1)
    share = np.array([0.01, 0.07, 0.1, 0.12, 0.2, 0.25, 0.4, 0.45, 0.9])
    groups = compare.coverage_groups(share, compare.FACTORS["occlusion"].edges, 3)
    assert [label for label, _ in groups] == ["0-15%", "15-100%"]      # counts 1, 3 | 2, 2 | 1
    inside = np.array([m for _, m in groups])
    assert (inside.sum(1) >= 3).all() and (inside.sum(0) == 1).all()    # every face in exactly one group


def test_jaw_split_separates_the_17_jaw_points():
    errors = np.zeros((2, 68))
    errors[:, :17] = 1.0
    errors[1, 17:] = 0.5
    jaw, other = compare.jaw_split(errors)
    assert jaw.tolist() == [1.0, 1.0] and other.tolist() == [0.0, 0.5]


def _box_method(name, shape, points=compare.IBUG68):
    """A method that places a fixed box-unit shape in the box (reads no pixel)."""
    from falign.papers.rcsr.model import place_in_box

    return compare.Method(name, lambda photos, boxes: place_in_box(shape, boxes).astype(np.float64), points,
                          "baseline", "test", float(shape.size), 0.0, name)


def test_sweep_pairs_every_row_with_the_mean_shape_on_its_points(monkeypatch):
    import functools

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(compare, "synthface_arrays", functools.partial(synthface_arrays, cache=False))
    grid = np.random.default_rng(0).uniform(0.1, 0.9, (68, 2))
    methods = [_box_method("centre", np.full((68, 2), 0.5)),
               _box_method(compare.REFERENCE, grid),
               _box_method("five at the centre", np.full((5, 2), 0.5), compare.DLIB5)]
    cfg = dataclasses.replace(compare.SCALES["smoke"], image=64, sweep_faces=12, bin_faces=5, bootstrap=200)
    curves = compare.sweeps(methods, cfg, factors=("yaw", "occlusion"))
    assert set(curves["point set"]) == {"ibug68", "dlib5"}
    rows = set(curves["method"])
    assert {"centre → dlib5", f"{compare.REFERENCE} → dlib5", "five at the centre"} <= rows
    for _, part in curves.groupby(["factor", "value"]):
        by = part.set_index("method")
        # the paired difference is the difference of the means on the same faces and points ...
        for row, ref in (("centre", compare.REFERENCE), ("five at the centre", f"{compare.REFERENCE} → dlib5")):
            d = by.loc[row, compare.SWEEP_DIFFERENCE]
            assert d == pytest.approx(by.loc[row, "NME (%, box)"] - by.loc[ref, "NME (%, box)"])
            assert by.loc[row, "low"] <= d <= by.loc[row, "high"]
        # ... and the reference itself has none
        assert by.loc[[compare.REFERENCE, f"{compare.REFERENCE} → dlib5"], compare.SWEEP_DIFFERENCE].isna().all()
    occlusion = curves[curves["factor"] == "occlusion"].drop_duplicates("value")
    assert (occlusion["faces"] >= cfg.bin_faces).all() and occlusion["faces"].sum() == cfg.sweep_faces
    yaw = curves[curves["factor"] == "yaw"]
    on68 = yaw["point set"] == "ibug68"
    assert yaw.loc[on68, "jaw NME (%, box)"].notna().all() and yaw.loc[~on68, "jaw NME (%, box)"].isna().all()
    assert set(compare.jaw_table(curves)["method"]) == {"centre", compare.REFERENCE}
    figures = compare.sweep_figures(curves)
    assert list(figures) == ["sweeps_ibug68", "sweeps_dlib5"]
    for fig in figures.values():
        plt.close(fig)


# --- metric presets against hand computations -------------------------------------------------------

# Three faces, two points each, already normalised; face 2 sits exactly on 0.08.
POINT_ERRORS = np.array([[0.02, 0.04],      # face mean 0.03
                         [0.06, 0.10],      # face mean 0.08
                         [0.10, 0.30]])     # face mean 0.20
VISIBLE = np.array([[True, True], [True, False], [False, True]])


def test_falign_preset_by_hand():
    out = conventions.score(POINT_ERRORS, VISIBLE, "falign")
    assert out["NME (%)"] == pytest.approx(100 * (0.03 + 0.08 + 0.20) / 3)
    # exact AUC@0.08 = mean(max(0, 1 - e / 0.08)) = (0.625 + 0 + 0) / 3
    assert out["AUC@0.08"] == pytest.approx(0.625 / 3)
    assert out["failure@0.08 (%)"] == pytest.approx(100 * 2 / 3)     # 0.08 >= 0.08 fails


def test_dan_preset_by_hand():
    out = conventions.score(POINT_ERRORS, VISIBLE, "DAN")
    assert out["NME (%)"] == pytest.approx(100 * 0.31 / 3)
    assert out["failure@0.08 (%)"] == pytest.approx(100 / 3)          # only 0.20 > 0.08
    # Simpson on the 1e-4 grid of the step CED: within a grid step of the exact 0.625 / 3
    assert out["AUC@0.08"] == pytest.approx(0.625 / 3, abs=2e-3)


def test_hrnet_preset_by_hand():
    out = conventions.score(POINT_ERRORS, VISIBLE, "HRNet")
    assert set(out) == {"NME (%)", "failure@0.08 (%)", "failure@0.1 (%)"}  # no AUC
    assert out["failure@0.08 (%)"] == pytest.approx(100 / 3) and out["failure@0.1 (%)"] == pytest.approx(100 / 3)


def test_star_preset_by_hand():
    out = conventions.score(POINT_ERRORS, VISIBLE, "STAR")
    # AUC@0.05: only face 1 (0.03) counts, 1 - 0.03 / 0.05 = 0.4, over three faces
    assert out["AUC@0.05"] == pytest.approx(0.4 / 3, abs=3e-3)
    assert out["failure@0.05 (%)"] == pytest.approx(100 * 2 / 3)


def test_star_and_dan_fail_past_their_grids_last_point():
    """STAR's grid np.arange(0, 0.05 + 1e-4, 1e-4) ends at 0.0501 and its FR is 1 - CED there: an error
    of 0.05005 passes. DAN's grid at 0.08 ends on 0.08."""
    assert np.arange(0, 0.05 + 1e-4, 1e-4)[-1] > 0.05 and np.arange(0, 0.08 + 1e-4, 1e-4)[-1] == 0.08
    errors = np.array([[0.03], [0.05], [0.05005], [0.2]])
    assert conventions.score(errors, convention="STAR")["failure@0.05 (%)"] == pytest.approx(25.0)   # only 0.2
    assert conventions.failure(errors[:, 0], 0.05, ">") == pytest.approx(0.5)                        # > 0.05: two
    dan = conventions.score(np.array([[0.03], [0.08], [0.08005]]), convention="DAN")
    assert dan["failure@0.08 (%)"] == pytest.approx(100 / 3)                                          # only 0.08005


def test_simps_averages_both_ends_for_an_even_number_of_samples():
    """scipy < 1.11's simps(even="avg"), which DAN and STAR ran: on x = 0..3, y = 0, 1, 1, 1:
    Simpson on 0..2 (5/3) + trapezoid on 2..3 (1) = 8/3; trapezoid on 0..1 (1/2) + Simpson on 1..3 (2) = 5/2."""
    from scipy.integrate import simpson

    x, y = np.arange(4.0), np.array([0.0, 1.0, 1.0, 1.0])
    assert conventions.simps(y, x) == pytest.approx((8 / 3 + 5 / 2) / 2)
    assert conventions.simps(y[:3], x[:3]) == pytest.approx(simpson(y[:3], x=x[:3]))   # odd: plain Simpson


def test_mmpose_preset_by_hand():
    out = conventions.score(POINT_ERRORS, VISIBLE, "mmpose")
    # pooled over the four visible points: (0.02 + 0.04 + 0.06 + 0.30) / 4
    assert out == {"NME (%)": pytest.approx(100 * 0.42 / 4)}
    with pytest.raises(ValueError, match="visible"):
        conventions.score(POINT_ERRORS, None, "mmpose")


def test_simpson_auc_matches_a_hand_simpson_on_a_coarse_grid():
    errors = np.array([0.01, 0.03])
    # grid 0, 0.02, 0.04 (step 0.02, a = 0.04): CED = 0, 0.5, 1; Simpson = 0.02 / 3 * (0 + 4 * 0.5 + 1) = 0.02
    assert conventions.simpson_auc(errors, 0.04, step=0.02) == pytest.approx(0.02 / 0.04)


def test_every_preset_has_a_hand_test():
    assert set(conventions.PRESETS) == {"falign", "DAN", "HRNet", "STAR", "mmpose"}


# --- the leaderboard iterates over the registered aligners ------------------------------------------

class _Toy(nn.Module):
    def __init__(self, size: int = 16):
        super().__init__()
        self.size, self.scheme = size, "ibug68"
        self.offset = nn.Parameter(torch.zeros(68, 2))


@pytest.fixture
def toy_kind():
    class ToyAligner(aligner.Aligner):
        """Every point at the box centre: a registered kind no chapter knows."""

        @classmethod
        def build(cls, model_args):
            return _Toy(**model_args)

        @classmethod
        def describe(cls, model):
            return {"size": model.size}

        @classmethod
        def default_preprocess(cls, model):
            return {"size": model.size, "margin": 0.0, "grey": False, "padding": "zeros"}

        def forward_crops(self, crops, boxes):
            centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
            return centre.expand(-1, 68, 2) + self.model.offset, None

    aligner.register("toy-compare", ToyAligner)
    yield "toy-compare"
    aligner.KINDS.pop("toy-compare", None)


def test_a_new_aligner_appears_in_the_leaderboard(tmp_path, monkeypatch, toy_kind):
    aligner.save(tmp_path / "results" / "toy" / aligner.FILENAME, _Toy(), toy_kind)
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    assert aligner.available() == ["toy"]
    cfg = compare.SCALES["smoke"]
    tests = {s: compare.Faces.from_arrays(synthface_arrays("300w-like", s, 2, size=64, seed=0, cache=False), name=s)
             for s in compare.TEST_SUBSETS}
    methods, fitted_on = compare.methods(cfg, tmp_path / "work")
    names = [m.name for m in methods]
    assert names[0] == "TOY" and {"dlib ERT", "SDM + HOG", "mean shape"} <= set(names)
    # each on the box convention it was trained with: the peer on dlib's (fitted on training faces), the rest on ours
    table = compare.method_table(methods).set_index("method")
    assert table.loc["dlib ERT", "box convention"] == table.loc["dlib ERT (5-point model)", "box convention"] == \
        "dlib HOG detector"
    assert table.loc["TOY", "box convention"] == table.loc["SDM + HOG", "box convention"] == compare.SYNTHFACE_BOX.name
    assert set(fitted_on) == {"sdm-train", "box-adapter-train"} and "training faces" in \
        compare.convention_table(methods).set_index("box convention").loc["dlib HOG detector", "fitted on"]
    preds = compare.predict(methods, tests, cache=tmp_path / "work")
    accuracy, curves = compare.accuracy(methods, preds, tests)
    cost = compare.costs(methods, tests["common"].images[0], tests["common"].detector_boxes[0],
                         dataclasses.replace(cfg, repeats=1, batch=2))
    board = compare.leaderboard(accuracy, cost)
    toy = board.set_index("method").loc["TOY"]
    assert toy["points"] == compare.IBUG68.label and toy["parameters"] == 136
    assert np.isfinite(toy["full NME (%, inter-ocular)"]) and "TOY" in curves
    assert "TOY → dlib5" in set(board["method"])     # and on the peer's five points
    # the cache returns the same predictions
    again = compare.predict(methods, tests, cache=tmp_path / "work")
    assert all(np.array_equal(again[m][s], preds[m][s]) for m in preds for s in tests)
    # the page's one call: the same board, split into the 68-point rows and the others
    scores = compare.scoreboard(methods, tests, dataclasses.replace(cfg, repeats=1, batch=2), cache=tmp_path / "work")
    assert list(scores.board["method"]) == list(board["method"])
    assert (scores.main["points"] == compare.IBUG68.label).all() and "TOY → dlib5" in set(scores.shared["method"])
    assert len(scores.main) + len(scores.shared) == len(board)
    # the paired differences to the peer: zero for the peer itself, and the raw-box and found-faces blocks
    main = scores.main.set_index("method")
    assert main.loc["dlib ERT", [compare.DIFFERENCE, "low (95%)", "high (95%)"]].tolist() == [0, 0, 0]
    assert main.loc["TOY", compare.DIFFERENCE] == pytest.approx(
        main.loc["TOY", "full NME (%, inter-ocular)"] - main.loc["dlib ERT", "full NME (%, inter-ocular)"])
    assert list(scores.raw["method"]) == list(scores.found["method"])
    assert "TOY → dlib5" not in set(scores.raw["method"])
    assert set(scores.found_counts) == set(compare.TEST_SUBSETS)
    # the conventions page scores the 68-point rows under every preset
    scored = compare.convention_scores(methods, preds, tests)
    spread = compare.convention_spread(scored)
    assert set(spread["method"]) == set(scores.main["method"])
    assert list(spread.columns) == ["method", *conventions.PRESETS, "largest difference"]
    assert (spread["largest difference"] >= 0).all()


def test_torch_threads_are_restored_even_after_an_error():
    from falign.kit.timing import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_costs_time_on_one_thread_with_and_without_detection():
    photo = _faces(n=1, size=128)
    seen = []

    def predict(photos, boxes):
        seen.append(torch.get_num_threads())
        return np.zeros((len(boxes), 68, 2))

    methods = [compare.Method("toy", predict, compare.IBUG68, "book", "test", 1.0, 0.0, "toy"),
               compare.peer_methods(compare.SYNTHFACE_BOX)[0]]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cost = compare.costs(methods, photo["images"][0], photo["detector_boxes"][0],
                             dataclasses.replace(compare.SCALES["smoke"], repeats=1, batch=2))
        assert torch.get_num_threads() == 2            # the caller's count is back
    finally:
        torch.set_num_threads(before)
    assert set(seen) == {compare.TIMING_THREADS}
    assert (cost["threads"] == f"torch {compare.TIMING_THREADS}, dlib 1").all()
    for how in compare.UPSAMPLING.values():
        assert (cost[f"detect + align (ms, {how})"] > 0).all() and cost[f"detector (ms, {how})"].nunique() == 1
    peer = cost.set_index("method").loc[compare.PEER]
    assert peer["latency / the peer's"] == 1 and peer["detect + align / the peer's (upsampled once)"] == 1


def test_pareto_front():
    x, y = np.array([1.0, 2.0, 3.0, 2.5]), np.array([5.0, 3.0, 1.0, 4.0])
    assert compare.pareto_front(x, y).tolist() == [True, True, True, False]


def test_points_share_the_68_point_truth():
    truth = np.random.default_rng(0).uniform(0, 100, (2, 68, 2))
    assert np.array_equal(compare.DLIB5.of(truth), truth[:, list(peers.FIVE_ON_IBUG68)])
    five = compare.points_of_scheme("five")
    assert five.of(truth).shape == (2, 5, 2) and compare.points_of_scheme("cofw29") is None
    errors = compare.point_errors(truth + 1.0, compare.IBUG68, truth)
    assert np.allclose(errors.mean(1), metrics.nme(truth + 1.0, truth, "inter-ocular"))


def test_factor_table_lists_every_factor_at_the_scale():
    cfg = compare.SCALES["smoke"]
    table = compare.factor_table(cfg).set_index("factor")
    assert list(table.index) == list(compare.FACTORS)
    assert table.loc["yaw", "values"] == "0, 90" and table.loc["occlusion", "kind"] == "bin edges of measured coverage"


def test_real_mix_weights_the_subsets_as_real_300w():
    # 554 common : 135 challenging, whatever share of each was found
    assert compare.real_mix({"common": 4.0, "challenging": 10.0}) == pytest.approx((554 * 4 + 135 * 10) / 689)
    assert compare.MIX == "300-W mix (554:135)"


def test_calibration_reading_gives_both_readings_of_the_anchor():
    import pandas as pd

    rows = []
    for norm, scale in (("inter-ocular", 1.0), ("inter-pupil", 0.8)):
        for subset, faces, found, nme in (("common", 10, 9, 6.0), ("challenging", 5, 1, 12.0), ("full", 15, 10, 6.6),
                                          (compare.MIX, np.nan, np.nan, compare.real_mix({"common": 6.0,
                                                                                           "challenging": 12.0}))):
            row = {"subset": subset, "normaliser": norm, "faces": faces, "found by dlib's HOG": found,
                   "NME (%), our boxes, found faces": 1.5 * scale * nme, "NME (%), our boxes, all faces": 3 * nme,
                   "NME (%), adapted boxes, all faces": 2 * nme}
            row.update({f"ratio SynthFace / 300-W ({k})": scale * nme / 6.4 for k in compare.RATIOS})
            row["NME (%), dlib's boxes, found faces"] = scale * nme
            rows.append(row)
    text, ratios = compare.calibration_reading(pd.DataFrame(rows))
    mix = (554 * 6.0 + 135 * 12.0) / 689 / 6.4
    assert ratios[f"ratio {compare.MIX} (dlib's boxes, found faces, inter-ocular)"] == pytest.approx(mix)
    assert ratios[f"ratio {compare.MIX} (dlib's boxes, found faces, inter-pupil)"] == pytest.approx(0.8 * mix)
    assert ratios["ratio full (dlib's boxes, found faces, inter-pupil)"] == pytest.approx(0.8 * 6.6 / 6.4)
    assert "inter-ocular reading" in text and "inter-pupil reading" in text and "not stated" in text
    assert "9 of 10 common and 1 of 5 challenging faces, so 90% of the found faces are common ones (real 300-W " \
           "full: 80%)" in text
    assert "another paper's protocol" in text
    assert "multiply the peer's error by 1.50" in text and "from 19.80 to 13.20" in text


def test_calibration_gives_both_normalisers_and_the_300w_mix(rendered):
    faces = compare.Faces.from_arrays(rendered[0])
    tests = {"common": faces.subset([0, 1]), "challenging": faces.subset([2])}
    peer = compare.peer_methods(compare.BoxConvention("dlib-like", "hog_boxes", (0.0, -0.1, 0.9, 0.9)))[0]
    table, found = compare.calibration(peer, tests)
    t = table.set_index(["subset", "normaliser"])
    assert set(t.index) == {(s, n) for s in (*compare.SUBSETS, compare.MIX) for n in compare.NORMS}
    assert {s: len(f) for s, f in found.items()} == {"common": 2, "challenging": 1}
    for norm in compare.NORMS:
        for name, *_ in compare.SETTINGS:
            column = f"NME (%), {name}"
            by_hand = (554 * t.loc[("common", norm), column] + 135 * t.loc[("challenging", norm), column]) / 689
            assert t.loc[(compare.MIX, norm), column] == pytest.approx(by_hand)
        assert t.loc[(compare.MIX, norm), "ratio SynthFace / 300-W (dlib's boxes, found faces)"] == pytest.approx(
            t.loc[(compare.MIX, norm), "NME (%), dlib's boxes, found faces"] / 6.40)
    # the eye centres sit closer than the outer corners: the inter-pupil reading is the larger error
    assert (t.xs("inter-pupil", level=1)["NME (%), dlib's boxes, found faces"]
            > t.xs("inter-ocular", level=1)["NME (%), dlib's boxes, found faces"]).all()


def test_ert_anchor_keeps_the_normaliser_of_its_source():
    """RCSR's Table 1 names no normaliser for ERT's 6.40: neither the calibration nor the as-reported
    block calls it inter-ocular."""
    assert compare.published_ert("full") == 6.40 and compare.published_ert_normaliser() == "not stated"
    reported = compare.reported_300w().set_index("method")
    assert reported.loc["ERT (Kazemi & Sullivan 2014)", "normaliser"] == "not stated"
    assert "inter-ocular" not in compare.calibration_setting(compare.SCALES["smoke"], {}).splitlines()[0]


# --- box conventions and paired differences ------------------------------------------------------------

def test_box_adapter_maps_a_box_as_fitted():
    given = np.array([[10, 20, 50, 60], [0, 0, 100, 80], [5, 5, 25, 45]], np.float32)
    size = given[:, 2:] - given[:, :2]
    centre = (given[:, :2] + given[:, 2:]) / 2 + np.array([0.05, -0.1]) * size
    detected = np.concatenate([centre - size * [0.45, 0.4], centre + size * [0.45, 0.4]], 1)
    detected = np.concatenate([detected, np.full((1, 4), np.nan)])       # a missed face is skipped
    adapter = detect.box_calibration(np.concatenate([given, [[0, 0, 9, 9]]]), detected)
    assert np.allclose(adapter, [0.05, -0.1, 0.9, 0.8], atol=1e-5)
    convention = compare.BoxConvention("test", "hog_boxes", tuple(adapter.tolist()))
    assert np.allclose(convention.adapt(given), detected[:3], atol=1e-3)
    assert compare.SYNTHFACE_BOX.adapt(given) is given                   # the identity changes nothing
    assert detect.box_calibration(given, np.full_like(given, np.nan)).tolist() == [0, 0, 1, 1]


def _corner_method(name, convention):
    """A method whose 68 points all sit on its box's top-left corner: it shows the box it was given."""
    return compare.Method(name, lambda photos, boxes: np.repeat(np.asarray(boxes, np.float64)[:, None, :2], 68, 1),
                          compare.IBUG68, "baseline", "test", 0.0, 0.0, "corner", convention)


def test_predict_starts_each_method_from_its_convention(tmp_path):
    faces = compare.Faces.from_arrays(_faces(n=2, size=64), name="common")
    shifted = compare.BoxConvention("shifted", "hog_boxes", (0.5, 0.0, 1.0, 1.0))
    ours, theirs = _corner_method("ours", compare.SYNTHFACE_BOX), _corner_method("theirs", shifted)
    tests = {"common": faces}
    preds = compare.predict([ours, theirs], tests, cache=tmp_path)      # same model key, different conventions
    width = faces.detector_boxes[:, 2] - faces.detector_boxes[:, 0]
    assert np.allclose(preds["ours"]["common"][:, 0], faces.detector_boxes[:, :2])
    assert np.allclose(preds["theirs"]["common"][:, 0, 0], faces.detector_boxes[:, 0] + 0.5 * width, atol=1e-3)
    raw = compare.predict([theirs], tests, "raw", cache=tmp_path)     # the raw-box block: SynthFace's box for all
    assert np.allclose(raw["theirs"]["common"][:, 0], faces.detector_boxes[:, :2])
    again = compare.predict([theirs], tests, cache=tmp_path)          # the cache keeps the conventions apart
    assert np.array_equal(again["theirs"]["common"], preds["theirs"]["common"])
    # on found faces a method of dlib's convention starts from dlib's detections, the others from theirs
    found = {"common": dataclasses.replace(faces, hog_boxes=faces.detector_boxes + 3.0)}
    on_found = compare.predict([ours, theirs], found, "found")
    assert np.allclose(on_found["theirs"]["common"][:, 0], faces.detector_boxes[:, :2] + 3.0)
    assert np.allclose(on_found["ours"]["common"][:, 0], faces.detector_boxes[:, :2])
    empty = {"common": faces.subset(np.array([], int))}                # a subset where dlib found nothing
    assert compare.predict([theirs], empty, "found")["theirs"]["common"].shape == (0, 68, 2)


def test_paired_difference_by_hand():
    b = np.random.default_rng(0).uniform(0.02, 0.2, 40)
    assert compare.paired_difference(b + 0.01, b, 200, seed=1) == pytest.approx((0.01, 0.01, 0.01))
    a = b + np.random.default_rng(1).uniform(0.0, 0.02, 40)              # a is worse on every face
    mean, lo, hi = compare.paired_difference(a, b, 500, seed=1)
    assert 0 < lo < mean < hi and mean == pytest.approx((a - b).mean())
    back = compare.paired_difference(b, a, 500, seed=1)                # the same faces drawn: the mirror image
    assert back == pytest.approx((-mean, -hi, -lo))
    assert all(np.isnan(compare.paired_difference([], [], 10)))


def test_scale_marks_what_changes_no_training():
    from falign.kit import chapter

    assert set(chapter.recipe(compare.SCALES["small"])) == {"sdm", "precision"}


def test_a_wild_but_finite_prediction_is_scored_and_a_non_finite_one_stops():
    """An aligner's guard refuses landmarks far outside the box; the comparison scores them as placed (a
    failure in the metric, said aloud), but non-finite landmarks still stop it."""
    from falign.kit import inputs

    wild = np.array([[[500.0, 500.0]], [[10.0, 10.0]]])

    def guarded(points):
        def fn(photos, boxes):
            raise inputs.PredictionError("face 0: landmarks more than 1 box size(s) outside the box", points,
                                         None, np.array([False, True]))
        return compare._numpy_predict(fn)

    np.testing.assert_array_equal(guarded(wild)(None, None), wild)
    with pytest.raises(inputs.PredictionError):
        guarded(np.array([[[np.nan, 1.0]], [[10.0, 10.0]]]))(None, None)


def test_pairwise_differences_name_the_better_row_only_where_the_faces_decide():
    curves = {"a": {"full": np.array([0.10, 0.12, 0.11, 0.13])},     # always 0.05 below b
              "b": {"full": np.array([0.15, 0.17, 0.16, 0.18])},
              "c": {"full": np.array([0.20, 0.10, 0.20, 0.10])}}     # differs from b both ways
    table = compare.pairwise(curves, ["a", "b", "c"], n_boot=200).set_index(["first", "second"])
    assert table.loc[("a", "b"), "full NME difference (points)"] == pytest.approx(-5.0)
    assert table.loc[("a", "b"), ["low (95%)", "high (95%)"]].tolist() == pytest.approx([-5.0, -5.0])
    assert table.loc[("a", "b"), "better"] == "a"
    assert table.loc[("b", "c"), "better"] == "neither (interval spans 0)" and len(table) == 3
