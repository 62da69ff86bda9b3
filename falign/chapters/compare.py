"""The comparison chapter: every aligner of the book, a real-world peer and two baselines on one protocol.

Each paper reports on its own protocol; this chapter runs every method on the *same* SynthFace faces
(300-W-like common, challenging and full), with the *same* face boxes and the *same* metrics, and adds
what SynthFace makes possible and real benchmarks do not: error as a function of one controlled factor.

Methods (:func:`methods`), never named in a list:

* every aligner with shipped weights (:func:`falign.kit.aligner.available`), so a chapter that lands joins
  by itself; a kind with a 68-point projection (:data:`PROJECTIONS`, PIFA's 3DMM) is scored on 68 points;
* the peer, dlib's ERT (:mod:`falign.baselines.dlib_ert`), with its 68- and its 5-point model;
* SDM + HOG and the mean shape, the classic baselines (RCSR's Table 4 row 1 and its initial shape).

Each method starts from the box convention it was trained with (:class:`BoxConvention`), reached from
SynthFace's detector-like box through an adapter fitted on training faces only. Methods that predict
other point sets are compared on the points they share (:class:`Points`); every error is normalised by
the 68-point ground truth of the same face, so all rows use one yardstick.
The notebooks of ``notebooks/compare`` call these functions; decisions are ``Decision [compare.<id>]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from falign.kit import aligner, chapter, inputs, protocol300w, train as trainer
from falign.base import atomic_files as atomic, paths
from falign.kit.chapter import not_recipe
from falign.data import detect, transforms
from falign.measure import conventions, metrics
from falign import papers
from falign.baselines import dlib_ert as peers
from falign.kit.timing import aligner_speed, seconds_per_call, torch_threads
from falign.kit.crops import load_faces
from falign.synthface.dataset import PRESETS as SYNTHFACE, synthface_arrays
from falign.measure.landmarks import convert, convert_visibility, get_scheme

PRESET, SCHEME = "300w-like", "ibug68"
DATASETS = ("synthetic",)                  # the DATA it honours: the sweeps and calibration need SynthFace
TEST_SUBSETS = ("common", "challenging")   # "full" pools them, as 300-W does
SUBSETS = (*TEST_SUBSETS, "full")
NORMS = ("inter-ocular", "inter-pupil")
THRESHOLD = 0.08
ERT_ROW = "ERT [9]"                         # ERT's published 300-W row in falign/papers/rcsr/published.py (full only)
ERT_ID = "table1/ert-9/{subset}"           # its numbers' ids

# Decision [compare.cpu] (evaluation): the chapter runs on the CPU whatever DEVICE says: the peer (dlib-bin) has no
# GPU path, the leaderboard's latency column is CPU latency by definition, and the shipped models are
# small enough that the whole chapter takes minutes there.
# Paper: The issue asks for CPU latency at batch 1 and throughput; it names no device for the accuracy runs.
DEVICE = "cpu"


@dataclass(frozen=True, kw_only=True)
class Scale(chapter.Scale):
    """One scale of the comparison: test and sweep sizes, the SDM recipe and the timing effort. Only
    ``sdm`` changes a training (SDM's closed-form fit); nothing else here is trained."""

    n_test: dict = not_recipe()              # faces per 300-W-like test subset
    image: int = not_recipe()                # SynthFace render size (pixels); every method reads the same photos
    sdm: str                                 # the RCSR chapter scale whose recipe fits SDM + HOG (faces, crop, HOG patch)
    sweep_faces: int = not_recipe()          # faces per sweep point
    bin_faces: int = not_recipe(10)          # fewest faces in an occluder-coverage bin (smaller ones are merged)
    bootstrap: int = not_recipe()            # bootstrap resamples per interval (sweep points, paired differences)
    repeats: int = not_recipe()              # timed calls per latency (median)
    batch: int = not_recipe()                # faces per call for the throughput column
    sweep_points: int | None = not_recipe(None)   # values per factor (evenly thinned, ends kept); None: every value
    adapter_faces: int = not_recipe(400)     # SynthFace 300-W-like training faces dlib's box adapter is fitted on


SCALES = {
    # CI: proves the code runs end to end; numbers mean nothing.
    "smoke": Scale(n_test={"common": 8, "challenging": 4}, image=128, sdm="smoke", adapter_faces=24,
                   sweep_faces=3, bin_faces=2, bootstrap=50, repeats=2, batch=4, sweep_points=2),
    # CPU-sized (2 cores, minutes): the shipped weights are evaluated, nothing is trained but SDM's
    # closed-form fit. 300 + 150 test faces. Sweeps: 100 faces at 5 values per factor, 41 distinct
    # renders (the neutral one shared), 4,100 faces: SynthFace renders them in about 15 s (about 330
    # faces/s at 128 px, results/bench.csv) and every method together predicts them in about 13 ms per
    # face (the leaderboard's throughputs at batch 16), about 1.5 minutes on 2 cores; the 30 faces of the
    # first run left coverage bins of 1 and 5 faces.
    "small": Scale(n_test={"common": 300, "challenging": 150}, image=128, sdm="small", sweep_faces=100,
                   bootstrap=1000, repeats=10, batch=16, sweep_points=5),
    # Nothing here trains: on a GPU machine the comparison runs at the real 300-W test sizes.
    "gpu": Scale(n_test={"common": 554, "challenging": 135}, image=128, sdm="gpu", sweep_faces=200,
                 bootstrap=2000, repeats=50, batch=64),
    # The real 300-W test sizes.
    "full": Scale(n_test={"common": 554, "challenging": 135}, image=128, sdm="full", sweep_faces=200,
                  bootstrap=2000, repeats=50, batch=64),
}


# --------------------------------------------------------------------------------------------------
# Data: photos with their ground truth and boxes (no crops: each method crops as it was trained to)
# --------------------------------------------------------------------------------------------------
@dataclass
class Faces:
    """Whole SynthFace photos with the 68-point truth and both boxes, in 0-based photo pixels."""

    name: str
    fingerprint: str
    images: np.ndarray          # (n, H, W, 3) uint8
    landmarks68: np.ndarray     # (n, 68, 2)
    visible68: np.ndarray       # (n, 68) bool
    boxes: np.ndarray           # (n, 4) the tight box of the 68 points (the "box" normaliser)
    detector_boxes: np.ndarray  # (n, 4) SynthFace's detector-like box, every convention's starting point
    pose: np.ndarray            # (n, 3) yaw, pitch, roll (degrees)
    hog_boxes: np.ndarray | None = None   # (n, 4) dlib's HOG detections, on faces it found (:func:`found_faces`)

    @classmethod
    def from_arrays(cls, arrays: dict, name: str | None = None) -> "Faces":
        return cls(name or arrays.get("name", "synthface"), arrays["fingerprint"], arrays["images"],
                   arrays["landmarks68"], arrays["visible68"], arrays["boxes"], arrays["detector_boxes"],
                   arrays["pose"])

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "Faces":
        index = np.asarray(index)
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), np.ndarray)})


def datasets(cfg: Scale, *, data: str = "synthetic", root: str = "", seed: int = 0) -> dict[str, Faces]:
    """The test faces of each 300-W-like subset (common, challenging), rendered at ``cfg.image``."""
    if data not in DATASETS:
        raise ValueError(f"falign/chapters/compare.py: DATA={data!r} is not supported; the comparison "
                         f"runs on {', '.join(DATASETS)}")
    return {s: Faces.from_arrays(load_faces(data, s, preset=PRESET, n=cfg.n_test[s], size=cfg.image, seed=seed,
                                            root=root)) for s in TEST_SUBSETS}


# --------------------------------------------------------------------------------------------------
# Methods and the points they are scored on
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Points:
    """Which landmarks a method is scored on: a scheme derived from iBUG 68, optionally a subset of
    its points (dlib's five points sit on five iBUG points). ``of`` maps 68-point shapes (truth, or a
    68-point method's predictions) onto these points."""

    scheme: str
    index: tuple[int, ...] | None = None
    label: str = ""
    name: str = ""              # short name for row labels ("five", "dlib5"); default: the scheme

    def of(self, points68: np.ndarray) -> np.ndarray:
        pts = convert(np.asarray(points68, np.float64), SCHEME, self.scheme)
        return pts if self.index is None else pts[..., list(self.index), :]

    def visible(self, visible68: np.ndarray) -> np.ndarray:
        vis = convert_visibility(np.asarray(visible68, bool), SCHEME, self.scheme)
        return vis if self.index is None else vis[..., list(self.index)]

    @property
    def short(self) -> str:
        return self.name or self.scheme

    @property
    def n_points(self) -> int:
        return len(self.index) if self.index is not None else get_scheme(self.scheme).n_points


IBUG68 = Points(SCHEME, label="68 (iBUG)")
DLIB5 = Points(SCHEME, peers.FIVE_ON_IBUG68, "5 (dlib: eye corners, bottom of the nose = iBUG 45, 42, 36, 39, 33)",
               peers.SCHEMES[5])


def points_of_scheme(scheme: str) -> Points | None:
    """The :class:`Points` of an aligner's scheme, or None when it is not derived from iBUG 68."""
    if scheme == SCHEME:
        return IBUG68
    if scheme == peers.SCHEMES[5]:
        return DLIB5
    s = get_scheme(scheme)
    return Points(s.name, label=f"{s.n_points} ({s.name})") if s.root == SCHEME else None


IDENTITY = tuple(detect.IDENTITY.tolist())   # the adapter of a method trained on SynthFace's own box


@dataclass(frozen=True)
class BoxConvention:
    """The kind of face box a method was trained from: ``real`` names the :class:`Faces` field holding
    such boxes where they exist, ``adapter`` (dx, dy, sw, sh, :func:`falign.data.detect.calibrated`) maps
    SynthFace's detector-like box onto the convention, ``fitted_on`` says from which faces and ``data``
    is their fingerprint (for the run's provenance)."""

    name: str
    real: str
    adapter: tuple[float, float, float, float] = IDENTITY
    fitted_on: str = "none needed: SynthFace's own box"
    data: str = ""

    def adapt(self, detector_boxes: np.ndarray) -> np.ndarray:
        """SynthFace's detector-like boxes (n, 4) in this convention (unchanged for the identity)."""
        if self.adapter == IDENTITY:
            return detector_boxes
        return detect.calibrated(detector_boxes, np.asarray(self.adapter, np.float32))


SYNTHFACE_BOX = BoxConvention("SynthFace detector-like", "detector_boxes")
# Decision [compare.conventions] (data): each method starts from the box convention it was trained with. dlib's
# ERT (both models), MSRRN (whose chapter crops around dlib's HOG boxes, its decision msrrn.detector) and any
# aligner whose checkpoint records dlib's convention (the photo aligner, photo.box-convention) use dlib's HOG
# convention; every other aligner and both baselines were trained on SynthFace's detector-like box and use
# it as is. dlib's convention is reached from SynthFace's box through a 4-number adapter (median centre offset
# and size ratio, :func:`falign.data.detect.box_calibration`) fitted on the SynthFace 300-W-like *training*
# faces dlib's detector finds, never on test faces, so every test face has a box in every convention. The
# leaderboard also shows every method on SynthFace's box (the raw-box block) and on the faces dlib finds,
# with dlib's real detections for the dlib-convention methods (the found-faces block).
# Paper: Every method on 'the same faces with the same boxes'; dlib's ERT was trained on dlib's HOG detector
# boxes, and MSRRN's paper says 'we detected the face bounding box by the DLIB'.


def dlib_convention(cfg: Scale, *, seed: int = 0) -> BoxConvention:
    """dlib's HOG-detector convention, its adapter fitted on ``cfg.adapter_faces`` SynthFace 300-W-like
    training faces rendered like the test faces: SynthFace's detector-like box against dlib's detection
    on every training face dlib finds (:func:`hog_boxes`)."""
    train = Faces.from_arrays(load_faces("synthetic", "train", preset=PRESET, n=cfg.adapter_faces, size=cfg.image,
                                         seed=seed))
    found = hog_boxes(train)
    hit = int((~np.isnan(found[:, 0])).sum())
    return BoxConvention("dlib HOG detector", "hog_boxes",
                         tuple(detect.box_calibration(train.detector_boxes, found).tolist()),
                         f"the {hit} of {len(train)} SynthFace 300-W-like training faces dlib's HOG detector finds",
                         train.fingerprint)


@dataclass
class Method:
    """A row of the leaderboard: ``predict(photos, boxes) -> (B, N, 2)`` on ``points``, from boxes of its
    ``convention``, and what it costs."""

    name: str
    predict: Callable
    points: Points
    family: str                 # "book" (shipped weights), "peer", "baseline"
    source: str                 # where the model comes from
    parameters: float           # learned numbers (NaN: not exposed, e.g. dlib's trees)
    megabytes: float            # size of the weights
    key: str                    # names the exact model and code: cached predictions are keyed by it
    convention: BoxConvention = SYNTHFACE_BOX   # the boxes it was trained from


def pifa_ibug68(model: aligner.Aligner, images, boxes) -> torch.Tensor:
    """PIFA's 68 points: the iBUG-68 landmarks of its 3DMM under the final parameters P (Eq. 3).

    Decision [compare.pifa-projection] (model): PIFA regresses the 3DMM's camera and shape, not points, so it
    predicts every point of the model; its 34 trained points are a subset of the same projection. It is
    scored on the 68 iBUG points its fit projects to (the issue's "PIFA's 68-point projection").
    Paper: PIFA (Sec. 3) regresses a 3DMM's camera and shape and reads off 34 points; the issue asks for
    'PIFA's 68-point projection'."""
    from falign.papers.pifa.model import split_params
    from falign.synthface.morphable import builtin_model, project

    crops, affines = model.crops(images, boxes)
    with torch.no_grad():
        P = torch.cat([model.model(crops[i:i + model.batch_size].to(model.device))[-1].float().cpu()
                       for i in range(0, len(crops), model.batch_size)])
    M, p = split_params(P)
    points = project(M, builtin_model().landmarks(p, SCHEME))
    return transforms.uncrop_points(points, affines)


# Kinds whose fit can be projected onto the 68 iBUG points, (aligner, photos, boxes) -> (B, 68, 2).
PROJECTIONS: dict[str, Callable] = {"pifa": pifa_ibug68}


def _weights(module: torch.nn.Module) -> tuple[float, float]:
    """(learned parameters, megabytes of the state dict)."""
    state = module.state_dict()
    return (float(sum(p.numel() for p in module.parameters())),
            sum(t.numel() * t.element_size() for t in state.values()) / 1e6)


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_key(model: aligner.Aligner, *extra) -> str:
    """A hash of what determines an aligner's predictions: its weights, preprocessing, scheme, model
    file (the peer's) and the code that crops, predicts and maps back."""
    digest = hashlib.sha1()
    for t in model.model.state_dict().values():
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    code = trainer.code_version(aligner, transforms, sys.modules[__name__], peers)
    return _digest(digest.hexdigest(), model.kind, model.scheme, model.preprocess, model.provenance.get("sha256"),
                   aligner.code_version(type(model)), code, *extra)


def _numpy_predict(fn: Callable) -> Callable:
    """``fn`` as the comparison scores it: float64 landmarks, and a finite prediction far outside its box
    scored as it is, said aloud.

    Decision [compare.wild-points] (evaluation): an aligner's guard refuses landmarks more than a box size
    outside the box (:class:`falign.kit.inputs.PredictionError`); the comparison scores such finite points as
    the model placed them, so a wild face counts as the failure it is instead of stopping the page, and
    prints how many faces it was; non-finite landmarks still stop it (nothing silently wrong).
    Paper: Not addressed: the papers score every prediction."""
    def predict(photos, boxes):
        try:
            return np.asarray(fn(photos, boxes), np.float64)
        except inputs.PredictionError as err:
            points = np.asarray(err.points, np.float64)
            if err.ok is None or not np.isfinite(points).all():
                raise
            said = str(err).replace(f"{paths.ROOT}/", "")      # the repository's paths, not this machine's
            print(f"compare: scored as predicted, {int((~err.ok).sum())} face(s) far outside their box: {said}")
            return points
    return predict


def shipped(dlib_box: BoxConvention) -> list[Method]:
    """Every aligner with shipped weights, in :func:`falign.kit.aligner.available` order, scored on 68
    points where it has them (or a projection onto them), else on its own points, each on its box
    convention (``dlib_box`` for those trained on dlib's boxes, :attr:`falign.kit.aligner.Aligner.box_convention`). An aligner whose scheme is not derived from
    iBUG 68 cannot share points with the others and is left out, said aloud."""
    out = []
    loaded, refused = aligner.shipped(DEVICE)
    for name, why in refused.items():
        print(f"compare: {name} left out: {why}")
    for name, model in loaded.items():
        params, mb = _weights(model.model)
        source = f"results/{name}/aligner.pt (scale {model.provenance.get('scale', '?')})"
        if model.kind in PROJECTIONS:
            project = PROJECTIONS[model.kind]
            predict = _numpy_predict(lambda photos, boxes, m=model, f=project: f(m, photos, boxes))
            out.append(Method(name.upper(), predict, IBUG68, "book", source + ", 68-point projection", params, mb,
                              _model_key(model, "projection", SCHEME), trained_convention(model, dlib_box)))
            continue
        method = book_method(name.upper(), model, source, dlib_box)
        if method is None:
            print(f"compare: {name} predicts {model.scheme!r}, which shares no points with iBUG 68; left out")
            continue
        out.append(method)
    return out


def book_method(label: str, model: aligner.Aligner, source: str, dlib_box: BoxConvention,
                family: str = "book") -> Method | None:
    """A trained aligner as a row, on its own points and box convention (``dlib_box`` where its checkpoint
    says it trained on dlib's boxes); None when its points are not derived from iBUG 68."""
    points = points_of_scheme(model.scheme)
    if points is None:
        return None
    return Method(label, _numpy_predict(model.predict), points, family, source, *_weights(model.model),
                  _model_key(model), trained_convention(model, dlib_box))


def trained_convention(model: aligner.Aligner, dlib_box: BoxConvention) -> BoxConvention:
    """The boxes ``model`` trained from: ``dlib_box`` where its checkpoint or kind says dlib's, else SynthFace's."""
    return dlib_box if model.box_convention == aligner.DLIB_HOG_BOXES else SYNTHFACE_BOX


PEER = "dlib ERT"


def peer_methods(dlib_box: BoxConvention) -> list[Method]:
    """dlib's ERT with its 68- and its 5-point model (:mod:`falign.baselines.dlib_ert`), on dlib's box
    convention ``dlib_box`` (:func:`dlib_convention`)."""
    out = []
    for n in (68, 5):
        peer = peers.dlib_ert(n)
        out.append(Method(PEER if n == 68 else f"{PEER} ({n}-point model)", _numpy_predict(peer.predict),
                          points_of_scheme(peer.scheme),
                          "peer", f"{peer.provenance['package']}, {peer.provenance['file']}", np.nan,
                          peer.model.file_megabytes(), _model_key(peer), dlib_box))
    return out


def fit_sdm(cfg: Scale, work, *, seed: int = 0):
    """SDM + HOG fit in closed form with the RCSR chapter's recipe at scale ``cfg.sdm`` (its training
    faces, crops, HOG patches, stages and ridge penalty), cached under ``work``; returns (model,
    training crops).

    Decision [compare.sdm-fit] (training): no chapter ships SDM weights, so the baseline is fit here, in seconds,
    from the RCSR chapter's training faces (300-W-like train) and code; nothing is trained by gradient
    descent in this chapter.
    Paper: SDM + HOG is 'already in the code' (RCSR's Table 4 row 1); no chapter ships its weights."""
    from falign.papers.rcsr import experiment as rcsr

    rcfg = rcsr.SCALES[cfg.sdm]
    train = rcsr.load(rcfg, "train", seed=seed, train=True)
    model, _ = rcsr.train(rcfg, {"train": train}, work, "sdm", seed=seed, progress=False)
    return model.eval(), train


def baseline_methods(cfg: Scale, work, *, seed: int = 0) -> tuple[list[Method], str]:
    """SDM + HOG (as an aligner with the RCSR chapter's grey crops) and the mean shape placed in the
    box; also the fingerprint of their training faces.

    Decision [compare.mean-shape] (model): the mean shape is SDM's own S-bar (the mean of the same training
    faces in box units) placed in each face box: the error a method has before it looks at the pixels.
    Paper: A mean-shape row is asked for; which mean (training set, scheme, placement) is not said."""
    from falign.papers.rcsr import experiment as rcsr_chapter
    from falign.papers.rcsr import model as rcsr, table4 as rcsr_table4
    from falign.baselines import sdm as sdm_module

    rcfg = rcsr_chapter.SCALES[cfg.sdm]
    sdm, train = fit_sdm(cfg, work, seed=seed)
    wrapped = aligner.make(sdm, "rcsr", model_args=dict(sdm.config), scheme=SCHEME,
                           preprocess={"size": rcfg.size, "margin": rcfg.margin, "grey": True, "padding": "border"})
    mean = sdm.mean_shape.cpu().numpy()
    state_mb = _weights(sdm)[1]
    recipe = f"fit here (closed form, RCSR chapter recipe at scale {cfg.sdm}, {len(train)} training crops)"
    return [Method("SDM + HOG", _numpy_predict(wrapped.predict), IBUG68, "baseline", recipe,
                   float(rcsr_table4.learned_numbers(sdm)), state_mb,
                   _model_key(wrapped, trainer.code_version(sdm_module))),
            Method("mean shape", lambda photos, boxes: rcsr.place_in_box(mean, boxes).astype(np.float64), IBUG68,
                   "baseline", "SDM's training mean shape placed in the box", float(mean.size), mean.nbytes / 1e6,
                   _digest(mean.tolist(), trainer.code_version(rcsr)))
            ], train.fingerprint


def methods(cfg: Scale, work, *, seed: int = 0) -> tuple[list[Method], dict[str, str]]:
    """Every method of the comparison on its box convention: the shipped aligners, the peer, SDM + HOG
    and the mean shape; and the fingerprints of the data the baselines and dlib's box adapter were fit
    on (for the run's provenance)."""
    base, fingerprint = baseline_methods(cfg, work, seed=seed)
    dlib_box = dlib_convention(cfg, seed=seed)
    return [*shipped(dlib_box), *peer_methods(dlib_box), *base], {"sdm-train": fingerprint,
                                                                    "box-adapter-train": dlib_box.data}


def methods_for(run, cfg: Scale) -> list[Method]:
    """:func:`methods` for a notebook's run (:class:`falign.kit.report.Run`): the SDM fit cached in its work
    folder, the baselines' training data recorded in its provenance."""
    found, fitted_on = methods(cfg, run.work, seed=run.seed)
    for name, fingerprint in fitted_on.items():
        run.dataset(name, fingerprint)
    return found


def method_table(methods_: list[Method]) -> pd.DataFrame:
    """The methods of a page: name, family (book, peer, baseline), the points each is scored on and the
    box convention it starts from."""
    return pd.DataFrame([{"method": m.name, "family": m.family, "points scored": m.points.label,
                          "box convention": m.convention.name} for m in methods_])


def convention_table(methods_: list[Method]) -> pd.DataFrame:
    """Each box convention of ``methods_``: its adapter from SynthFace's box (centre offset in box widths
    and heights, size ratios), the faces it was fitted on and the methods that use it."""
    out = {}
    for m in methods_:
        c = m.convention
        row = out.setdefault(c, {"box convention": c.name, **dict(zip(("dx", "dy", "sw", "sh"), c.adapter)),
                                 "fitted on": c.fitted_on, "methods": []})
        row["methods"].append(m.name)
    return pd.DataFrame([{**r, "methods": ", ".join(r["methods"])} for r in out.values()])


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------
BOXES = ("own", "raw", "found")


def boxes_for(m: Method, faces: Faces, boxes: str = "own") -> np.ndarray:
    """The boxes ``m`` starts from on ``faces``: ``"own"``, SynthFace's detector-like box through its
    convention's adapter (:class:`BoxConvention`); ``"raw"``, SynthFace's box whatever the convention;
    ``"found"``, its convention's real boxes where ``faces`` carry them (dlib's detections on
    :func:`found_faces`), else as ``"own"``."""
    if boxes not in BOXES:
        raise ValueError(f"boxes must be one of {BOXES}, got {boxes!r}")
    if boxes == "raw":
        return faces.detector_boxes
    real = getattr(faces, m.convention.real)
    return real if boxes == "found" and real is not None else m.convention.adapt(faces.detector_boxes)


def predict(methods_: list[Method], tests: dict[str, Faces], boxes: str = "own", cache=None) -> dict:
    """method -> subset -> (n, N, 2) predictions, every method from the same photos, each from its
    :func:`boxes_for` boxes; with ``cache`` (a folder, e.g. ``run.work``) each method's predictions
    are kept there, keyed by its :attr:`Method.key`, its box convention, the faces' fingerprints and
    the boxes themselves, so the chapter's notebooks predict once. An empty subset predicts nothing."""
    out = {}
    for m in methods_:
        given = {s: boxes_for(m, f, boxes) for s, f in tests.items()}
        key = _digest(m.key, m.convention, [(s, f.fingerprint, _digest(given[s].tolist())) for s, f in tests.items()])
        path = None if cache is None else Path(cache) / "predictions" / f"{key}.npz"
        if path is not None and path.is_file():
            with np.load(path) as saved:
                out[m.name] = {s: saved[s] for s in tests}
            continue
        out[m.name] = {s: m.predict(f.images, given[s]) if len(f) else np.zeros((0, m.points.n_points, 2))
                       for s, f in tests.items()}
        if path is not None:
            with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **out[m.name])
    return out


def point_errors(pred: np.ndarray, points: Points, gt68: np.ndarray, norm: str = "inter-ocular") -> np.ndarray:
    """(n, N) distances between predictions on ``points`` and the truth on the same points, each divided
    by its face's normaliser computed from the 68-point truth.

    Decision [compare.shared-points] (evaluation): a method is scored on the points it shares with the truth, but
    every row's normaliser comes from the same 68-point ground truth (outer eye corners or eye
    centres), so the 5-point rows are on the 68-point rows' scale; the table names the points.
    Paper: Methods with other point sets are 'compared on the points they share'; the normaliser for a 5-point
    row is not said (CCNN's paper uses the eye-centre distance of its own 5 points)."""
    gt68 = np.asarray(gt68, np.float64)
    truth = points.of(gt68)
    distance = np.linalg.norm(np.asarray(pred, np.float64) - truth, axis=-1)
    return distance / metrics.normaliser(gt68, norm, SCHEME)[:, None]


def with_full(by_subset: dict) -> dict:
    """Add "full": common and challenging pooled face by face (the 300-W convention)."""
    if "full" in by_subset or not set(TEST_SUBSETS) <= set(by_subset):
        return dict(by_subset)
    return {**by_subset, "full": np.concatenate([by_subset[s] for s in TEST_SUBSETS])}


@dataclass(frozen=True)
class Row:
    """One scored row: a method on a set of points, with its own predictions or derived from its 68."""

    label: str
    method: str
    points: Points
    derived: bool = False


def rows(methods_: list[Method]) -> list[Row]:
    """The leaderboard's rows: every 68-point method; then, for each other point set a method predicts,
    the methods native to it followed by every 68-point method reduced to the same points ("→")."""
    full = [m for m in methods_ if m.points == IBUG68]
    out = [Row(m.name, m.name, IBUG68) for m in full]
    others = list(dict.fromkeys(m.points for m in methods_ if m.points != IBUG68))
    for pts in others:
        out += [Row(m.name, m.name, pts) for m in methods_ if m.points == pts]
        out += [Row(f"{m.name} → {pts.short}", m.name, pts, derived=True) for m in full]
    return out


def row_point_errors(row: Row, preds: dict, tests: dict[str, Faces], norm: str = "inter-ocular") -> dict:
    """subset -> (n, N) normalised point errors of one row (with "full")."""
    out = {}
    for s, faces in tests.items():
        pred = preds[row.method][s]
        out[s] = point_errors(row.points.of(pred) if row.derived else pred, row.points, faces.landmarks68, norm)
    return with_full(out)


def row_visibility(row: Row, tests: dict[str, Faces]) -> dict:
    return with_full({s: row.points.visible(f.visible68) for s, f in tests.items()})


def accuracy(methods_: list[Method], preds: dict, tests: dict[str, Faces]) -> tuple[pd.DataFrame, dict]:
    """The accuracy half of the leaderboard, one row per :func:`rows` entry: per subset the mean NME (%)
    under both normalisers, AUC@0.08 and failure@0.08 (%) (inter-ocular, :mod:`falign.measure.metrics`).
    Also returns label -> subset -> per-face inter-ocular errors (for the CED curves)."""
    table, curves = [], {}
    for row in rows(methods_):
        record = {"method": row.label, "points": row.points.label + (" (derived from its 68)" if row.derived else "")}
        for norm in NORMS:
            per_face = {s: e.mean(1) for s, e in row_point_errors(row, preds, tests, norm).items()}
            stats = metrics.summary(per_face, alphas=(THRESHOLD,), label="subset").set_index("subset")
            for s in stats.index:
                record[f"{s} NME (%, {norm})"] = 100 * stats.loc[s, "mean"]
                if norm == "inter-ocular":
                    record[f"{s} AUC@{THRESHOLD:g}"] = stats.loc[s, f"auc@{THRESHOLD:g}"]
                    record[f"{s} failure@{THRESHOLD:g} (%)"] = 100 * stats.loc[s, f"failure@{THRESHOLD:g}"]
            if norm == "inter-ocular":
                curves[row.label] = per_face
        table.append(record)
    return pd.DataFrame(table), curves


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the per-face differences ``a - b`` of two methods on the same faces, and its bootstrap
    interval with the faces resampled once for both (:func:`bootstrap_interval` of the differences), so
    how hard a face is cancels out of the interval; NaN on no faces.

    Decision [compare.paired] (evaluation): every leaderboard row gives its difference to the peer as the mean
    of per-face differences on the shared faces, with a percentile bootstrap 95% interval that resamples
    faces once for both methods (``cfg.bootstrap`` resamples).
    Paper: The papers rank methods by their mean errors alone, with no interval on a difference."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if not len(d):
        return (np.nan,) * 3
    return (float(d.mean()), *bootstrap_interval(d, n_boot, seed, level))


DIFFERENCE = f"full NME − {PEER} (points, inter-ocular)"


def peer_label(row: Row) -> str:
    """The peer's row on ``row``'s points: dlib's ERT (68) itself, or reduced to those points."""
    return PEER if row.points == IBUG68 else f"{PEER} → {row.points.short}"


def with_differences(acc: pd.DataFrame, methods_: list[Method], curves: dict, n_boot: int,
                     seed: int = 0) -> pd.DataFrame:
    """``acc`` (:func:`accuracy`) with each row's difference to the peer on the same points and faces
    (:func:`peer_label`): mean per-face full-set NME difference in points of %, and its paired
    bootstrap 95% interval, after the full-set NME column; NaN where the peer has no such row."""
    out = {}
    for row in rows(methods_):
        peer = curves.get(peer_label(row))
        out[row.label] = ((np.nan,) * 3 if peer is None else
                          [100 * v for v in paired_difference(curves[row.label]["full"], peer["full"], n_boot, seed)])
    at = acc.columns.get_loc("full NME (%, inter-ocular)") + 1
    acc = acc.copy()
    for k, name in enumerate((DIFFERENCE, "low (95%)", "high (95%)")):
        acc.insert(at + k, name, [out[label][k] for label in acc["method"]])
    return acc


def pairwise(curves: dict, names, n_boot: int, seed: int = 0, subset: str = "full") -> pd.DataFrame:
    """Every pair of the rows ``names`` (in order, each against every later one) on ``subset``: the mean
    per-face NME difference (first minus second, points of %, inter-ocular) on the shared faces and its
    paired bootstrap 95% interval (:func:`paired_difference`), and which is better where the interval
    excludes 0: a ranking of the leaderboard's rows that says which of its gaps the faces decide."""
    names = list(names)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d, lo, hi = (100 * v for v in paired_difference(curves[a][subset], curves[b][subset], n_boot, seed))
            out.append({"first": a, "second": b, f"{subset} NME difference (points)": d, "low (95%)": lo,
                        "high (95%)": hi, "better": a if hi < 0 else b if lo > 0 else "neither (interval spans 0)"})
    return pd.DataFrame(out)


def found_faces(tests: dict[str, Faces]) -> dict[str, Faces]:
    """Each subset's faces dlib's HOG detector finds (:func:`hog_boxes`), carrying its detections
    (:attr:`Faces.hog_boxes`) and a fingerprint of their own; a subset may be left with none."""
    out = {}
    for s, f in tests.items():
        found = hog_boxes(f)
        hit = np.flatnonzero(~np.isnan(found[:, 0]))
        out[s] = dataclasses.replace(f.subset(hit), hog_boxes=found[hit],
                                     fingerprint=_digest(f.fingerprint, "found by dlib's HOG", hit.tolist()))
    return out


# Decision [compare.threads] (evaluation): every method is timed with torch on one thread (the previous count is
# restored after), and dlib's shape predictor and HOG detector run single-threaded anyway, so the speed
# columns compare the work each method does on one core, not how well it spreads over the machine's
# cores; the table names the threads.
# Paper: The issue asks for CPU latency at batch 1 and throughput; no thread count is given, and dlib's
# Python API runs on one thread.
TIMING_THREADS = 1
UPSAMPLING = {0: "no upsampling", 1: "upsampled once"}   # dlib's HOG detector, as timed end to end
LATENCY = "CPU latency (ms, batch 1)"


def _detect_and_align(predict: Callable, photo: np.ndarray, box, upsample: int):
    """The whole pipeline on one photo: dlib's HOG detector, then the aligner from its most confident
    box (from ``box`` when it finds none: the scan costs the same either way)."""
    found = detect.detect_faces(photo, upsample=upsample)
    return predict(photo, found[:1] if len(found) else np.asarray(box, np.float32).reshape(1, 4))


def costs(methods_: list[Method], photo: np.ndarray, box, cfg: Scale) -> pd.DataFrame:
    """Parameters, weight size, CPU latency at batch 1 (ms per face), throughput (faces/s at
    ``cfg.batch``) (:func:`falign.kit.timing.aligner_speed`), dlib's HOG detector alone and detection
    followed by the aligner (ms, without and with one upsampling), all measured in this run on the same
    photo and box with torch on :data:`TIMING_THREADS` thread(s); speed is also given as ratios to the peer."""
    out = []
    with torch_threads(TIMING_THREADS):
        detector = {u: 1000 * seconds_per_call(lambda u=u: detect.detect_faces(photo, upsample=u), DEVICE, cfg.repeats)
                    for u in UPSAMPLING}
        for m in methods_:
            ms, rate = aligner_speed(m.predict, photo, box, cfg.batch, DEVICE, cfg.repeats)
            record = {"method": m.name, "source": m.source, "parameters": m.parameters, "weights (MB)": m.megabytes,
                      "threads": f"torch {TIMING_THREADS}, dlib 1", LATENCY: ms,
                      f"throughput (faces/s, batch {cfg.batch})": rate}
            for u, how in UPSAMPLING.items():
                record[f"detector (ms, {how})"] = detector[u]
                record[f"detect + align (ms, {how})"] = 1000 * seconds_per_call(
                    lambda u=u: _detect_and_align(m.predict, photo, box, u), DEVICE, cfg.repeats)
            out.append(record)
    table = pd.DataFrame(out)
    peer = table.loc[table["method"] == PEER]
    if len(peer):  # speed as a ratio measured in one run: absolute times belong to the machine
        table.insert(table.columns.get_loc(LATENCY) + 1, "latency / the peer's", table[LATENCY] / peer[LATENCY].iloc[0])
        end_to_end = f"detect + align (ms, {UPSAMPLING[1]})"
        table[f"detect + align / the peer's ({UPSAMPLING[1]})"] = table[end_to_end] / peer[end_to_end].iloc[0]
    return table


def leaderboard(acc: pd.DataFrame, cost: pd.DataFrame) -> pd.DataFrame:
    """Accuracy rows with their method's costs (a derived row costs what its 68-point method costs)."""
    base = acc["method"].str.split(" → ").str[0]
    merged = acc.assign(_m=base).merge(cost.rename(columns={"method": "_m"}), on="_m", how="left").drop(columns="_m")
    order = ["method", "points", "parameters", "weights (MB)",
             *[c for c in cost.columns if "latency" in c or "throughput" in c]]
    return merged[order + [c for c in merged.columns if c not in order and c != "source"]]


def shown(board: pd.DataFrame) -> list[str]:
    """The columns a leaderboard page shows (its CSV keeps every column): the inter-ocular accuracy with the
    paired difference to the peer, each subset's NME, and full-set AUC and failure; the inter-pupil
    columns and the costs stay in the CSV and in the costs table, so the rendered table fits the page."""
    keep = ["method", "points", "full NME (%, inter-ocular)", DIFFERENCE, "low (95%)", "high (95%)",
            *(f"{s} NME (%, inter-ocular)" for s in TEST_SUBSETS), f"full AUC@{THRESHOLD:g}",
            f"full failure@{THRESHOLD:g} (%)"]
    return [c for c in keep if c in board.columns and not (c == "points" and board[c].nunique() == 1)]


def shown_costs(cost: pd.DataFrame) -> list[str]:
    """The columns the costs table shows: each method's own times and ratios; the detector's time, the same
    for every method, and the threads are said once beside it (:func:`cost_sentence`), the CSV keeps all."""
    return [c for c in cost.columns if c not in ("source", "parameters", "weights (MB)", "threads")
            and not c.startswith("detector (ms")]


def cost_sentence(cost: pd.DataFrame) -> str:
    """The costs shared by every row: the threads each method was timed on and dlib's HOG detector alone."""
    first = cost.iloc[0]
    detector = ", ".join(f"{first[c]:.2f} ms {c.split(', ', 1)[1].rstrip(')')}" for c in cost.columns
                         if c.startswith("detector (ms"))
    return f"Threads: {first['threads']}. dlib's HOG detector alone, on the same photo: {detector}."


@dataclass
class Scoreboard:
    """The leaderboard page's results: ``board`` (every row, :func:`leaderboard`, each method on its own
    box convention), split into ``main`` (the 68-point rows) and ``shared`` (the rows on other point
    sets); ``cost`` (:func:`costs`); ``curves`` (row label -> subset -> per-face inter-ocular errors, for
    the CED curves); ``raw`` (every method once, on SynthFace's detector-like box) and ``found`` (every
    method once, on the faces dlib's detector finds, the dlib-convention methods on its detections), with
    ``found_counts`` (subset -> faces found)."""

    board: pd.DataFrame
    main: pd.DataFrame
    shared: pd.DataFrame
    cost: pd.DataFrame
    curves: dict
    raw: pd.DataFrame
    found: pd.DataFrame
    found_counts: dict


def scored(methods_: list[Method], tests: dict[str, Faces], boxes: str, n_boot: int, *, cache=None,
           seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """:func:`accuracy` of every row with its difference to the peer (:func:`with_differences`), every
    method predicted from its ``boxes`` (:func:`boxes_for`); also the per-face curves."""
    acc, curves = accuracy(methods_, predict(methods_, tests, boxes, cache=cache), tests)
    return with_differences(acc, methods_, curves, n_boot, seed), curves


def scoreboard(methods_: list[Method], tests: dict[str, Faces], cfg: Scale, *, cache=None,
               seed: int = 0) -> Scoreboard:
    """Every method predicted (:func:`predict`, cached in ``cache``) from its own box convention, scored
    with its paired difference to the peer (:func:`scored`) and timed (:func:`costs`, on the first common
    face from its detector box), then joined (:func:`leaderboard`); and the raw-box and found-faces
    blocks, each method once (no rows derived from a 68-point method)."""
    acc, curves = scored(methods_, tests, "own", cfg.bootstrap, cache=cache, seed=seed)
    faces = tests[TEST_SUBSETS[0]]
    cost = costs(methods_, faces.images[0], faces.detector_boxes[0], cfg)
    board = leaderboard(acc, cost)
    on68 = board["points"] == IBUG68.label
    found = found_faces(tests)
    once = [r.label for r in rows(methods_) if not r.derived]
    blocks = {}
    for boxes, faces_ in (("raw", tests), ("found", found)):
        block, _ = scored(methods_, faces_, boxes, cfg.bootstrap, cache=cache, seed=seed)
        blocks[boxes] = block[block["method"].isin(once)].reset_index(drop=True)
    return Scoreboard(board, board[on68].reset_index(drop=True), board[~on68].reset_index(drop=True), cost, curves,
                      blocks["raw"], blocks["found"], {s: len(f) for s, f in found.items()})


def ced_figure(curves: dict, names, step: float = 1e-4):
    """One panel per subset (:data:`SUBSETS`), one above the other: the CED of each row of ``names`` up to
    :data:`THRESHOLD` (:func:`falign.kit.plots.ced`), the legend beside each panel giving each AUC."""
    import matplotlib.pyplot as plt

    from falign.kit import plots

    names = set(names)
    fig, axes = plt.subplots(len(SUBSETS), 1, figsize=(10, 3.6 * len(SUBSETS)))
    for ax, subset in zip(axes, SUBSETS):
        plots.ced(ax, {m: e[subset] for m, e in curves.items() if m in names}, "inter-ocular", THRESHOLD, step=step,
                  title=f"SynthFace 300-W-like {subset}")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))   # beside the curves, not on them
    fig.tight_layout()
    return fig


def write_ced_data(run, curves: dict, names) -> None:
    """Write each subset's CED curves of the rows ``names`` (:func:`falign.kit.protocol300w.ced_data`)
    as ``ced_<subset>.csv`` through ``run.table`` (:class:`falign.kit.report.Run`)."""
    chosen = {m: curves[m] for m in names}
    for subset in SUBSETS:
        run.table(protocol300w.ced_data(chosen, subset, THRESHOLD), f"ced_{subset}")


def reported_300w() -> pd.DataFrame:
    """Recent methods' real 300-W NME as their authors report it (:func:`falign.papers.sota.table_300w`),
    with ERT's published row (RCSR Table 1, full only) added for reference; nothing measured here."""
    from falign.papers import sota

    ert = {"method": "ERT (Kazemi & Sullivan 2014)", "venue": "CVPR 2014",
           **{s: published_ert(s) for s in SUBSETS}, "normaliser": published_ert_normaliser(),
           "source": "as printed in RCSR Table 1 (full only)"}
    return pd.concat([sota.table_300w(), pd.DataFrame([ert])], ignore_index=True).assign(status="as reported")


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bool mask of the points no other point beats on both axes (lower is better on each)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    better = (x[None] <= x[:, None]) & (y[None] <= y[:, None]) & ((x[None] < x[:, None]) | (y[None] < y[:, None]))
    return ~better.any(axis=1)


def pareto_figure(board: pd.DataFrame, error: str, latency: str = "CPU latency (ms, batch 1)"):
    """Error against CPU latency, one point per 68-point method, the Pareto front drawn through the
    methods that nothing beats on both."""
    import matplotlib.pyplot as plt

    rows68 = board[board["points"] == IBUG68.label].dropna(subset=[error, latency])
    x, y = rows68[latency].to_numpy(float), rows68[error].to_numpy(float)
    front = pareto_front(x, y)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter(x[~front], y[~front], c="0.55", label="beaten on both axes by another method")
    ax.scatter(x[front], y[front], c="tab:red", label="Pareto front")
    order = np.argsort(x[front])
    ax.step(x[front][order], y[front][order], where="post", c="tab:red", alpha=0.5)
    for xi, yi, name in zip(x, y, rows68["method"]):
        ax.annotate(name, (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=8)
    ax.set(xscale="log", xlabel=f"{latency}, log scale", ylabel=error)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Calibration: the peer on SynthFace with our boxes and with dlib's own detector
# --------------------------------------------------------------------------------------------------
MIN_IOU = 0.3


def hog_boxes(faces: Faces, upsample: int = 1) -> np.ndarray:
    """dlib's HOG detector on every photo: the detection that overlaps the face's landmark box most,
    (n, 4), NaN where it finds the face nowhere (:func:`falign.data.detect.detect_matching`).

    Decision [compare.found] (evaluation): a face counts as found when a detection overlaps its 68-point box with an
    IoU of at least 0.3 (dlib's boxes sit higher than the landmark box: forehead in, chin partly out);
    one upsampling, as :func:`falign.data.detect.detect_faces` does by default, so faces of about 40 pixels
    can be found.
    Paper: Report how many faces dlib's HOG detector finds per subset; what counts as finding the face (versus
    a false detection) is not said."""
    return detect.detect_matching(faces.images, faces.boxes, upsample=upsample, min_iou=MIN_IOU)


def published_ert(subset: str) -> float:
    """ERT's published 300-W NME (%) for a subset, NaN where the table prints "-"; its normaliser is
    :func:`published_ert_normaliser`."""
    try:
        return papers.number("rcsr", ERT_ID.format(subset=subset))
    except papers.UnknownNumber:
        return np.nan


def published_ert_normaliser() -> str:
    """The normaliser the RCSR transcription gives ERT's row ("not stated": RCSR copies it from another
    paper and names none; the rows beside it are inter-pupil), read where the number is kept."""
    from falign.papers.rcsr import published as rcsr

    return rcsr.table1().set_index("method").loc[ERT_ROW, "normaliser"]


def peer_table(peers_: list[Method]) -> pd.DataFrame:
    """The peer's models: the points each is scored on, where it comes from, its file size."""
    return pd.DataFrame([{"model": m.name, "points scored": m.points.label, "source": m.source,
                          "weights (MB)": round(m.megabytes, 1)} for m in peers_])


def calibration_setting(cfg: Scale, tests: dict[str, Faces]) -> str:
    """What the calibration compares: ERT's published real 300-W error with its normaliser, the
    SynthFace test faces, and the licence of each of the peer's models."""
    return "\n".join([
        f"ERT on real 300-W full (RCSR Table 1): {published_ert('full'):.2f} % NME (normaliser "
        f"{published_ert_normaliser()} there)",
        f"SynthFace test faces: {({s: len(f) for s, f in tests.items()})} rendered at {cfg.image} pixels",
        *(f"{n}-point model licence: {peers.LICENCE[n]}" for n in (68, 5))])


# The calibration's settings: (name, which faces, which boxes (:func:`boxes_for`)); the first three are read.
SETTINGS = (("dlib's boxes, found faces", "found", "found"), ("adapted boxes, all faces", "all", "own"),
            ("our boxes, all faces", "all", "raw"), ("our boxes, found faces", "found", "raw"))
RATIOS = tuple(name for name, *_ in SETTINGS[:3])
ANCHOR = "ERT on real 300-W full (%, published)"
MIX = "300-W mix ({})".format(":".join(str(protocol300w.SUBSET_SIZES[s]) for s in TEST_SUBSETS))


def real_mix(by_subset: dict[str, float]) -> float:
    """Per-subset means weighted as real 300-W's full set is (554 common : 135 challenging,
    :data:`falign.kit.protocol300w.SUBSET_SIZES`), whatever mix of faces was found here.

    Decision [compare.anchor-mix] (evaluation): the faces dlib's detector finds are mostly common ones, so the
    calibration also gives each error as the 554:135 weighted mean of its common and challenging means
    (the "300-W mix" rows), the mix of the full set the published number was measured on.
    Paper: ERT's 6.40 is on real 300-W full (554 common, 135 challenging faces); which faces a detector finds
    is not part of that protocol."""
    weights = np.array([protocol300w.SUBSET_SIZES[s] for s in TEST_SUBSETS], np.float64)
    return float(weights @ np.array([by_subset[s] for s in TEST_SUBSETS], np.float64) / weights.sum())


def calibration(peer: Method, tests: dict[str, Faces]) -> tuple[pd.DataFrame, dict[str, Faces]]:
    """The peer (68 points) on each subset under every setting of :data:`SETTINGS` (SynthFace's box,
    the same through dlib's adapter, dlib's HOG detections on the faces it finds), under both
    normalisers, beside ERT's published real 300-W number; one row per subset and normaliser, plus the
    :data:`MIX` rows (:func:`real_mix`). Also the found faces (:func:`found_faces`).

    Decision [compare.anchor-normaliser] (evaluation): the published 6.40 has no stated normaliser, so the peer's
    SynthFace error is divided by it under both readings, inter-ocular and inter-pupil, and neither is
    called the calibration.
    Paper: RCSR's Table 1 prints ERT's 6.40 (copied from another paper) with no normaliser; the rows beside it
    are inter-pupil."""
    found = found_faces(tests)
    faces = {"all": tests, "found": found}
    preds = {name: predict([peer], faces[which], boxes)[peer.name] for name, which, boxes in SETTINGS}
    published = published_ert("full")
    count = {which: {s: len(f) for s, f in f_.items()} for which, f_ in faces.items()}
    for c in count.values():
        c["full"] = sum(c.values())
    out = []
    for norm in NORMS:
        means = {}
        for name, which, _ in SETTINGS:
            errors = with_full({s: point_errors(preds[name][s], peer.points, f.landmarks68, norm).mean(1)
                                for s, f in faces[which].items()})
            means[name] = {s: 100 * e.mean() if len(e) else np.nan for s, e in errors.items()}
            means[name][MIX] = real_mix(means[name])
        for s in (*SUBSETS, MIX):
            row = {"subset": s, "normaliser": norm, "faces": count["all"].get(s, np.nan),
                   "found by dlib's HOG": count["found"].get(s, np.nan)}
            row["found (%)"] = 100 * row["found by dlib's HOG"] / row["faces"]
            row.update({f"NME (%), {name}": means[name][s] for name, *_ in SETTINGS})
            row[ANCHOR] = published if s in ("full", MIX) else np.nan
            row.update({f"ratio SynthFace / 300-W ({k})": row[f"NME (%), {k}"] / row[ANCHOR] for k in RATIOS})
            out.append(row)
    return pd.DataFrame(out), found


def _share(counts: dict) -> str:
    """The first test subset's share of the faces of both, in % (e.g. "80%")."""
    total = sum(counts[s] for s in TEST_SUBSETS)
    return f"{100 * counts[TEST_SUBSETS[0]] / total:.0f}%" if total else "none"


def calibration_reading(table: pd.DataFrame) -> tuple[str, dict[str, float]]:
    """What the :func:`calibration` table can and cannot say: the anchor's normaliser and protocol,
    which faces dlib found, the ratio on found faces reweighted to 300-W's mix under both readings of
    the anchor's normaliser (:func:`reading_guide`), and how much the box convention alone moves the
    peer; also the ratios, named for the run's log."""
    t = table.set_index(["subset", "normaliser"])
    counts = t.xs(NORMS[0], level="normaliser")
    found = {s: int(counts.loc[s, "found by dlib's HOG"]) for s in TEST_SUBSETS}
    lines = [
        f"The anchor, {published_ert('full'):.2f} %, is ERT's real 300-W full-set error as RCSR's Table 1 prints it, "
        f"normaliser {published_ert_normaliser()} there (the rows beside it are inter-pupil), so both readings are "
        "given. It is Kazemi and Sullivan's ERT under another paper's protocol (its training, boxes and "
        "normaliser), not dlib's shipped model on dlib's boxes: a ratio says how this peer's SynthFace error "
        "compares with that published error, not how much harder SynthFace is for one model.",
        "dlib's detector finds " + " and ".join(f"{found[s]} of {int(counts.loc[s, 'faces'])} {s}"
                                                  for s in TEST_SUBSETS)
        + f" faces, so {_share(found)} of the found faces are {TEST_SUBSETS[0]} ones (real 300-W full: "
          f"{_share(protocol300w.SUBSET_SIZES)}); the {MIX} rows weight the per-subset means as real 300-W's full set "
          "is."]
    ratios = {}
    for norm in NORMS:
        for s in ("full", MIX):
            ratios.update({f"ratio {s} ({k}, {norm})": float(t.loc[(s, norm), f"ratio SynthFace / 300-W ({k})"])
                           for k in RATIOS})
        lines.append(f"{norm} reading, dlib's boxes on found faces, {MIX}: "
                     + reading_guide(ratios[f"ratio {MIX} ({RATIOS[0]}, {norm})"])
                     + f" (pooled found faces: {ratios[f'ratio full ({RATIOS[0]}, {norm})']:.2f})")
    full = t.loc[("full", NORMS[0])]
    lines.append(f"On the same found faces, our boxes multiply the peer's error by "
                 f"{full['NME (%), our boxes, found faces'] / full[f'NME (%), {RATIOS[0]}']:.2f}; on all faces, "
                 f"dlib's box adapter takes it from {full['NME (%), our boxes, all faces']:.2f} to "
                 f"{full['NME (%), adapted boxes, all faces']:.2f} % (inter-ocular): that much is the box convention, "
                 "not the faces.")
    return "\n".join(lines), ratios


def calibration_figure(peer: Method, found: Faces, n: int = 4):
    """The peer on ``n`` faces found by dlib's detector (:func:`found_faces`): from our box (left of
    each pair) and from dlib's box (right), the box drawn, the peer's points in green."""
    import matplotlib.pyplot as plt

    from falign.kit import plots

    k_faces = min(n, len(found))
    fig, axes = plt.subplots(1, 2 * max(k_faces, 1), figsize=(2.2 * 2 * max(k_faces, 1), 2.6), squeeze=False)
    for k in range(k_faces):
        for j, (box, name) in enumerate(((found.detector_boxes[k], "our box"), (found.hog_boxes[k], "dlib's box"))):
            ax = axes[0, 2 * k + j]
            plots.landmarks(ax, found.images[k], peer.predict(found.images[k], box[None])[0], size=4)
            plots.box(ax, box, lw=1)
            ax.set_title(f"found face {k}, {name}", fontsize=8)
    if not k_faces:
        axes[0, 0].axis("off")
        axes[0, 0].set_title("dlib's detector found none of these faces", fontsize=8)
    fig.tight_layout()
    return fig


def reading_guide(ratio: float) -> str:
    """One sentence on what a SynthFace / real 300-W error ratio of a real-data method means for
    reading the book's SynthFace numbers (the bands are wide on purpose: one method, one data set)."""
    if not np.isfinite(ratio):
        return "No ratio: dlib's detector found no face of a subset, or ERT has no published number for it."
    if ratio < 0.8:
        return (f"ratio {ratio:.2f}: the real-data peer errs less on SynthFace than ERT's published 300-W error, so "
                "SynthFace looks easier than 300-W; read the book's SynthFace errors as optimistic.")
    if ratio <= 1.25:
        return (f"ratio {ratio:.2f}: the real-data peer errs about as much on SynthFace as ERT's published 300-W "
                "error; SynthFace errors are on the scale of 300-W errors, though not the same faces.")
    return (f"ratio {ratio:.2f}: the real-data peer errs more on SynthFace than ERT's published 300-W error in "
            "these conditions; read SynthFace errors as relative comparisons between methods, not as 300-W "
            "predictions.")


# --------------------------------------------------------------------------------------------------
# Robustness sweeps: one factor at a time, through SynthFace's config overrides
# --------------------------------------------------------------------------------------------------
# Decision [compare.sweep-neutral] (data): the factors a sweep does not vary sit at a neutral setting: frontal
# (yaw, pitch, roll 0), the model's neutral expression, no occluder, no blur or noise, a face 55% of the
# photo wide (the middle of the common set's range), and the common split's own detector-like box (the
# 68-point box with its centre shifted by 0.05 of its size and its log size by 0.07, standard
# deviations; SynthFace's usual jitter), the box every method starts from on the leaderboard. The exact
# landmark box would hand every method the truth's extent (the mean shape placed in it beat every
# 68-point method under heavy occlusion); only the box-shift and box-scale sweeps change the jitter,
# each its own half. Identity, skin, hair, light and background vary as in the common set. The random
# draws do not depend on the values swept (the box jitter is a fixed normal draw times the std), so every
# point of a sweep renders the *same* faces with one factor changed.
# Paper: Sweep one factor 'with the others held at a neutral setting'; the neutral values are not given.
NEUTRAL = dict(yaw=(0.0, 0.0), pitch=(0.0, 0.0), roll=(0.0, 0.0), expression=(0.0, 0.0), occlusion=0.0,
               blur=(0.0, 0.0), blur_prob=0.0, noise=(0.0, 0.0),
               detector_shift=SYNTHFACE[PRESET].splits["common"].detector_shift,
               detector_scale=SYNTHFACE[PRESET].splits["common"].detector_scale, face_width=(0.55, 0.55))

# Decision [compare.sweep-reference] (evaluation): at every sweep point each row is compared with the mean shape
# on the same faces, boxes and points (the 68, or "mean shape → <points>" on a smaller point set): the
# mean over faces of its per-face error minus the mean shape's, with a paired bootstrap 95% interval
# (faces resampled, both errors of a face kept together); each row's own mean NME stays beside it. The
# mean shape reads no pixel, so the difference is what looking at the photo buys over the box alone, and
# it exists on every point set; the peer's curves carry its box convention (calibration page), so a
# difference to it would mix two methods' responses.
# Paper: The sweeps ask for 95% intervals; the faces are shared by every method, which makes paired intervals
# possible; no reference row is named.
REFERENCE = "mean shape"   # the name baseline_methods gives it


@dataclass(frozen=True)
class Factor:
    """One swept factor: the SynthFace fields it sets, its values (the x axis) and how a value becomes
    overrides (``set(value, image)``). A ``binned`` factor is rendered once at ``values[0]``'s
    overrides and its faces grouped by a measured quantity, the bin edges being ``edges``. ``jaw``: the
    68-point rows also report the jaw and the other 51 points apart (:func:`jaw_split`)."""

    name: str
    label: str
    fields: tuple[str, ...]
    values: tuple[float, ...]
    set: Callable[[float, int], dict]
    edges: tuple[float, ...] = ()
    jaw: bool = False


def _pair(field: str) -> Callable[[float, int], dict]:
    return lambda v, image: {field: (float(v), float(v))}


FACTORS: dict[str, Factor] = {f.name: f for f in (
    Factor("yaw", "yaw (degrees)", ("yaw",), (0, 15, 30, 45, 60, 75, 90), _pair("yaw"), jaw=True),
    Factor("pitch", "pitch (degrees)", ("pitch",), (-40, -20, 0, 20, 40), _pair("pitch")),
    Factor("roll", "roll (degrees)", ("roll",), (0, 15, 30, 45, 60), _pair("roll")),
    Factor("expression", "expression strength (x the model's sigmas)", ("expression",), (0, 0.5, 1.0, 1.5, 2.0),
           _pair("expression")),
    # Decision [compare.coverage] (data): SynthFace draws occluders of random size, so coverage is measured,
    # not set: every face gets its occluder (the same one it would get in any split), and faces are
    # grouped by the share of their 68 landmarks it hides; the points are the bins' mean coverage. A bin
    # holding fewer than the scale's ``bin_faces`` faces is merged into its neighbour (:func:`merge_bins`),
    # so no point rests on a face or two and no interval is drawn from a single face.
    # Paper: Sweep 'occluder coverage'; SynthFace's occluders have a random size, set by no field.
    Factor("occlusion", "occluder coverage (% of the 68 landmarks hidden)", ("occlusion",), (1.0,),
           lambda v, image: {"occlusion": float(v)}, edges=(0.0, 0.05, 0.15, 0.3, 0.5, 1.0)),
    Factor("blur", "Gaussian blur sigma (pixels at 128 px)", ("blur", "blur_prob"), (0, 0.5, 1.0, 1.5, 2.0, 3.0),
           lambda v, image: {"blur": (float(v), float(v)), "blur_prob": 1.0}),
    Factor("noise", "pixel noise std (intensity 0-1)", ("noise",), (0, 0.02, 0.05, 0.1, 0.15), _pair("noise")),
    Factor("box shift", "box centre jitter (std, fraction of the box)", ("detector_shift",), (0, 0.05, 0.1, 0.15, 0.2),
           lambda v, image: {"detector_shift": float(v)}),
    Factor("box scale", "box size jitter (std of log size)", ("detector_scale",), (0, 0.05, 0.1, 0.2, 0.3),
           lambda v, image: {"detector_scale": float(v)}),
    Factor("face size", "face width (pixels, frontal landmark box)", ("face_width",), (24, 32, 48, 64, 80, 96),
           lambda v, image: {"face_width": (v / image, v / image)}),
)}


def overrides(factor: str, value: float, image: int) -> dict:
    """SynthFace overrides for one sweep point: :data:`NEUTRAL` with only ``factor``'s fields changed."""
    f = FACTORS[factor]
    changed = f.set(value, image)
    if set(changed) - set(f.fields):
        raise ValueError(f"factor {factor!r} sets {sorted(set(changed) - set(f.fields))} beyond its fields {f.fields}")
    return {**NEUTRAL, **changed}


def sweep_faces(cfg: Scale, factor: str, value: float, *, seed: int = 0) -> Faces:
    """The sweep's faces at one value: the 300-W-like common split's draws with :func:`overrides`."""
    arrays = synthface_arrays(PRESET, "common", cfg.sweep_faces, size=cfg.image, seed=seed,
                              **overrides(factor, value, cfg.image))
    return Faces.from_arrays(arrays, name=f"sweep:{factor}={value:g}")


def bootstrap_interval(values: np.ndarray, n_boot: int, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (faces resampled with replacement); NaN
    for fewer than two faces, which have no spread to resample. Per-face differences of two methods
    give the paired interval."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return np.nan, np.nan
    idx = np.random.default_rng(seed).integers(0, len(values), (n_boot, len(values)))
    means = values[idx].mean(1)
    return tuple(float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def box_point_errors(row: Row, preds: dict, faces: Faces) -> np.ndarray:
    """(n, N) point errors of one row (:func:`rows`) on sweep faces, each divided by sqrt(w h) of its
    face's 68-point box; ``preds`` maps a method to its (n, ., 2) predictions.

    Decision [compare.sweep-norm] (evaluation): the sweeps divide by the size of the ground-truth landmark box,
    not the eye-corner distance: at large yaw the outer eye corners nearly meet in the image and the
    inter-ocular NME would grow from the normaliser alone.
    Paper: The sweeps' error measure is not given; yaw runs to 90 degrees, where the outer eye corners nearly
    coincide in the image."""
    distances = row_point_errors(row, {row.method: {"sweep": preds[row.method]}}, {"sweep": faces}, "none")["sweep"]
    return distances / metrics.normaliser(faces.landmarks68, "box", boxes=faces.boxes)[:, None]


JAW = slice(0, 17)   # iBUG 0-16: ear level down to the chin and up again


def jaw_split(errors68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-face mean of (n, 68) point errors on the 17 jaw points (iBUG 0-16) and on the other 51.

    Decision [compare.jaw] (evaluation): SynthFace's jaw points are fixed vertices of the 3D face, so at large
    yaw the far jaw stays where the head hides it; 300-W's annotators slid it to the visible silhouette,
    and dlib's ERT learned that definition. The yaw sweep reports the jaw apart from the other 51 points,
    so a method's error from the definition (jaw) shows apart from its error on points both define alike.
    Paper: 300-W marks the jaw on the silhouette at every pose (Sagonas et al.); SynthFace's truth is
    3D-consistent (AFLW/PIFA convention); the sweeps do not mention the difference."""
    errors68 = np.asarray(errors68, np.float64)
    return errors68[:, JAW].mean(1), errors68[:, JAW.stop:].mean(1)


def coverage(bare: Faces, occluded: Faces) -> np.ndarray:
    """Share of each face's 68 landmarks visible without its occluder and hidden with it."""
    hidden = bare.visible68 & ~occluded.visible68
    return hidden.mean(1)


def merge_bins(counts, minimum: int) -> list[tuple[int, int]]:
    """Groups ``[start, stop)`` of consecutive bins, joined from the first bin on until each holds at
    least ``minimum`` faces; a short remainder joins the group before it. No group when all the faces
    together are fewer than ``minimum``."""
    if minimum < 2:
        raise ValueError(f"a coverage bin needs at least 2 faces (one face has no interval), got {minimum}")
    groups, start, held = [], 0, 0
    for b, n in enumerate(counts):
        held += n
        if held >= minimum:
            groups.append((start, b + 1))
            start, held = b + 1, 0
    if held and groups:
        groups[-1] = (groups[-1][0], len(counts))
    return groups


def coverage_groups(share: np.ndarray, edges: tuple[float, ...], minimum: int) -> list[tuple[str, np.ndarray]]:
    """(label, faces inside) per coverage group: ``share`` binned at ``edges`` (the last bin closed),
    small bins merged (:func:`merge_bins`)."""
    bins = np.clip(np.digitize(share, edges[1:-1]), 0, len(edges) - 2)
    groups = merge_bins(np.bincount(bins, minlength=len(edges) - 1), minimum)
    return [(f"{100 * edges[a]:g}-{100 * edges[b]:g}%", (bins >= a) & (bins < b)) for a, b in groups]


SWEEP_DIFFERENCE = f"minus the {REFERENCE} (%, box)"   # the paired difference's column; its interval: low, high


def _points(factor: Factor, value: float, group: str, rows_: list[Row], errors: dict, cfg: Scale, seed: int) -> list:
    """One sweep point's records: per row, its mean NME and its paired difference to the reference row
    on the same points (NaN for the reference itself, or where it is missing); the jaw split for a
    ``jaw`` factor's 68-point rows."""
    out = []
    for r in rows_:
        e = errors[r.label].mean(1)
        ref = next((q for q in rows_ if q.method == REFERENCE and q.points == r.points), None)
        diff = e - errors[ref.label].mean(1) if ref is not None and ref != r else np.full(len(e), np.nan)
        lo, hi = bootstrap_interval(diff, cfg.bootstrap, seed) if np.isfinite(diff).all() else (np.nan, np.nan)
        record = {"factor": factor.name, "value": value, "group": group, "method": r.label, "points": r.points.label,
                  "point set": r.points.short, "faces": len(e), "NME (%, box)": 100 * e.mean(),
                  SWEEP_DIFFERENCE: 100 * diff.mean(), "low": 100 * lo, "high": 100 * hi}
        if factor.jaw:
            jaw, other = jaw_split(errors[r.label]) if r.points == IBUG68 else (np.full(len(e), np.nan),) * 2
            record |= {"jaw NME (%, box)": 100 * jaw.mean(), "other 51 NME (%, box)": 100 * other.mean()}
        out.append(record)
    return out


def sweep_values(factor: str, cfg: Scale) -> tuple[float, ...]:
    """The values a scale sweeps: every value, or ``cfg.sweep_points`` of them evenly spaced (ends kept)."""
    values = FACTORS[factor].values
    if cfg.sweep_points is None or cfg.sweep_points >= len(values):
        return values
    return tuple(values[i] for i in np.unique(np.linspace(0, len(values) - 1, cfg.sweep_points).round().astype(int)))


def factor_table(cfg: Scale) -> pd.DataFrame:
    """Each factor of :data:`FACTORS`: its axis, the SynthFace fields it sets, the values it takes at
    this scale (or, for a measured factor, its bin edges)."""
    return pd.DataFrame([{"factor": f.name, "axis": f.label, "fields": ", ".join(f.fields),
                          "values": ", ".join(f"{v:g}" for v in (f.edges or sweep_values(f.name, cfg))),
                          "kind": "bin edges of measured coverage" if f.edges else "set"}
                         for f in FACTORS.values()])


def _rendered(methods_: list[Method], cfg: Scale, factor: str, value: float, seed: int, memo: dict):
    """(faces, method -> predictions from the faces' detector-like boxes, each through its method's box
    convention, :func:`boxes_for`) at one sweep point; points with the same overrides (every factor's
    neutral value) are rendered and predicted once."""
    key = json.dumps(overrides(factor, value, cfg.image), sort_keys=True)
    if key not in memo:
        faces = sweep_faces(cfg, factor, value, seed=seed)
        memo[key] = faces, {m.name: m.predict(faces.images, boxes_for(m, faces)) for m in methods_}
    return memo[key]


def sweep(methods_: list[Method], cfg: Scale, factor: str, *, seed: int = 0, memo: dict | None = None) -> pd.DataFrame:
    """One factor's curves: per value (or coverage group) and row of :func:`rows` (every method on its
    points, and the 68-point methods reduced to each smaller point set), the faces, the mean NME (%, box)
    and the paired difference to the mean shape with its bootstrap 95% interval (:func:`_points`)."""
    f, memo = FACTORS[factor], {} if memo is None else memo
    rows_ = rows(methods_)
    if f.edges:
        (bare, _), (faces, preds) = (_rendered(methods_, cfg, factor, v, seed, memo) for v in (0.0, f.values[0]))
        share = coverage(bare, faces)
        errors = {r.label: box_point_errors(r, preds, faces) for r in rows_}
        return pd.DataFrame([record for group, inside in coverage_groups(share, f.edges, cfg.bin_faces)
                             for record in _points(f, 100 * float(share[inside].mean()), group, rows_,
                                                   {k: e[inside] for k, e in errors.items()}, cfg, seed)])
    out = []
    for v in sweep_values(factor, cfg):
        faces, preds = _rendered(methods_, cfg, factor, v, seed, memo)
        out += _points(f, float(v), "", rows_, {r.label: box_point_errors(r, preds, faces) for r in rows_}, cfg, seed)
    return pd.DataFrame(out)


def sweeps(methods_: list[Method], cfg: Scale, *, seed: int = 0, factors=None) -> pd.DataFrame:
    """Every factor's sweep (:data:`FACTORS`), one long table; shared neutral points are computed once."""
    memo: dict = {}
    return pd.concat([sweep(methods_, cfg, f, seed=seed, memo=memo) for f in (factors or FACTORS)], ignore_index=True)


def _faces_per_point(ax, part: pd.DataFrame, name: str) -> None:
    """Title a factor's panel with its faces per point: one number, or one under each point."""
    counts = part.drop_duplicates("value")[["value", "faces"]]
    if counts["faces"].nunique() == 1:
        ax.set_title(f"{name} ({counts['faces'].iloc[0]} faces per point)", fontsize=9)
        return
    ax.set_title(f"{name} (faces per point below)", fontsize=9)
    for x, n in counts.itertuples(index=False):
        ax.annotate(f"n={n}", (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=7)


def sweep_figure(curves: pd.DataFrame, point_set: str, ncols: int = 5):
    """The rows of one point set (errors on 5 points and on 68 are not on one scale): per factor, each
    row's mean NME (upper panel) and its paired difference to the mean shape with the 95% band (lower
    panel; below 0, the row beats the box alone on the same faces)."""
    import matplotlib.pyplot as plt

    curves = curves[curves["point set"] == point_set]
    factors = list(dict.fromkeys(curves["factor"]))
    blocks = -(-len(factors) // ncols)
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=(4.2 * ncols, 3.0 * 2 * blocks), squeeze=False)
    for i, name in enumerate(factors):
        top, bottom = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
        part = curves[curves["factor"] == name]
        for method, c in part.groupby("method", sort=False):
            line, = top.plot(c["value"], c["NME (%, box)"], marker="o", ms=3, label=method)
            if c[SWEEP_DIFFERENCE].notna().any():
                bottom.plot(c["value"], c[SWEEP_DIFFERENCE], marker="o", ms=3, color=line.get_color())
                bottom.fill_between(c["value"], c["low"], c["high"], color=line.get_color(), alpha=0.15)
        bottom.axhline(0, color="0.3", lw=0.8)
        _faces_per_point(top, part, name)
        top.set(ylabel="NME (%, sqrt(w·h) of the 68-point box)")
        bottom.set(xlabel=FACTORS[name].label, ylabel=f"{SWEEP_DIFFERENCE}, 95% paired")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    for i in range(len(factors), blocks * ncols):
        for ax in axes[2 * (i // ncols):2 * (i // ncols) + 2, i % ncols]:
            ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"Scored on {curves['points'].iloc[0]}", fontsize=10)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.98))
    return fig


def sweep_figures(curves: pd.DataFrame) -> dict:
    """One :func:`sweep_figure` per point set, named ``sweeps_<point set>`` (the 68 points first)."""
    return {f"sweeps_{s}": sweep_figure(curves, s) for s in dict.fromkeys(curves["point set"])}


def jaw_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The yaw sweep's 68-point rows: mean NME on the 17 jaw points and on the other 51 (:func:`jaw_split`),
    and the jaw's excess over the other 51."""
    part = curves.dropna(subset=["jaw NME (%, box)"])
    out = part[["value", "method", "faces", "jaw NME (%, box)", "other 51 NME (%, box)"]].rename(
        columns={"value": "yaw (degrees)"})
    return out.assign(**{"jaw minus other 51 (%, box)": out["jaw NME (%, box)"] - out["other 51 NME (%, box)"]})


# --------------------------------------------------------------------------------------------------
# Metric conventions: the same predictions under each toolkit's bookkeeping
# --------------------------------------------------------------------------------------------------
def convention_presets() -> pd.DataFrame:
    """The choices of every preset of :data:`falign.measure.conventions.PRESETS` (without its source)."""
    return pd.DataFrame([{k: v for k, v in dataclasses.asdict(c).items() if k != "source"}
                         for c in conventions.PRESETS.values()])


def convention_sources() -> pd.DataFrame:
    """The code each convention preset follows."""
    return pd.DataFrame([{"preset": c.name, "follows": c.source} for c in conventions.PRESETS.values()])


def convention_scores(methods_: list[Method], preds: dict, tests: dict[str, Faces], subset: str = "full") -> pd.DataFrame:
    """The 68-point rows' predictions on ``subset`` scored under every preset
    (:func:`falign.measure.conventions.table`), with their visibility; normaliser: outer eye corners."""
    on68 = [r for r in rows(methods_) if r.points == IBUG68]
    errors = {r.label: row_point_errors(r, preds, tests)[subset] for r in on68}
    visible = {r.label: row_visibility(r, tests)[subset] for r in on68}
    return conventions.table(errors, visible)


def convention_spread(scored: pd.DataFrame, value: str = "NME (%)") -> pd.DataFrame:
    """Per method, ``value`` under every preset side by side and the largest difference between presets."""
    table = scored.pivot(index="method", columns="convention", values=value)[list(conventions.PRESETS)]
    table["largest difference"] = table.max(axis=1) - table.min(axis=1)
    return table.reset_index()
