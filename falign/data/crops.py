"""Faces as fixed-size crops around their boxes: the one input every chapter's model reads.

SynthFace arrays and real datasets (images of any size) both become a :class:`Crops`: uint8 image
crops, landmarks in crop coordinates and the affine of each crop, so predictions map back to the
original image (:meth:`Crops.to_image`) where the metrics are computed, as the papers do.
"""

from __future__ import annotations

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


def crop_faces(faces: dict | FaceDataset, out_size: int, margin: float = 0.0, *, box: str = "detector",
               grey: bool = False, chunk: int = 256) -> Crops:
    """Crop every face around its box (``"detector"``: the detector-like box, ``"tight"``: the
    landmarks' box) to ``out_size`` pixels, optionally grey, in batched chunks."""
    if isinstance(faces, FaceDataset):
        crops = _crop_dataset(faces, out_size, margin, chunk)
    else:
        crops = _crop_arrays(faces, out_size, margin, box, chunk)
    if grey:
        grey_images = torch.einsum("nchw,c->nhw", crops.images.float(), _LUMA)
        crops.images = grey_images.round().clamp(0, 255).to(torch.uint8)[:, None]
    return crops


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def _crop_arrays(arrays: dict, out_size: int, margin: float, box: str, chunk: int) -> Crops:
    boxes = arrays["detector_boxes" if box == "detector" else "boxes"]
    affines = transforms.crop_to_box(boxes, out_size, margin)
    images = torch.cat([
        _to_uint8(transforms.warp_images(
            torch.from_numpy(arrays["images"][i:i + chunk]).permute(0, 3, 1, 2).float() / 255.0,
            affines[i:i + chunk], out_size))
        for i in range(0, len(boxes), chunk)
    ])
    landmarks, visible = transforms.transform_landmarks(arrays["landmarks"], affines, arrays["visible"])
    extra = {k: torch.as_tensor(np.asarray(arrays[k])) for k in ("M", "p", "pose") if k in arrays}
    return Crops(images, landmarks.float(), visible, affines, arrays["scheme"], arrays["name"],
                 arrays["fingerprint"], extra)


def _crop_dataset(dataset: FaceDataset, out_size: int, margin: float, chunk: int) -> Crops:
    parts = [transforms.crop_batch([dataset[j] for j in range(i, min(i + chunk, len(dataset)))],
                                   out_size, margin)
             for i in range(0, len(dataset), chunk)]
    return Crops(
        _to_uint8(torch.cat([p["images"] for p in parts])),
        torch.cat([p["landmarks"] for p in parts]).float(),
        torch.cat([p["visible"] for p in parts]),
        torch.cat([p["affines"] for p in parts]),
        dataset.scheme, f"{dataset.name}:{dataset.split}", dataset.fingerprint,
    )
