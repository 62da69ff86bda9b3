"""Trained models as *aligners*: photo + face box in, landmarks in the photo's pixels out.

Every chapter's model answers one small protocol, so the book, ``falign.load`` and the ``falign align``
command treat them alike::

    aligner = falign.load("rcsr")                     # results/rcsr/aligner.pt, or a path
    points = aligner.predict(photo, boxes)            # (B, N, 2), 0-based pixels of ``photo``
    points, visible = aligner.align(photo, boxes)     # visible: (B, N) bool, or None

Preprocessing (crop margin, crop size, grey or RGB, border handling) belongs to the aligner, not to
the caller: it is stored in the checkpoint beside the weights and applied exactly as in training
(crops are rounded to uint8 like the training crops of :mod:`falign.data.crops`).

A checkpoint describes itself (:func:`save`): the model kind and constructor arguments, the
preprocessing, the landmark scheme and the provenance of the run that trained it. It is read with
``torch.load(weights_only=True)`` (tensors and plain containers, never code), and every way a file can
fail to be one of ours gives a :class:`CheckpointError` whose one-line message starts with the file.

A new model kind subclasses :class:`Aligner` (``build``, ``forward_crops``; optionally ``describe``
and ``default_preprocess``) and registers it with :func:`register`.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from falign import atomic, paths
from falign.data import transforms

FORMAT, FORMAT_VERSION = "falign-aligner", 1
FILENAME = "aligner.pt"                       # results/<name>/aligner.pt: a chapter's shipped weights
# Models that ship inside an installed package instead of results/<name>/aligner.pt: name -> (module,
# function, keyword arguments) that builds the aligner, imported only when the name is asked for.
PACKAGED = {"dlib-ert-68": ("falign.peers", "dlib_ert", {"points": 68}),
            "dlib-ert-5": ("falign.peers", "dlib_ert", {"points": 5})}
_LUMA = torch.tensor([0.299, 0.587, 0.114])   # ITU-R BT.601, as falign.data.crops makes grey crops


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

    ``images``: one photo shared by all boxes (an (H, W, 3) or (H, W) array, or a PIL image), or one
    photo per box (a list, or a (B, H, W, C) array). uint8 RGB is the norm; grey is replicated and
    float images are read as [0, 1]. ``boxes``: (B, 4) x1, y1, x2, y2 in the photo's 0-based pixels.
    """

    kind: str = ""
    modules: tuple[str, ...] = ()           # the model's source modules, hashed as its code version
    batch_size: int = 64                    # faces per forward pass: bounds memory on big batches

    def __init__(self, model: nn.Module, *, model_args: dict, preprocess: dict, scheme: str,
                 provenance: dict | None = None, source: str | None = None):
        self.model = model.eval()
        self.model_args, self.scheme = dict(model_args), str(scheme)
        self.preprocess = {**self.default_preprocess(model), **preprocess}
        self.provenance = dict(provenance or {})
        self.source = source                # the file it was loaded from, for messages and outputs
        if not self.preprocess.get("size"):
            raise ValueError(f"{self.kind} aligner: preprocess needs 'size' (the crop side it was trained on)")
        if self.preprocess.get("padding", "zeros") not in ("zeros", "border"):
            raise ValueError(f"preprocess padding must be 'zeros' or 'border', got {self.preprocess['padding']!r}")

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
    def predict(self, images, boxes) -> torch.Tensor:
        """Landmarks (B, N, 2) float32 in the photo's 0-based pixel coordinates."""
        return self.align(images, boxes)[0]

    @torch.no_grad()
    def align(self, images, boxes) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Landmarks (B, N, 2) in photo pixels and visibility (B, N) bool, or None where the model
        does not estimate it."""
        boxes = _check_boxes(boxes)
        crops, affines = self.crops(images, boxes)
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

    def crops(self, images, boxes) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input (B, C, S, S) in [0, 1], rounded to uint8 levels as in training, and the
        affines (B, 2, 3) from photo to crop pixels."""
        pre = self.preprocess
        size, margin = int(pre["size"]), float(pre.get("margin", 0.0))
        boxes = _check_boxes(boxes)
        photos = _photos(images, len(boxes))
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
        self.model.to(device)
        return self

    @property
    def n_points(self) -> int:
        from falign.landmarks import get_scheme

        return get_scheme(self.scheme).n_points

    def __repr__(self) -> str:
        where = f", from {self.source}" if self.source else ""
        return f"{type(self).__name__}(kind={self.kind!r}, scheme={self.scheme!r}, preprocess={self.preprocess}{where})"

    def checkpoint(self) -> dict[str, Any]:
        """Everything :func:`load` needs, in types ``torch.load(weights_only=True)`` accepts."""
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
            "model_args": _plain(self.model_args, "model_args"), "preprocess": _plain(self.preprocess, "preprocess"),
            "scheme": self.scheme, "provenance": _plain(self.provenance, "provenance"),
            "code_version": code_version(type(self)), "falign_version": _falign_version(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (a reader never sees half a file)."""
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


def code_version(cls: type[Aligner]) -> str:
    """A short hash of the model's source files: names the code a checkpoint was saved with."""
    digest = hashlib.sha1()
    for name in cls.modules:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------------------------------
# The kinds of the book so far
# --------------------------------------------------------------------------------------------------
@register("pifa")
class PIFAAligner(Aligner):
    """PIFA (:mod:`falign.models.pifa`): RGB crops of the face box itself (margin 0, zero padding),
    as :func:`falign.experiments.pifa.load` makes them; visibility from the estimated 3D pose."""

    modules = ("falign.models.pifa",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.models.pifa import PIFA
        from falign.morphable import builtin_model

        args = dict(model_args)
        morphable = args.pop("morphable", "builtin")
        if morphable != "builtin":
            raise ValueError(f"unknown 3DMM {morphable!r} (this falign ships 'builtin')")
        return PIFA(builtin_model(), **args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        """Read the constructor arguments back from the network's layers."""
        block = model.blocks[0]
        convs = [(m.out_channels, m.kernel_size[0]) for b in model.blocks for m in b.features
                 if isinstance(m, nn.Conv2d)]
        vis = model.visualization
        return dict(morphable="builtin", scheme=model.scheme, size=model.size, in_channels=model.in_channels,
                    n_blocks=len(model.blocks), convs=convs, inputs=model.inputs,
                    mask=vis.mask_name if vis is not None else "nose", visualize=model.visualize,
                    fc_hidden=block.regressor[1].out_features, dropout=float(block.regressor[3].p),
                    fc_grid=block.fc_grid, sigma=vis.sigma if vis is not None else 1.0,
                    radius=vis.radius if vis is not None else 2)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"size": model.size, "margin": 0.0, "grey": model.in_channels == 1, "padding": "zeros"}

    def forward_crops(self, crops, boxes):
        return self.model.predict(crops)   # P^0 is fitted to the crop itself, as in training


@register("rcsr")
class RCSRAligner(Aligner):
    """RCSR and its Table 4 recurrent variants (:mod:`falign.models.rcsr`): grey crops with a 10%
    margin and border padding, as :func:`falign.experiments.rcsr.load` makes them; the initial shape
    is the training mean shape placed in the face box (in crop pixels); no visibility."""

    modules = ("falign.models.rcsr",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.models import rcsr_table4

        return rcsr_table4.build_model("rcsr", **model_args)   # the stored unit/extractor override

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"margin": 0.1, "grey": True, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        return model.config["scheme"]

    def forward_crops(self, crops, boxes):
        from falign.models.rcsr import place_in_box

        init = torch.from_numpy(place_in_box(self.model.mean_shape.cpu().numpy(), boxes.cpu().numpy()))
        return self.model.predict(crops, init.to(crops.device))[-1], None


@register("ccnn")
class CCNNAligner(Aligner):
    """CCNN (:mod:`falign.models.ccnn`): RGB crops around the face box with the chapter's margin (half
    the box on each side) and border padding, as :func:`falign.experiments.ccnn.datasets` makes them;
    the network reads the crop *and the face box in the crop's pixels* (stage 1 cuts the box out, stages
    2-3 cut their windows from the crop), and returns the points of its last stage; no visibility."""

    modules = ("falign.models.ccnn",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.models.ccnn import CCNN

        return CCNN(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"margin": 0.5, "grey": False, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        from falign.models.ccnn import SCHEME

        return SCHEME

    def forward_crops(self, crops, boxes):
        return self.model.predict(crops, boxes), None


@register("msrrn")
class MSRRNAligner(Aligner):
    """MSRRN (:mod:`falign.models.msrrn`): grey crops of the face box with the chapter's 20% margin and
    border padding, as :func:`falign.experiments.msrrn.datasets` makes them around dlib's boxes (give a
    :func:`falign.detect.detect_faces` box for the best match); the network reads the crop as its finest
    scale and returns its last stage S^T in [0, 1] crop units, mapped to crop pixels; no visibility."""

    modules = ("falign.models.msrrn",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.models.msrrn import MSRRN

        return MSRRN(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"size": model.size, "margin": 0.2, "grey": True, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        return model.config["scheme"]

    def forward_crops(self, crops, boxes):
        from falign.models.msrrn import to_pixels

        return to_pixels(self.model.predict(crops)[-1], crops.shape[-1]), None


@register("cfdrnn")
class CFDRNNAligner(Aligner):
    """CFDRNN (:mod:`falign.models.cfdrnn`): RGB crops of the face box with the chapter's 15% margin
    and border padding, as :func:`falign.experiments.cfdrnn.crop` makes them; the network reads the
    whole crop and returns L4 = s argmax(H4) + dL4 (Eq. 4) in crop pixels; no visibility."""

    modules = ("falign.models.cfdrnn",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.models.cfdrnn import CFDRNN

        return CFDRNN(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"size": model.size, "margin": 0.15, "grey": False, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        from falign.models.cfdrnn import SCHEME

        return SCHEME

    def forward_crops(self, crops, boxes):
        return self.model.predict(crops), None


# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------
def make(model: nn.Module, kind: str, *, model_args: dict | None = None, preprocess: dict | None = None,
         scheme: str | None = None, provenance: dict | None = None) -> Aligner:
    """Wrap a trained network as an aligner; arguments left out are read from the network."""
    if kind not in KINDS:
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
    """The provenance to store with exported weights: commit, scale, data fingerprints, seed and
    device of a :class:`falign.report.Run` (plus ``extra``, e.g. epochs)."""
    from falign import report

    record: dict[str, Any] = dict(report.git_state())
    if run is not None:
        record.update(paper=run.paper, scale=run.scale, data=run.data, seed=run.seed,
                      datasets=dict(run.datasets), device=report.describe_device(run.device))
    record.update(torch=torch.__version__, **extra)
    return _plain(record, "provenance")


def available() -> list[str]:
    """Names with shipped weights: the chapters whose committed run wrote results/<name>/aligner.pt."""
    root = Path(paths.RESULTS_DIR)
    return sorted(p.parent.name for p in root.glob(f"*/{FILENAME}") if p.is_file())


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
    model) or a checkpoint path."""
    if isinstance(path_or_name, str) and path_or_name in PACKAGED:
        module, function, kwargs = PACKAGED[path_or_name]
        try:
            return getattr(importlib.import_module(module), function)(**kwargs).to(device)
        except ValueError as err:
            raise CheckpointError(f"{path_or_name}: {_first_line(err)}") from None
    path = resolve(path_or_name)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, not a torch file, or pickled code
        raise CheckpointError(f"{path}: cannot read it as a torch checkpoint ({_first_line(err)}); "
                              "the file is truncated, corrupt or not a weights-only .pt file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a falign aligner checkpoint: it holds {_describe(ckpt)}; "
                              "export one with falign.aligner.save")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: aligner format version {ckpt.get('format_version')!r}, but this falign "
                              f"reads version {FORMAT_VERSION}; re-export it with this code")
    kind = ckpt.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path}: unknown aligner kind {kind!r}; this falign knows {', '.join(sorted(KINDS))}")
    missing = [k for k in ("model_args", "preprocess", "scheme", "state_dict") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete aligner checkpoint, no {', '.join(missing)}")
    cls = KINDS[kind]
    saved_code, this_code = ckpt.get("code_version", "unknown"), code_version(cls)
    try:
        model = cls.build(dict(ckpt["model_args"]))
    except Exception as err:
        raise CheckpointError(f"{path}: cannot build a {kind!r} model from its stored arguments ({_first_line(err)}); "
                              f"saved with model code {saved_code}, this is {this_code}") from None
    state = ckpt["state_dict"]
    problems = _misfit(model.state_dict(), state) if isinstance(state, dict) else "no state_dict"
    if problems:
        raise CheckpointError(f"{path}: its weights do not fit a {kind!r} model built from its stored arguments "
                              f"({problems}); saved with model code {saved_code}, this is {this_code}")
    model.load_state_dict(state)
    try:
        aligner = cls(model, model_args=ckpt["model_args"], preprocess=ckpt["preprocess"], scheme=ckpt["scheme"],
                      provenance=ckpt.get("provenance"), source=str(path))
    except ValueError as err:
        raise CheckpointError(f"{path}: {_first_line(err)}") from None
    return aligner.to(device)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def _check_boxes(boxes) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    if len(b) == 0:
        raise ValueError("no face boxes given")
    if not torch.isfinite(b).all() or ((b[:, 2:] - b[:, :2]) <= 0).any():
        raise ValueError(f"boxes must be finite x1, y1, x2, y2 with x2 > x1 and y2 > y1, got {b.tolist()}")
    return b


def _as_rgb8(image) -> np.ndarray:
    """One photo as (H, W, 3) uint8: grey replicated, alpha dropped, float read as [0, 1]."""
    if hasattr(image, "convert") and hasattr(image, "mode"):   # a PIL image
        image = np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    a = a[..., :3]
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def _photos(images, n: int) -> list[np.ndarray]:
    """One photo per box: a single photo is shared by all ``n`` boxes."""
    if isinstance(images, (list, tuple)):
        if len(images) != n:
            raise ValueError(f"{len(images)} images for {n} boxes: give one image per box, or one for all")
        return [_as_rgb8(im) for im in images]
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return _photos(list(images), n)
    return [_as_rgb8(images)] * n


def _edge_pad(image: np.ndarray, affine: torch.Tensor, size: int) -> tuple[np.ndarray, torch.Tensor]:
    """Replicate the photo's edge pixels under the crop's footprint (torch's "border" padding, which
    the RCSR training crops use), and shift the affine to the padded photo."""
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
    """'' when ``state`` fits a model whose state_dict is ``expected``, else what does not fit."""
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "the state_dict holds values that are not tensors"
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
            return "a training checkpoint (falign.train), not exported weights"
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a bare state_dict of {len(keys)} tensors (e.g. {keys[0]!r}) with no description"
        return f"a dict with keys {keys[:6]}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 160 else line[:157] + "..."


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
    from falign import __version__

    return __version__


__all__: Sequence[str] = ("Aligner", "CCNNAligner", "CFDRNNAligner", "CheckpointError", "KINDS", "MSRRNAligner", "PIFAAligner", "Predictor", "RCSRAligner",
                          "UnknownModelError", "available", "code_version", "load", "make", "register", "resolve",
                          "run_provenance", "save")
