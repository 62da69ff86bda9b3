"""The PIFA and RCSR chapters on real datasets: tiny trees written in the real formats go through
each chapter's data preparation, training and evaluation (``DATA=aflw-pifa`` / ``DATA=300w``)."""

import numpy as np
import scipy.io
import torch

from falign.experiments import pifa, rcsr
from test_data_formats import aflw_variables, make_300w, write_image  # the real-format fixtures

torch.set_num_threads(1)


def test_rcsr_chapter_runs_on_300w(tmp_path, monkeypatch):
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    make_300w(tmp_path / "300w")
    cfg = rcsr.SCALES["smoke"]
    crops = rcsr.datasets(cfg, data="300w", root=str(tmp_path))
    # A partial copy (6 faces of the 22 asked for) holds out the scale's share (6 of 22 -> 2) and fits the rest.
    assert len(crops["train"]) == 2 * 4 and len(crops["validation"]) == 2 * 2     # with their mirrors
    assert [len(crops["common"]), len(crops["challenging"])] == [4, 2]
    assert crops["train"].images.shape[1:] == (1, cfg.size, cfg.size)
    model, _ = rcsr.train(cfg, crops, kind="convgru-srcnn", progress=False)
    tests = {s: crops[s] for s in rcsr.TEST_SUBSETS}
    table = rcsr.evaluate(model, tests, method="RCSR")
    assert set(table["subset"]) == {"common", "challenging", "full"}
    assert np.isfinite(table["NME (%, inter-ocular)"]).all()


def test_pifa_chapter_runs_on_aflw_pifa(tmp_path, monkeypatch):
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    folder = tmp_path / "aflw-pifa"
    n = pifa.SCALES["smoke"].batch + pifa.SCALES["smoke"].n_val   # one training batch and the held-out faces
    variables, *_ = aflw_variables(n=n)
    for i in range(n):
        write_image(folder / "flickr" / "0" / f"img{i}.jpg", seed=i)
    for split in ("train", "test"):
        scipy.io.savemat(folder / f"{split}.mat", variables)
    cfg = pifa.SCALES["smoke"]
    crops = pifa.datasets(cfg, data="aflw-pifa", root=str(tmp_path))
    train = crops["train"]
    assert len(train) == (n - cfg.n_val) * cfg.variations and len(crops["val"]) == cfg.n_val
    assert train.M is not None and train.p is not None                                        # M, p fitted
    assert train.M.shape == (len(train), 2, 4) and torch.isfinite(train.p).all()
    net, _ = pifa.train(cfg, train, epochs=1, progress=False)
    nme = pifa.nme_per_block(net, crops["test"], pifa.block_params(net, crops["test"]))
    assert nme.shape == (len(net.blocks) + 1, n) and np.isfinite(nme).all()
