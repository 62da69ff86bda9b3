"""CFDRNN: heat-maps and their decoding (Eq. 1, 5), the layer tables (Tables 2-4), the Ej link between
LML branches, the losses, the augmentation, and the chapter's data on real 300-W fixtures (the
private set's indoor and outdoor folders included)."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from falign.kit.crops import load_faces
from falign.kit import chapter as kit, effects, train as trainer
from falign.papers.cfdrnn import experiment as chapter, model as cfdrnn, published as paper
from test_data_formats import make_300w  # the real-format fixture

torch.set_num_threads(1)


def tiny(live: bool = False, **kwargs) -> cfdrnn.CFDRNN:
    """A 32-pixel network; ``live``: its dL output layers random instead of zero (their init), so the
    LML's output depends on its inputs."""
    torch.manual_seed(0)
    net = cfdrnn.CFDRNN(size=32, width=0.125, **kwargs).eval()
    for branch in net.lml if live else ():
        torch.nn.init.normal_(branch.head[-1].weight, std=0.1)
    return net


# -- Eq. 5 and Eq. 1 ---------------------------------------------------------------------------------
def test_heatmap_argmax_round_trip_within_half_a_cell():
    """A Gaussian drawn for image point (x, y) decodes to (x, y) within s/2 per coordinate (points
    within the grid's reach: heat-map pixel u stands for image pixel s u, u = 0..15)."""
    points = torch.rand(4, 68, 2, generator=torch.Generator().manual_seed(0)) * 60
    maps = cfdrnn.render_heatmaps(points, 16)
    assert maps.shape == (4, 68, 16, 16)
    decoded = cfdrnn.coarse_landmarks(maps)
    assert (decoded - points).abs().max() <= cfdrnn.S / 2 + 1e-5


def test_heatmap_is_eq5():
    maps = cfdrnn.render_heatmaps(torch.tensor([[[20.0, 8.0]]]), 16)[0, 0]   # centre (5, 2) in heat-map pixels
    assert maps[2, 5] == pytest.approx(1.0)
    assert maps[2, 6] == pytest.approx(np.exp(-1 / (2 * 1.3 ** 2)))
    assert maps[3, 6] == pytest.approx(np.exp(-2 / (2 * 1.3 ** 2)))
    assert maps.min() >= 0 and maps[15, 0] < 1e-6                             # zero background


def test_argmax_ties_go_to_the_first_maximum_in_row_major_order():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 1, 1, 3] = maps[0, 1, 2, 0] = 1.0
    assert cfdrnn.heatmap_argmax(maps)[0].tolist() == [[0.0, 0.0], [3.0, 1.0]]


# -- Tables 2-4 ----------------------------------------------------------------------------------------
def _convs(module: torch.nn.Module) -> list[tuple[int, int, int]]:
    """(kernel, filters, stride) of every conv in module order."""
    return [(m.kernel_size[0], m.out_channels, m.stride[0]) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def _printed(table) -> list[tuple[int, int, int]]:
    rows = table[table["type"] == "conv"]
    return [(int(k), int(f), int(s)) for k, f, s in zip(rows["kernel"], rows["filters"], rows["stride"])]


def test_layers_follow_tables_2_to_4_at_full_size():
    with torch.device("meta"):
        net = cfdrnn.CFDRNN()                      # the paper's 256x256 network, no memory allocated
    table2 = _printed(paper.table2())
    resizer = _convs(net.resizer.reduce) + _convs(net.resizer.d) + _convs(net.resizer.wide)
    assert resizer == table2 and _convs(net.resizer_r) == table2
    assert all(_convs(b) == _printed(paper.table3()) for b in net.hml) and len(net.hml) == 3
    assert all(_convs(b) == _printed(paper.table4()) for b in net.lml) and len(net.lml) == 4
    pools = [m for m in net.resizer.reduce if isinstance(m, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2), (2, 2)]   # Table 2 rows 5, 10


def test_product_shapes_at_full_size():
    """Fig. 2: D0, Dr and every Hj are 64x64x68 for a 256x256 image; Ej is 7x7x256 and dLj one
    136-vector (Table 4's strides)."""
    with torch.device("meta"):
        net = cfdrnn.CFDRNN().eval()
        seen = {}
        net.lml[1].to_e.register_forward_hook(lambda m, a, out: seen.__setitem__("E2", out.shape))
        net.lml[1].head.register_forward_hook(lambda m, a, out: seen.__setitem__("head", out.shape))
        net.resizer_r.register_forward_hook(lambda m, a, out: seen.__setitem__("Dr, Hr", [o.shape for o in out]))
        out = net(torch.empty(2, 3, 256, 256))
    assert out.d0.shape == (2, 68, 64, 64) and seen["Dr, Hr"] == [(2, 68, 64, 64)] * 2
    assert [h.shape for h in out.heatmaps] == [(2, 68, 64, 64)] * 4
    assert seen["E2"] == (2, 256, 7, 7) and seen["head"] == (2, 136, 1, 1)
    assert [d.shape for d in out.deltas] == [(2, 68, 2)] * 4


def test_lml_inputs_with_and_without_the_second_resizer():
    assert tiny().lml[0].to_e[0][0].in_channels == 4 * 68          # D0 (+) Hj (+) Dr (+) Hr
    ablated = tiny(second_resizer=False)
    assert ablated.resizer_r is None and ablated.lml[0].to_e[0][0].in_channels == 2 * 68
    assert ablated(torch.rand(2, 3, 32, 32)).deltas[3].shape == (2, 68, 2)


# -- The Ej link (Table 4 row 7) -----------------------------------------------------------------------
def test_ej_feeds_the_next_branch_only():
    net = tiny(live=True)
    x = torch.rand(2, 3, 32, 32)
    base = net(x).deltas
    handle = net.lml[1].to_e.register_forward_hook(lambda m, a, out: out + 1.0)   # change E2
    try:
        changed = net(x).deltas
    finally:
        handle.remove()
    assert torch.equal(changed[0], base[0])                         # branch 1 is upstream of E2
    assert not torch.allclose(changed[2], base[2])                  # branch 3 reads E3 (+) E2
    # and branch j's 3x3x512 layer takes Ej (+) Ej-1: twice E's channels
    assert net.lml[2].head[0][0].in_channels == 2 * net.lml[2].e_channels


# -- Eq. 4 and the losses ------------------------------------------------------------------------------
def test_landmarks_are_coarse_plus_residual():
    net = tiny()
    out = net(torch.rand(2, 3, 32, 32))
    out = out._replace(deltas=[torch.full_like(d, 0.25) for d in out.deltas])
    final = net.landmarks(out)[-1]
    assert torch.allclose(final, cfdrnn.coarse_landmarks(out.heatmaps[3]) + 0.25 * 32)


def test_losses_reach_the_second_resizer_only_through_the_lml():
    net = tiny(live=True).train()
    x, points = torch.rand(4, 3, 32, 32), torch.rand(4, 68, 2) * 31
    cfdrnn.loss(net, x, points, delta_weight=0.0).backward()
    assert all(p.grad is None or not p.grad.any() for p in net.resizer_r.parameters())
    assert net.resizer.wide[-1][0].weight.grad.abs().sum() > 0
    net.zero_grad()
    loss = cfdrnn.loss(net, x, points)
    assert torch.isfinite(loss)
    loss.backward()
    assert net.resizer_r.reduce[0][0].weight.grad.abs().sum() > 0


def test_perfect_heatmaps_and_residuals_give_zero_loss():
    net = tiny()
    points = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(1)) * 31
    out = net(torch.rand(2, 3, 32, 32))
    target = cfdrnn.render_heatmaps(points, 8)
    residual = (points - cfdrnn.coarse_landmarks(target)) / 32
    perfect = out._replace(heatmaps=[target] * 4, deltas=[residual] * 4)
    assert cfdrnn.loss(net, torch.empty(2, 3, 32, 32), points, out=perfect) == pytest.approx(0.0, abs=1e-6)


# -- The chapter ---------------------------------------------------------------------------------------
def test_augmentation_moves_pixels_and_landmarks_together():
    cfg = dataclasses.replace(chapter.SCALES["smoke"], colour=0.0, rotate=20.0, rescale=0.2, shift=0.1)
    images = torch.zeros(6, 3, 32, 32)
    points = torch.tensor([[9.0, 21.0]]).expand(6, 1, 2).clone()
    images[:, :, 20:23, 8:11] = 1.0                                  # a bright 3x3 dot centred on the point
    torch.manual_seed(0)
    warped, moved = chapter.augment(images, points, cfg)
    assert not torch.allclose(moved, points)
    mass = warped[:, 0]
    grid = torch.arange(32.0)
    centroid = torch.stack([(mass.sum(1) * grid).sum(1), (mass.sum(2) * grid).sum(1)], 1) / mass.sum((1, 2))[:, None]
    assert (centroid - moved[:, 0]).abs().max() < 0.5


def test_headline_ratios_follow_from_table7_and_table5():
    t7 = paper.table7().set_index(["test set", "method"])
    failure = chapter.relative_change(t7.loc[("300-W Private", "CFDRNN"), "failure"],
                                      t7.loc[("300-W Private", "DAN-Menpo [20]"), "failure"])
    auc = chapter.relative_change(t7.loc[("300-W Private", "CFDRNN"), "AUC0.08"],
                                  t7.loc[("300-W Private", "DAN-Menpo [20]"), "AUC0.08"], better="higher")
    nme = chapter.relative_change(paper.number("table5/inter-ocular-cfdrnn/challenging"),
                                  paper.number("table5/inter-ocular-dan-menpo-20/challenging"))
    assert round(failure) == paper.number("text_numbers/private-failure-reduction-vs-dan-menpo")
    assert round(auc, 1) == paper.number("text_numbers/private-auc-gain-vs-dan-menpo")
    assert round(nme) == paper.number("text_numbers/challenging-nme-gain-vs-dan-menpo")


def test_recipe_leaves_out_what_changes_no_training():
    cfg = chapter.SCALES["small"]
    quiet = {"n_test", "seeds", "second_look", "eval_batch", "ced_limit", "speed_repeats", "caveat"}
    assert set(kit.recipe(cfg)) == {f.name for f in dataclasses.fields(cfg)} - quiet
    assert kit.recipe(dataclasses.replace(cfg, ced_limit=0.08, eval_batch=1)) == kit.recipe(cfg)
    assert chapter.tiny(cfg) == {"n_train": 2 * cfg.batch, "n_val": 2, "n_test": {s: 2 for s in cfg.n_test}}


def _results(seeds=(0, 1, 2)) -> "pd.DataFrame":
    """A results table of every arm in the form of :func:`chapter.results`: every later stage and
    CFDRNN better by a margin far beyond the seeds' spread; the detached arm's decodes better still."""
    rows = []
    for arm, offset in (("cfdrnn", 0.0), (chapter.SECOND_RESIZER, 1.0), (chapter.DETACHED, -0.5)):
        for seed in seeds:
            for k, stage in enumerate(chapter.STAGES):
                for norm in chapter.NORMS:
                    for subset in ("common", "challenging", "full", "indoor", "outdoor", "private"):
                        nme = 10.0 - k + offset + 0.01 * seed
                        rows.append({"arm": arm, "seed": seed, "stage": stage, "norm": norm, "subset": subset,
                                     "n": 8, "NME (%)": nme, "AUC0.08 (%)": 50 - nme, "failure (%)": nme})
    return pd.DataFrame(rows)


def _floor(nme: float = 5.0) -> "pd.DataFrame":
    """A heat-map floor table in the form of :func:`chapter.heatmap_floor`."""
    return pd.DataFrame([{"method": "s·argmax of the true heat-map", "norm": norm, "subset": subset, "n": 8,
                          "NME (%)": nme, "AUC0.08 (%)": 30.0, "failure (%)": 5.0}
                         for norm in chapter.NORMS for subset in ("common", "challenging", "full", "private")])


def test_claims_and_tables_from_a_results_table():
    res = _results()
    every = {arm: True for arm in chapter.ARMS}
    df = chapter.claims(res, every, _floor()).to_frame().set_index("claim id")
    assert list(df.index) == list(chapter.CLAIMS)
    assert set(df["class"]) == {effects.REPRODUCED}, df["class"]
    assert (df["not converged"] == "").all() and (df["class at half budget"] == "not run").all()
    # no claim against DAN-Menpo (not trained here): the design claims have no published effect
    assert df["paper effect"].isna().all()
    # the decode floor limits the heat-map decodes' chains: F over the smallest beaten stage (s·argmax(H3))
    assert df.loc["hml-stages", "floor"] == pytest.approx(5.0 / np.mean([8.0, 8.01, 8.02]))
    assert df.loc["hml-stages-detached", "floor"] == pytest.approx(5.0 / np.mean([7.5, 7.51, 7.52]))
    assert df["floor"].drop(["hml-stages", "hml-stages-detached"]).isna().all()
    # a claim is gated on the arms it compares only: the stage claims read CFDRNN's trainings alone
    gated = chapter.claims(res, {"cfdrnn": True, chapter.SECOND_RESIZER: False, chapter.DETACHED: True},
                           _floor()).to_frame().set_index("claim id")
    assert (gated.loc[["hml-stages", "lml-residual", "lml-beyond-grid", "detach-helps-h4"], "not converged"] == "").all()
    assert gated.loc["second-resizer", "not converged"] == chapter.ARMS[chapter.SECOND_RESIZER]["label"]
    # L4 against perfect heat-maps: above the decode's error, the paper's side lost
    assert chapter.claims(res, every, _floor(1.0)).to_frame().set_index("claim id").loc[
        "lml-beyond-grid", "class"] == effects.REVERSED
    # the half-budget check: the same table at half budget leaves every class as it is
    halved = chapter.claims(res, every, _floor(), half=res).to_frame()
    assert (halved["class at half budget"] == halved["class"]).all() and not halved["budget-sensitive"].any()
    assert "the paper's side lost no claim" in chapter.where_it_lost(df.reset_index())
    # the headline ratios are the paper's, beside our CFDRNN's own number (no comparison of ours)
    ratios = chapter.headline_ratios(res).set_index("quantity")
    assert ratios.loc["NME on the challenging set", "ours: CFDRNN (SynthFace, mean over seeds)"] == pytest.approx(3.01)
    assert ratios.loc["NME on the challenging set", "paper: CFDRNN"] == paper.number("table5/inter-ocular-cfdrnn/challenging")
    stages = chapter.stage_table(res).set_index(["norm", "stage"])
    assert stages.loc[("inter-ocular", "L4"), "full"] == pytest.approx(3.01)
    t7 = chapter.table7(res, chapter.WITH_ABLATION)
    assert {"CFDRNN", chapter.WITH_ABLATION[(chapter.SECOND_RESIZER, "L4")]} <= set(t7["method"])
    # the discussion's sentences come from the ledger and the diagnosis
    diagnosed = pd.DataFrame([{"arm": arm, "stage": j, "dead maps (%)": 1.0, "neighbour jumps (%)": 2.0,
                               "H NME (%)": 10.0 + j * (1 if arm == "cfdrnn" else -1)}
                              for arm in ("cfdrnn", chapter.DETACHED) for j in (1, 2, 3, 4)])
    text = chapter.discussion(df.reset_index(), diagnosed, _floor(), chapter.SCALES["small"])
    assert "rose at every stage" in text and "fell at every stage" in text and "float32" in text
    assert "spoil them" in text                                            # detach-helps-h4 reproduced


def test_table1_names_synthface_stand_ins():
    res = _results()
    ours = chapter.table1(res, "SynthFace train", data="synthetic")
    ours = ours[ours["paper"] == "this book"]
    assert len(ours) and ours["test"].str.startswith("SynthFace stand-in for ").all()
    real = chapter.table1(res, "300w train", data="300w")
    assert not real.loc[real["paper"] == "this book", "test"].str.contains("SynthFace").any()


def test_detached_lml_stops_its_gradients_at_the_heatmaps():
    """The diagnosis arm: the LML's loss reaches the second resizer but neither D0 nor the HML."""
    torch.manual_seed(0)
    images, weights = torch.rand(8, 3, 64, 64), torch.randn(8, 68, 2)
    for detach in (False, True):
        net = cfdrnn.CFDRNN(size=64, width=0.125, detach_lml=detach)
        for branch in net.lml:                  # the output layers start at zero, which passes back no gradient
            torch.nn.init.normal_(branch.head[-1].weight, std=0.1)
        out = net(images)
        sum((d * weights).sum() for d in out.deltas).backward()       # the LML's outputs only
        grad = lambda module: sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
        assert grad(net.resizer_r) > 0
        assert (grad(net.hml) == 0) == (grad(net.resizer) == 0) == detach


def test_convergence_from_committed_curves():
    flat = [{"arm": arm, "seed": s, "epoch": e, "loss": 1.0, "validation NME (%)": 10.0 - (e < 3)}
            for arm in chapter.ARMS for s in (0, 1) for e in range(1, 13)]
    curves = pd.DataFrame(flat)
    assert chapter.convergence_from_curves(curves) == {arm: True for arm in chapter.ARMS}
    falling = curves.assign(**{"validation NME (%)": 20.0 - curves["epoch"]})
    assert chapter.convergence_from_curves(falling) == {arm: False for arm in chapter.ARMS}
    assert chapter.convergence_from_curves(curves[curves["arm"] == "cfdrnn"])[chapter.SECOND_RESIZER] is False


def test_rejudge_reads_the_committed_results(tmp_path):
    """The committed per-seed files parse into one row per claim with finite effects and a class (this
    checks the files, not the numbers)."""
    committed = Path(__file__).resolve().parents[1] / "results" / "cfdrnn"
    for name in ("results_per_seed.csv", "heatmap_floor.csv", f"{chapter.CURVES}.csv", f"{chapter.HALF_RESULTS}.csv"):
        if (committed / name).is_file():
            shutil.copy(committed / name, tmp_path / name)
    df = chapter.rejudge(tmp_path).to_frame()
    assert [c for c in chapter.CLAIMS if c in set(df["claim id"])] == list(df["claim id"])
    assert {"hml-stages", "lml-residual", "lml-beyond-grid", "second-resizer"} <= set(df["claim id"])
    assert np.isfinite(df["effect"]).all() and set(df["class"]) <= set(effects.CLASSES)
    assert np.isfinite(df[["low", "high"]].to_numpy()).all()          # three seeds: every claim has an interval


SUBSETS = ("afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset", "ibug",
           "300W/01_Indoor", "300W/02_Outdoor")


def test_private_set_loader_on_a_real_format_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    make_300w(tmp_path / "300w", subsets=SUBSETS)
    load = lambda split: load_faces("300w", split, preset=chapter.PRESET, n=None, root=str(tmp_path))  # noqa: E731
    indoor, outdoor, private = load("indoor"), load("outdoor"), load("private")
    assert [len(indoor), len(outdoor), len(private)] == [2, 2, 4]
    assert {s.extra["subset"] for s in indoor} == {"300W/01_Indoor"}
    assert private.counts == {"300W/01_Indoor": 2, "300W/02_Outdoor": 2}
    assert np.array_equal(private.landmarks, np.concatenate([indoor.landmarks, outdoor.landmarks]))
    assert private.scheme == "ibug68"


def test_chapter_runs_on_real_300w_fixtures(tmp_path, monkeypatch):
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    make_300w(tmp_path / "300w", subsets=SUBSETS)
    # float32 (the smoke scale's): batch 2 with bf16 autocast *and* channels-last made a convolution's
    # backward return NaN on this fixture (AMD EPYC without AMX, torch 2.13), which train.fit refuses.
    cfg = dataclasses.replace(chapter.SCALES["smoke"], batch=2, epochs=1)
    crops = chapter.datasets(cfg, data="300w", root=str(tmp_path))
    assert [len(crops[k]) for k in ("train", "validation", "common", "challenging", "indoor", "outdoor",
                                    "LFPW", "Helen")] == [5, 1, 4, 2, 2, 2, 2, 2]
    assert crops["train"].images.shape[1:] == (3, cfg.size, cfg.size)
    model, history = chapter.train(cfg, crops, tmp_path / "work", seed=0, progress=False)
    assert len(history.epochs) == 1 and "validation" in history.epochs[0]
    # the half-budget weights the claims' budget check evaluates are where the chapter looks for them
    half = trainer.half_weights(chapter.checkpoint_folder(cfg, crops, tmp_path / "work", "cfdrnn", 0), cfg.precision)
    assert half is not None and half.keys() == model.state_dict().keys()
    assert chapter.half_budget(cfg, crops, tmp_path / "work", [0]) is None      # the ablation was not trained
    tests = chapter.test_sets(crops)
    res = chapter.results({("cfdrnn", 0): (model, history)}, tests)
    assert {"full", "private", "LFPW", "Helen"} <= set(res["subset"])
    assert set(res["norm"]) == {"inter-ocular", "inter-pupil"} and set(res["stage"]) == set(chapter.STAGES)
    assert np.isfinite(res["NME (%)"]).all()


def test_aligner_round_trip(tmp_path):
    from falign.kit import aligner

    net = tiny(live=True)
    path = aligner.save(tmp_path / "aligner.pt", net, "cfdrnn", preprocess={"size": 32, "margin": 0.15})
    loaded = aligner.load(path)
    assert loaded.kind == "cfdrnn" and loaded.scheme == "ibug68"
    assert loaded.preprocess == {"size": 32, "margin": 0.15, "grey": False, "padding": "border"}
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    box = [[20.0, 10.0, 52.0, 44.0]]
    points = loaded.predict(photo, box)
    assert points.shape == (1, 68, 2) and torch.isfinite(points).all()
    assert torch.equal(points, aligner.make(net, "cfdrnn", preprocess={"size": 32, "margin": 0.15}).predict(photo, box))


def test_diagnosis_reads_the_public_set_of_every_seed():
    """diagnose: the stage table of each seed's model on common + challenging pooled, mean over seeds;
    worsening_landmarks ranks the points by how much their decode worsens from H1 to H4."""
    from falign.papers.cfdrnn import diagnosis

    cfg = dataclasses.replace(chapter.SCALES["smoke"], **chapter.tiny(chapter.SCALES["smoke"]))
    tests = chapter.test_sets(chapter.datasets(cfg))
    torch.manual_seed(0)
    models = {("cfdrnn", s): (chapter.build(cfg).eval(), None) for s in (0, 1)}
    public, norm = chapter.public_set(tests)
    assert len(public) == len(tests["common"]) + len(tests["challenging"]) and norm.shape == (len(public),)
    table = chapter.diagnose(models, tests).set_index("stage")
    one = {s: diagnosis.stage_table(m, public.float_images(), public.landmarks, norm) for (_, s), (m, _) in models.items()}
    assert table["H NME (%)"].to_numpy() == pytest.approx(np.mean([t["H NME (%)"] for t in one.values()], 0), rel=1e-5)
    assert (table["arm"] == "cfdrnn").all() and (table["seeds"] == 2).all()
    worst = chapter.worsening_landmarks(models[("cfdrnn", 0)][0], tests, shown=5)
    assert len(worst) == 5 and worst["H4 - H1"].is_monotonic_decreasing
