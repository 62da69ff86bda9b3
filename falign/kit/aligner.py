"""Trained models as *aligners*: photo + face box in, landmarks in the photo's pixels out.

Every chapter's model answers one small protocol, so the book, ``falign.load`` and the ``falign align``
command treat them alike::

    aligner = falign.load(name)                       # results/<name>/aligner.pt, or a path
    points = aligner.predict(photo, boxes)            # (B, N, 2), 0-based pixels of ``photo``
    points, visible = aligner.align(photo, boxes)     # visible: (B, N) bool, or None
    faces = aligner.detect_and_align(photo)           # dlib's detector first: one dict per face

Preprocessing (crop margin, crop size, grey or RGB, border handling) belongs to the aligner, not to
the caller: it is stored in the checkpoint beside the weights and applied exactly as in training
(crops are rounded to uint8 like the training crops of :mod:`falign.kit.crops`).

Inputs are checked, never guessed (:mod:`falign.kit.inputs`): photos are converted to RGB uint8 only where
that is unambiguous (``bgr=True`` for OpenCV arrays, ``value_range=255`` for 0-255 floats), boxes must be
4 numbers per face, at least 1 px wide and at least half inside the photo, and landmarks that cannot be
a face (non-finite, far outside the box) raise :class:`falign.kit.inputs.PredictionError`.

A checkpoint describes itself (:func:`save`): the model kind and constructor arguments, the
preprocessing, the landmark scheme and the provenance of the run that trained it, plus a content hash
(:func:`content_hash`) over all of it and the weights. It is read with ``torch.load(weights_only=True)``
(tensors and plain containers, never code) and verified: a changed file (hash mismatch), non-finite
weights, a scheme whose point count is not the model's, or invalid preprocessing are refused. Every
way a file can fail to be a usable one of ours gives a :class:`CheckpointError` whose one-line message
starts with the file.

A new model kind subclasses :class:`Aligner` (``build``, ``forward_crops``; optionally ``describe``
and ``default_preprocess``) and registers it with :func:`register`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from falign.base import atomic_files as atomic, paths
from falign.kit import inputs
from falign.data import detect, transforms

FORMAT, FORMAT_VERSION = "falign-aligner", 2     # 2: a content hash is required
FILENAME = "aligner.pt"                       # results/<name>/aligner.pt: a chapter's shipped weights
# Models that ship inside an installed package instead of results/<name>/aligner.pt: name -> (module,
# function, keyword arguments) that builds the aligner, imported only when the name is asked for.
PACKAGED = {"dlib-ert-68": ("falign.baselines.dlib_ert", "dlib_ert", {"points": 68}),
            "dlib-ert-5": ("falign.baselines.dlib_ert", "dlib_ert", {"points": 5})}
# The face boxes a model can be trained from: the box ``falign align`` hands it should be of the same kind.
SYNTHFACE_BOXES, DLIB_HOG_BOXES = "synthface-detector", "dlib-hog"
BOX_CONVENTIONS = {SYNTHFACE_BOXES: "SynthFace's detector-like box (the 68 landmarks' box, jittered)",
                   DLIB_HOG_BOXES: "dlib's HOG detector boxes"}
_LUMA = torch.tensor([0.299, 0.587, 0.114])   # ITU-R BT.601, as falign.kit.crops makes grey crops


class CheckpointError(ValueError):
    """A file that is not a usable aligner checkpoint; the message starts with the file."""


class UnknownModelError(LookupError):
    """A model name without shipped weights; the message lists the names that have some."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0])


@runtime_checkable
class Predictor(Protocol):
    """The protocol every model satisfies: landmarks (B, N, 2) in the input image's pixels."""

    def predict(self, images, boxes) -> torch.Tensor: ...


# --------------------------------------------------------------------------------------------------
# The base class: preprocessing and mapping back are shared, the network call is per kind
# --------------------------------------------------------------------------------------------------
class Aligner:
    """A trained network with the preprocessing it was trained with.

    ``images``: one photo shared by all boxes (a path, PIL image, array or tensor), or one photo per box
    (a list, or a (B, H, W, C) array); each is read by :func:`falign.kit.inputs.as_rgb8` (RGB order; pass
    ``bgr=True`` for OpenCV arrays, ``value_range`` for floats that are not [0, 1]). ``boxes``: (4,) or
    (B, 4) x1, y1, x2, y2 in the photo's 0-based pixels (:func:`falign.kit.inputs.check_boxes`).
    """

    kind: str = ""
    modules: tuple[str, ...] = ()           # the model's source modules, hashed as its code version
    trained_boxes: str = SYNTHFACE_BOXES    # the face boxes this kind trains from (:data:`BOX_CONVENTIONS`)
    batch_size: int = 64                    # faces per forward pass: bounds memory on big batches

    def __init__(self, model: nn.Module, *, model_args: dict, preprocess: dict, scheme: str,
                 provenance: dict | None = None, source: str | None = None):
        self.model = model.eval()
        self.model_args, self.scheme = dict(model_args), str(scheme)
        self.preprocess = {**self.default_preprocess(model), **preprocess}
        self.provenance = dict(provenance or {})
        self.source = source                # the file it was loaded from, for messages and outputs
        _check_preprocess(self.preprocess, self.kind)

    # ---- what each kind provides ------------------------------------------------------------------
    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        """A freshly initialised network from its stored constructor arguments."""
        raise NotImplementedError

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        """The constructor arguments of a built network (so :func:`save` needs none from the caller)."""
        raise ValueError(f"{cls.kind} aligner: pass model_args (the network's constructor arguments)")

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"margin": 0.0, "grey": False, "padding": "zeros"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        return str(model.scheme)

    def forward_crops(self, crops: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Crops (B, C, S, S) in [0, 1] and the face boxes in crop pixels (B, 4) -> landmarks in crop
        pixels (B, N, 2) and visibility (B, N) or None."""
        raise NotImplementedError

    # ---- the protocol -------------------------------------------------------------------------------
    def predict(self, images, boxes, *, bgr: bool = False, value_range: float | None = None) -> torch.Tensor:
        """Landmarks (B, N, 2) float32 in the photo's 0-based pixel coordinates."""
        return self.align(images, boxes, bgr=bgr, value_range=value_range)[0]

    def align(self, images, boxes, *, bgr: bool = False,
              value_range: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Landmarks (B, N, 2) in photo pixels and visibility (B, N) bool, or None where the model
        does not estimate it. Raises :class:`falign.kit.inputs.PredictionError` naming the faces whose
        landmarks are non-finite or far outside their box (it carries the batch and an ok mask)."""
        photos, boxes = self.prepare(images, boxes, bgr=bgr, value_range=value_range)
        crops, affines = self._crops(photos, boxes)
        points, visible = self._forward(crops, affines, boxes)
        problems = inputs.landmark_problems(points, boxes)
        if problems:
            listed = "; ".join(list(problems.values())[:3]) + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")
            ok = np.ones(len(boxes), bool)
            ok[list(problems)] = False
            raise inputs.PredictionError(f"{self.source or f'{self.kind} aligner'}: {listed}", points, visible, ok)
        return points, visible

    def detect_and_align(self, photo, boxes=None, *, detector: str = "hog", min_score: float | None = None,
                         upsample: int = 1, largest: bool = False, bgr: bool = False,
                         value_range: float | None = None) -> list[dict]:
        """Every face of one photo with its landmarks in one call, like face-alignment's ``get_landmarks``: the
        faces dlib's ``detector`` finds (:func:`falign.data.detect.detect_faces`: ``"hog"``, or ``"mmod"``, its
        CNN, which finds turned and tilted faces but takes seconds per photo on a CPU; with ``min_score``,
        default the detector's :data:`~falign.data.detect.DEFAULT_MIN_SCORE_BY_DETECTOR`, and ``upsample``, most
        confident first, on a copy shrunk to :data:`~falign.data.detect.DETECT_SIDE` px), or the given
        ``boxes``; ``largest`` keeps only the largest. ``falign align`` runs this.

        One dict per face: ``box`` (4,) float32 and ``score`` (the detector's; None for given boxes), then
        ``landmarks`` (N, 2) float32 and ``visible`` (N,) bool or None in the photo's pixels, and ``problem``:
        None, or why the landmarks cannot be a face (non-finite, far outside the box, refused by the aligner),
        when ``landmarks`` and ``visible`` are None. No face found: []. An aligner that refuses the photo
        without saying which faces raises its :class:`~falign.kit.inputs.PredictionError`.
        """
        image = inputs.as_rgb8(photo, bgr=bgr, value_range=value_range)
        if boxes is None:
            boxes, scores = detect.detect_faces(image, detector=detector, upsample=upsample,
                                                min_score=detect.resolve_min_score(min_score, detector),
                                                max_side=detect.DETECT_SIDE, return_scores=True)
        else:
            boxes, scores = inputs.check_boxes(boxes, image_size=image.shape[1::-1]), None
        if largest and len(boxes) > 1:
            keep = [int(np.argmax(np.prod(boxes[:, 2:] - boxes[:, :2], 1)))]
            boxes, scores = boxes[keep], None if scores is None else scores[keep]
        if len(boxes) == 0:
            return []
        refused, why = [], ""
        try:
            points, visible = self.align(image, boxes)
        except inputs.PredictionError as err:    # the aligner refused some faces: keep the others
            if err.points is None or err.ok is None:
                raise
            points, visible, why = err.points, err.visible, inputs.first_line(err)
            refused = np.flatnonzero(~np.asarray(err.ok, bool))
        problems = inputs.landmark_problems(points, boxes)    # also for aligners that do not check
        for k in refused:                                     # the aligner's own verdict counts too
            problems.setdefault(int(k), f"face {k}: refused by the aligner ({why})")
        points = np.asarray(points, np.float32)
        visible = None if visible is None else np.asarray(visible, bool)
        return [{"box": boxes[k], "score": None if scores is None else float(scores[k]),
                 "landmarks": None if k in problems else points[k],
                 "visible": None if k in problems or visible is None else visible[k],
                 "problem": problems.get(k)} for k in range(len(boxes))]

    def prepare(self, images, boxes, *, bgr: bool = False,
                value_range: float | None = None) -> tuple[list[np.ndarray], torch.Tensor]:
        """The photos, one RGB uint8 array per box, and the boxes (B, 4), checked against their photo."""
        boxes = inputs.check_boxes(boxes)
        photos = _photos(images, len(boxes), bgr=bgr, value_range=value_range)
        return photos, torch.from_numpy(inputs.check_boxes(boxes, [p.shape[1::-1] for p in photos]))

    @torch.no_grad()
    def _forward(self, crops: torch.Tensor, affines: torch.Tensor, boxes: torch.Tensor):
        """The network on crops in chunks of :attr:`batch_size`: landmarks in photo pixels, visibility."""
        in_crop = transforms.apply_affine(boxes.view(-1, 2, 2), affines).reshape(-1, 4)
        device = self.device
        points, visible = [], []
        for i in range(0, len(boxes), self.batch_size):
            chunk = slice(i, i + self.batch_size)
            p, v = self.forward_crops(crops[chunk].to(device), in_crop[chunk].to(device))
            points.append(p.float().cpu())
            visible.append(None if v is None else v.bool().cpu())
        points = transforms.uncrop_points(torch.cat(points), affines)
        return points, None if visible[0] is None else torch.cat(visible)

    def crops(self, images, boxes, *, bgr: bool = False, value_range: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input (B, C, S, S) in [0, 1], rounded to uint8 levels as in training, and the
        affines (B, 2, 3) from photo to crop pixels."""
        return self._crops(*self.prepare(images, boxes, bgr=bgr, value_range=value_range))

    def _crops(self, photos: list[np.ndarray], boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`crops` of photos and boxes already checked by :meth:`prepare`."""
        pre = self.preprocess
        size, margin = int(pre["size"]), float(pre.get("margin", 0.0))
        affines = transforms.crop_to_box(boxes, size, margin)
        out = []
        for photo, affine in zip(photos, affines):
            if pre.get("padding", "zeros") == "border":
                photo, affine = _edge_pad(photo, affine, size)
            out.append(transforms.crop_image(photo, affine, size))
        x = torch.cat(out)
        if pre.get("grey"):
            x = torch.einsum("nchw,c->nhw", x, _LUMA)[:, None]
        return (x * 255).round().clamp(0, 255) / 255, affines

    # ---- housekeeping ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        tensor = next(self.model.parameters(), None)
        return (tensor if tensor is not None else next(self.model.buffers(), torch.empty(0))).device

    def to(self, device) -> "Aligner":
        self.model.to(usable_device(device))
        return self

    @property
    def n_points(self) -> int:
        from falign.measure.landmarks import get_scheme

        return get_scheme(self.scheme).n_points

    @property
    def box_convention(self) -> str:
        """The boxes the model was trained from (a :data:`BOX_CONVENTIONS` key): what its checkpoint records
        (``provenance["box_convention"]["name"]``), else its kind's :attr:`trained_boxes`."""
        return (self.provenance.get("box_convention") or {}).get("name", self.trained_boxes)

    def __repr__(self) -> str:
        where = f", from {self.source}" if self.source else ""
        return f"{type(self).__name__}(kind={self.kind!r}, scheme={self.scheme!r}, preprocess={self.preprocess}{where})"

    def check(self) -> None:
        """Refuse (ValueError) a network that can only predict garbage: non-finite weights, or a scheme
        whose point count is not what the network returns (one forward pass on a blank crop)."""
        problem = _nonfinite(self.model.state_dict())
        if problem:
            raise ValueError(problem)
        size = int(self.preprocess["size"])
        box = torch.tensor([[0.0, 0.0, size, size]])
        affines = transforms.crop_to_box(box, size, float(self.preprocess.get("margin", 0.0)))
        blank = torch.zeros(1, 1 if self.preprocess.get("grey") else 3, size, size)
        returned = self._forward(blank, affines, box)[0].shape[1]
        if returned != self.n_points:
            raise ValueError(f"scheme {self.scheme!r} has {self.n_points} points, but the network returns {returned}")

    def checkpoint(self) -> dict[str, Any]:
        """Everything :func:`load` needs, in types ``torch.load(weights_only=True)`` accepts, with its
        :func:`content_hash`."""
        ckpt = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
            "model_args": _plain(self.model_args, "model_args"), "preprocess": _plain(self.preprocess, "preprocess"),
            "scheme": self.scheme, "provenance": _plain(self.provenance, "provenance"),
            "code_version": code_version(type(self)), "falign_version": _falign_version(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }
        return {**ckpt, "content_hash": content_hash(ckpt)}

    def save(self, path: str | os.PathLike) -> Path:
        """:meth:`check`, then write the checkpoint atomically (a reader never sees half a file)."""
        self.check()
        path = Path(path)
        with atomic.atomic_path(path) as tmp:
            torch.save(self.checkpoint(), tmp)
        return path


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
KINDS: dict[str, type[Aligner]] = {}


def register(kind: str, cls: type[Aligner] | None = None):
    """Register an :class:`Aligner` subclass under ``kind`` (usable as a class decorator)."""

    def add(cls: type[Aligner]) -> type[Aligner]:
        cls.kind = kind
        KINDS[kind] = cls
        return cls

    return add if cls is None else add(cls)


def kinds() -> dict[str, type[Aligner]]:
    """Every aligner kind: each registered chapter's adapters (:mod:`falign.kit.registry`, imported on
    first need) and any registered since."""
    from falign.kit import registry

    for chapter in registry.chapters():
        chapter.module("aligner")
    return KINDS


def content_hash(ckpt: dict) -> str:
    """sha256 over what decides a checkpoint's predictions: kind, model_args, preprocess, scheme and
    provenance (as sorted JSON) and every weight tensor (name, dtype, shape, bytes; sorted by name).
    :func:`load` recomputes it, so a file changed after export (flipped bytes, an edited scheme) is
    refused instead of predicting garbage."""
    digest = hashlib.sha256()
    described = {k: ckpt.get(k) for k in ("kind", "model_args", "preprocess", "scheme", "provenance")}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for name in sorted(ckpt["state_dict"]):
        tensor = ckpt["state_dict"][name].detach().cpu().contiguous()
        digest.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def usable_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device this torch build and machine can run on, else a one-line ValueError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r}: not a torch device ({inputs.first_line(err)}); use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        build = "this torch build has no CUDA" if not torch.backends.cuda.is_built() else "no CUDA GPU is visible"
        raise ValueError(f"device {device!r}: CUDA is not available ({build}; torch {torch.__version__}); use device='cpu'")
    try:
        torch.empty(1, device=dev)
    except Exception as err:  # an index past the last GPU, a backend this build lacks (mps, xpu, ...)
        raise ValueError(f"device {device!r}: not usable here ({inputs.first_line(err)}); use device='cpu'") from None
    return dev


def code_version(cls: type[Aligner]) -> str:
    """A short hash of the model's source files: names the code a checkpoint was saved with."""
    digest = hashlib.sha1()
    for name in cls.modules:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:12]


def make(model: nn.Module, kind: str, *, model_args: dict | None = None, preprocess: dict | None = None,
         scheme: str | None = None, provenance: dict | None = None) -> Aligner:
    """Wrap a trained network as an aligner; arguments left out are read from the network."""
    if kind not in kinds():
        raise ValueError(f"unknown aligner kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    cls = KINDS[kind]
    return cls(model, model_args=cls.describe(model) if model_args is None else model_args,
               preprocess=preprocess or {}, scheme=scheme or cls.default_scheme(model), provenance=provenance)


def save(path: str | os.PathLike, model: nn.Module, kind: str, *, model_args: dict | None = None,
         preprocess: dict | None = None, scheme: str | None = None, provenance: dict | None = None) -> Path:
    """Export a trained network as a self-describing checkpoint, atomically.

    Before writing, the network is rebuilt from ``model_args`` and the weights must fit it, so an
    export that could not be loaded again fails here, while the run that made it is still at hand.
    """
    aligner = make(model, kind, model_args=model_args, preprocess=preprocess, scheme=scheme, provenance=provenance)
    fresh = KINDS[kind].build(dict(aligner.model_args))
    problems = _misfit(fresh.state_dict(), model.state_dict())
    if problems:
        raise ValueError(f"{kind} model_args do not rebuild this network ({problems})")
    return aligner.save(path)


def run_provenance(run=None, **extra: Any) -> dict[str, Any]:
    """The provenance to store with exported weights: commit, scale, data fingerprints, seed, device,
    machine (CPU capability, native bf16, threads) and each training's precision of a
    :class:`falign.kit.report.Run` (plus ``extra``, e.g. epochs)."""
    from falign.kit import precision, report

    record: dict[str, Any] = dict(report.git_state())
    if run is not None:
        record.update(paper=run.paper, scale=run.scale, data=run.data, seed=run.seed,
                      datasets=dict(run.datasets), device=report.describe_device(run.device),
                      machine=precision.machine(), trainings=run.trainings())
    record.update(torch=torch.__version__, **extra)
    return _plain(record, "provenance")


def available() -> list[str]:
    """Names with shipped weights: the chapters whose committed run wrote results/<name>/aligner.pt."""
    root = Path(paths.RESULTS_DIR)
    return sorted(p.parent.name for p in root.glob(f"*/{FILENAME}") if p.is_file())


def shipped(device: str | torch.device = "cpu") -> tuple[dict[str, "Aligner"], dict[str, str]]:
    """Every shipped aligner that loads under :func:`load`'s checks, and for each one refused its
    one-line reason (e.g. non-finite weights): the book, the comparison and the benchmarks show those
    instead of stopping or, worse, scoring NaN."""
    loaded, refused = {}, {}
    for name in available():
        try:
            loaded[name] = load(name, device=device)
        except CheckpointError as err:
            refused[name] = str(err)
    return loaded, refused


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path: given as such (a separator or a .pt suffix), or a name's shipped weights."""
    text = os.fspath(path_or_name)
    if isinstance(path_or_name, Path) or "/" in text or os.sep in text or text.endswith(".pt"):
        return Path(text).expanduser()
    path = Path(paths.RESULTS_DIR) / text / FILENAME
    if not path.is_file():
        names = available()
        have = f"shipped: {', '.join(names)}" if names else "no chapter has shipped weights yet"
        have += f"; packaged: {', '.join(PACKAGED)}"
        paper = text if (paths.NOTEBOOKS_DIR / text).is_dir() else "<name>"
        raise UnknownModelError(f"no aligner named {text!r} ({have}); make one with "
                                f"`make reproduce PAPER={paper}`, or pass a checkpoint path")
    return path


def load(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> Aligner:
    """A ready aligner from a name (shipped weights, see :func:`available`, or a :data:`PACKAGED`
    model) or a checkpoint path, on ``device``.

    The file is verified before it is used: its content hash (a file changed after export), finite
    weights, the format version, weights that fit the model its arguments build, valid preprocessing,
    and a scheme with as many points as the network returns. Any failure is one
    :class:`CheckpointError` line starting with the file; an unusable device is one line naming it.
    """
    if isinstance(path_or_name, str) and path_or_name in PACKAGED:
        module, function, kwargs = PACKAGED[path_or_name]
        try:
            return getattr(importlib.import_module(module), function)(**kwargs).to(device)
        except ValueError as err:
            raise CheckpointError(f"{path_or_name}: {inputs.first_line(err)}") from None
    try:
        device = usable_device(device)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    path = resolve(path_or_name)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, not a torch file, or pickled code
        raise CheckpointError(f"{path}: cannot read it as a torch checkpoint ({inputs.first_line(err)}); "
                              "the file is truncated, corrupt or not a weights-only .pt file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a falign aligner checkpoint: it holds {_describe(ckpt)}; "
                              "export one with falign.kit.aligner.save")
    missing = [k for k in ("model_args", "preprocess", "scheme", "state_dict") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete aligner checkpoint, no {', '.join(missing)}")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its state_dict is not a dict of tensors")
    stored = ckpt.get("content_hash")
    if stored is not None and stored != content_hash(ckpt):
        raise CheckpointError(f"{path}: content hash mismatch: the file was changed after export "
                              "(corrupted, or edited by hand); export it again with falign.kit.aligner.save")
    problem = _nonfinite(state)     # before the version: an old file with NaN weights is told why
    if problem:
        raise CheckpointError(f"{path}: {problem}; it cannot predict landmarks (retrain it)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: aligner format version {ckpt.get('format_version')!r}, but this falign "
                              f"reads version {FORMAT_VERSION}; re-export it with this code")
    if stored is None:
        raise CheckpointError(f"{path}: no content hash, so a change after export could not be detected; "
                              "re-export it with falign.kit.aligner.save")
    kind = ckpt.get("kind")
    if kind not in kinds():
        raise CheckpointError(f"{path}: unknown aligner kind {kind!r}; this falign knows {', '.join(sorted(KINDS))}")
    cls = KINDS[kind]
    saved_code, this_code = ckpt.get("code_version", "unknown"), code_version(cls)
    try:
        model = cls.build(dict(ckpt["model_args"]))
    except Exception as err:
        raise CheckpointError(f"{path}: cannot build a {kind!r} model from its stored arguments ({inputs.first_line(err)}); "
                              f"saved with model code {saved_code}, this is {this_code}") from None
    problems = _misfit(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"{path}: its weights do not fit a {kind!r} model built from its stored arguments "
                              f"({problems}); saved with model code {saved_code}, this is {this_code}")
    model.load_state_dict(state)
    try:
        aligner = cls(model, model_args=ckpt["model_args"], preprocess=ckpt["preprocess"], scheme=ckpt["scheme"],
                      provenance=ckpt.get("provenance"), source=str(path))
        aligner.check()
    except ValueError as err:
        raise CheckpointError(f"{path}: {inputs.first_line(err)}") from None
    return aligner.to(device)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def _check_preprocess(pre: dict, kind: str) -> None:
    """Refuse preprocessing that cannot reproduce the training crops (one-line ValueError)."""
    size, margin = pre.get("size"), pre.get("margin", 0.0)
    if not (inputs.finite_number(size) and size >= 1 and size == int(size)):
        raise ValueError(f"{kind} aligner: preprocess 'size' must be the crop side it was trained on "
                         f"(a whole number of pixels >= 1), got {size!r}")
    if not (inputs.finite_number(margin) and margin >= 0):
        raise ValueError(f"{kind} aligner: preprocess 'margin' must be a finite number >= 0, got {margin!r}")
    if not isinstance(pre.get("grey", False), bool):
        raise ValueError(f"{kind} aligner: preprocess 'grey' must be True or False, got {pre['grey']!r}")
    if pre.get("padding", "zeros") not in ("zeros", "border"):
        raise ValueError(f"{kind} aligner: preprocess 'padding' must be 'zeros' or 'border', got {pre['padding']!r}")


def _nonfinite(state: dict) -> str:
    """'' when every floating-point weight is finite, else how many are not and in which tensors."""
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items() if v.is_floating_point() or v.is_complex()}
    bad = {k: n for k, n in sorted(bad.items(), key=lambda kv: -kv[1]) if n}
    if not bad:
        return ""
    where = ", ".join(f"{n:,} in {k!r}" for k, n in list(bad.items())[:3]) + (", ..." if len(bad) > 3 else "")
    return f"{sum(bad.values()):,} non-finite (NaN or infinite) weights in {len(bad)} tensor(s) ({where})"


def _photos(images, n: int, **convert) -> list[np.ndarray]:
    """One RGB uint8 photo per box (:func:`falign.kit.inputs.as_rgb8` with ``convert``): a single photo is
    shared by all ``n`` boxes."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        return [inputs.as_rgb8(images, **convert)] * n
    if len(images) != n:
        raise inputs.InputError(f"images: {len(images)} images for {n} boxes; give one image per box, or one for all")
    photos = []
    for i, image in enumerate(images):
        try:
            photos.append(inputs.as_rgb8(image, **convert))
        except inputs.InputError as err:
            raise inputs.InputError(f"images[{i}]: {str(err).removeprefix('image: ')}") from None
    return photos


def _edge_pad(image: np.ndarray, affine: torch.Tensor, size: int) -> tuple[np.ndarray, torch.Tensor]:
    """Replicate the photo's edge pixels under the crop's footprint (torch's "border" padding, which
    training crops made with ``padding="border"`` use), and shift the affine to the padded photo."""
    h, w = image.shape[:2]
    corners = torch.tensor([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    src = transforms.apply_affine(corners, transforms.invert_affine(affine))
    (x0, y0), (x1, y1) = src.amin(0).tolist(), src.amax(0).tolist()
    left, top = max(0, 2 - math.floor(x0)), max(0, 2 - math.floor(y0))
    right, bottom = max(0, math.ceil(x1) + 3 - w), max(0, math.ceil(y1) + 3 - h)
    if not (left or top or right or bottom):
        return image, affine
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="edge")
    return padded, transforms.chain(transforms.translation(-left, -top), affine)[0]


def _misfit(expected: dict, state: dict) -> str:
    """'' when ``state`` (tensors) fits a model whose state_dict is ``expected``, else what does not fit."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(expected[k].shape)} here"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if items:
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}")
    return "; ".join(parts)


def _describe(obj: Any) -> str:
    """What a foreign checkpoint holds, in a few words."""
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        if {"model", "optimizer"} <= set(keys):
            return "a training checkpoint (falign.kit.train), not exported weights"
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a bare state_dict of {len(keys)} tensors (e.g. {keys[0]!r}) with no description"
        return f"a dict with keys {keys[:6]}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def _plain(value: Any, where: str) -> Any:
    """``value`` in the types a weights-only load accepts (numbers, strings, containers)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    for plain in (bool, int, float, str):   # subclasses (e.g. torch's TorchVersion) would pickle as code
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, where) for v in value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a checkpoint (use plain values)")


def _falign_version() -> str:
    """The installed package's version (pyproject.toml), read without importing ``falign`` itself."""
    try:
        return importlib.metadata.version("falign")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


__all__: Sequence[str] = ("Aligner", "CheckpointError", "KINDS", "Predictor", "kinds",
                          "UnknownModelError", "available", "code_version", "content_hash", "load", "make", "register",
                          "resolve", "run_provenance", "save", "usable_device")
