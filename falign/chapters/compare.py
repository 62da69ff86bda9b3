"""The comparison chapter: every aligner of the book, a real-world peer and two baselines on one protocol.

Each paper reports on its own protocol; this chapter runs every method on the *same* SynthFace faces
(300-W-like common, challenging and full), with the *same* face boxes and the *same* metrics, and adds
what SynthFace makes possible and real benchmarks do not: error as a function of one controlled factor.

Methods (:func:`methods`), never named in a list:

* every aligner with shipped weights (:func:`falign.kit.aligner.available`), so a chapter that lands joins
  by itself; a kind with a 68-point projection (:data:`PROJECTIONS`, PIFA's 3DMM) is scored on 68 points;
* the peer, dlib's ERT (:mod:`falign.baselines.dlib_ert`), with its 68- and its 5-point model;
* SDM + HOG and the mean shape, the classic baselines (RCSR's Table 4 row 1 and its initial shape).

Methods that predict other point sets are compared on the points they share (:class:`Points`); every
error is normalised by the 68-point ground truth of the same face, so all rows use one yardstick.
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

from falign.kit import aligner, chapter, protocol300w, train as trainer
from falign.base import atomic_files as atomic
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
ERT_ID = "table1/ert-9/{subset}"           # ERT's published 300-W row in falign/papers/rcsr/published.py (full only)

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
    bootstrap: int = not_recipe()            # bootstrap resamples per sweep point
    repeats: int = not_recipe()              # timed calls per latency (median)
    batch: int = not_recipe()                # faces per call for the throughput column
    sweep_points: int | None = not_recipe(None)   # values per factor (evenly thinned, ends kept); None: every value


SCALES = {
    # CI: proves the code runs end to end; numbers mean nothing.
    "smoke": Scale(n_test={"common": 8, "challenging": 4}, image=128, sdm="smoke", sweep_faces=3, bin_faces=2,
                   bootstrap=50, repeats=2, batch=4, sweep_points=2),
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
    detector_boxes: np.ndarray  # (n, 4) the detector-like box every method starts from
    pose: np.ndarray            # (n, 3) yaw, pitch, roll (degrees)

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


@dataclass
class Method:
    """A row of the leaderboard: ``predict(photos, boxes) -> (B, N, 2)`` on ``points``, and what it costs."""

    name: str
    predict: Callable
    points: Points
    family: str                 # "book" (shipped weights), "peer", "baseline"
    source: str                 # where the model comes from
    parameters: float           # learned numbers (NaN: not exposed, e.g. dlib's trees)
    megabytes: float            # size of the weights
    key: str                    # names the exact model and code: cached predictions are keyed by it


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
    return lambda photos, boxes: np.asarray(fn(photos, boxes), np.float64)


def shipped() -> list[Method]:
    """Every aligner with shipped weights, in :func:`falign.kit.aligner.available` order, scored on 68
    points where it has them (or a projection onto them), else on its own points. An aligner whose
    scheme is not derived from iBUG 68 cannot share points with the others and is left out, said aloud."""
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
                              _model_key(model, "projection", SCHEME)))
            continue
        points = points_of_scheme(model.scheme)
        if points is None:
            print(f"compare: {name} predicts {model.scheme!r}, which shares no points with iBUG 68; left out")
            continue
        out.append(Method(name.upper(), _numpy_predict(model.predict), points, "book", source, params, mb,
                          _model_key(model)))
    return out


PEER = "dlib ERT"


def peer_methods() -> list[Method]:
    """dlib's ERT with its 68- and its 5-point model (:mod:`falign.baselines.dlib_ert`)."""
    out = []
    for n in (68, 5):
        peer = peers.dlib_ert(n)
        out.append(Method(PEER if n == 68 else f"{PEER} ({n}-point model)", _numpy_predict(peer.predict),
                          points_of_scheme(peer.scheme),
                          "peer", f"{peer.provenance['package']}, {peer.provenance['file']}", np.nan,
                          peer.model.file_megabytes(), _model_key(peer)))
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
    """Every method of the comparison: the shipped aligners, the peer, SDM + HOG and the mean shape;
    and the fingerprints of the data the baselines were fit on (for the run's provenance)."""
    base, fingerprint = baseline_methods(cfg, work, seed=seed)
    return [*shipped(), *peer_methods(), *base], {"sdm-train": fingerprint}


def methods_for(run, cfg: Scale) -> list[Method]:
    """:func:`methods` for a notebook's run (:class:`falign.kit.report.Run`): the SDM fit cached in its work
    folder, the baselines' training data recorded in its provenance."""
    found, fitted_on = methods(cfg, run.work, seed=run.seed)
    for name, fingerprint in fitted_on.items():
        run.dataset(name, fingerprint)
    return found


def method_table(methods_: list[Method]) -> pd.DataFrame:
    """The methods of a page: name, family (book, peer, baseline), the points each is scored on."""
    return pd.DataFrame([{"method": m.name, "family": m.family, "points scored": m.points.label} for m in methods_])


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------
def predict(methods_: list[Method], tests: dict[str, Faces], boxes: str = "detector_boxes", cache=None) -> dict:
    """method -> subset -> (n, N, 2) predictions, every method from the same photos and boxes; with
    ``cache`` (a folder, e.g. ``run.work``) each method's predictions are kept there, keyed by its
    :attr:`Method.key` and the faces' fingerprints, so the chapter's notebooks predict once.

    Decision [compare.boxes] (data): every method starts from the same box, SynthFace's detector-like box (the
    68-point landmark box with its centre and size jittered), the box the chapters trained with; the
    peer was trained on dlib's own detector boxes, so the calibration also runs it on those.
    Paper: Every method on 'the same faces with the same boxes'; which boxes is not said, and dlib's ERT was
    trained on dlib's own HOG detector boxes."""
    out = {}
    for m in methods_:
        key = _digest(m.key, boxes, [(s, f.fingerprint) for s, f in tests.items()])
        path = None if cache is None else Path(cache) / "predictions" / f"{key}.npz"
        if path is not None and path.is_file():
            with np.load(path) as saved:
                out[m.name] = {s: saved[s] for s in tests}
            continue
        out[m.name] = {s: m.predict(f.images, getattr(f, boxes)) for s, f in tests.items()}
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


@dataclass
class Scoreboard:
    """The leaderboard page's results: ``board`` (every row, :func:`leaderboard`), split into ``main`` (the
    68-point rows) and ``shared`` (the rows on other point sets); ``cost`` (:func:`costs`); and ``curves``
    (row label -> subset -> per-face inter-ocular errors, for the CED curves)."""

    board: pd.DataFrame
    main: pd.DataFrame
    shared: pd.DataFrame
    cost: pd.DataFrame
    curves: dict


def scoreboard(methods_: list[Method], tests: dict[str, Faces], cfg: Scale, *, cache=None) -> Scoreboard:
    """Every method predicted (:func:`predict`, cached in ``cache``), scored (:func:`accuracy`) and timed
    (:func:`costs`, on the first common face from its detector box), then joined (:func:`leaderboard`)."""
    preds = predict(methods_, tests, cache=cache)
    acc, curves = accuracy(methods_, preds, tests)
    faces = tests[TEST_SUBSETS[0]]
    cost = costs(methods_, faces.images[0], faces.detector_boxes[0], cfg)
    board = leaderboard(acc, cost)
    on68 = board["points"] == IBUG68.label
    return Scoreboard(board, board[on68].reset_index(drop=True), board[~on68].reset_index(drop=True), cost, curves)


def ced_figure(curves: dict, names, step: float = 1e-4):
    """One panel per subset (:data:`SUBSETS`): the CED of each row of ``names`` up to :data:`THRESHOLD`
    (:func:`falign.kit.plots.ced`), the legend giving each AUC."""
    import matplotlib.pyplot as plt

    from falign.kit import plots

    names = set(names)
    fig, axes = plt.subplots(1, len(SUBSETS), figsize=(5 * len(SUBSETS), 4.3))
    for ax, subset in zip(axes, SUBSETS):
        plots.ced(ax, {m: e[subset] for m, e in curves.items() if m in names}, "inter-ocular", THRESHOLD, step=step,
                  title=f"SynthFace 300-W-like {subset}")
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
           **{s: published_ert(s) for s in SUBSETS}, "normaliser": "inter-ocular",
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
    """ERT's published 300-W NME (%, inter-ocular) for a subset, NaN where the table prints "-"."""
    try:
        return papers.number("rcsr", ERT_ID.format(subset=subset))
    except papers.UnknownNumber:
        return np.nan


def peer_table(peers_: list[Method]) -> pd.DataFrame:
    """The peer's models: the points each is scored on, where it comes from, its file size."""
    return pd.DataFrame([{"model": m.name, "points scored": m.points.label, "source": m.source,
                          "weights (MB)": round(m.megabytes, 1)} for m in peers_])


def calibration_setting(cfg: Scale, tests: dict[str, Faces]) -> str:
    """What the calibration compares: ERT's published real 300-W error, the SynthFace test faces, and
    the licence of each of the peer's models."""
    return "\n".join([
        f"ERT on real 300-W full (RCSR Table 1): {papers.number('rcsr', ERT_ID.format(subset='full')):.2f} % NME "
        "(inter-ocular)",
        f"SynthFace test faces: {({s: len(f) for s, f in tests.items()})} rendered at {cfg.image} pixels",
        *(f"{n}-point model licence: {peers.LICENCE[n]}" for n in (68, 5))])


RATIOS = ("dlib's boxes, found faces", "our boxes, all faces")   # the calibration's two ratios, as read


def calibration_reading(table: pd.DataFrame, subset: str = "full") -> tuple[str, dict[str, float]]:
    """What the :func:`calibration` table says on ``subset``: each ratio read (:func:`reading_guide`) and
    how much of their difference the box convention alone makes on the same found faces; also the
    ratios, named for the run's log."""
    row = table.set_index("subset").loc[subset]
    ratios = {f"ratio {subset} ({k})": float(row[f"ratio SynthFace / 300-W ({k})"]) for k in RATIOS}
    lines = [f"{k}: {reading_guide(row[f'ratio SynthFace / 300-W ({k})'])}" for k in RATIOS]
    box_factor = row["NME (%), our boxes, found faces"] / row["NME (%), dlib's boxes, found faces"]
    lines.append(f"On the same found faces, our boxes multiply the peer's error by {box_factor:.2f}: that much of "
                 "the difference between the two ratios is the box convention, not the faces.")
    return "\n".join(lines), ratios


def calibration(peer: Method, tests: dict[str, Faces]) -> tuple[pd.DataFrame, dict]:
    """The peer (68 points) on each subset with our boxes and with dlib's HOG detector on the faces it
    finds, beside ERT's published real 300-W number; also subset -> dlib boxes (NaN rows: not found)."""
    found = {s: hog_boxes(f) for s, f in tests.items()}
    ours = with_full({s: point_errors(peer.predict(f.images, f.detector_boxes), peer.points, f.landmarks68).mean(1)
                      for s, f in tests.items()})
    hog = {}
    for s, f in tests.items():
        hit = ~np.isnan(found[s][:, 0])
        e = np.full(len(f), np.nan)
        if hit.any():
            sub = f.subset(hit)
            e[hit] = point_errors(peer.predict(sub.images, found[s][hit]), peer.points, sub.landmarks68).mean(1)
        hog[s] = e
    hog = with_full(hog)
    out = []
    for s in SUBSETS:
        hit = ~np.isnan(hog[s])
        row = {"subset": s, "faces": len(hog[s]), "found by dlib's HOG": int(hit.sum()),
               "found (%)": 100 * hit.mean(),
               "NME (%), our boxes, all faces": 100 * ours[s].mean(),
               "NME (%), our boxes, found faces": 100 * ours[s][hit].mean() if hit.any() else np.nan,
               "NME (%), dlib's boxes, found faces": 100 * hog[s][hit].mean() if hit.any() else np.nan,
               "ERT on real 300-W (%, published)": published_ert(s)}
        for k in ("our boxes, all faces", "dlib's boxes, found faces"):
            row[f"ratio SynthFace / 300-W ({k})"] = row[f"NME (%), {k}"] / row["ERT on real 300-W (%, published)"]
        out.append(row)
    return pd.DataFrame(out), found


def calibration_figure(peer: Method, faces: Faces, dlib_boxes: np.ndarray, n: int = 4):
    """The peer on ``n`` faces found by dlib's detector: from our box (left of each pair) and from
    dlib's box (right), the box drawn, the peer's points in green."""
    import matplotlib.pyplot as plt

    from falign.kit import plots

    found = np.flatnonzero(~np.isnan(dlib_boxes[:, 0]))[:n]
    fig, axes = plt.subplots(1, 2 * max(len(found), 1), figsize=(2.2 * 2 * max(len(found), 1), 2.6), squeeze=False)
    for k, i in enumerate(found):
        for j, (box, name) in enumerate(((faces.detector_boxes[i], "our box"), (dlib_boxes[i], "dlib's box"))):
            ax = axes[0, 2 * k + j]
            plots.landmarks(ax, faces.images[i], peer.predict(faces.images[i], box[None])[0], size=4)
            plots.box(ax, box, lw=1)
            ax.set_title(f"face {i}, {name}", fontsize=8)
    if not len(found):
        axes[0, 0].axis("off")
        axes[0, 0].set_title("dlib's detector found none of these faces", fontsize=8)
    fig.tight_layout()
    return fig


def reading_guide(ratio: float) -> str:
    """One sentence on what a SynthFace / real 300-W error ratio of a real-data method means for
    reading the book's SynthFace numbers (the bands are wide on purpose: one method, one data set)."""
    if not np.isfinite(ratio):
        return "No ratio: the peer found no face, or ERT has no published number for this subset."
    if ratio < 0.8:
        return (f"ratio {ratio:.2f}: a real-data method does better on SynthFace than on real 300-W, so SynthFace "
                "is easier than 300-W for it; read the book's SynthFace errors as optimistic.")
    if ratio <= 1.25:
        return (f"ratio {ratio:.2f}: a real-data method errs about as much on SynthFace as on real 300-W; "
                "SynthFace errors are on the scale of 300-W errors, though not the same faces.")
    return (f"ratio {ratio:.2f}: a real-data method errs more on SynthFace than on real 300-W in these "
            "conditions; read SynthFace errors as relative comparisons between methods, not as 300-W predictions.")


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


DIFFERENCE = f"minus the {REFERENCE} (%, box)"   # the paired difference's column; its interval: low, high


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
                  DIFFERENCE: 100 * diff.mean(), "low": 100 * lo, "high": 100 * hi}
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
    """(faces, method -> predictions from the faces' detector-like boxes) at one sweep point; points with
    the same overrides (every factor's neutral value) are rendered and predicted once."""
    key = json.dumps(overrides(factor, value, cfg.image), sort_keys=True)
    if key not in memo:
        faces = sweep_faces(cfg, factor, value, seed=seed)
        memo[key] = faces, {m.name: m.predict(faces.images, faces.detector_boxes) for m in methods_}
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
            if c[DIFFERENCE].notna().any():
                bottom.plot(c["value"], c[DIFFERENCE], marker="o", ms=3, color=line.get_color())
                bottom.fill_between(c["value"], c["low"], c["high"], color=line.get_color(), alpha=0.15)
        bottom.axhline(0, color="0.3", lw=0.8)
        _faces_per_point(top, part, name)
        top.set(ylabel="NME (%, sqrt(w·h) of the 68-point box)")
        bottom.set(xlabel=FACTORS[name].label, ylabel=f"{DIFFERENCE}, 95% paired")
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
