"""Faces as fixed-size crops around their boxes: the one input every chapter's model reads.

SynthFace arrays and real datasets (images of any size) both become a :class:`Crops`: uint8 image
crops, landmarks in crop coordinates and the affine of each crop, so predictions map back to the
original image (:meth:`Crops.to_image`) where the metrics are computed, as the papers do.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from falign.data import transforms
from falign.data.sample import FaceDataset
from falign.measure.landmarks import get_scheme

# ITU-R BT.601 luma, the usual RGB -> grey weights.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Crops:
    """n face crops, with every per-face quantity in a named field and a stated coordinate frame."""

    images: torch.Tensor      # (n, C, S, S) uint8
    landmarks: torch.Tensor   # (n, N, 2) float32, crop coordinates
    visible: torch.Tensor     # (n, N) bool
    affines: torch.Tensor     # (n, 2, 3) original image -> crop
    scheme: str
    name: str
    fingerprint: str
    boxes: torch.Tensor       # (n, 4) the face box each crop was cut around, original image coordinates
    # SynthFace's exact ground truth (None for real data unless a chapter fits it):
    M: torch.Tensor | None = None            # (n, 2, 4) weak-perspective 3DMM camera, crop coordinates
    p: torch.Tensor | None = None            # (n, 228) 3DMM shape coefficients (identity, expression)
    pose: torch.Tensor | None = None         # (n, 3) yaw, pitch, roll in degrees
    landmarks68: torch.Tensor | None = None  # (n, 68, 2) iBUG 68 points, original image coordinates
    visible68: torch.Tensor | None = None    # (n, 68) bool

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def _per_face(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}

    def replace(self, **changes) -> "Crops":
        return dataclasses.replace(self, **changes)

    def subset(self, index) -> "Crops":
        """The faces at ``index`` (positions or a boolean mask). Its fingerprint derives from this set's
        and the positions, so caches keyed by it tell two subsets of one set apart."""
        index = torch.as_tensor(index)
        positions = (index.nonzero().flatten() if index.dtype == torch.bool else index.flatten()).to(torch.int64)
        digest = hashlib.sha1(self.fingerprint.encode() + positions.numpy().tobytes()).hexdigest()[:20]
        return self.replace(fingerprint=digest, **{k: v[index] for k, v in self._per_face().items()})

    def float_images(self, index=slice(None)) -> torch.Tensor:
        return self.images[index].float() / 255.0

    def crop_boxes(self) -> torch.Tensor:
        """The face boxes in crop coordinates (n, 4), x1 <= x2 also for mirrored crops."""
        corners = transforms.apply_affine(self.boxes.view(-1, 2, 2), self.affines)
        return torch.cat([corners.amin(1), corners.amax(1)], 1)

    def to_image(self, points: torch.Tensor, index=slice(None)) -> torch.Tensor:
        """Crop-coordinate points (n, N, 2) back to original image coordinates."""
        return transforms.uncrop_points(points, self.affines[index], get_scheme(self.scheme).flip_perm)

    def ground_truth(self) -> torch.Tensor:
        """The landmarks in original image coordinates (the metrics' reference)."""
        return self.to_image(self.landmarks)

    def light(self) -> dict[str, float]:
        """How bright, contrasty and sharp the crops are, to compare splits that differ in their light
        (SynthFace's indoor and outdoor): mean grey level, mean per-crop standard deviation of the grey
        levels and mean absolute difference of horizontally neighbouring pixels, all on [0, 1]."""
        grey = self.images.float().mean(1) / 255
        return {"faces": len(self), "brightness": grey.mean().item(), "contrast": grey.std((1, 2)).mean().item(),
                "sharpness": (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean().item()}


def concat(parts: list[Crops], name: str | None = None) -> Crops:
    """Crops of one scheme stacked in order (e.g. replicates and their mirrored copies); a ground-truth
    field that some part lacks is dropped."""
    first = parts[0]
    fields = [f.name for f in dataclasses.fields(first) if isinstance(getattr(first, f.name), torch.Tensor)
              or getattr(first, f.name) is None]
    per_face = {k: None if any(getattr(c, k) is None for c in parts) else torch.cat([getattr(c, k) for c in parts])
                for k in fields}
    return first.replace(**per_face, name=name or first.name)


def held_out_count(n_train: int, n_val: int, found: int) -> int:
    """How many of ``found`` training faces a scale of ``n_train`` + ``n_val`` holds out: ``n_val`` from a
    whole copy, the scale's share (at least one) from a partial copy of a real dataset, whose loader has
    warned how many faces it found of how many asked for."""
    asked = n_train + n_val
    return n_val if found >= asked else max(1, round(found * n_val / asked))


def held_out(n: int, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) positions of ``n`` training faces: ``n_val`` drawn at random with ``seed`` and
    held out for the validation curve. A set too small for ``n_val`` (a partial copy of a real dataset)
    gives up at most a fifth of its faces."""
    n_val = min(n_val, max(1, n // 5))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def split_validation(crops: Crops, n_val: int, seed: int) -> tuple[Crops, Crops]:
    """(train, validation) crops of a training split by :func:`held_out` (never test faces)."""
    train, val = held_out(len(crops), n_val, seed)
    return (crops.subset(train).replace(name=crops.name + ":train"),
            crops.subset(val).replace(name=crops.name + ":validation"))


def camera_in_crop(M: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """The 3DMM camera after an image affine A (2x3): U' = A [U; 1] gives M' = A_2x2 M + [0 | a]."""
    M, A = torch.as_tensor(M, dtype=torch.float32), torch.as_tensor(affines, dtype=torch.float32)
    out = A[:, :, :2] @ M
    out[:, :, 3] += A[:, :, 2]
    return out


def load_faces(data: str, split: str, *, preset: str, n: int | None, size: int = 128, seed: int = 0,
               root: str | None = None) -> dict | FaceDataset:
    """SynthFace arrays for ``data="synthetic"`` (``preset``), else the real dataset's split."""
    if data == "synthetic":
        from falign.synthface.dataset import LIKE, PRESETS, synthface_arrays

        preset = LIKE.get(preset, preset)
        arrays = synthface_arrays(preset, split, n, size=size, seed=seed)
        return {**arrays, "scheme": PRESETS[preset].scheme, "name": f"synthface:{preset}/{split}"}
    from falign.data.registry import get_dataset

    return get_dataset(data, split, root=root or None, limit=n)


# Per-face SynthFace ground truth that travels with each crop (indexed like the crops' rows).
_PER_FACE = ("M", "p", "pose", "landmarks68", "visible68")


def crop_faces(faces: dict | FaceDataset, out_size: int, margin: float = 0.0, *, box: str = "detector",
               boxes=None, grey: bool = False, padding_mode: str = "zeros", chunk: int = 256) -> Crops:
    """Crop every face around its box (``"detector"``: the detector-like box, ``"tight"``: the
    landmarks' box) to ``out_size`` pixels, optionally grey, in batched chunks.

    ``boxes`` (k n, 4) crops around given boxes instead, row j being face j % n: k replicates of
    the n faces (e.g. noisy boxes for augmentation). The crops keep the boxes used (original image
    coordinates) and SynthFace's per-face 3DMM camera ``M`` (moved into crop coordinates), ``p``,
    pose and 68-point ground truth. Grey is taken from the float crop, so pixels are rounded once. ``padding_mode``
    (``"zeros"`` or ``"border"``) fills outside SynthFace images; real images are cropped by
    :func:`falign.data.transforms.crop_batch`.
    """
    real = isinstance(faces, FaceDataset)
    n = len(faces) if real else len(faces["images"])
    if boxes is None:
        boxes = np.stack([s.box for s in faces]) if real else faces["detector_boxes" if box == "detector" else "boxes"]
    boxes = torch.as_tensor(np.asarray(boxes), dtype=torch.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0 or len(boxes) % n:
        raise ValueError(f"crop_faces({_source_name(faces, real)}): boxes must be (k * {n}, 4) for {n} faces "
                         f"(x1, y1, x2, y2 per row), got shape {tuple(boxes.shape)}")
    rows = torch.arange(len(boxes)) % n
    images, affines, points = [], [], []
    for i in range(0, len(boxes), chunk):
        if real:
            samples = [dataclasses.replace(faces[int(j)], box=b.numpy())
                       for j, b in zip(rows[i:i + chunk], boxes[i:i + chunk])]
            part = transforms.crop_batch(samples, out_size, margin)
            crop, affine = part["images"], part["affines"]
            points.append((part["landmarks"], part["visible"]))
        else:
            affine = transforms.crop_to_box(boxes[i:i + chunk], out_size, margin)
            source = torch.from_numpy(faces["images"][rows[i:i + chunk].numpy()]).permute(0, 3, 1, 2).float() / 255.0
            crop = transforms.warp_images(source, affine, out_size, padding_mode=padding_mode)
        if grey:
            crop = torch.einsum("nchw,c->nhw", crop, _LUMA)[:, None]
        images.append(_to_uint8(crop))
        affines.append(affine)
    affines = torch.cat(affines)
    if real:
        landmarks, visible = (torch.cat(x) for x in zip(*points))
        scheme, name, fingerprint = faces.scheme, f"{faces.name}:{faces.split}", faces.fingerprint
    else:
        landmarks, visible = transforms.transform_landmarks(torch.as_tensor(faces["landmarks"])[rows], affines,
                                                            torch.as_tensor(faces["visible"])[rows])
        scheme, name, fingerprint = faces["scheme"], faces["name"], faces["fingerprint"]
    truth = {} if real else {k: torch.as_tensor(np.asarray(faces[k]))[rows] for k in _PER_FACE if k in faces}
    if "M" in truth:
        truth["M"] = camera_in_crop(truth["M"], affines)
    return Crops(torch.cat(images), landmarks.float(), visible, affines, scheme, name, fingerprint, boxes, **truth)


def _source_name(faces, real: bool) -> str:
    return f"{faces.name}:{faces.split}" if real else faces.get("name", "SynthFace arrays")


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)
