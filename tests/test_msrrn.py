"""MSRRN: shared weights, the scale each stage reads, shape-indexed patches, the augmentation, the dlib
box fallback, the rebuilt Table 1 and the aligner (fast, CPU)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import falign
from falign.kit import aligner
from falign.data import detect
from falign.papers.msrrn import experiment as experiments, model as msrrn, published as paper
from falign.measure.landmarks import get_scheme
from falign.papers.cfdrnn import published as cfdrnn
from falign.papers.rcsr import published as rcsr
from steps import losses_over_steps

torch.set_num_threads(1)
SIZE, P = 32, 5


def tiny(**kw) -> msrrn.MSRRN:
    torch.manual_seed(0)
    args = dict(size=SIZE, patch=P, channels=(2, 4), hidden=8, init_channels=(2, 2, 2), init_hidden=8)
    return msrrn.MSRRN(**{**args, **kw})


def smooth_images(n: int, size: int = SIZE, seed: int = 0, cells: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 1, cells, cells, generator=g)
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


# --- recurrence: one set of regression weights ----------------------------------------------------

def test_shared_weights_do_not_grow_with_the_stages():
    counts = [msrrn.parameter_counts(tiny(stages=T))["regression"] for T in (1, 2, 3, 4)]
    assert len(set(counts)) == 1 and counts[0] > 0
    model = tiny(stages=3)
    assert len(model.regressors) == 1 and all(model.regressor(t) is model.regressors[0] for t in range(3))


def test_separate_weights_grow_with_the_stages():
    one = msrrn.parameter_counts(tiny(stages=1, shared=False))["regression"]
    for T in (2, 3, 4):
        model = tiny(stages=T, shared=False)
        assert msrrn.parameter_counts(model)["regression"] == T * one
        assert len({id(model.regressor(t)) for t in range(T)}) == T


def test_shared_gradient_is_the_mean_over_stages():
    """Eq. 6: the shared weights move by the stages' gradients averaged; a separate-weights copy with
    the same weights in every stage has the per-stage gradients themselves."""
    T = 3
    shared, separate = tiny(stages=T), tiny(stages=T, shared=False)
    state = {k: v for k, v in shared.state_dict().items() if not k.startswith("regressors")}
    separate.load_state_dict(state, strict=False)
    for t in range(T):
        separate.regressors[t].load_state_dict(shared.regressors[0].state_dict())
    # non-zero output layers, so every stage moves the shape and the stages interact
    for net in [shared.regressors[0], *separate.regressors]:
        torch.manual_seed(1)
        torch.nn.init.normal_(net.head[-1].weight, std=1e-2)
    batch = {"image": smooth_images(2), "target": torch.rand(2, 68, 2)}
    assert torch.allclose(shared(batch["image"]), separate(batch["image"]), atol=1e-6)
    for model in (shared, separate):
        msrrn.loss_fn(model, batch).backward()
    for name, p in shared.regressors[0].named_parameters():
        total = sum(dict(separate.regressors[t].named_parameters())[name].grad for t in range(T))
        assert torch.allclose(p.grad, total / T, rtol=1e-4, atol=1e-7), name
    # the control arm sums them: the step each stage's gradient takes in a separate network
    summed = tiny(stages=T, average=False)
    summed.load_state_dict(shared.state_dict())
    msrrn.loss_fn(summed, batch).backward()
    for name, p in summed.regressors[0].named_parameters():
        total = sum(dict(separate.regressors[t].named_parameters())[name].grad for t in range(T))
        assert torch.allclose(p.grad, total, rtol=1e-4, atol=1e-7), name


# --- multiscale: each stage reads its own scale ----------------------------------------------------

def _read_images(model, images):
    seen = []
    original = model.patches

    def spy(image, shapes):
        seen.append(image.detach().clone())
        return original(image, shapes)

    model.patches = spy
    model(images)
    return seen


def test_each_stage_reads_its_own_scale_coarse_to_fine():
    model = tiny(stages=3)
    images = smooth_images(2)
    seen = _read_images(model, images)
    assert [s.shape[-1] for s in seen] == [8, 16, 32] == list(model.sides)
    x = msrrn.standardise(images)
    for image in seen:            # the face at that scale: the area-averaged input, nothing else
        assert torch.allclose(image, F.avg_pool2d(x, SIZE // image.shape[-1]), atol=1e-5)
    assert msrrn.stage_sides(200, 3) == (50, 100, 200)


def test_single_scale_reads_the_full_face_at_every_stage():
    seen = _read_images(tiny(stages=3, multiscale=False), smooth_images(1))
    assert [s.shape[-1] for s in seen] == [SIZE] * 3


# --- patches ----------------------------------------------------------------------------------------

def test_patches_at_a_known_shape_return_the_pixels_there():
    model = tiny()
    images = torch.rand(2, 1, SIZE, SIZE)
    pixels = torch.randint(3, SIZE - 3, (2, 68, 2)).float()
    patches = model.patches(images, msrrn.to_unit(pixels, SIZE))
    assert patches.shape == (2, 68, 1, P, P)
    centre = patches[:, :, 0, P // 2, P // 2]
    expected = images[torch.arange(2)[:, None], 0, pixels[..., 1].long(), pixels[..., 0].long()]
    assert torch.allclose(centre, expected, atol=1e-6)
    # one pixel to the right in the image is one column to the right in the patch
    assert torch.allclose(patches[:, :, 0, P // 2, P // 2 + 1],
                          images[torch.arange(2)[:, None], 0, pixels[..., 1].long(), pixels[..., 0].long() + 1],
                          atol=1e-6)


def test_unit_coordinates_agree_across_scales():
    """The same [0, 1] point is the same place in the face at every side (pixel centre i at (i+0.5)/s)."""
    u = torch.tensor([[0.3, 0.7]])
    for s in (25, 50, 100):
        assert torch.allclose(msrrn.to_unit(msrrn.to_pixels(u, s), s), u)
    assert torch.allclose(msrrn.to_pixels(u, 50) * 2 + 0.5, msrrn.to_pixels(u, 100))


# --- the untrained model, the initial shape and the loss ---------------------------------------------

@pytest.mark.parametrize("init", ["cnn", "mean"])
def test_untrained_model_starts_and_stays_at_the_mean_shape(init):
    model = tiny(init=init)
    model.mean_shape.copy_(torch.rand(68, 2))
    out = model.predict(smooth_images(3))
    assert out.shape == (4, 3, 68, 2)
    assert torch.allclose(out, model.mean_shape.expand_as(out), atol=1e-6)
    assert (model.initial is None) == (init == "mean")


def test_loss_goes_down():
    model = tiny()
    batch = {"image": smooth_images(4), "target": (0.3 + 0.4 * torch.rand(68, 2)).expand(4, -1, -1)}
    losses = losses_over_steps(model, msrrn.loss_fn, batch, steps=20, lr=1e-2)
    assert losses[-1] < 0.3 * losses[0]


# --- the augmentation keeps every landmark on its pixels ----------------------------------------------

def test_augmentation_moves_pixels_and_landmarks_together():
    cfg = experiments.SCALES["smoke"]
    cfg = type(cfg)(**{**cfg.__dict__, "noise": 0.0})
    images = (smooth_images(8, 48, cells=6) * 255).round().to(torch.uint8)
    target = msrrn.to_unit(10 + 28 * torch.rand(8, 68, 2), 48)
    torch.manual_seed(0)
    x, moved = experiments.augment(images, target, cfg)

    def values(img, unit):
        return msrrn.sample_patches(img.float(), msrrn.to_pixels(unit, 48), 1)[:, :, 0, 0, 0]

    before, after = values(images.float() / 255, target), values(x, moved)
    perm = torch.tensor(get_scheme("ibug68").flip_perm)
    same = (after - before).abs().amax(1) < 0.03
    mirrored = (after - before[:, perm]).abs().amax(1) < 0.03
    assert (same | mirrored).all() and mirrored.any() and same.any()


# --- dlib boxes and the fallback ----------------------------------------------------------------------

def test_calibrated_boxes_reproduce_a_consistent_detector():
    g = np.random.default_rng(0)
    given = np.concatenate([xy := g.uniform(0, 50, (20, 2)), xy + g.uniform(40, 80, (20, 2))], 1).astype(np.float32)
    size = given[:, 2:] - given[:, :2]
    centre = (given[:, :2] + given[:, 2:]) / 2 + np.array([0.02, -0.12]) * size
    det = np.concatenate([centre - 0.55 * size, centre + 0.55 * size], 1)
    cal = detect.box_calibration(given, det)
    assert np.allclose(cal, [0.02, -0.12, 1.1, 1.1], atol=1e-5)
    assert np.allclose(detect.calibrated(given, cal), det, atol=1e-3)
    assert np.allclose(detect.iou(det, det), 1) and detect.iou(det[:1], det[:1] + 1000)[0] == 0


def test_a_missed_face_falls_back_to_the_calibrated_box(tmp_path, monkeypatch):
    monkeypatch.setenv("FALIGN_WORK", str(tmp_path))
    faces = {"images": np.zeros((2, 64, 64, 3), np.uint8), "fingerprint": "blank-test",
             "detector_boxes": np.array([[10, 10, 40, 40], [5, 8, 50, 60]], np.float32)}
    boxes, found = experiments.face_boxes(faces, np.array([0, 0.1, 1.2, 1.2], np.float32))
    assert not found.any()                                    # a blank image has no face
    assert np.allclose(boxes, detect.calibrated(faces["detector_boxes"], np.array([0, 0.1, 1.2, 1.2])))


# --- the rebuilt Table 1 ----------------------------------------------------------------------------------

def test_rebuilt_table1_reads_the_sources_and_labels_every_row():
    t = paper.rebuilt_table1()
    assert set(t["method"]) == {"ESR", "RCPR", "SDM", "LBF", "CFSS", "ERT", "GN-DPM", "CFAN", "TCDCN"}
    assert t[["source", "table", "normaliser"]].notna().all().all()
    r1, c5 = rcsr.table1().set_index("method"), cfdrnn.table5().set_index(["normaliser", "method"])
    for _, row in t.iterrows():
        if row["source"].startswith("RCSR"):
            src = r1.loc[row["as printed"]]
        else:
            src = c5.loc[(row["normaliser"], row["as printed"])]
        assert np.allclose(src[["common", "challenging", "full"]].astype(float),
                           row[["common", "challenging", "full"]].astype(float), equal_nan=True)
    assert not t["as printed"].str.contains("fast|Practical").any()


def test_rebuilt_table1_keeps_every_rows_source_normaliser():
    """Row by row, the normaliser is the source row's: RCSR's rows were once all relabelled inter-ocular."""
    t, subsets = paper.rebuilt_table1(), list(paper.SUBSETS)
    sources = {"Table 1": rcsr.table1(), "Table 5": cfdrnn.table5()}
    for _, row in t.iterrows():
        src = sources[row["table"]]
        same = (src["method"] == row["as printed"]) & np.isclose(
            src[subsets].astype(float), row[subsets].astype(float), equal_nan=True).all(axis=1)
        assert src.loc[same, "normaliser"].tolist() == [row["normaliser"]], (row["table"], row["as printed"])
    from_rcsr = t[t["table"] == "Table 1"].set_index("method")["normaliser"]
    assert from_rcsr.value_counts().to_dict() == {rcsr.PUPIL: 4, rcsr.NOT_STATED: 4}
    assert from_rcsr["LBF"] == rcsr.PUPIL and from_rcsr["RCPR"] == rcsr.NOT_STATED


# --- the aligner ----------------------------------------------------------------------------------------

def test_aligner_round_trip(tmp_path):
    model = tiny().eval()
    model.mean_shape.copy_(0.3 + 0.4 * torch.rand(68, 2))
    path = aligner.save(tmp_path / "msrrn.pt", model, "msrrn")
    photo = (np.random.default_rng(0).random((80, 90, 3)) * 255).astype(np.uint8)
    box = [[20.0, 15.0, 60.0, 55.0]]
    a, b = aligner.make(model, "msrrn"), falign.load(str(path))
    assert b.preprocess == {"size": SIZE, "margin": 0.2, "grey": True, "padding": "border"}
    points = b.predict(photo, box)
    assert points.shape == (1, 68, 2) and torch.equal(points, a.predict(photo, box))
    # untrained: the mean shape, in the square of side 1.4 x 40 centred on the box
    expected = torch.tensor([40.0, 35.0]) + (model.mean_shape - 0.5) * 40 * 1.4
    assert torch.allclose(points[0], expected, atol=1e-3)


# --- the chapter's scale, tables and claims ledger -----------------------------------------------------

def test_the_recipe_leaves_out_what_changes_no_training():
    import dataclasses

    from falign.kit import chapter

    cfg = experiments.SCALES["small"]
    recipe = chapter.recipe(cfg)
    assert not {"n_test", "seeds", "second_look", "eval_batch", "timing_repeats", "ced_limit", "sdm_stages",
                "hog_patch"} & set(recipe)
    assert {"n_train", "n_val", "size", "epochs", "lr", "precision", "noise"} <= set(recipe)
    assert chapter.recipe(dataclasses.replace(cfg, seeds=(5,), ced_limit=0.1, n_test={"common": 1})) == recipe
    assert experiments.tiny(cfg) == {"n_train": 2 * cfg.batch, "n_val": 2, "n_test": {"common": 2, "challenging": 2}}


def test_every_scale_plans_a_second_look():
    from falign.kit import chapter

    assert experiments.SCALES["smoke"].second_look == ()
    for name in ("small", "gpu", "full"):
        cfg = experiments.SCALES[name]
        assert cfg.second_look == (3, 4, 5) and not set(cfg.second_look) & set(cfg.seeds)
        assert chapter.seeds(cfg, 10, look=2) == [10 + s for s in (*cfg.seeds, *cfg.second_look)]


OFFSETS = {"msrrn": 0.0, "shared-summed": 0.2, "separate": 0.5, "single-scale": 1.0, "mean-shape": 2.0,
           "msrrn-T1": 0.3, "msrrn-T2": 0.3, "sdm": 5.0}


def _results(T: int = 3, seeds=(0, 1, 2)):
    """A long table in evaluate()'s format: every arm gets better with every stage; SDM is worse; the
    models trained with fewer stages have that many stages."""
    rows = []
    for arm, offset in OFFSETS.items():
        stages = int(arm[-1]) if arm.startswith("msrrn-T") else T
        for s in seeds:
            for t in range(stages + 1):
                for norm in experiments.NORMS:
                    for subset in ("common", "challenging", "full"):
                        rows.append({"arm": arm, "seed": s, "stage": t, "norm": norm, "subset": subset,
                                     "NME (%)": 10 + offset - t + 0.01 * s + (1.0 if subset == "challenging" else 0),
                                     "AUC@0.08": 0.5, "failure@0.08 (%)": 1.0})
    return pd.DataFrame(rows)


CLAIMS = ["stages", "stages-one-model", "shared-weights", "shared-weights-control", "multiscale", "initial-shape-cnn",
          "learned-features"]
IDS = [c + where for where in ("", "/common", "/challenging") for c in CLAIMS]


def test_tables_and_claims_from_a_results_table():
    from falign.kit import effects

    results = _results()
    converged = {arm: arm != "separate" for arm in experiments.ARMS}
    table = experiments.claims(results, converged).to_frame().set_index("claim id")
    assert list(table.index) == IDS                          # every claim on every subset the paper reports
    # every stage is 1 point better and every ablation worse, by the same amount on every seed
    assert table.loc["stages-one-model", "class"] == effects.REPRODUCED
    assert table.loc["multiscale/challenging", "class"] == effects.REPRODUCED
    # the separately trained models: T = 3 (7.0) beats T = 2 (8.3) beats T = 1 (9.3)
    assert table.loc["stages", "class"] == effects.REPRODUCED
    assert table.loc["stages", "arms"] == "T = 3 | T = 2 | T = 1"
    # the chain is judged by its weakest link: after 2 stages against 1 (1 point out of 9, paired by seed)
    assert table.loc["stages-one-model", "interval method"] == "paired t over seeds (link 2 of 2)"
    assert table.loc["stages-one-model", "effect"] == pytest.approx(np.mean([1 / (9 + 0.01 * s) for s in range(3)]))
    assert table.loc["learned-features", "interval method"] == "one-sample t over seeds"
    assert (table["paper numbers"] == "none published").all() and table["paper effect"].isna().all()
    # a claim is gated on its own arms only: the separate arm's training concerns the shared-weights claims alone
    assert (table.loc[["shared-weights", "shared-weights-control/common"], "not converged"] == "separate").all()
    gated = table.index.str.startswith("shared-weights")
    assert (table[~gated]["not converged"] == "").all()
    assert (table["class at half budget"] == "not run").all()
    assert experiments.final_nme(results, "msrrn") == pytest.approx([7.0, 7.01, 7.02])
    assert experiments.final_nme(results, "msrrn", subset="challenging") == pytest.approx([8.0, 8.01, 8.02])
    t1 = experiments.table1(results).set_index(["method", "normaliser"])
    assert t1.loc[("MSRRN (ours)", "inter-pupil"), "full"] == pytest.approx(7.01)
    assert t1.loc[("SDM + HOG (ours)", "inter-pupil"), "full"] == pytest.approx(12.01)
    t2 = experiments.table2(results)
    assert len(t2) == 2 * (3 + 2 + 2) and list(t2.columns[:2]) == ["normaliser", "row"]
    assert t2.loc[t2["row"] == "after stage 3 of T = 3", "full"].iloc[0] == pytest.approx(7.01)
    assert t2.loc[t2["row"] == "trained with T = 1", "full"].iloc[0] == pytest.approx(9.31)
    assert experiments.headline(results)["nme_full_inter_pupil_sdm"] == pytest.approx(12.01)


def test_every_arm_gets_its_rate_by_the_same_probe(tmp_path):
    """tune_lr probes every rate of the grid for every arm (seed 0, the probe's epochs) and keeps the rate
    with the lowest validation NME; a diverging probe scores infinity."""
    cfg = dataclasses.replace(experiments.SCALES["smoke"], lr_grid=(1e-3, 1e-2), probe_epochs=1)
    crops = experiments.datasets(dataclasses.replace(cfg, **experiments.tiny(cfg)))
    seen = []
    real = experiments.train

    def spy(cfg, crops, arm, seed, **kw):
        seen.append((arm, cfg.lr, cfg.epochs, seed))
        if cfg.lr == 1e-2 and arm == "separate":
            raise FloatingPointError("diverged")
        return real(cfg, crops, arm, seed, **kw)

    import unittest.mock as mock
    with mock.patch.object(experiments, "train", spy):
        lrs, probes = experiments.tune_lr(cfg, crops, ("msrrn", "separate"), work=tmp_path)
    assert seen == [("msrrn", 1e-3, 1, 0), ("msrrn", 1e-2, 1, 0), ("separate", 1e-3, 1, 0), ("separate", 1e-2, 1, 0)]
    assert lrs["separate"] == 1e-3 and np.isinf(probes.set_index(["arm", "lr"]).loc[("separate", 1e-2),
                                                                                     "validation NME (%)"])
    best = probes[probes["arm"] == "msrrn"].sort_values("validation NME (%)").iloc[0]
    assert lrs["msrrn"] == best["lr"] and probes["chosen"].sum() == 2
    assert experiments.tuned(cfg, lrs, "separate").lr == 1e-3


def test_speed_remark_and_detection_remark():
    speed = pd.DataFrame([{"": "ours", "model": "ours, paper-sized (200 px)", "batch": 1, "faces per second": 500.0,
                           "parameters": 1000, "GFLOP per face": 0.25, "/ paper's CPU": 50.0}])
    assert "probably several times larger" in experiments.speed_remark(speed)
    detection = pd.DataFrame({"split": ["train", "challenging"], "missed (%)": [74.0, 84.0]})
    text = experiments.detection_remark(detection)
    assert "74% of the train faces" in text and "most crops of the train, challenging split(s)" in text


def test_half_budget_results_give_each_claim_a_class_at_half_budget():
    from falign.kit import effects

    results, half = _results(), _results()
    half.loc[half["arm"] == "separate", "NME (%)"] -= 2.0     # at half budget the separate arm led
    table = experiments.claims(results, dict.fromkeys(experiments.ARMS, True), half=half).to_frame()
    table = table.set_index("claim id")
    assert table.loc["shared-weights", "class"] == effects.REPRODUCED
    assert table.loc["shared-weights", "class at half budget"] == effects.REVERSED
    assert table.loc["shared-weights", "budget-sensitive"]
    shared = table.index.str.startswith("shared-weights")
    assert table[shared]["budget-sensitive"].all() and not table[~shared]["budget-sensitive"].any()


def test_arms_that_do_not_share_their_seeds_are_refused():
    results = _results()
    results = results[~((results["arm"] == "separate") & (results["seed"] == 2))]
    with pytest.raises(ValueError, match="share their seeds"):
        experiments.claims(results, dict.fromkeys(experiments.ARMS, True))


def test_convergence_is_recomputed_from_the_committed_curves():
    rows = []
    for arm in experiments.ARMS:
        for s in (0, 1):
            for e in range(1, 13):
                falling = arm == "mean-shape" and s == 1             # still falling 10 % an epoch
                value = 10 * 0.9 ** e if falling else 5.0 + (0.5 if e < 4 else 0.0)
                rows.append({"arm": arm, "seed": s, "epoch": e, "loss": 1.0, "validation NME (%)": value})
    converged = experiments.convergence_from_curves(pd.DataFrame(rows))
    assert converged == {arm: arm != "mean-shape" for arm in experiments.ARMS}
    assert experiments.convergence_from_curves(pd.DataFrame(rows[:0], columns=list(rows[0])))["msrrn"] is False


def test_rejudge_reads_the_committed_results(tmp_path):
    """The committed run's files parse into one row per claim with finite effects and a class
    (the numbers themselves are the run's, not checked here)."""
    import shutil

    from falign.kit import effects
    from falign.base import paths

    committed = paths.ROOT / "results" / "msrrn"
    folder = tmp_path / "msrrn"
    shutil.copytree(committed, folder)
    table = experiments.rejudge(folder).to_frame()
    assert [i for i in IDS if i in set(table["claim id"])] == list(table["claim id"])
    assert {"stages-one-model", "shared-weights", "multiscale", "initial-shape-cnn", "learned-features"} <= set(
        table["claim id"])
    assert np.isfinite(table["effect"]).all() and np.isfinite(table[["low", "high"]].to_numpy()).all()
    assert table["class"].isin(effects.CLASSES).all()
    if not (folder / f"{experiments.CURVES}.csv").exists():      # no curves committed: no evidence of convergence
        assert (table["not converged"] != "").all()
