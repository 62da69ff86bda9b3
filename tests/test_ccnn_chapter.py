"""The CCNN chapter module (falign.papers.ccnn.experiment), its aligner kind and the ResNet baselines (fast, CPU)."""

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

TINY = dataclasses.replace(chapter.SCALES["smoke"], n_train=6, n_test=4, batch=8, epochs=1, eval_batch=16)


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
    train, test = smoke["train"], smoke["test"]
    assert len(train) == cfg.n_train * len(chapter.ANGLES) * len(chapter.FLIPS) == 6 * 48
    assert len(test) == cfg.n_test == 24
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, cfg.size, cfg.size)
    assert test.images.dtype == torch.uint8 and test.images.shape[1:] == (3, cfg.size, cfg.size)
    assert train.fingerprint != test.fingerprint
    boxes = chapter.face_boxes(test)
    assert torch.allclose(boxes, test.crop_boxes(), atol=1e-3)          # no rotation: the kit's crop boxes
    assert torch.allclose((boxes[:, 2:] - boxes[:, :2]).amax(1), torch.full((len(test),), 39.0), atol=1e-3)
    full = chapter.SCALES["full"]
    assert (full.n_train, full.n_test, len(full.seeds)) == (10000, 3466, 3)


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
    assert chapter.unique_stages(names) == [("ccnn", 1), ("ccnn", 2), ("ccnn", 3), ("sun2013", 2), ("sun2013", 3),
                                            ("windows-", 1)]
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


class _History:
    def __init__(self, converged: bool):
        self.ok = converged
        self.validation = [1.0, 1.0, 1.0] if converged else None

    def converged(self) -> bool:
        return self.ok


def _per_seed_results(final: dict, noise: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"arm": arm, "seed": s, "stage": k, "Average": e + noise * rng.standard_normal()}
                         for arm, errors in final.items() for s in (0, 1, 2) for k, e in enumerate(errors, start=1)])


FINAL = {"ccnn": [3.0, 2.0, 1.0], "windows-": [4.0], "shake+": [2.5], "sun2013": [3.0, 2.0, 1.5],
         "resnet18": [0.8], "resnet34": [1.3]}


def test_claims_ledger_from_per_seed_results():
    """Every claim gets its arms from the per-seed errors, paired by seed, with the paper's effect from its
    published averages; an arm is gated on its own trainings only (stages 1..k of every seed)."""
    results = _per_seed_results(FINAL)
    models = {(arm, s): (None, [_History(not (arm == "sun2013" and s == 1 and k == 2)) for k in range(len(errors))])
              for arm, errors in FINAL.items() for s in (0, 1, 2)}
    converged = chapter.convergence(models)
    assert converged[("ccnn", 3)] and converged[("sun2013", 1)] and converged[("sun2013", 2)]
    assert not converged[("sun2013", 3)]                                   # sun2013's stage 3 of seed 1
    assert kit.converged(chapter.stage_trainings(models), "ccnn")
    assert not kit.converged(chapter.stage_trainings(models), "sun2013")
    trade = chapter.stage_trade(results, {"ccnn-1": 1.0, "ccnn-2": 2.0, "ccnn-3": 4.0})
    assert list(trade["seed"]) == [0, 1, 2] and trade["stage 2 gain per ms"].mean() == pytest.approx(1.0, abs=0.05)
    df = chapter.claims(results, converged, trade).to_frame().set_index("claim id")
    assert list(df.index) == ["stages", "windows", "shake", "sun2013", "resnet18", "resnet34", "two-stages"]
    assert set(df["class"]) <= set(effects.CLASSES) and df["level"].eq(effects.LEVEL).all()
    assert (df["interval method"].str.startswith("paired")).all()
    assert df.loc["stages", "class"] == df.loc["windows", "class"] == effects.REPRODUCED
    assert df.loc["resnet18", "class"] == effects.REVERSED        # the ResNet is clearly better here
    assert df.loc["resnet34", "class"] == effects.REPRODUCED
    assert df.loc["two-stages", "class"] == effects.REPRODUCED    # 1 % per ms against 0.5 % per ms
    assert df.loc["shake", "class"] == effects.REPRODUCED         # 2.5 against 3.0
    # the paper's effects from its own averages: Fig. 5 3.38 -> 2.35, Fig. 6 2.35 -> 1.90
    assert df.loc["windows", "paper effect"] == pytest.approx((3.38 - 2.35) / 3.38)
    assert df.loc["shake", "paper effect"] == pytest.approx((2.35 - 1.90) / 2.35)
    # the chain's deciding link is its weakest: stage 2 against stage 1 here (1/3 against 1/2), Fig. 4 2.21 -> 1.37
    assert df.loc["stages", "paper effect"] == pytest.approx((2.21 - 1.37) / 2.21)
    for claim in ("sun2013", "resnet18", "resnet34", "two-stages"):
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
        chapter.claims(results[~((results["arm"] == "resnet18") & (results["seed"] == 2))], {}, trade)


def test_convergence_needs_a_validation_curve(tiny):
    """CCNN's trainings hold out no validation faces: no curve, so not converged (no evidence)."""
    model, histories = chapter.train(TINY, tiny["train"], "shake+", progress=False)
    assert histories[0].validation is None and not histories[0].converged()
    models = {("shake+", 0): (model, histories)}
    assert chapter.convergence(models) == {("shake+", 1): False}
    table = chapter.convergence_table(models)
    assert table.loc[("shake+", 1), "seeds converged"] == "0 of 1"


def test_half_budget_weights_are_evaluated(tiny, tmp_path):
    """Every stage keeps its weights at half its steps; half_model loads them (nothing trained) and
    evaluate_half scores them like evaluate; without them there is nothing to evaluate."""
    models = kit.grid(lambda arm, s: chapter.train(TINY, tiny["train"], arm, work=tmp_path, seed=s, progress=False),
                      ["ccnn", "resnet18"], kit.seeds(TINY))
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
    """The committed per-seed files parse into one row per claim with finite effects and a class; with no
    validation curve committed, every arm is not converged (checks the files, not the numbers)."""
    folder = tmp_path / "ccnn"
    shutil.copytree(paths.RESULTS_DIR / "ccnn", folder)
    df = chapter.rejudge(folder).to_frame()
    assert list(df["claim id"]) == ["stages", "windows", "shake", "sun2013", "resnet18", "resnet34", "two-stages"]
    assert np.isfinite(df[["effect", "low", "high"]].to_numpy(float)).all()
    assert set(df["class"]) <= set(effects.CLASSES)
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
    assert chapter.iterations(cfg, 60000) == 1875 and chapter.final_lr(cfg, 60000) == pytest.approx(5e-3 * 0.9**18)


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
    loss = resnet.loss_fn(m.train(), {"image": images, "box": boxes, "target": torch.full((2, 5, 2), 0.5)})
    loss.backward()
    assert torch.isfinite(loss) and m.net.fc.weight.grad.abs().sum() > 0


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
    assert len(crops["train"]) == 18 and len(crops["test"]) == 2
    back = crops["train"].to_image(crops["train"].landmarks).view(6, 3, 5, 2)
    assert torch.allclose(back, back[:1].expand_as(back), atol=1e-3)    # every version maps back to its face
    model, _ = chapter.train(cfg, crops["train"], "ccnn", progress=False)
    results = chapter.evaluate({("ccnn", 0): (model, [])}, crops["test"])
    assert len(results) == 3 and np.isfinite(results["Average"]).all()
