"""CCNN model (falign.papers.ccnn.model) and the paper's transcribed numbers (fast, CPU)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from falign.papers.ccnn import model as ccnn, published as paper

torch.set_num_threads(1)


def blob_images(points: torch.Tensor, size: int = 64, sigma: float = 1.0) -> torch.Tensor:
    """(B, 3, size, size) images with a bright Gaussian blob at each pixel point (B, N, 2)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    d2 = (xx - points[..., 0, None, None]) ** 2 + (yy - points[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2)).amax(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


# --- Sec. 3.2.4: parameters ---------------------------------------------------------------------

def test_weights_without_biases_total_643920():
    df = ccnn.count_parameters(ccnn.CCNN())
    assert int(df["weights"].sum()) == ccnn.PAPER_WEIGHTS == 643_920
    per_stage = df.groupby("stage")["weights"].sum().to_dict()
    assert per_stage == {1: 286_320, 2: 178_800, 3: 178_800}
    per_net = df.groupby("network")["weights"].sum()
    assert per_net["F1"] == 95_760 and per_net["EN1"] == per_net["NM1"] == 95_280
    assert (per_net.drop(["F1", "EN1", "NM1"]) == 17_880).all() and len(per_net) == 23   # 23 CNNs (Sec. 3)
    assert round(ccnn.megabytes(int(df["weights"].sum())), 2) == ccnn.PAPER_MB == 2.46
    assert int(df["with_biases"].sum()) == sum(p.numel() for p in ccnn.CCNN().parameters()) == 647_102


def test_table2_layer_counts_match_the_model():
    printed = paper.table2().dropna(subset=["parameters"]).set_index("name")["parameters"]
    ours = ccnn.count_parameters(ccnn.Stage1()).query("network == 'F1'").set_index("layer")["weights"]
    assert [ours[k] for k in ("conv1", "conv2", "conv3", "fc1")] == printed.astype(int).tolist()


# --- shapes ---------------------------------------------------------------------------------------

def test_shapes_of_each_stage():
    images = torch.rand(4, 3, 50, 60)
    boxes = torch.tensor([[5.0, 4.0, 45.0, 48.0]]).repeat(4, 1)
    s1 = ccnn.Stage1()
    out = s1(images, boxes)
    assert out.points.shape == (4, 5, 2) and out.rel.shape == (4, 11, 2) and out.windows.shape == (4, 11, 4)
    s2 = ccnn.WindowStage(2)
    out2 = s2(images, out.points, boxes)
    assert out2.points.shape == (4, 5, 2) and out2.rel.shape == (4, 10, 2) and out2.windows.shape == (4, 10, 4)
    model = ccnn.CCNN()
    assert model(images, boxes).shape == (3, 4, 5, 2)
    assert model.predict(images, boxes).shape == (4, 5, 2)
    assert model.predict(images).shape == (4, 5, 2)                   # no boxes: the image is the box
    assert ccnn.CCNN(n_stages=2)(images).shape == (2, 4, 5, 2)
    assert s2.names[:5] == ("LE21", "RE21", "N21", "LM21", "RM21") and s2.names[5] == "LE22"
    # Table 2 / Fig. 3 feature sizes: 3x3x60 and 2x2x40 before the fc layers
    assert s1.cnn.feature_shape == (60, 3, 3) and s2.cnn.feature_shape == (40, 2, 2)


def test_predict_returns_pixels_of_the_box():
    model = ccnn.CCNN(n_stages=1)
    images = torch.rand(2, 3, 40, 40)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 5.0, 30.0, 35.0]])
    box_pts = model.eval()(images, boxes)[0]
    assert torch.allclose(model.predict(images, boxes), ccnn.box_to_pixels(box_pts, boxes), atol=1e-5)
    assert torch.allclose(ccnn.pixels_to_box(ccnn.box_to_pixels(box_pts, boxes), boxes), box_pts, atol=1e-6)


# --- windows and relative coordinates (Eq. 5, Eq. 9) ----------------------------------------------

def test_to_window_from_window_round_trip():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 10, 2, generator=g)
    wins = torch.cat([torch.rand(3, 10, 2, generator=g), 0.1 + torch.rand(3, 10, 2, generator=g)], -1)
    assert torch.allclose(ccnn.from_window(ccnn.to_window(pts, wins), wins), pts, atol=1e-6)
    centre = wins[..., :2] + wins[..., 2:] / 2
    assert torch.allclose(ccnn.to_window(centre, wins), torch.full_like(centre, 0.5))


def test_windows_of_eq5_are_centred_on_their_anchor():
    anchors = torch.tensor([[[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]]])
    stage = ccnn.WindowStage(2).eval()
    w = stage.windows(anchors)
    assert torch.allclose(w[..., :2] + w[..., 2:] / 2, anchors[:, [0, 1, 2, 3, 4] * 2])
    assert torch.allclose(w[0, :5, 2:], torch.full((5, 2), 0.32))      # 2 x a1: +-0.16 of the box
    assert torch.allclose(w[0, 5:, 2:], torch.full((5, 2), 0.36))
    full = ccnn.WindowStage(3, extent="full").eval().windows(anchors)
    assert torch.allclose(full[0, :5, 2:], torch.full((5, 2), 0.08))


def test_crop_of_the_whole_box_reproduces_the_image():
    images = torch.rand(2, 3, 39, 39)
    whole = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]] * 2)
    crops = ccnn.crop_windows(images, ccnn.default_boxes(images, None), whole, 39)
    assert torch.allclose(crops[:, 0], images, atol=1e-5)


def test_a_point_placed_in_a_window_comes_back_where_it_was():
    """A blob at a known pixel, seen through a window (box units, a box that is not the image), lands
    at the window pixel Eq. 9 predicts, and from_window maps that back to the blob."""
    pix = torch.tensor([[[37.0, 22.0]]])
    images = blob_images(pix, size=64)
    boxes = torch.tensor([[10.0, 6.0, 58.0, 62.0]])                   # 48 x 56 px
    truth = ccnn.pixels_to_box(pix, boxes)
    win = torch.cat([truth - torch.tensor([0.05, 0.12]), torch.tensor([[[0.3, 0.3]]])], -1)  # off-centre
    size = 31
    crop = ccnn.crop_windows(images, boxes, win, size)[0, 0, 0]
    iy, ix = divmod(int(crop.argmax()), size)
    rel_found = (torch.tensor([[[ix, iy]]], dtype=torch.float32) + 0.5) / size
    rel_true = ccnn.to_window(truth, win)
    assert torch.allclose(rel_found, rel_true, atol=1.0 / size)
    back = ccnn.box_to_pixels(ccnn.from_window(rel_found, win), boxes)
    cell = torch.tensor([0.3 * 48, 0.3 * 56]) / size
    assert ((back - pix).abs() <= cell).all()


def test_stage1_parts_are_the_top_and_bottom_of_the_face():
    """EN1 sees rows 0-30 of the 39x39 face, NM1 rows 8-38 (Decision ccnn.en1-nm1-region)."""
    face = torch.arange(39.0)[None, None, :, None].expand(1, 3, 39, 39).contiguous()   # value = row
    parts = ccnn.crop_windows(face, ccnn.default_boxes(face, None), ccnn.Stage1().regions[None], 39)
    rows = parts[0, :, 0, :, 0]                                        # (3 parts, 39 rows)
    assert torch.allclose(rows[0], torch.arange(39.0), atol=1e-4)
    assert rows[1, 0] == pytest.approx(0.0, abs=0.5) and rows[1, -1] == pytest.approx(30.0, abs=0.5)
    assert rows[2, 0] == pytest.approx(8.0, abs=0.5) and rows[2, -1] == pytest.approx(38.0, abs=0.5)


# --- shake ----------------------------------------------------------------------------------------

def test_shake_in_train_mode_only():
    torch.manual_seed(0)
    anchors = 0.3 + 0.4 * torch.rand(64, 5, 2)
    stage = ccnn.WindowStage(2)
    stage.eval()
    assert torch.equal(stage.windows(anchors), stage.windows(anchors))
    still = stage.windows(anchors)
    stage.train()
    a, b = stage.windows(anchors), stage.windows(anchors)
    assert not torch.equal(a, b) and not torch.equal(a, still)
    assert torch.equal(a[..., 2:], still[..., 2:])                    # a translation: sizes unchanged
    shift = (a[..., :2] - still[..., :2]).flatten()
    assert shift.mean().abs() < 0.002 and shift.std().item() == pytest.approx(math.sqrt(ccnn.SHAKE_VARIANCE), rel=0.1)
    # and through the whole cascade: eval is deterministic
    model = ccnn.CCNN().eval()
    images = torch.rand(2, 3, 48, 48)
    assert torch.equal(model(images), model(images))


# --- grouping is faithful -------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [ccnn.Stage1(), ccnn.WindowStage(2), ccnn.WindowStage(3)])
def test_batched_stage_equals_each_network_alone(stage):
    torch.manual_seed(1)
    cnn = stage.cnn.eval()
    x = torch.randn(5, cnn.groups, 3, cnn.input_size, cnn.input_size)
    together = cnn(x)
    start = 0
    for g in range(cnn.groups):
        alone = cnn.network(g).eval()(x[:, g])
        assert torch.allclose(together[:, start:start + alone.shape[1]], alone, atol=1e-5), stage.names[g]
        start += alone.shape[1]
    assert start == together.shape[1]


def test_networks_train_independently():
    """The summed loss gives each network its own gradient: a target of the left eye moves only the
    left-eye networks of a window stage."""
    torch.manual_seed(2)
    stage = ccnn.WindowStage(2).eval()
    images = torch.rand(3, 3, 48, 48)
    anchors = 0.3 + 0.4 * torch.rand(3, 5, 2)
    target = anchors + 0.01

    def grads(t):
        stage.zero_grad()
        ccnn.loss_fn(stage, {"image": images, "anchors": anchors, "target": t}).backward()
        return stage.cnn.features[0].weight.grad.view(10, -1).clone()

    moved = target.clone()
    moved[:, 0] += 0.05                                                # LE only
    changed = (grads(target) - grads(moved)).abs().amax(1) > 0
    assert changed.tolist() == [True, False, False, False, False] * 2


def test_xavier_initialisation_per_network():
    stage = ccnn.WindowStage(2)
    conv1 = stage.cnn.features[0].weight                              # (10*20, 3, 4, 4)
    bound = math.sqrt(6 / (3 * 16 + 20 * 16))
    assert conv1.abs().max() <= bound and conv1.abs().max() > 0.9 * bound
    fc2 = ccnn.Stage1().cnn.fc2.weight                                # rows: 10 (F1), 6, 6
    assert fc2[:10].abs().max() <= math.sqrt(6 / 130) and fc2[10:].abs().max() <= math.sqrt(6 / 126)
    assert all((m.bias == 0).all() for m in stage.cnn.features if isinstance(m, torch.nn.Conv2d))


# --- Eq. 4 and the loss ---------------------------------------------------------------------------

def test_eq4_averages_every_prediction_of_a_point():
    stage1 = ccnn.Stage1()
    preds = torch.arange(11.0)[None, :, None].expand(1, 11, 2)        # F1: 0-4, EN1: 5-7, NM1: 8-10
    avg = ccnn.average_points(preds, stage1.owners)[0, :, 0]
    assert avg.tolist() == pytest.approx([(0 + 5) / 2, (1 + 6) / 2, (2 + 7 + 8) / 3, (3 + 9) / 2, (4 + 10) / 2])
    window_preds = torch.arange(10.0)[None, :, None].expand(1, 10, 2)
    avg2 = ccnn.average_points(window_preds, ccnn.WindowStage(2).owners)[0, :, 0]
    assert avg2.tolist() == pytest.approx([(k + k + 5) / 2 for k in range(5)])


def test_loss_is_zero_at_the_target_and_trains():
    torch.manual_seed(3)
    images = torch.rand(4, 3, 39, 39)
    for stage, extra in [(ccnn.Stage1(), {}), (ccnn.WindowStage(3), {"anchors": torch.full((4, 5, 2), 0.5)})]:
        stage.eval()
        out = stage(images, *([extra["anchors"]] if extra else []))
        owners = stage.owners
        nets = getattr(stage, "net_of_pred", torch.arange(len(owners)))
        assert ccnn.stage_loss(out, out.points, owners, nets) > 0    # the average is not every prediction
        exact = out._replace(rel=ccnn.to_window(torch.full((4, 5, 2), 0.4)[:, owners], out.windows))
        assert ccnn.stage_loss(exact, torch.full((4, 5, 2), 0.4), owners, nets).item() == pytest.approx(0, abs=1e-10)
        stage.train()
        loss = ccnn.loss_fn(stage, {"image": images, "target": torch.full((4, 5, 2), 0.4), **extra})
        loss.backward()
        assert torch.isfinite(loss) and stage.cnn.fc2.weight.grad.abs().sum() > 0


def test_absolute_positioning_regresses_image_coordinates():
    images = torch.rand(2, 3, 40, 50)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 30.0]] * 2)
    stage = ccnn.Stage1(positioning="absolute").eval()
    out = stage(images, boxes)
    pix = ccnn.box_to_pixels(ccnn.from_window(out.rel, out.windows), boxes)
    assert torch.allclose((pix + 0.5) / torch.tensor([50.0, 40.0]), out.rel, atol=1e-5)


def test_anchors_are_the_previous_stage_in_eval_mode():
    torch.manual_seed(4)
    model = ccnn.CCNN().train()
    images = torch.rand(5, 3, 48, 48)
    a2 = model.anchors(2, images, batch_size=2)
    a3 = model.anchors(3, images, batch_size=3)
    assert model.training                                             # mode restored
    model.eval()
    ref = model(images)
    assert torch.allclose(a2, ref[0], atol=1e-5) and torch.allclose(a3, ref[1], atol=1e-5)


# --- published numbers ----------------------------------------------------------------------------

def test_paper_tables_load_with_meta():
    for name, fn in paper.TABLES.items():
        df = fn()
        assert isinstance(df, pd.DataFrame) and len(df), name
        assert {"metric", "unit", "normaliser"} <= set(paper.META[name]), name
    assert paper.fig4()["Average"].tolist() == [2.21, 1.37, 1.03]
    assert paper.fig5()["Average"].tolist() == [3.38, 2.35]
    assert paper.fig6()["Average"].tolist() == [2.35, 1.90]
    assert paper.table3().set_index("method").loc["Chen Rui [13]", "speed_ms"] == 15.9
    with pytest.raises(KeyError):
        paper.table("table9")


def test_fig4_legible_labels_are_the_per_point_values():
    labels = paper.legible_labels().query("figure == 'fig4'")["value"]
    assert len(labels) == 15
    assert labels.sum() == pytest.approx(5 * paper.fig4()["Average"].sum(), abs=0.05)
    assert np.isnan(paper.fig4()[paper.POINTS].to_numpy()).all()     # not assignable: NaN, not guessed
