"""CFDRNN diagnosis: dead heat-maps, neighbour jumps and the per-stage / per-landmark tables of why the
heat-map decode worsens over the stages."""

import numpy as np
import pandas as pd
import pytest
import torch

from falign.papers.cfdrnn import diagnosis, model as cfdrnn

torch.set_num_threads(1)


def test_flat_or_non_positive_maps_are_dead_and_decode_to_the_origin():
    maps = torch.zeros(2, 4, 5, 6)                        # map (0, 0): all zero (a ReLU'd map)
    maps[0, 1] = 0.5                                      # constant
    maps[0, 2, 3, 4] = 1.0                                # one peak at x = 4, y = 3
    maps[0, 3] = -torch.rand(5, 6) - 0.1                  # negative, not flat
    maps[1] = torch.rand(4, 5, 6)                         # live noise
    dead = diagnosis.dead_maps(maps)
    assert dead.dtype == torch.bool and dead.shape == (2, 4)
    assert dead.tolist() == [[True, True, False, True], [False] * 4]
    decoded = cfdrnn.coarse_landmarks(maps)
    assert (decoded[0, :2] == 0).all()                    # the dead maps land on (0, 0)
    assert decoded[0, 2].tolist() == [4.0 * cfdrnn.S, 3.0 * cfdrnn.S]


def test_a_point_on_a_neighbours_truth_is_a_jump_and_one_near_its_own_is_not():
    truth = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]]).repeat(2, 1, 1)
    decoded = truth.clone()
    decoded[0, 0] = torch.tensor([10.0, 0.0])             # landmark 0 on landmark 1's truth
    decoded[0, 1] = torch.tensor([9.0, 2.0])              # landmark 1 near its own
    decoded[1, 2] = torch.tensor([6.0, 4.0])              # landmark 2 past the midpoint, towards 1
    jumps = diagnosis.neighbour_jumps(decoded, truth)
    assert jumps.shape == (2, 3)
    assert jumps.tolist() == [[True, False, False], [False, False, True]]


@pytest.fixture(scope="module")
def case():
    """A tiny untrained network (the smoke scale's size and width), with live dL heads so Lj != Hj."""
    torch.manual_seed(0)
    net = cfdrnn.CFDRNN(size=32, width=0.125)
    for branch in net.lml:
        torch.nn.init.normal_(branch.head[-1].weight, std=0.1)
    images = torch.rand(5, 3, 32, 32)
    truth = 4 + torch.rand(5, cfdrnn.N_POINTS, 2) * 24
    norm = torch.linspace(8.0, 16.0, 5)
    return net, images, truth, norm


def test_stage_table_on_a_tiny_network_matches_the_models_own_stages(case):
    net, images, truth, norm = case
    net.train()
    table = diagnosis.stage_table(net, images, truth, norm, batch=2)            # uneven batches: 2 + 2 + 1
    assert net.training                                                          # mode restored
    assert table["stage"].tolist() == [1, 2, 3, 4]
    assert np.isfinite(table.drop(columns="stage").to_numpy()).all()
    shares = table[["dead maps (%)", "neighbour jumps (%)"]].to_numpy()
    assert ((shares >= 0) & (shares <= 100)).all()
    stages = net.eval().stages(images)
    for j in (2, 4):
        for kind, key in (("L", f"L{j}"), ("H", f"argmax H{j}")):
            face = ((stages[key] - truth).norm(dim=-1).mean(-1) / norm * 100).numpy()
            row = table.iloc[j - 1]
            assert row[f"{kind} NME (%)"] == pytest.approx(face.mean(), rel=1e-5)
            assert row[f"{kind} median NME (%)"] == pytest.approx(np.median(face), rel=1e-5)
    dead = diagnosis.dead_maps(net(images).heatmaps[0])
    assert table.loc[0, "dead maps (%)"] == pytest.approx(100 * dead.float().mean().item())


def test_landmark_table_is_long_and_averages_to_the_stage_table(case):
    net, images, truth, norm = case
    points = diagnosis.landmark_table(net, images, truth, norm)
    assert list(points.columns) == ["stage", "landmark", "H NME (%)", "L NME (%)"]
    assert len(points) == 4 * cfdrnn.N_POINTS and points.groupby("stage").size().eq(cfdrnn.N_POINTS).all()
    stages = diagnosis.stage_table(net, images, truth, norm)
    mean = points.groupby("stage")[["H NME (%)", "L NME (%)"]].mean()
    assert np.allclose(mean.to_numpy(), stages[["H NME (%)", "L NME (%)"]].to_numpy(), rtol=1e-5)


def test_over_seeds_gives_mean_sd_and_seed_count_per_stage():
    a = pd.DataFrame({"stage": [1, 2], "H NME (%)": [10.0, 12.0]})
    out = diagnosis.over_seeds({0: a, 1: a.assign(**{"H NME (%)": [14.0, 12.0]})})
    assert out["stage"].tolist() == [1, 2]
    assert out["H NME (%)"].tolist() == [12.0, 12.0]
    assert out["H NME (%) sd"].tolist() == pytest.approx([np.sqrt(8.0), 0.0])
    assert out["seeds"].tolist() == [2, 2]
