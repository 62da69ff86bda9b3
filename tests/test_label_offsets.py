"""dlib's systematic offsets on SynthFace: measured in each face's frame, fitted on one half, judged on the other."""

import numpy as np

from falign.chapters import label_offsets


def _faces(n=40, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (68, 2))
    base[36], base[45] = (-1.0, 0.0), (1.0, 0.0)
    angle, scale, shift = rng.uniform(-0.5, 0.5, n), rng.uniform(20, 80, n), rng.uniform(0, 200, (n, 1, 2))
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], 1)
    return np.einsum("nij,kj->nki", rot, base) * scale[:, None, None] + shift, rot, scale


def test_an_offset_in_the_face_frame_is_the_same_for_every_roll_and_size():
    truth, rot, scale = _faces()
    offset = np.zeros((68, 2))
    offset[0:17, 1] = -0.1                                      # the jaw read 10 % of the eye distance higher
    pred = truth + np.einsum("nij,kj->nki", rot, offset) * (2 * scale)[:, None, None]   # eye distance: 2 * scale
    np.testing.assert_allclose(label_offsets.in_face_frame(pred, truth), np.broadcast_to(offset, truth.shape),
                               atol=1e-12)


def test_a_repeated_offset_is_removed_on_the_held_out_half_and_noise_is_not():
    rng = np.random.default_rng(1)
    offset = np.zeros((68, 2))
    offset[17:27, 1] = -0.05
    residuals = offset + rng.normal(0, 0.01, (60, 68, 2))
    table = label_offsets.offset_table(residuals).set_index("region")
    brows = table.loc["brows"]
    assert abs(brows["down (%, +: toward the chin)"] + 5) < 0.5 and brows["median offset (%)"] > 4.5
    assert brows["after removing the offsets (%)"] < brows["dlib shape error, held-out half (%)"] / 2
    fit, judge = label_offsets.split_halves(60)
    assert len(fit) == len(judge) == 30 and not set(fit) & set(judge)
    noise = label_offsets.offset_table(rng.normal(0, 0.01, (60, 68, 2))).set_index("region").loc["all 68"]
    assert noise["after removing the offsets (%)"] >= noise["dlib shape error, held-out half (%)"]   # nothing to remove
