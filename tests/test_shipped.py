"""What ships: each chapter's committed weights (``results/<chapter>/aligner.pt``) and claims ledger.

The chapters' notebooks write both; nothing else read them back. These tests do: every shipped aligner
loads and beats the mean shape on fixed SynthFace faces of its chapter, and every committed claims ledger
is the one :mod:`falign.kit.ledger` computes from the per-seed results committed beside it.
"""


import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from falign.kit import aligner, ledger, registry
from falign.base import paths
from falign.measure import metrics
from falign.kit.crops import load_faces
from falign.papers.rcsr.model import mean_shape, place_in_box

torch.set_num_threads(1)

# Each chapter's test split and normaliser (and whether it scores visible points only), as its notebooks
# score the main model: CCNN's box-width error (Decision ccnn.error), CFDRNN's and RCSR's inter-ocular
# NME, MSRRN's inter-pupil NME (its claims ledger), PIFA's sqrt(w*h) box NME over visible points.
SCORING = {"ccnn": ("test", "box-width", False), "cfdrnn": ("common", "inter-ocular", False),
           "msrrn": ("common", "inter-pupil", False), "pifa": ("test", "box", True),
           "rcsr": ("common", "inter-ocular", False), "photo": ("test", "inter-ocular", False)}
FACES = 24


def _faces(name: str, model: aligner.Aligner) -> dict:
    """The first FACES test faces of the chapter's SynthFace preset, rendered at its scale's image size."""
    chapter = registry.experiment(name)
    image = chapter.SCALES[model.provenance["scale"]].image
    return load_faces("synthetic", SCORING[name][0], preset=chapter.PRESET, n=FACES, size=image, seed=0)


@pytest.mark.parametrize("name", aligner.available())
def test_shipped_aligner_beats_the_mean_shape(name):
    """A shipped aligner is better than placing the faces' own mean shape (in box units, fitted on these very
    faces: the best constant guess) in the same detector-like boxes, under its chapter's normaliser."""
    assert name in SCORING, f"results/{name}/aligner.pt ships, but this test has no SCORING entry for it"
    model = aligner.load(name)
    faces = _faces(name, model)
    split, norm, visible_only = SCORING[name]
    truth, boxes = faces["landmarks"], faces["detector_boxes"]
    assert model.scheme == faces["scheme"]
    guess = place_in_box(mean_shape(truth, boxes), boxes)
    score = dict(norm=norm, scheme=model.scheme, boxes=boxes, visible=faces["visible"] if visible_only else None)
    ours = metrics.mean_error(metrics.nme(model.predict(list(faces["images"]), boxes).numpy(), truth, **score))
    baseline = metrics.mean_error(metrics.nme(guess, truth, **score))
    assert ours < baseline, f"{name}: NME {ours:.4f} is not below the mean shape's {baseline:.4f} ({norm}, {split})"


# --------------------------------------------------------------------------------------------------
# The committed claims, judged again from the committed per-seed results
# --------------------------------------------------------------------------------------------------
JUDGED = [c.name for c in registry.papers() if (paths.RESULTS_DIR / c.name / "claims.csv").is_file()]


@pytest.mark.parametrize("chapter", JUDGED)
def test_committed_claims_are_what_the_rule_computes_from_the_committed_per_seed_values(chapter, tmp_path):
    """A committed claims.csv says what falign.kit.ledger computes, through the chapter's own ``rejudge``,
    from the per-seed results committed beside it: a hand edit, or per-seed results rewritten without
    the ledger, fail."""
    shutil.copytree(paths.RESULTS_DIR / chapter, tmp_path / chapter)
    fresh = registry.experiment(chapter).rejudge(tmp_path / chapter).to_frame()
    committed = pd.read_csv(paths.RESULTS_DIR / chapter / "claims.csv", keep_default_na=False, na_values=[""])
    assert ledger.is_ledger(committed), f"results/{chapter}/claims.csv is not in the ledger's format"
    assert list(fresh["claim id"]) == list(committed["claim id"])
    assert list(fresh["class"]) == list(committed["class"])
    assert list(fresh["verdict"]) == list(committed["verdict"])
    for column in ("effect", "low", "high", "paper effect"):
        # the per-seed tables are written to 6 significant digits; effects are fractions
        assert np.allclose(fresh[column].astype(float), committed[column].astype(float), rtol=1e-4, atol=1e-4,
                           equal_nan=True), f"{chapter}: {column}"
