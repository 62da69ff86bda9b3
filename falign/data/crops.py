"""Faces as fixed-size crops around their boxes: the one input every chapter's model reads.

SynthFace arrays and real datasets (images of any size) both become a :class:`Crops`: uint8 image
crops, landmarks in crop coordinates and the affine of each crop, so predictions map back to the
original image (:meth:`Crops.to_image`) where the metrics are computed, as the papers do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from falign.data import transforms
from falign.data.sample import FaceDataset
from falign.landmarks import get_scheme

# ITU-R BT.601 luma, the usual RGB -> grey weights.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Crops:
    """n face crops. ``extra`` carries per-face tensors along (3DMM ``M``/``p``, pose, ...)."""

    images: torch.Tensor      # (n, C, S, S) uint8
    landmarks: torch.Tensor   # (n, N, 2) float32, crop coordinates
    visible: torch.Tensor     # (n, N) bool
    affines: torch.Tensor     # (n, 2, 3) original image -> crop
    scheme: str
    name: str
    fingerprint: str
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def subset(self, index) -> "Crops":
        index = torch.as_tensor(index)
        return Crops(self.images[index], self.landmarks[index], self.visible[index], self.affines[index],
                     self.scheme, self.name, self.fingerprint, {k: v[index] for k, v in self.extra.items()})

    def float_images(self, index=slice(None)) -> torch.Tensor:
        return self.images[index].float() / 255.0

    def to_image(self, points: torch.Tensor, index=slice(None)) -> torch.Tensor:
        """Crop-coordinate points (n, N, 2) back to original image coordinates."""
        return transforms.uncrop_points(points, self.affines[index], get_scheme(self.scheme).flip_perm)

    def ground_truth(self) -> torch.Tensor:
        """The landmarks in original image coordinates (the metrics' reference)."""
        return self.to_image(self.landmarks)


def load_faces(data: str, split: str, *, preset: str, n: int | None, size: int = 128, seed: int = 0,
               root: str | None = None) -> dict | FaceDataset:
    """SynthFace arrays for ``data="synthetic"`` (``preset``), else the real dataset's split."""
    if data == "synthetic":
        from falign.data.synthface import LIKE, PRESETS, synthface_arrays

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
    the n faces (e.g. noisy boxes for augmentation). ``extra`` holds the boxes used (``"box"``,
    original image coordinates) and SynthFace's per-face 3DMM camera ``M``, ``p``, pose and 68-point
    ground truth. Grey is taken from the float crop, so pixels are rounded once. ``padding_mode``
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
    extra = {"box": boxes}
    if not real:
        extra.update({k: torch.as_tensor(np.asarray(faces[k]))[rows] for k in _PER_FACE if k in faces})
    return Crops(torch.cat(images), landmarks.float(), visible, affines, scheme, name, fingerprint, extra)


def _source_name(faces, real: bool) -> str:
    return f"{faces.name}:{faces.split}" if real else faces.get("name", "SynthFace arrays")


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)
