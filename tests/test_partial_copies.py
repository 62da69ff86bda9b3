"""Every chapter that reads real data runs on a partial copy of it: the loader warns how many faces it found
of how many the scale asks for, and the calls of the chapter's ``02_model`` notebook (the model built from
the training crops found, a forward pass on a few test crops) give finite outputs of the right shape. A
chapter that indexed the scale's face counts past the end of a short copy would fail here (RCSR's former
IndexError; its own tests are in :mod:`test_real_data_chapters`)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from falign.papers.ccnn import experiment as ccnn_exp, model as ccnn_model
from falign.papers.cfdrnn import experiment as cfdrnn_exp
from falign.papers.msrrn import experiment as msrrn_exp
from falign.papers.pifa import experiment as pifa_exp
from test_data_formats import make_300w, make_lfpw5, no_env_root  # noqa: F401 (no_env_root: autouse)
from test_real_data_chapters import synthface_aflw_pifa

torch.set_num_threads(1)
# make_300w's partial copy: two faces per subset folder, so 6 training faces (3 folders) and 2 per test folder.
PRIVATE_300W = ("300W/01_Indoor", "300W/02_Outdoor")


def short(found: int, name: str, split: str, asked: int) -> str:
    """The registry's warning for a partial copy, as a regular expression."""
    return rf"{found} faces in {name}/{split}, fewer than the {asked} expected"


def test_ccnn_runs_on_a_partial_lfpw5_copy(tmp_path):
    """CCNN on 10 training and 4 test faces of the 56 and 24 the smoke scale asks for."""
    make_lfpw5(tmp_path / "lfpw5", {"train": 10, "test": 4})
    cfg = ccnn_exp.SCALES["smoke"]
    with pytest.warns(UserWarning, match=short(10, "lfpw5", "train", cfg.n_train + cfg.n_val)), \
            pytest.warns(UserWarning, match=short(4, "lfpw5", "test", cfg.n_test)):
        crops = ccnn_exp.datasets(cfg, data="lfpw5", root=str(tmp_path))
    held = len(crops["validation"])                                     # the share held_out gives up
    assert held == 2 and len(crops["train"]) == (10 - held) * len(ccnn_exp.versions(cfg))
    test = crops["test"]
    assert len(test) == 4 and test.images.shape[1:] == (3, cfg.size, cfg.size)
    model = ccnn_model.CCNN()
    for figure in (ccnn_exp.stage1_inputs_figure, ccnn_exp.windows_figure, ccnn_exp.stage2_inputs_figure):
        fig = figure(model, test)
        assert fig.axes
        plt.close(fig)
    with torch.no_grad():
        out = model.eval()(test.images[:4].float(), ccnn_exp.face_boxes(test)[:4])
    assert out.shape == (len(model.stages), 4, 5, 2) and torch.isfinite(out).all()


def test_cfdrnn_runs_on_a_partial_300w_copy(tmp_path):
    """CFDRNN on make_300w's two faces per subset folder (6 training faces of 40, 2 or 4 per test subset of 8)."""
    make_300w(tmp_path / "300w", subsets=(*make_300w.__defaults__[0], *PRIVATE_300W))
    cfg = cfdrnn_exp.SCALES["smoke"]
    with pytest.warns(UserWarning, match=short(6, "300w", "train", cfg.n_train + cfg.n_val)), \
            pytest.warns(UserWarning, match=short(2, "300w", "challenging", cfg.n_test["challenging"])):
        crops = cfdrnn_exp.datasets(cfg, data="300w", root=str(tmp_path))
    assert [len(crops["train"]), len(crops["validation"])] == [5, 1]
    assert {s: len(crops[s]) for s in cfdrnn_exp.TEST_SUBSETS} == {"common": 4, "challenging": 2, "indoor": 2,
                                                                   "outdoor": 2}
    assert len(crops["LFPW"]) == len(crops["Helen"]) == 2
    model = cfdrnn_exp.build(cfg)
    stages = cfdrnn_exp.predict_stages(model, crops["common"])
    assert set(stages) == set(cfdrnn_exp.STAGES)
    assert all(s.shape == (4, 68, 2) and torch.isfinite(s).all() for s in stages.values())


def test_msrrn_runs_on_a_partial_300w_copy(tmp_path):
    """MSRRN on make_300w's partial copy: its mean shape from the 5 training crops kept, a forward pass on
    the 4 common faces."""
    make_300w(tmp_path / "300w")
    cfg = msrrn_exp.SCALES["smoke"]
    with pytest.warns(UserWarning, match=short(6, "300w", "train", cfg.n_train + cfg.n_val)), \
            pytest.warns(UserWarning, match=short(4, "300w", "common", cfg.n_test["common"])):
        crops = msrrn_exp.datasets(cfg, data="300w", root=str(tmp_path))
    assert [len(crops[s]) for s in ("train", "validation", "common", "challenging")] == [5, 1, 4, 2]
    model = msrrn_exp.build(cfg)
    model.mean_shape.copy_(msrrn_exp.mean_shape(crops["train"]))
    assert torch.isfinite(model.mean_shape).all()
    face = crops["common"]
    fig = msrrn_exp.patches_figure(model, face)
    assert fig.axes
    plt.close(fig)
    with torch.no_grad():
        shapes = model(face.float_images(slice(0, 4)))
    assert shapes.shape[-3:] == (4, 68, 2) and torch.isfinite(shapes).all()


def test_pifa_runs_on_a_partial_aflw_pifa_copy(tmp_path):
    """PIFA on 6 training faces of the 40 the smoke scale asks for (and 4 test faces of 24), and 02_model's
    8-face sample of the training split."""
    cfg = pifa_exp.SCALES["smoke"]
    synthface_aflw_pifa(tmp_path / "aflw-pifa", {"train": 6, "test": 4}, cfg.image)
    root = str(tmp_path)
    with pytest.warns(UserWarning, match=short(6, "aflw-pifa", "train", cfg.n_train + cfg.n_val)), \
            pytest.warns(UserWarning, match=short(4, "aflw-pifa", "test", cfg.n_test)):
        crops = pifa_exp.datasets(cfg, data="aflw-pifa", root=root)
    assert len(crops["train"]) == 5 * cfg.variations and len(crops["val"]) == 1 and len(crops["test"]) == 4
    with pytest.warns(UserWarning, match=short(6, "aflw-pifa", "train", 8)):
        sample = pifa_exp.load(cfg, "train", data="aflw-pifa", root=root, n=8)
    table, ratio = pifa_exp.initial_losses(cfg, sample)
    assert np.isfinite(table["E^i at initialisation"]).all() and np.isfinite(ratio)
    net = pifa_exp.initial_network(cfg)
    net.calibrate(crops["train"].M)
    params = pifa_exp.block_params(net, crops["test"])
    nme = pifa_exp.nme_per_block(net, crops["test"], params)
    assert nme.shape == (len(net.blocks) + 1, 4) and np.isfinite(nme).all()
