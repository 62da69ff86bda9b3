"""Why does the heat-map decode of CFDRNN get worse from H1 to H4? Measurements that tell the suspects apart.

A trained network's Eq. 1 decode s argmax(Hj) was reported to worsen at every heat-map stage. Each
suspect leaves a different trace in the stage-by-stage numbers:

* dead maps (:func:`dead_maps`): a map whose ReLU (after its batch norm) zeroes it everywhere, or
  that is otherwise flat, has no peak; argmax returns index 0, so the landmark decodes to (0, 0);
* neighbour jumps (:func:`neighbour_jumps`): a narrow HML that mixes landmark channels gives a map
  whose highest peak is another landmark's, so the decode lands on the neighbour;
* what is left is plain imprecision: the decode near its own landmark, only farther from it.

:func:`stage_table` gives, for j = 1..4, the share of each failure and the NME of the decode Hj
beside that of Lj (Eq. 4); :func:`landmark_table` says which landmarks worsen; :func:`over_seeds`
gives mean and sd over trainings. Everything is in crop pixels of the network's input (the NME is
invariant to the crop's similarity transform); the normaliser is the caller's, one distance per face
(e.g. ``falign.measure.metrics.normaliser(truth, "inter-ocular", "ibug68")``).
"""

from __future__ import annotations

import copy

import pandas as pd
import torch

from falign.kit import batching, chapter
from falign.papers.cfdrnn.model import CFDRNN, coarse_landmarks


def dead_maps(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, N, h, w) -> (B, N) bool: the map has no peak to decode, its maximum <= 0 (all zero after
    the ReLU) or all its values equal; argmax then returns its first pixel and Eq. 1 gives (0, 0)."""
    flat = heatmaps.flatten(-2)
    top, bottom = flat.amax(-1), flat.amin(-1)
    return (top <= 0) | (top == bottom)


def neighbour_jumps(decoded: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B, N, 2), (B, N, 2) -> (B, N) bool: decoded point i lies strictly closer to the true position
    of another landmark than to its own, i.e. the argmax took a neighbour's peak."""
    distance = torch.cdist(decoded.float(), truth.float())                    # (B, N, N): decoded i to truth k
    own = distance.diagonal(dim1=-2, dim2=-1)
    others = distance.masked_fill(torch.eye(distance.shape[-1], dtype=torch.bool, device=distance.device), torch.inf)
    return others.amin(-1) < own


def _errors(points: torch.Tensor, truth: torch.Tensor, norm_distance: torch.Tensor) -> torch.Tensor:
    """(B, N) point-to-truth distances divided by each face's normaliser, in %."""
    return 100 * (points - truth.float()).norm(dim=-1) / norm_distance.float()[:, None]


def _stages(model: CFDRNN, images: torch.Tensor, truth: torch.Tensor, norm_distance: torch.Tensor,
            batch: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the network once, in eval mode and float32 (training's bf16 would add ties to the argmax),
    and return per stage (dim 1): dead maps (B, 4, N), neighbour jumps of live maps (B, 4, N), and the
    errors (%) of the decode Hj and of Lj (B, 4, N)."""
    net = model if all(p.dtype == torch.float32 for p in model.parameters()) else copy.deepcopy(model).float()
    was_training = net.training
    net.eval()

    def run(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.autocast(x.device.type, enabled=False):
            out = net(x.float())
        coarse = torch.stack([coarse_landmarks(h, net.s) for h in out.heatmaps], 1)     # (b, 4, N, 2)
        dead = torch.stack([dead_maps(h) for h in out.heatmaps], 1)
        jumps = neighbour_jumps(coarse.flatten(0, 1), t.repeat_interleave(len(out.heatmaps), 0)).view_as(dead)
        return dead, jumps & ~dead, coarse, torch.stack(net.landmarks(out), 1)

    try:
        dead, jumps, coarse, final = batching.in_batches(run, images, truth, batch=batch, device=device)
    finally:
        net.train(was_training)
    truth, norm_distance = truth[:, None].cpu(), norm_distance[:, None].cpu()
    return dead, jumps, _errors(coarse, truth, norm_distance), _errors(final, truth, norm_distance)


def stage_table(model: CFDRNN, images: torch.Tensor, truth: torch.Tensor, norm_distance: torch.Tensor,
                batch: int = 64, device="cpu") -> pd.DataFrame:
    """One row per stage j = 1..4: "dead maps (%)" and "neighbour jumps (%)" (of all B x N maps; a
    dead map is not also counted as a jump, so the two shares add up), and the mean and median over
    faces of the per-face NME (%) of the decode s argmax(Hj) ("H ...") and of Lj ("L ...").

    images (B, 3, size, size) in [0, 1], truth (B, N, 2) crop pixels, norm_distance (B,) crop pixels."""
    dead, jumps, h, lj = _stages(model, images, truth, norm_distance, batch, device)
    h, lj = h.mean(-1), lj.mean(-1)                                              # (B, 4) per-face NME
    return pd.DataFrame({"stage": range(1, dead.shape[1] + 1),
                         "dead maps (%)": 100 * dead.float().mean((0, 2)).numpy(),
                         "neighbour jumps (%)": 100 * jumps.float().mean((0, 2)).numpy(),
                         "H NME (%)": h.mean(0).numpy(), "H median NME (%)": h.median(0).values.numpy(),
                         "L NME (%)": lj.mean(0).numpy(), "L median NME (%)": lj.median(0).values.numpy()})


def landmark_table(model: CFDRNN, images: torch.Tensor, truth: torch.Tensor, norm_distance: torch.Tensor,
                   batch: int = 64, device="cpu") -> pd.DataFrame:
    """Long table, one row per stage and landmark index: the mean over faces of that point's
    normalised error (%) for the decode Hj and for Lj, so a figure can show which points worsen."""
    _, _, h, lj = _stages(model, images, truth, norm_distance, batch, device)
    stages, points = h.shape[1:]
    return pd.DataFrame({"stage": torch.arange(1, stages + 1).repeat_interleave(points).numpy(),
                         "landmark": torch.arange(points).repeat(stages).numpy(),
                         "H NME (%)": h.mean(0).flatten().numpy(), "L NME (%)": lj.mean(0).flatten().numpy()})


def over_seeds(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Mean, sd (ddof=1) and number of seeds of every value of :func:`stage_table`s (or
    :func:`landmark_table`s) of several trainings, {seed: table}, one row per stage (and landmark)."""
    long = pd.concat([t.assign(seed=s) for s, t in tables.items()], ignore_index=True)
    keys = [k for k in ("stage", "landmark") if k in long]
    return chapter.mean_sd(long, keys, [c for c in long if c not in (*keys, "seed")])
