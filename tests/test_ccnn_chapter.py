"""The CCNN chapter module (falign.papers.ccnn.experiment), its aligner kind and the ResNets of Table 3 (fast, CPU)."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from falign.kit import aligner, chapter as kit, effects, ledger, precision
from falign.base import paths
from falign.kit.crops import crop_faces
from falign.papers.ccnn import experiment as chapter, model as ccnn, resnet
from falign.measure.landmarks import get_scheme

torch.set_num_threads(1)

TINY = dataclasses.replace(chapter.SCALES["smoke"], n_train=6, n_val=2, n_test=4, batch=8, epochs=1, eval_batch=16)


@pytest.fixture(scope="module")
def smoke():
    return chapter.datasets(chapter.SCALES["smoke"])


@pytest.fixture(scope="module")
def tiny():
    return chapter.datasets(TINY)


def blob_faces(points: np.ndarray, size: int = 96, sigma: float = 1.2) -> dict:
    """SynthFace-like arrays: one bright blob at point 0 (LE) of each face, the other points elsewhere."""
    n = len(points)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    blob = np.exp(-((xx - points[:, 0, 0, None, None]) ** 2 + (yy - points[:, 0, 1, None, None]) ** 2) / (2 * sigma**2))
    images = (255 * blob[..., None].repeat(3, -1)).round().astype(np.uint8)
    boxes = np.tile(np.array([[24.0, 22.0, 72.0, 74.0]], np.float32), (n, 1))
    return {"images": images, "landmarks": points.astype(np.float32), "visible": np.ones(points.shape[:2], bool),
            "detector_boxes": boxes, "scheme": "five", "name": "blobs", "fingerprint": "blobs"}


# --- data --------------------------------------------------------------------------------------------

def test_smoke_datasets_have_the_expected_sizes(smoke):
    cfg = chapter.SCALES["smoke"]
    train, validation, test = smoke["train"], smoke["validation"], smoke["test"]
    assert len(train) == cfg.n_train * len(chapter.ANGLES) * len(chapter.FLIPS) == 6 * 48
    assert len(test) == cfg.n_test == 24 and len(validation) == cfg.n_val == 8
    assert len({train.fingerprint, validation.fingerprint, test.fingerprint}) == 3
    # the held-out faces are not among the training faces (the unrotated version of each kept face)
    kept = train.images[:cfg.n_train].flatten(1)
    assert not (validation.images.flatten(1)[:, None] == kept[None]).all(-1).any()
    assert torch.allclose(chapter.face_boxes(validation), validation.crop_boxes(), atol=1e-3)   # as given
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, cfg.size, cfg.size)
    assert test.images.dtype == torch.uint8 and test.images.shape[1:] == (3, cfg.size, cfg.size)
    assert train.fingerprint != test.fingerprint
    boxes = chapter.face_boxes(test)
    assert torch.allclose(boxes, test.crop_boxes(), atol=1e-3)          # no rotation: the kit's crop boxes
    assert torch.allclose((boxes[:, 2:] - boxes[:, :2]).amax(1), torch.full((len(test),), 39.0), atol=1e-3)
    full, small = chapter.SCALES["full"], chapter.SCALES["small"]
    assert (full.n_train, full.n_test, len(full.seeds)) == (10000, 3466, 3)
    # full has the paper's data size and trains at least as long as small (the budget rule)
    assert chapter.iterations(full, 60000) >= chapter.iterations(small, 12000)


def test_unrotated_training_crops_are_the_kits_crops():
    cfg = chapter.SCALES["smoke"]
    faces = chapter.load(cfg, "test")
    ours = chapter.augmented_crops(faces, cfg)
    kit = crop_faces(faces, cfg.size, cfg.margin, padding_mode="border")
    assert (ours.images.int() - kit.images.int()).abs().max() <= 1
    assert torch.allclose(ours.landmarks, kit.landmarks, atol=1e-3)


@pytest.mark.parametrize("angle,flip", [(0.0, False), (15.0, False), (-12.0, False), (0.0, True), (15.0, True),
                                        (-12.0, True)])
def test_augmentation_keeps_landmarks_on_the_pixels(angle, flip):
    """A blob drawn at the left eye is found, after rotation and mirror, where the transformed landmark
    is; mirrored, that landmark is renumbered as the right eye (the flip permutation)."""
    g = np.random.default_rng(0)
    points = np.array([[30.0, 38.0], [60.0, 38.0], [46.0, 52.0], [36.0, 62.0], [58.0, 62.0]])
    points = points[None] + g.uniform(-3, 3, (3, 1, 2))
    faces = blob_faces(points)
    crops = chapter.augmented_crops(faces, chapter.SCALES["smoke"], angle, flip)
    where = 1 if flip else 0                                            # the blob is the image-left eye of the source
    assert get_scheme("five").flip_perm[0] == 1
    S = crops.size
    for i in range(len(points)):
        img = crops.images[i, 0].float()
        iy, ix = divmod(int(img.argmax()), S)
        # sub-pixel peak: intensity-weighted centroid around the maximum
        y0, y1, x0, x1 = max(iy - 3, 0), iy + 4, max(ix - 3, 0), ix + 4
        w = img[y0:y1, x0:x1]
        yy, xx = torch.meshgrid(torch.arange(y0, y0 + w.shape[0]), torch.arange(x0, x0 + w.shape[1]), indexing="ij")
        peak = torch.stack([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
        assert torch.allclose(peak, crops.landmarks[i, where], atol=0.35), (angle, flip, peak, crops.landmarks[i])
    back = crops.to_image(crops.landmarks)
    assert torch.allclose(back, torch.as_tensor(points, dtype=torch.float32), atol=1e-3)


def test_face_boxes_of_rotated_and_mirrored_crops_are_the_given_box():
    cfg = chapter.SCALES["smoke"]
    faces = chapter.load(cfg, "test")
    plain = chapter.face_boxes(chapter.augmented_crops(faces, cfg))
    for angle, flip in [(15.0, False), (-12.0, True)]:
        assert torch.allclose(chapter.face_boxes(chapter.augmented_crops(faces, cfg, angle, flip)), plain, atol=1e-3)


# --- training ----------------------------------------------------------------------------------------

def test_stages_train_on_training_anchors_only(tiny, monkeypatch, tmp_path):
    """Stage 2's and 3's anchors are computed from the training crops (never the test crops), by the
    stages trained before them, and every stage's data is the training set's."""
    train, test = tiny["train"], tiny["test"]
    seen_anchor_inputs, seen_sources = [], []
    real_anchors, real_fit = ccnn.CCNN.anchors, chapter.trainer.fit

    def anchors(self, stage, images, boxes=None, batch_size=1024):
        seen_anchor_inputs.append((stage, images.clone()))
        return real_anchors(self, stage, images, boxes, batch_size)

    def fit(model, loss_fn, data, **kw):
        seen_sources.append((type(model).__name__, data.source, data.anchors))
        return real_fit(model, loss_fn, data, **kw)

    monkeypatch.setattr(ccnn.CCNN, "anchors", anchors)
    monkeypatch.setattr(chapter.trainer, "fit", fit)
    model, histories = chapter.train(TINY, train, "ccnn", work=tmp_path, progress=False)
    assert len(histories) == 3
    assert sorted({s for s, _ in seen_anchor_inputs}) == [2, 3]
    for stage in (2, 3):                                               # in batches: together, the training crops
        images = torch.cat([x for s, x in seen_anchor_inputs if s == stage])
        assert torch.equal(images, train.images) and len(images) != len(test.images)
    assert [src for _, src, _ in seen_sources] == [train.fingerprint] * 3
    assert seen_sources[0][2] is None
    # the anchors stage 3 trained on are stages 1-2 of the final model on the training crops
    expected = model.anchors(3, train.images, chapter.face_boxes(train))
    assert torch.allclose(seen_sources[2][2], expected, atol=1e-5)
    # a finished run reloads without training or computing anchors again
    seen_anchor_inputs.clear()
    seen_sources.clear()
    again, _ = chapter.train(TINY, train, "ccnn", work=tmp_path, progress=False)
    assert not seen_anchor_inputs and not seen_sources
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("request_", ["fp32", "bf16"])
def test_same_seed_same_weights_at_each_precision(tiny, request_):
    if request_ == "bf16" and not precision.native_bf16():
        pytest.skip("this CPU has no native bf16: falign.kit.precision never trains in bf16 here")
    cfg = dataclasses.replace(TINY, precision=request_)
    a, _ = chapter.train(cfg, tiny["train"], "ccnn", seed=3, progress=False)
    b, _ = chapter.train(cfg, tiny["train"], "ccnn", seed=3, progress=False)
    c, _ = chapter.train(cfg, tiny["train"], "ccnn", seed=4, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_arms_share_stage_one_and_train_it_once(tiny, tmp_path):
    names = ["ccnn", "sun2013", "windows-"]
    models = kit.grid(lambda arm, s: chapter.train(TINY, tiny["train"], arm, work=tmp_path, seed=s, progress=False),
                      names, kit.seeds(TINY))
    stage1 = [p.name for p in tmp_path.iterdir() if p.name.startswith("ccnn-stage1")]
    assert len(stage1) == 2                                            # CCNN's (shared) and windows-'s
    a, b = models[("ccnn", 0)][0].stages[0], models[("sun2013", 0)][0].stages[0]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert models[("sun2013", 0)][0].stages[1].shake_std == 0.0
    results = chapter.evaluate(models, tiny["test"])
    assert set(results["arm"]) == set(names) and np.isfinite(results["Average"]).all()
    assert len(results) == 3 + 3 + 1


def test_recipe_leaves_out_what_changes_no_training():
    cfg = chapter.SCALES["small"]
    recipe = kit.recipe(cfg)
    assert not {"n_test", "seeds", "eval_batch", "timing_repeats", "ced_max_error", "about"} & set(recipe)
    assert {"n_train", "batch", "epochs", "lr", "precision", "augment", "size", "margin"} <= set(recipe)
    assert kit.recipe(dataclasses.replace(cfg, n_test=7, seeds=(5,), about="x")) == recipe


def test_trainspeed_hooks_train_two_batches(tmp_path):
    cfg = dataclasses.replace(chapter.SCALES["smoke"], **chapter.tiny(chapter.SCALES["smoke"]))
    crops = chapter.datasets(cfg)
    assert 2 * cfg.batch <= len(crops["train"]) < 2 * cfg.batch + len(chapter.versions(cfg)) and len(crops["test"]) == 2
    histories = chapter.main_training(cfg, crops)
    assert len(histories) == 3 and all(len(h.epochs) == cfg.epochs for h in histories)


def _history(converged: bool, epochs: int = 4) -> chapter.trainer.History:
    """A History whose validation curve is flat (converged by the kit's rule) or still falling."""
    curve = [2.0] * epochs if converged else [2.0 - 0.3 * e for e in range(epochs)]
    return chapter.trainer.History([{"epoch": e + 1, "loss": 1.0, "validation": v} for e, v in enumerate(curve)])


def _per_seed_results(final: dict, noise: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"arm": arm, "seed": s, "stage": k, "Average": e + noise * rng.standard_normal()}
                         for arm, errors in final.items() for s in (0, 1, 2) for k, e in enumerate(errors, start=1)])


FINAL = {"ccnn": [3.0, 2.0, 1.0], "windows-": [4.0], "shake+": [2.5], "sun2013": [3.0, 2.0, 1.5],
         "ccnn@2x": [3.0, 1.8, 0.8], "sun2013@2x": [3.0, 1.8, 0.7]}
IDS = ["stages", "windows", "shake", "sun2013", "stages@2x", "sun2013@2x", "two-stages"]


def test_claims_ledger_from_per_seed_results():
    """Every claim gets its arms from the per-seed errors, paired by seed, with the paper's effect from its
    published averages; an arm is gated on its own trainings only (stages 1..k of every seed)."""
    results = _per_seed_results(FINAL)
    models = {(arm, s): (None, [_history(not (arm == "sun2013" and s == 1 and k == 2)) for k in range(len(errors))])
              for arm, errors in FINAL.items() for s in (0, 1, 2)}
    converged = chapter.convergence(models)
    curves = chapter.validation_curves(models)
    assert chapter.convergence_from_curves(curves) == converged            # what rejudge reads gives the same
    assert set(curves["arm"]) >= {"ccnn stage 1", "sun2013 stage 3", "ccnn@2x stage 2"}
    assert converged[("ccnn", 3)] and converged[("sun2013", 1)] and converged[("sun2013", 2)]
    assert not converged[("sun2013", 3)]                                   # sun2013's stage 3 of seed 1
    assert kit.converged(chapter.stage_trainings(models), "ccnn")
    assert not kit.converged(chapter.stage_trainings(models), "sun2013")
    trade = chapter.stage_trade(results, {"ccnn-1": 1.0, "ccnn-2": 2.0, "ccnn-3": 4.0})
    assert list(trade["seed"]) == [0, 1, 2] and trade["stage 2 gain per ms"].mean() == pytest.approx(1.0, abs=0.05)
    df = chapter.claims(results, converged, trade).to_frame().set_index("claim id")
    assert list(df.index) == IDS
    assert set(df["class"]) <= set(effects.CLASSES) and df["level"].eq(effects.LEVEL).all()
    assert (df["interval method"].str.startswith("paired")).all()
    assert df.loc["stages", "class"] == df.loc["windows", "class"] == df.loc["stages@2x", "class"] == effects.REPRODUCED
    assert df.loc["sun2013", "class"] == effects.REPRODUCED       # 1.0 against 1.5
    assert df.loc["sun2013@2x", "class"] == effects.REVERSED      # 0.8 against 0.7: the baseline wins here
    assert df.loc["two-stages", "class"] == effects.REPRODUCED    # 1 % per ms against 0.5 % per ms
    assert df.loc["shake", "class"] == effects.REPRODUCED         # 2.5 against 3.0
    # the paper's effects from its own averages: Fig. 5 3.38 -> 2.35, Fig. 6 2.35 -> 1.90
    assert df.loc["windows", "paper effect"] == pytest.approx((3.38 - 2.35) / 3.38)
    assert df.loc["shake", "paper effect"] == pytest.approx((2.35 - 1.90) / 2.35)
    # the chain's deciding link is its weakest: stage 2 against stage 1 here (1/3 against 1/2), Fig. 4 2.21 -> 1.37
    assert df.loc["stages", "paper effect"] == pytest.approx((2.21 - 1.37) / 2.21)
    for claim in ("sun2013", "sun2013@2x", "two-stages"):
        assert df.loc[claim, "paper numbers"] == ledger.NONE_PUBLISHED
    assert df["floor"].isna().all()
    # each claim is gated on the arms it compares only
    assert df.loc["sun2013", "not converged"] == "Sun et al.-style"
    assert df.loc["stages", "not converged"] == df.loc["windows", "not converged"] == ""
    assert (df["class at half budget"] == "not run").all()
    # an arm with no evidence (missing from ``converged``) is not converged
    assert chapter.claims(results, {}, trade).to_frame()["not converged"].str.len().gt(0).all()


def test_claims_at_half_budget_and_seed_checks():
    results = _per_seed_results(FINAL)
    trade = chapter.stage_trade(results, {"ccnn-1": 1.0, "ccnn-2": 2.0, "ccnn-3": 4.0})
    half = _per_seed_results({**FINAL, "shake+": [3.5]})                  # at half, shake+ loses
    df = chapter.claims(results, {}, trade, half=half, half_trade=chapter.stage_trade(half, chapter.added_ms(trade)))
    df = df.to_frame().set_index("claim id")
    assert df.loc["shake", "class at half budget"] == effects.REVERSED and df.loc["shake", "budget-sensitive"]
    assert df.loc["windows", "class at half budget"] == effects.REPRODUCED
    assert not df.loc["windows", "budget-sensitive"]
    with pytest.raises(ValueError, match="share their seeds"):
        chapter.claims(results[~((results["arm"] == "shake+") & (results["seed"] == 2))], {}, trade)


def test_validation_curve_is_each_stages_error_on_the_held_out_faces(tiny):
    """Every stage records its error on the held-out faces after each epoch (the curve the convergence
    rule reads); with one epoch that is too short a curve to call converged (no evidence)."""
    model, histories = chapter.train(TINY, tiny["train"], "ccnn", validation=tiny["validation"], progress=False)
    assert all(h.validation is not None and len(h.validation) == 1 for h in histories)
    errors = chapter.point_errors(chapter.predict_stages(model, tiny["validation"])[-1], tiny["validation"])
    assert histories[2].validation[0] == pytest.approx(float(errors.mean()), rel=1e-5)   # stage 3: the final model's
    models = {("ccnn", 0): (model, histories)}
    assert chapter.convergence(models) == {("ccnn", 1): False, ("ccnn", 2): False, ("ccnn", 3): False}
    assert chapter.convergence_table(models).loc[("ccnn", 1), "seeds with a validation curve"] == "1 of 1"
    # the validation faces change no training
    again, _ = chapter.train(TINY, tiny["train"], "ccnn", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_windows_minus_reads_the_whole_crop_at_the_boxs_resolution(tiny):
    """windows- differs from windows+ in its frame only: it reads the whole crop at the box's resolution
    (one input pixel per crop pixel, where windows+ reads the 39-pixel box at 39 x 39)."""
    minus, plus = chapter.VARIANTS["windows-"], chapter.VARIANTS["ccnn"]
    test = tiny["test"]
    assert minus.stage1_input == 2 * plus.stage1_input == test.size == 2 * chapter.box_pixels(TINY)
    whole = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]).expand(len(test), 1, 4)
    x = ccnn.crop_windows(test.images.float(), chapter.frame_boxes(minus, test), whole, minus.stage1_input)
    assert torch.allclose(x[:, 0], test.images.float(), atol=1e-3)      # the crop itself, not resampled
    stage1 = chapter.build(minus).stages[0]
    assert stage1.input_size == 78 and stage1.cnn.feature_shape == (60, 7, 7)


def test_high_resolution_arms_need_their_scale(tiny):
    cfg2 = chapter.at_resolution(TINY, 2)
    assert (cfg2.size, cfg2.image, cfg2.supersample) == (2 * TINY.size, 2 * TINY.image, 2)
    assert chapter.box_pixels(cfg2) == 2 * chapter.box_pixels(TINY) == 78
    assert chapter.variant_of("sun2013@2x") == (chapter.VARIANTS["sun2013"], 2)
    with pytest.raises(ValueError, match="at_resolution"):
        chapter.train(TINY, tiny["train"], "ccnn@2x", progress=False)
    crops2 = chapter.datasets(cfg2)
    assert crops2["train"].size == 156 and crops2["train"].fingerprint != tiny["train"].fingerprint
    model, _ = chapter.train(cfg2, crops2["train"], "ccnn@2x", progress=False)
    assert model.config["supersample"] == 2
    results = chapter.evaluate({("ccnn@2x", 0): (model, [])}, crops2["test"])
    assert list(results["arm"]) == ["ccnn@2x"] * 3 and np.isfinite(results["Average"]).all()


def test_testability_declares_each_comparisons_pixel_scale():
    results = _per_seed_results(FINAL, noise=0.0)
    df = chapter.testability(results, chapter.SCALES["small"]).set_index("comparison")
    one = df.loc["ccnn stage 3 vs ccnn stage 2"]
    assert one["box (px)"] == 39 and one["1 px (% of box width)"] == pytest.approx(100 / 39)
    assert one["beaten error (px)"] == pytest.approx(2.0 * 39 / 100)
    assert one["our effect (px)"] == pytest.approx(1.0 * 39 / 100)
    assert one["paper's effect here (px)"] == pytest.approx((1.37 - 1.03) / 1.37 * 2.0 * 39 / 100)
    two = df.loc["ccnn@2x stage 3 vs ccnn@2x stage 2"]
    assert two["box (px)"] == 78 and two["shake std (px)"] == pytest.approx(0.78)
    assert np.isnan(df.loc["ccnn stage 3 vs sun2013 stage 3", "paper's effect here (px)"])


def test_point_errors_by_yaw_bins_the_test_faces(tiny):
    model = chapter.build(chapter.VARIANTS["ccnn"]).eval()
    df = chapter.point_errors_by_yaw(model, tiny["test"])
    assert df["faces"].sum() == len(tiny["test"]) and tuple(df.columns[2:]) == tuple(chapter.POINTS)
    assert chapter.point_errors_by_yaw(model, tiny["test"].replace(pose=None)).empty


def test_fig3_is_our_stage_two_network():
    df = chapter.fig3_table(ccnn.CCNN())
    assert df["output (ours)"].tolist() == df["output"].tolist()


def test_half_budget_weights_are_evaluated(tiny, tmp_path):
    """Every stage keeps its weights at half its steps; half_model loads them (nothing trained) and
    evaluate_half scores them like evaluate; without them there is nothing to evaluate."""
    models = kit.grid(lambda arm, s: chapter.train(TINY, tiny["train"], arm, work=tmp_path, seed=s, progress=False),
                      ["ccnn", "shake+"], kit.seeds(TINY))
    half = chapter.half_model(TINY, tiny["train"], "ccnn", work=tmp_path, seed=0)
    final = models[("ccnn", 0)][0]
    assert len(half.stages) == 3 and not half.training
    for k, folder in enumerate(chapter.stage_folders(TINY, tiny["train"], "ccnn", work=tmp_path, seed=0)):
        saved = chapter.trainer.half_weights(folder, TINY.precision)
        assert all(torch.equal(a, b) for a, b in zip(half.stages[k].state_dict().values(), saved.values()))
    assert not all(torch.equal(a, b) for a, b in zip(half.state_dict().values(), final.state_dict().values()))
    table = chapter.evaluate_half(TINY, tiny["train"], models, tiny["test"], work=tmp_path)
    assert len(table) == 3 + 1 and np.isfinite(table["Average"]).all()
    assert chapter.evaluate_half(TINY, tiny["train"], models, tiny["test"], work=tmp_path / "none") is None


def test_rejudge_reads_the_committed_results(tmp_path):
    """The committed per-seed files parse into one row per claim with finite effects and a class; where
    the run committed validation curves, they label convergence (checks the files, not the numbers)."""
    folder = tmp_path / "ccnn"
    shutil.copytree(paths.RESULTS_DIR / "ccnn", folder)
    df = chapter.rejudge(folder).to_frame()
    assert [i for i in IDS if i in set(df["claim id"])] == list(df["claim id"])
    assert {"stages", "windows", "shake", "sun2013", "two-stages"} <= set(df["claim id"])
    assert np.isfinite(df[["effect", "low", "high"]].to_numpy(float)).all()
    assert set(df["class"]) <= set(effects.CLASSES)
    if not (folder / "validation_curves.csv").is_file():
        assert df["not converged"].str.len().gt(0).all()
    assert ledger.is_ledger(df)


def test_scales_plan_a_second_look():
    assert chapter.SCALES["smoke"].second_look == ()
    for name in ("small", "gpu", "full"):
        cfg = chapter.SCALES[name]
        assert cfg.second_look == (3, 4, 5) and not set(cfg.second_look) & set(cfg.seeds)
        assert kit.seeds(cfg, 0, look=2) == [0, 1, 2, 3, 4, 5]


def test_shake_scale_from_per_seed_errors():
    results = _per_seed_results({"ccnn": [7.8, 3.0, 2.0]}, noise=0.0)
    df = chapter.shake_scale(results, chapter.SCALES["full"])
    assert df["% of box width"].tolist() == pytest.approx([1.0, 7.8])
    assert df.iloc[:, 2].tolist() == pytest.approx([0.39, 7.8 * 0.39])      # a 39-pixel box
    assert df["× the shake"].iloc[1] == pytest.approx(7.8)


def test_step_decay_sgd_follows_the_papers_schedule():
    w = torch.nn.Parameter(torch.zeros(3))
    opt = chapter.StepDecaySGD([w], lr=5e-3, momentum=0.9, decay=0.9, every=100)
    for _ in range(250):
        opt.zero_grad()
        w.sum().backward()
        opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-3 * 0.9**2)
    resumed = chapter.StepDecaySGD([w], lr=5e-3, momentum=0.9, decay=0.9, every=100)
    resumed.load_state_dict(opt.state_dict())
    for _ in range(50):
        resumed.step()
    assert resumed.param_groups[0]["lr"] == pytest.approx(5e-3 * 0.9**3)
    cfg = chapter.SCALES["full"]
    assert chapter.iterations(cfg, 60000) == 5625 and chapter.final_lr(cfg, 60000) == pytest.approx(5e-3 * 0.9**56)


def test_weight_decay_spares_biases():
    cfg = chapter.SCALES["smoke"]
    opt = chapter.optimizer(cfg)(ccnn.WindowStage(2).parameters())
    decays = {p.ndim > 1: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {True: cfg.weight_decay, False: 0.0}


# --- the ResNets ---------------------------------------------------------------------------------------

def test_resnet_parameter_counts_and_shapes():
    assert resnet.imagenet_parameters("resnet18") == 11_689_512
    assert resnet.imagenet_parameters("resnet34") == 21_797_672
    assert round(ccnn.megabytes(resnet.imagenet_parameters("resnet18")), 2) == 44.59   # Table 3
    m = resnet.FaceBoxRegressor("resnet18").eval()
    images = torch.rand(2, 3, 78, 78)
    boxes = torch.tensor([[19.0, 19.0, 58.0, 58.0], [10.0, 12.0, 60.0, 66.0]])
    assert m(images, boxes).shape == (2, 5, 2) and m.predict(images, boxes).shape == (2, 5, 2)


# --- the aligner ----------------------------------------------------------------------------------------

def test_ccnn_aligner_round_trip(tmp_path, smoke):
    torch.manual_seed(0)
    model = ccnn.CCNN().eval()
    cfg = chapter.SCALES["smoke"]
    pre = {"size": cfg.size, "margin": cfg.margin, "padding": "border"}
    path = aligner.save(tmp_path / "aligner.pt", model, "ccnn", preprocess=pre, provenance={"seed": 0})
    loaded = aligner.load(path)
    assert loaded.kind == "ccnn" and loaded.scheme == "five" and loaded.preprocess["margin"] == 0.5
    faces = chapter.load(cfg, "test")
    photos, boxes = faces["images"][:4], faces["detector_boxes"][:4]
    direct = aligner.make(model, "ccnn", preprocess=pre).predict(list(photos), boxes)
    assert torch.allclose(loaded.predict(list(photos), boxes), direct, atol=1e-5)
    # the aligner reads a photo as the chapter reads its crops: the same crop (compared where neither
    # downsamples, so the aligner's antialiasing does not apply), the face box in the crop's pixels
    small = dataclasses.replace(cfg, image=48)
    faces = chapter.load(small, "test")
    photos, boxes = list(faces["images"][:4]), faces["detector_boxes"][:4]
    assert ((boxes[:, 2:] - boxes[:, :2]).max(1) < small.size / 2).all()
    test = crop_faces(faces, small.size, small.margin, padding_mode="border")
    x, affines = loaded.crops(photos, boxes)
    assert (x * 255 - test.images[:4].float()).abs().max() <= 1
    assert torch.allclose(affines, test.affines[:4], atol=1e-4)
    corners = torch.as_tensor(boxes).view(-1, 2, 2)
    in_crop = (corners @ affines[:, :, :2].transpose(1, 2) + affines[:, None, :, 2]).reshape(-1, 4)
    assert torch.allclose(in_crop, chapter.face_boxes(test)[:4], atol=1e-3)
    expected = test.to_image(model.predict(test.images[:4].float(), chapter.face_boxes(test)[:4]), slice(0, 4))
    assert torch.allclose(loaded.predict(photos, boxes), expected, atol=0.05)


def test_first_stages_is_predict_at_that_stage():
    torch.manual_seed(0)
    model = ccnn.CCNN().eval()
    images, boxes = torch.rand(3, 3, 78, 78), torch.tensor([[19.0, 19.0, 58.0, 58.0]]).expand(3, 4)
    for k in (1, 2):
        first = chapter.first_stages(model, k)
        assert len(first.stages) == k
        assert torch.allclose(first.predict(images, boxes), model.predict(images, boxes, stage=k), atol=1e-5)


# --- real data ------------------------------------------------------------------------------------------

def test_chapter_runs_on_sun_et_al_lists(tmp_path, monkeypatch):
    """DATA=lfpw5: Sun et al.'s list format goes through the chapter's augmentation and training."""
    from PIL import Image

    monkeypatch.delenv("FALIGN_DATA", raising=False)
    folder = tmp_path / "lfpw5"
    g = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        lines = []
        for i in range(n):
            path = folder / "lfw_5590" / f"{split}{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(g.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(path)
            pts = [30, 40, 60, 40, 45, 55, 35, 68, 58, 68]
            lines.append(f"lfw_5590\\{split}{i}.jpg 20 75 22 80 " + " ".join(str(v + i) for v in pts))
        (folder / ("trainImageList.txt" if split == "train" else "testImageList.txt")).write_text("\n".join(lines) + "\n")
    assert "lfpw5" in chapter.DATASETS
    cfg = dataclasses.replace(TINY, n_train=3, n_test=2, batch=6)
    crops = chapter.datasets(cfg, data="lfpw5", root=str(tmp_path))
    # a partial copy: 3 training faces, one held out for validation (at most a fifth, at least one)
    assert len(crops["train"]) == 12 and len(crops["validation"]) == 1 and len(crops["test"]) == 2
    back = crops["train"].to_image(crops["train"].landmarks).view(6, 2, 5, 2)
    assert torch.allclose(back, back[:1].expand_as(back), atol=1e-3)    # every version maps back to its face
    model, _ = chapter.train(cfg, crops["train"], "ccnn", validation=crops["validation"], progress=False)
    results = chapter.evaluate({("ccnn", 0): (model, [])}, crops["test"])
    assert len(results) == 3 and np.isfinite(results["Average"]).all()
