"""Bad input and faults as a user meets them: one table of cases, one test that runs each the same way.

Each case builds one bad input in a tiny tree under ``tmp_path`` and runs it as a user would: ``make
reproduce`` for the Makefile's checks (they stop make while it reads the Makefile), else the pipeline's
``reproduce`` command on a tiny chapter whose notebook calls the real loaders, ``crop_faces`` and
``train.fit``, with ``results/`` and ``book/`` holding a previous run. For every case the test asserts
the exit status; one line on stderr, without colour codes, naming the file (or the variable) and the
fault; and, after a failure, ``results/`` and ``book/`` unchanged byte for byte.

The ``falign align`` cases run the command in this process (``--quiet``: no summary line) on a small
photo with a tiny aligner, into an ``aligned/`` folder holding an earlier run's outputs of that photo;
after a failure those must be unchanged too.

A kernel start costs seconds, so most notebooks run in this process (:func:`_in_process` stands in for
papermill's kernel and raises papermill's own error for a failing cell). The cases marked ``kernel`` run
in a real Jupyter kernel: those whose path goes through it (a warning printed in the notebook reaching
the terminal, Ctrl-C), and one loader and one checkpoint fault end to end.

The table is also the book's: ``book/real_data.md`` shows it under "What bad input gets"; regenerate it
with ``.venv/bin/python tests/test_faults.py``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from falign.kit import aligner, pipeline, train
from falign.base import paths
from falign.tools import cli
from falign.kit.crops import load_faces
from test_aligner import make as tiny_aligner
from test_data_formats import aflw_variables, cell, face68, make_300w, pts_text, write_image, write_mat73
from test_pipeline import _chapter as tiny_chapter

N = 2                                     # faces the tiny chapter asks for: one training batch
SPLITS = {"synthetic": "challenging", "300w": "challenging", "aflw-pifa": "test", "afw": "test", "lfpw5": "test",
          "helen": "test", "cofw": "test", "menpo": "train"}
LOAD = f"""from falign.kit.crops import crop_faces, load_faces
faces = load_faces(DATA, {SPLITS!r}[DATA], preset="300w-like", n={N}, size=32, seed=SEED, root=DATA_ROOT)
crops = crop_faces(faces, 16)
run.table(pd.DataFrame({{"faces": [len(crops)], "data": [crops.fingerprint]}}), "data")"""
RECIPE = {"model": "linear", "epochs": 2, "lr": 0.01}
TRAIN = LOAD + f"""
import torch
from falign.base import paths
from falign.kit import train
torch.manual_seed(SEED)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2 * crops.landmarks.shape[1]))
pairs = torch.utils.data.TensorDataset(crops.float_images(), crops.landmarks.flatten(1) / 16)
folder = train.cache_dir(paths.work_dir(), "tiny", recipe={RECIPE!r}, data=crops.fingerprint,
                         code=train.code_version(train))
history = train.fit(model, lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]), pairs,
                    epochs={RECIPE["epochs"]}, batch_size={N}, optimizer=train.sgd({RECIPE["lr"]}), seed=SEED,
                    checkpoint_dir=folder, progress=False)
run.table(pd.DataFrame({{"epoch": [1, 2], "loss": history.losses}}), "losses")"""


@dataclass(frozen=True)
class Fault:
    """A bad input, built: how the user runs into it and what their one line must name."""

    names: str                                 # the file (or variable) the message names
    make: tuple[str, ...] = ()                 # make variables: run ``make reproduce`` with them
    paper: str = "tiny"
    data: str = "300w"
    data_root: str = ""
    notebooks: Path | None = None              # the chapters (default: the tiny one under tmp_path)
    device: str = "cpu"
    align: tuple[str, ...] = ()                # run ``falign align`` with these arguments instead


@dataclass(frozen=True)
class Case:
    """One row of the table: the bad input, how to build it, and what the user gets."""

    name: str                                  # the bad input, as the book's table says it
    build: Callable[[Path, pytest.MonkeyPatch], Fault]
    status: int                                # exit status
    says: str                                  # regular expression the one line matches: the fault
    gets: str                                  # what the user gets, in the book's words
    kernel: bool = False                       # run the notebook in a real Jupyter kernel


# Valid tiny trees in the real formats (two faces each, or one), and the tiny chapter -------------------------

def _chapter(tmp: Path, body: str = LOAD, **more: str) -> Path:
    """The tiny chapter of the pipeline's tests: notebook ``01_x`` runs ``body``, ``more`` adds notebooks."""
    return tiny_chapter(tmp, {"01_x": body, **more})


def _data(tmp: Path) -> Path:
    return tmp / "data"


def _300w(tmp: Path) -> Path:
    """300-W's ``ibug`` subset: two faces with their detector boxes."""
    make_300w(_data(tmp) / "300w", subsets=("ibug",))
    return _data(tmp) / "300w"


def _boxes(tmp: Path, box=(3.0, 4.0, 30.0, 25.0), **variables) -> Path:
    """300-W whose ``bounding_boxes_ibug.mat`` gives face 0 the detector box ``box`` (1-based), or holds
    ``variables`` instead."""
    path = _300w(tmp) / "Bounding Boxes" / "bounding_boxes_ibug.mat"
    entry = {"imgName": "ibug_0.jpg", "bb_detector": np.array([box]), "bb_ground_truth": np.array([[5.0, 6, 28, 22]])}
    scipy.io.savemat(path, variables or {"bounding_boxes": cell(entry, shape=(1, 1))})
    return path


def _aflw(tmp: Path, phis: Callable[[np.ndarray], np.ndarray] = lambda v: v) -> Path:
    """AFLW-PIFA's ``test.mat`` (images under flickr/), its ``phis`` changed by ``phis``."""
    folder = _data(tmp) / "aflw-pifa"
    variables, *_ = aflw_variables(2)
    for i in range(2):
        write_image(folder / "flickr" / "0" / f"img{i}.jpg", seed=i)
    scipy.io.savemat(folder / "test.mat", {**variables, "phis": phis(variables["phis"])})
    return folder / "test.mat"


def _afw(tmp: Path, boxes: int = 1, columns: int = 4) -> Path:
    """AFW's ``anno.mat`` (v7.3): one image, one face with ``boxes`` boxes, the first ``columns`` columns."""
    folder = _data(tmp) / "afw"
    folder.mkdir(parents=True)
    write_image(folder / "one.jpg")
    points = np.array([[5, 6], [15, 6], [10, 10], [6, 14], [10, 15], [14, 14]], float)
    row = ("one.jpg", cell(*[np.array([[3.0, 4.0], [18.0, 19.0]])] * boxes, shape=(1, boxes)),
           cell(np.array([[0.0, 15.0, 0.0]]), shape=(1, 1)), cell(points, shape=(1, 1)))
    write_mat73(folder / "anno.mat", {"anno": cell(*row[:columns], shape=(1, columns))})
    return folder / "anno.mat"


def _cofw(tmp: Path, pixels=np.uint8, drop: str = "") -> Path:
    """COFW's ``COFW_test.mat`` (v7, the pixels inside) with images of dtype ``pixels``, less variable ``drop``."""
    folder = _data(tmp) / "cofw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    variables = {"IsT": cell(*rng.integers(0, 256, (2, 30, 40)).astype(pixels)),
                 "phisT": np.concatenate([rng.uniform(3, 18, (2, 58)), np.zeros((2, 29))], 1),
                 "bboxesT": np.array([[2.0, 3.0, 20.0, 15.0], [1.0, 1.0, 18.0, 17.0]])}
    scipy.io.savemat(folder / "COFW_test.mat", {k: v for k, v in variables.items() if k != drop})
    return folder / "COFW_test.mat"


def _helen(tmp: Path, points: int = 194, separator: str = ",") -> Path:
    """Helen with one test face: ``annotation/1.txt``, ``testnames.txt``, ``helen_1/100_1.jpg``."""
    folder = _data(tmp) / "helen"
    (folder / "annotation").mkdir(parents=True)
    write_image(folder / "helen_1" / "100_1.jpg")
    xy = np.random.default_rng(2).uniform(2, 28, (points, 2)).round(3)
    (folder / "annotation" / "1.txt").write_text("100_1\n" + "".join(f"{x} {separator} {y}\n" for x, y in xy))
    (folder / "testnames.txt").write_text("100_1\n")
    return folder


def _lfpw5(tmp: Path, line: str) -> Path:
    """Sun et al.'s ``testImageList.txt``: a valid face of ``a.jpg``, then ``line``."""
    folder = _data(tmp) / "lfpw5"
    write_image(folder / "a.jpg")
    (folder / "testImageList.txt").write_text(f"a.jpg 5 35 4 28 10 12 28 12 19 18 12 24 27 24\n{line}\n")
    return folder / "testImageList.txt"


def _menpo(tmp: Path, points: int) -> Path:
    folder = _data(tmp) / "menpo" / "train"
    folder.mkdir(parents=True)
    for stem in ("a", "b"):
        write_image(folder / f"{stem}.jpg")
        (folder / f"{stem}.pts").write_text(pts_text(face68(1)[:points]))
    return folder / "a.pts"


def _pts_lines(replace: dict[int, str | None] | None = None, points: int = 68) -> str:
    """A valid ``.pts`` text of ``points`` points with its 1-based lines ``replace``d (None drops one)."""
    lines = pts_text(face68(0)[:points]).splitlines()
    for number, text in sorted((replace or {}).items(), reverse=True):
        if text is None:
            del lines[number - 1]
        else:
            lines[number - 1] = text
    return "\n".join(lines) + "\n"


def _checkpoint(tmp: Path) -> Path:
    """Where the tiny chapter caches its model, keyed as the notebook keys it (recipe, data, code)."""
    faces = load_faces("300w", SPLITS["300w"], preset="300w-like", n=N, size=32, root=str(_data(tmp)))
    folder = train.cache_dir(paths.work_dir(), "tiny", recipe=RECIPE, data=faces.fingerprint,
                             code=train.code_version(train))
    path = train.checkpoint_path(folder)
    path.parent.mkdir(parents=True)
    return path


# Damage: each returns the file the message must name ----------------------------------------------------

def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def garbage(path: Path) -> Path:
    path.write_bytes(b"not what it should be at all")
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def delete(path: Path) -> Path:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path


def emptied(folder: Path) -> Path:
    for path in folder.iterdir():
        delete(path)
    return folder


def truncated_png(path: Path) -> Path:
    delete(path)
    write_image(path.with_suffix(".png"))
    return truncate(path.with_suffix(".png"))


def deep_png(path: Path) -> Path:
    """A 16-bit grey PNG ramp (0 .. 64746): Pillow's own RGB conversion saturates almost all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) * 54).astype(np.uint16)).save(path)
    return path


def saved(obj) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        torch.save(obj, path)
        return path
    return write


def another_model(path: Path) -> Path:
    """A real ``fit`` checkpoint, of a model other than the chapter's."""
    data = torch.utils.data.TensorDataset(torch.zeros(4, 3), torch.zeros(4, 1))
    train.fit(torch.nn.Linear(3, 1), lambda m, b: m(b[0]).pow(2).mean(), data, epochs=1, batch_size=2,
              optimizer=train.sgd(0.1), checkpoint_dir=path.parent.parent, progress=False)
    return path


# Case builders -------------------------------------------------------------------------------------------

def make(variable: str) -> Callable:
    return lambda tmp, mp: Fault(names=variable.split("=")[0] + "=", make=(variable,))


def _without_cuda(mp: pytest.MonkeyPatch) -> Fault:
    import torch

    mp.setattr(torch.cuda, "is_available", lambda: False)   # as on this CPU machine, also on a GPU one
    return Fault(names="DEVICE=cuda", device="cuda", data="synthetic")


def pair(paper: str, data: str) -> Callable:
    return lambda tmp, mp: Fault(names=f"DATA={data}", paper=paper, data=data, notebooks=paths.NOTEBOOKS_DIR)


def on_300w(damage: Callable[[Path], Path], where: str = "ibug/ibug_0.jpg", line: int | None = None) -> Callable:
    """300-W with ``damage`` done to the file ``where``; the message names what it returns (and ``line``)."""
    def build(tmp, mp):
        named = damage(_300w(tmp) / where)
        return Fault(names=f"{named}:{line}" if line else str(named), data_root=str(_data(tmp)))
    return build


def pts(text: str, line: int | None = None) -> Callable:
    """300-W with ``ibug_0.pts`` replaced by ``text``."""
    def write(path: Path) -> Path:
        path.write_text(text)
        return path
    return on_300w(write, "ibug/ibug_0.pts", line)


def box(corners) -> Callable:
    return lambda tmp, mp: Fault(names=str(_boxes(tmp, corners)), data_root=str(_data(tmp)))


def dataset(name: str, fixture: Callable[[Path], Path], suffix: str = "") -> Callable:
    """Dataset ``name`` from ``fixture`` (a damaged tree); the message names the path it returns + ``suffix``."""
    return lambda tmp, mp: Fault(names=f"{fixture(tmp)}{suffix}", data=name, data_root=str(_data(tmp)))


def checkpoint(damage: Callable[[Path], Path]) -> Callable:
    """The tiny chapter trains; the checkpoint it would resume from was left by ``damage``."""
    def build(tmp, mp):
        _chapter(tmp, TRAIN)
        _300w(tmp)
        return Fault(names=str(damage(_checkpoint(tmp))), data_root=str(_data(tmp)))
    return build


def root(kind: str) -> Callable:
    """The data root: a file (as DATA_ROOT or FALIGN_DATA), missing, unset, or without the dataset."""
    def build(tmp, mp):
        given = {"file": tmp / "faces.zip", "env": tmp / "faces.zip", "missing": tmp / "nowhere",
                 "unset": None, "no dataset": _data(tmp)}[kind]
        if kind in ("file", "env"):
            given.write_bytes(b"PK\x03\x04")
        if kind == "env":
            mp.setenv("FALIGN_DATA", str(given))
        if kind == "no dataset":
            given.mkdir()
        names = {"unset": "DATA_ROOT", "no dataset": str(_data(tmp) / "300w")}.get(kind, str(given))
        return Fault(names=names, data_root="" if kind in ("env", "unset") else str(given))
    return build


def failing_notebook(tmp, mp):
    _chapter(tmp, "", **{"02_y": "raise RuntimeError('boom in cell')"})
    return Fault(names="02_y.py", data="synthetic")


def ctrl_c(tmp, mp):
    """Ctrl-C while a notebook runs: SIGINT reaches the pipeline, not the kernel (jupyter_client starts it in
    a session of its own)."""
    _chapter(tmp, "import os, signal, time\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(60)")
    return Fault(names="results/ and book/ are as they were", data="synthetic")


def unwritable(folder: str) -> Callable:
    """``folder`` not writable: renames into or out of it fail (the tests may run as root, whom chmod
    does not stop)."""
    def build(tmp, mp):
        _chapter(tmp, "")
        rename = Path.rename

        def refused(self, target):
            if tmp / folder in (Path(self).parent, Path(target).parent):
                raise PermissionError(13, "Permission denied", str(self))
            return rename(self, target)

        mp.setattr(Path, "rename", refused)
        return Fault(names=str(tmp / folder / "tiny"), data="synthetic")
    return build


def partial_300w(tmp, mp):
    folder = _300w(tmp)
    delete(folder / "ibug" / "ibug_1.pts")
    return Fault(names=str(folder), data_root=str(_data(tmp)))


def deep_lfpw5(tmp, mp):
    listing = _lfpw5(tmp, "a.png 5 35 4 28 10 12 28 12 19 18 12 24 27 24")
    return Fault(names=str(deep_png(listing.parent / "a.png")), data="lfpw5", data_root=str(_data(tmp)))


def synthface_cache(tmp, mp):
    _chapter(tmp)
    load_faces("synthetic", SPLITS["synthetic"], preset="300w-like", n=N, size=32)   # fills FALIGN_CACHE
    return Fault(names=str(truncate(next((paths.cache_dir() / "synthface").glob("*.npz")))), data="synthetic")


def _aflw_image_missing(tmp: Path) -> Path:
    path = _aflw(tmp)
    delete(path.parent / "flickr" / "0" / "img1.jpg")
    return path


def _nan_point(phis: np.ndarray) -> np.ndarray:
    phis[1, 0] = np.nan                                      # point 0 of face 1, a visible one
    return phis


def _afw_image_missing(tmp: Path) -> Path:
    path = _afw(tmp)
    delete(path.parent / "one.jpg")
    return path


def _helen_image_missing(tmp: Path) -> Path:
    delete(_helen(tmp) / "helen_1" / "100_1.jpg")
    return _data(tmp) / "helen" / "testnames.txt"


# falign align: a small photo, a tiny aligner, aligned/ holding an earlier run ----------------------------------

FACE = "85,35,135,85"                                     # the astronaut's face box in the half-size photo


def _photo(tmp: Path, name: str = "astronaut.png", frames: int = 1) -> Path:
    """The astronaut at half size (256 px); a GIF of ``frames`` different frames for ``frames > 1``."""
    import skimage.data

    path = tmp / "photos" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(skimage.data.astronaut()).reduce(2)
    others = [image.point(lambda v: v // (k + 2)) for k in range(frames - 1)]
    image.save(path, save_all=frames > 1, append_images=others)
    return path


def align(*args: str, names: str = "{photo}", photo: Callable[[Path], Path] = _photo,
          model: Callable[[Path], Path] | None = None, out: str = "aligned",
          patch: Callable[[Path, pytest.MonkeyPatch], None] | None = None) -> Callable:
    """``falign align PHOTO --model M --out OUT ARGS``: the tiny aligner (or ``model(tmp)``'s checkpoint)
    on ``photo(tmp)``, into ``tmp/out``; ``patch`` stands in for the machine (no disk space, Ctrl-C).
    ``names``: what the line names, ``{photo}``, ``{model}`` and ``{out}`` filled in."""
    def build(tmp, mp):
        where = {"photo": photo(tmp), "out": tmp / out,
                 "model": (model or (lambda t: tiny_aligner("rcsr").save(t / "tiny.pt")))(tmp)}
        if patch:
            patch(tmp, mp)
        return Fault(names=names.format(**where), align=(str(where["photo"]), "--model", str(where["model"]),
                                                         "--out", str(where["out"]), *args))
    return build


def _no_photos(tmp: Path) -> Path:
    """A folder holding no image file, only notes."""
    folder = tmp / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("not a photo\n")
    return folder


def _blank(tmp: Path) -> Path:
    """A grey photo: no face in it."""
    path = tmp / "photos" / "blank.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(path)
    return path


def nan_weight(tmp: Path) -> Path:
    """The tiny aligner with one NaN weight, its content hash recomputed (as an export of it would be)."""
    path = tiny_aligner("rcsr").save(tmp / "tiny.pt")
    ckpt = torch.load(path, weights_only=True)
    next(v for v in ckpt["state_dict"].values() if v.is_floating_point()).view(-1)[0] = float("nan")
    torch.save({**ckpt, "content_hash": aligner.content_hash(ckpt)}, path)
    return path


def read_only(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    """aligned/ not writable: opening a file in it for writing fails, as chmod 555 would (for root too)."""
    folder, real = tmp / "aligned", os.open

    def refused(path, flags, *more, **kw):
        if folder in (Path(os.fsdecode(path)), Path(os.fsdecode(path)).parent) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path, flags, *more, **kw)

    mp.setattr(os, "open", refused)


def disk_full(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    """The disk fills up while the overlay PNG is written."""
    def save(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(Image.Image, "save", save)


def landmarks(value) -> Callable:
    """A model whose landmarks are all ``value`` (NaN: it diverged), from an aligner that does not check them."""
    def align(self, photo, boxes, **kw):
        return torch.full((len(boxes), 68, 2), value), None

    def patch(tmp, mp):
        mp.setattr(aligner.Aligner, "align", align)
    return patch


def ctrl_c_while_aligning(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    def interrupted(self, images, boxes, **kw):
        raise KeyboardInterrupt

    mp.setattr(aligner.Aligner, "align", interrupted)


# The table --------------------------------------------------------------------------------------------

LINE = "error naming the file and line"
CASES = [
    # make variables: checked while make reads the Makefile, before anything is installed or run
    Case("`make reproduce PAPER=nope`", make("PAPER=nope"), 2, r"\*\*\* unknown PAPER=nope; valid: .* all\.",
         "make stops before anything runs, listing the chapters"),
    Case("`SCALE=huge`", make("SCALE=huge"), 2, r"unknown SCALE=huge; valid: smoke small gpu full",
         "make stops, listing the scales"),
    Case("`SCALE=gpu DEVICE=cpu`", lambda tmp, mp: Fault(names="SCALE=gpu", make=("SCALE=gpu", "DEVICE=cpu")), 2,
         r"SCALE=gpu is sized for one GPU; run it with DEVICE=cuda", "make stops: the gpu scale needs a GPU"),
    Case("`DATA=imagenet`", make("DATA=imagenet"), 2, r"unknown DATA=imagenet; valid: synthetic 300w",
         "make stops, listing the datasets"),
    Case("`DEVICE=tpu`", make("DEVICE=tpu"), 2, r"unknown DEVICE=tpu; valid: cpu cuda",
         "make stops, listing the devices"),
    Case("`SEED=-1`", make("SEED=-1"), 2, r"SEED=-1 must be a non-negative integer", "make stops, giving the range"),
    Case("`SEED=abc`", make("SEED=abc"), 2, r"SEED=abc must be a non-negative integer", "make stops, giving the range"),
    Case("`SEED=4294967296` (beyond numpy's seeds)", make("SEED=4294967296"), 2,
         r"SEED=4294967296 must be a non-negative integer \(0 to 4294967295\)", "make stops, giving the range"),
    # PAPER x DATA: checked by the pipeline before any notebook runs
    Case("`DEVICE=cuda` on a machine without CUDA", lambda tmp, mp: _without_cuda(mp), 1,
         r"^DEVICE=cuda was asked for but torch sees no CUDA device here; use DEVICE=cpu",
         "refused before anything runs"),
    Case("`PAPER=rcsr DATA=cofw` (no such splits)", pair("rcsr", "cofw"), 1,
         r"^PAPER=rcsr does not use DATA=cofw; it supports: synthetic \S", "refused before anything runs, with the "
         "datasets the chapter supports"),
    Case("`PAPER=pifa DATA=300w`", pair("pifa", "300w"), 1, r"^PAPER=pifa does not use DATA=300w; it supports: \S",
         "refused before anything runs"),
    Case("`PAPER=foundations DATA=lfpw5` (a SynthFace chapter)", pair("foundations", "lfpw5"), 1,
         r"^PAPER=foundations does not use DATA=lfpw5; it supports: synthetic$", "refused before anything runs"),
    Case("`PAPER=landmarks DATA=300w`", pair("landmarks", "300w"), 1,
         r"^PAPER=landmarks does not use DATA=300w; it supports: synthetic$", "refused before anything runs"),
    # the run
    Case("a notebook that fails", failing_notebook, 1,
         r"^\[tiny\] 02_y\.py failed in cell \d+: RuntimeError: boom in cell \(results/tiny and book/tiny untouched; "
         r"full traceback in \S+/02_y\.ipynb\)$",
         "chapter, notebook, cell and error, and the executed notebook that holds the traceback"),
    Case("Ctrl-C during a run", ctrl_c, 130, r"^interrupted: .*run the same command again to resume",
         "nothing changed; rerunning the same command resumes", kernel=True),
    Case("`book/` not writable", unwritable("book"), 1,
         r"could not promote the run \(.*Permission denied.*\); results/tiny and book/tiny are as they were",
         "neither results/ nor book/ is replaced; the new outputs stay in the stage folder"),
    Case("`results/` not writable", unwritable("results"), 1,
         r"could not promote the run \(.*Permission denied.*\); results/tiny and book/tiny are as they were",
         "neither is replaced"),
    # the data root
    Case("`DATA_ROOT` is a file", root("file"), 1, r"the data root is a file, not a folder", "error naming the file"),
    Case("`FALIGN_DATA` is a file", root("env"), 1, r"the data root is a file, not a folder", "error naming the file"),
    Case("`DATA_ROOT` does not exist", root("missing"), 1, r"the data root does not exist", "error naming it"),
    Case("no `DATA_ROOT` for a real dataset", root("unset"), 1, r"no data root for dataset '300w': set DATA_ROOT=",
         "error saying how to set it"),
    Case("no dataset folder under `DATA_ROOT`", root("no dataset"), 1, r"dataset folder not found",
         "error naming the folder"),
    # images
    Case("an image that is not one", on_300w(garbage), 1, r"DataError: \S+/ibug_0\.jpg: unreadable or corrupt image",
         "error naming the image", kernel=True),
    Case("a zero-byte image", on_300w(empty), 1, r"unreadable or corrupt image", "error naming the image"),
    Case("a truncated JPEG", on_300w(truncate), 1, r"cannot decode image \(image file is truncated",
         "error naming the image (when its pixels are read)"),
    Case("a truncated PNG", on_300w(truncated_png), 1, r"unreadable or corrupt image", "error naming the image"),
    Case("no image beside a `.pts`", on_300w(lambda p: delete(p).with_suffix(".pts")), 1,
         r"no image beside it \(looked for ibug_0\.jpg/\.png\)", "error naming the `.pts` file"),
    Case("a 16-bit PNG", deep_lfpw5, 0, r"UserWarning: \S+/a\.png: a high-bit-depth image \(mode I;16\), scaled to 8 "
         r"bits per pixel", "scaled to 8 bits, not saturated; one warning", kernel=True),
    # .pts files
    Case("`.pts`: fewer points than `n_points`", pts(_pts_lines({4: None}), 3), 1,
         r"header says n_points: 68 but 67 points are listed", LINE),
    Case("`.pts`: every landmark shifted 5,000 px", pts(pts_text(face68(0) + 5000.0), 4), 1,
         r"landmark 0 at x \d+\.\d, y \d+\.\d \(0-based\) lies outside the \d+x\d+ image",
         "error naming the file and line"),
    Case("`.pts`: a NaN coordinate", pts(_pts_lines({5: "12.5 nan"}), 5), 1, r"non-finite coordinate in '12\.5 nan'",
         LINE),
    Case("`.pts`: an infinite coordinate", pts(_pts_lines({5: "inf 3"}), 5), 1, r"non-finite coordinate in 'inf 3'",
         LINE),
    Case("`.pts`: not a number", pts(_pts_lines({5: "12.5 abc"}), 5), 1, r"not a number in '12\.5 abc'", LINE),
    Case("`.pts`: three numbers on a line", pts(_pts_lines({5: "1 2 3"}), 5), 1, r"expected 'x y', found '1 2 3'",
         LINE),
    Case("`.pts`: no closing `}`", pts(_pts_lines({72: None}), 71), 1, r"missing closing '\}'", LINE),
    Case("`.pts`: a bad `n_points`", pts(_pts_lines({2: "n_points: sixty-eight"}), 2), 1,
         r"bad n_points value 'sixty-eight'", LINE),
    Case("`.pts`: no header", pts("".join(_pts_lines().splitlines(keepends=True)[3:-1])), 1,
         r"not a \.pts file: expected an 'n_points: N' line and a '\{' line", "error naming the file"),
    Case("a zero-byte `.pts`", pts(""), 1, r"not a \.pts file", "error naming the file"),
    Case("a `.pts` of 67 points (its header agrees)", pts(_pts_lines(points=67)), 1,
         r"expected 68 points for scheme ibug68, found 67", "error naming the file"),
    # 300-W folders
    Case("a 300-W subset folder missing", on_300w(delete, "ibug"), 1,
         r"300-W subset folder missing \(split 'challenging' needs ibug\)", "error naming the folder"),
    Case("an empty 300-W subset folder", on_300w(emptied, "ibug"), 1,
         r"no \.pts files in the folder", "error naming the folder"),
    Case("a partial 300-W copy", partial_300w, 0,
         r"UserWarning: \S+/300w: 1 faces in 300w/challenging, fewer than the 2 expected \(the standard split has "
         r"135\); numbers will not be comparable", "runs, with one warning", kernel=True),
    # iBUG's bounding_boxes_*.mat
    Case("`bounding_boxes_*.mat` is not a MATLAB file", dataset("300w", lambda t: garbage(_boxes(t))), 1,
         r"cannot read MATLAB file", "error naming the `.mat` file"),
    Case("a zero-byte `bounding_boxes_*.mat`", dataset("300w", lambda t: empty(_boxes(t))), 1,
         r"cannot read MATLAB file", "error naming the `.mat` file"),
    Case("`bounding_boxes_*.mat` without its variable", dataset("300w", lambda t: _boxes(t, boxes=np.zeros((1, 4)))),
         1, r"MATLAB variable 'bounding_boxes' not found; the file holds \['boxes'\]",
         "error naming the `.mat` file and what it holds"),
    Case("a box of three numbers", box([3.0, 4.0, 30.0]), 1, r"entry 0 is not a struct with imgName, bb_detector",
         "error naming the `.mat` file"),
    Case("an inverted box", box([30.0, 4.0, 3.0, 25.0]), 1,
         r"bounding_boxes_ibug\.mat: entry 0 \(ibug_0\.jpg\): bb_detector \[30\.0, 4\.0, 3\.0, 25\.0\] is inverted",
         "error naming the `.mat` file, not the `.pts`"),
    Case("a zero-width box", box([3.0, 4.0, 3.0, 25.0]), 1,
         r"bb_detector \[3\.0, 4\.0, 3\.0, 25\.0\] has zero width or height", "error naming the `.mat` file"),
    Case("a NaN box", box([3.0, np.nan, 30.0, 25.0]), 1, r"bb_detector \[3\.0, nan, 30\.0, 25\.0\] is not finite",
         "error naming the `.mat` file"),
    Case("a box entirely outside the image", box([500.0, 500.0, 540.0, 540.0]), 1,
         r"bounding_boxes_ibug\.mat: ibug_0\.jpg: bb_detector \[500\.0, 500\.0, 540\.0, 540\.0\] lies mostly outside "
         r"the 40x30 image", "error naming the `.mat` file, not a blank crop scored"),
    Case("a box at negative coordinates", box([-80.0, -60.0, -40.0, -20.0]), 1,
         r"bounding_boxes_ibug\.mat: ibug_0\.jpg: bb_detector \[-80\.0, -60\.0, -40\.0, -20\.0\] lies mostly outside",
         "error naming the `.mat` file"),
    # the other datasets
    Case("AFLW-PIFA: `test.mat` missing", dataset("aflw-pifa", lambda t: delete(_aflw(t))), 1,
         r"MATLAB file not found", "error naming the file"),
    Case("AFLW-PIFA: lists of different lengths", dataset("aflw-pifa", lambda t: _aflw(t, lambda v: v[:1])), 1,
         r"list lengths differ: 2 images, 2 bboxes rows, 1 phis rows", "error naming the `.mat` file"),
    Case("AFLW-PIFA: `phis` of the wrong width", dataset("aflw-pifa", lambda t: _aflw(t, lambda v: v[:, :100])), 1,
         r"phis must be n x 102", "error naming the `.mat` file"),
    Case("AFLW-PIFA: a NaN visible point", dataset("aflw-pifa", lambda t: _aflw(t, _nan_point), "#1"), 1,
         r"non-finite \(NaN or infinite\) coordinates for point\(s\) \[0\]", "error naming the file and the face"),
    Case("AFLW-PIFA: an image missing", dataset("aflw-pifa", _aflw_image_missing, "#1"), 1,
         r"image '0/img1\.jpg' not found under", "error naming the `.mat` file, the face and the image"),
    Case("AFW: `anno` not an n x 4 cell array", dataset("afw", lambda t: _afw(t, columns=3)), 1,
         r"anno must be an n x 4 cell array", "error naming `anno.mat`"),
    Case("AFW: boxes and landmark sets disagree", dataset("afw", lambda t: _afw(t, boxes=2), "#0.0"), 1,
         r"image 'one\.jpg' has 2 boxes, 1 poses and 1 landmark sets", "error naming `anno.mat` and the face"),
    Case("AFW: an image missing", dataset("afw", _afw_image_missing, "#0.0"), 1,
         r"image 'one\.jpg' not found beside anno\.mat", "error naming `anno.mat` and the face"),
    Case("COFW: no MAT-file", dataset("cofw", lambda t: delete(_cofw(t)).parent), 1,
         r"COFW file missing: expected COFW_test_color\.mat or COFW_test\.mat", "error naming the folder"),
    Case("COFW: a variable missing", dataset("cofw", lambda t: _cofw(t, drop="phisT")), 1,
         r"MATLAB variable 'phisT' not found", "error naming the `.mat` file"),
    Case("COFW: images not uint8", dataset("cofw", lambda t: _cofw(t, pixels=np.float64), "#0"), 1,
         r"expected a uint8 grey \(H, W\) or RGB \(H, W, 3\) image, found float64", "error naming the file and face"),
    Case("Helen: 193 points", dataset("helen", lambda t: _helen(t, points=193) / "annotation" / "1.txt"), 1,
         r"expected 194 points, found 193", "error naming the annotation file"),
    Case("Helen: a point not `x , y`", dataset("helen", lambda t: _helen(t, separator=";") / "annotation" / "1.txt",
         ":2"), 1, r"expected 'x , y', found", LINE),
    Case("Helen: the name list missing", dataset("helen", lambda t: delete(_helen(t) / "testnames.txt")), 1,
         r"cannot read the split's name list", "error naming the file"),
    Case("Helen: an image missing", dataset("helen", _helen_image_missing, ":1"), 1, r"image '100_1' not found under",
         "error naming the name list and line"),
    Case("5-point list: a short line", dataset("lfpw5", lambda t: _lfpw5(t, "a.jpg 5 35 4 28 10 12"), ":2"), 1,
         r"expected 15 fields", LINE),
    Case("5-point list: an inverted box",
         dataset("lfpw5", lambda t: _lfpw5(t, "a.jpg 35 5 4 28 10 12 28 12 19 18 12 24 27 24"), ":2"), 1,
         r"bounding box \[35\.0, 4\.0, 5\.0, 28\.0\] \(x1, y1, x2, y2\) is inverted", LINE),
    Case("5-point list: a zero-width box",
         dataset("lfpw5", lambda t: _lfpw5(t, "a.jpg 5 5 4 28 10 12 28 12 19 18 12 24 27 24"), ":2"), 1,
         r"has zero width or height", LINE),
    Case("5-point list: an image missing",
         dataset("lfpw5", lambda t: _lfpw5(t, "b.jpg 5 35 4 28 10 12 28 12 19 18 12 24 27 24"), ":2"), 1,
         r"image 'b\.jpg' not found under", LINE),
    Case("Menpo: a `.pts` of 50 points", dataset("menpo", lambda t: _menpo(t, points=50)), 1,
         r"expected 68 \(semi-frontal\) or 39 \(profile\) points, found 50", "error naming the file"),
    # the checkpoint the tiny chapter's training would resume from
    Case("checkpoint: garbage", checkpoint(garbage), 1,
         r"cannot read checkpoint \(truncated, corrupt or not written by torch\.save: UnpicklingError\); delete it",
         "error naming the checkpoint, saying to delete it", kernel=True),
    Case("checkpoint: zero bytes", checkpoint(empty), 1, r"cannot read checkpoint \(the file is empty\)",
         "error naming the checkpoint"),
    Case("checkpoint: truncated", checkpoint(lambda p: truncate(saved({"model": torch.zeros(64)})(p))), 1,
         r"cannot read checkpoint \(truncated, corrupt or not written by torch\.save: RuntimeError\)",
         "error naming the checkpoint"),
    Case("checkpoint: not a dict", checkpoint(saved([1, 2])), 1,
         r"not a training checkpoint of falign\.kit\.train\.fit \(it holds a list, not a dict\)",
         "error naming the checkpoint and what it holds"),
    Case("checkpoint: another program's", checkpoint(saved({"weights": torch.zeros(3)})), 1,
         r"not a training checkpoint of falign\.kit\.train\.fit \(no epoch, history, model, optimizer, rng\)",
         "error naming the checkpoint and what it lacks"),
    Case("checkpoint: another model's weights", checkpoint(another_model), 1,
         r"holds the weights of another model \(Error\(s\) in loading state_dict for Sequential:\)",
         "error naming the checkpoint"),
    # caches
    Case("a corrupt SynthFace cache", synthface_cache, 0,
         r"UserWarning: \S+\.npz: corrupt SynthFace cache \(checksum mismatch \(truncated or corrupt file\)\); "
         r"regenerating it", "rebuilt, with one warning", kernel=True),
    # falign align: arguments, checked before any photo is read
    Case("`falign align --model ''`", align("--model", "", names="--model"), 2,
         r"^falign align: error: argument --model: empty; give a model name",
         "refused (no longer the default model, silently)"),
    Case("`falign align --model nope`", align("--model", "nope", names="--model"), 2,
         r"argument --model: no aligner named 'nope' \(shipped: .*packaged: dlib-ert-68",
         "refused, listing the models"),
    Case("`falign align --model` a checkpoint with a NaN weight", align(model=nan_weight, names="{model}"), 2,
         r"argument --model: \S+tiny\.pt: 1 non-finite \(NaN or infinite\) weights",
         "refused before any photo is read"),
    Case("`falign align --device cuda` without CUDA",
         align("--device", "cuda", names="--device", patch=lambda tmp, mp: _without_cuda(mp)), 2,
         r"argument --device: device 'cuda': CUDA is not available", "refused before any photo is read"),
    Case("`falign align --detector cnn`", align("--detector", "cnn", names="--detector"), 2,
         r"argument --detector: detector must be one of hog, mmod \(hog: dlib frontal_face_detector \(HOG\); mmod: "
         r"dlib CNN face detector \(MMOD\)\), got 'cnn'$", "refused, listing the detectors"),
    Case("`falign align --upsample -1`", align("--upsample", "-1", names="--upsample"), 2,
         r"argument --upsample: upsample must be an integer from 0 to 2 .*, got -1$", "refused, giving the range"),
    Case("`falign align --upsample 10`", align("--upsample", "10", names="--upsample"), 2,
         r"argument --upsample: upsample must be an integer from 0 to 2 \(each doubles the photo's sides and "
         r"quadruples the detector's memory\)", "refused, giving the range (not out of memory)"),
    Case("`falign align --min-score nan`", align("--min-score", "nan", names="--min-score"), 2,
         r"argument --min-score: min_score must be a finite number >= -1 .*, got nan$", "refused: not finite"),
    Case("`falign align --min-score -5`", align("--min-score", "-5", names="--min-score"), 2,
         r"min_score must be a finite number >= -1 \(dlib's SVM margin: 0 keeps what dlib keeps, negative adds "
         r"weaker detections, mostly false alarms\), got -5\.0$",
         "refused, saying what negative means (not 556 faces)"),
    Case("`falign align --detector mmod --min-score -0.5`",
         align("--detector", "mmod", "--min-score", "-0.5", names="--min-score"), 2,
         r"argument --min-score: min_score must be a finite number >= 0 \(the CNN's confidence: dlib returns no "
         r"detection below 0\), got -0\.5$", "refused: below the detector's floor (its scores are not HOG's)"),
    Case("`falign align --warp5 8`", align("--warp5", "8", names="--warp5"), 2,
         r"argument --warp5: the crop's side in px, 16 to 2048 \(ArcFace takes 112\), got 8$",
         "refused, giving the range"),
    Case("`falign align` a folder with no photos", align(photo=_no_photos), 2,
         r"argument PHOTO: \S+/photos: a folder without image files \(\.jpg, .*; --recursive for its sub-folders\)$",
         "refused before any photo is read, naming the folder"),
    Case("`falign align --box nan,60,200,280`", align("--box", "nan,60,200,280", names="--box"), 2,
         r"argument --box: boxes: box 0 \(x1, y1, x2, y2 = nan, 60, 200, 280\) is not finite$", "refused: not finite"),
    Case("`falign align --box` 0.0001 px wide", align("--box", "10,10,10.0001,20", names="--box"), 2,
         r"box 0 \(x1, y1, x2, y2 = 10, 10, 10\.0001, 20\) is under 1 px wide or high", "refused: under 1 px"),
    Case("`falign align --box 1,2,3`", align("--box", "1,2,3", names="--box"), 2,
         r"argument --box: expected x1,y1,x2,y2 \(four numbers\), got '1,2,3'$", "refused: four numbers"),
    Case("`falign align --out` an existing file", align(out="aligned/astronaut_face0.json", names="--out"), 2,
         r"argument --out: \S+/astronaut_face0\.json is a file, not a folder$", "refused before any photo is read"),
    Case("`falign align --out` a read-only folder", align(patch=read_only, names="--out"), 2,
         r"argument --out: \S+/aligned: cannot write there \(Permission denied\)$", "refused before any photo is read"),
    # falign align: photos and outputs
    Case("`falign align --box -300,-300,-100,-100` (outside the photo)", align("--box", "-300,-300,-100,-100"), 1,
         r"boxes: box 0 \(x1, y1, x2, y2 = -300, -300, -100, -100\) lies mostly outside the 256x256 image",
         "error naming the photo; its earlier outputs kept"),
    Case("`falign align` a file that is not an image", align(photo=lambda t: garbage(_photo(t))), 1,
         r"not an image Pillow can read$", "error naming the photo"),
    Case("`falign align --largest-face` a photo without a face", align("--largest-face", photo=_blank), 1,
         r"blank\.png: no face found by dlib frontal_face_detector \(HOG\) with score >= 0\.25; give one with --box "
         r"x1,y1,x2,y2, or lower --min-score, or try --detector mmod \(turned and tilted faces; slower\)$",
         "error naming the photo and the detector, with what to try; its earlier outputs kept"),
    Case("`falign align` a multi-frame GIF", align("--box", FACE, photo=lambda t: _photo(t, "astronaut.gif", 3)), 0,
         r"astronaut\.gif: 3 frames; frame 0 was read$", "frame 0 aligned, with one warning"),
    Case("`falign align` a photo over `MAX_PIXELS` (200 megapixels)",
         align("--box", FACE, patch=lambda tmp, mp: mp.setattr(cli, "MAX_PIXELS", 10_000)), 1,
         r"cannot decode image \(Image size \(65536 pixels\) exceeds limit of 10000 pixels", "error naming the photo"),
    Case("`falign align` with a model that predicts NaN", align("--box", FACE, patch=landmarks(float("nan"))), 1,
         r"png: face 0 \(x1, y1, x2, y2 = 85, 35, 135, 85\): non-finite \(NaN or infinite\) landmarks; not written$",
         "error naming the photo and face; no `nan` in a `.pts`, earlier outputs kept"),
    Case("`falign align` with a model that predicts far outside the box",
         align("--box", FACE, patch=landmarks(5000.0)), 1,
         r"png: face 0 \(.*\): landmarks more than 1 box size\(s\) outside the box; not written$",
         "error naming the photo and face"),
    Case("Ctrl-C during `falign align`", align("--box", FACE, patch=ctrl_c_while_aligning, names="{out}"), 130,
         r"^falign align: interrupted; 0 face\(s\) written to \S+/aligned/$", "one line; every written face whole"),
    Case("disk full during `falign align`", align("--box", FACE, patch=disk_full, names="{out}/astronaut_face0.png"),
         1, r"cannot write it \(No space left on device\); stopped, 0 face\(s\) written to",
         "one line; the photo's earlier outputs kept whole"),
]


# Running a case as the user meets it ------------------------------------------------------------------------

def _in_process(input_path, output_path, parameters, cwd, **_) -> None:
    """``papermill.execute_notebook`` without a kernel: the cells run in this process, and a failing cell
    raises papermill's error with the exception's name and text, as a kernel reports them."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(input_path), parameters)
    scope, here = {"__name__": "__main__"}, os.getcwd()
    os.chdir(cwd)
    try:
        for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
            try:
                exec(compile(cell.source, f"{input_path} cell {count}", "exec"), scope)
            except Exception as err:
                raise PapermillExecutionError(count - 1, count, cell.source, type(err).__name__, str(err), []) from None
    finally:
        os.chdir(here)
        nbformat.write(nb, output_path)


def _without_kernel(monkeypatch) -> None:
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", _in_process)


def _tiny_uses_every_dataset(monkeypatch) -> None:
    supported = pipeline.supported_data
    monkeypatch.setattr(pipeline, "supported_data", lambda c: tuple(SPLITS) if c == "tiny" else supported(c))


def _reproduce(tmp: Path, fault: Fault) -> int:
    """The pipeline's ``reproduce`` on ``tmp``'s folders, Ctrl-C raising KeyboardInterrupt as in a terminal."""
    params = pipeline.Params("smoke", fault.data, fault.data_root, fault.device, 0)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return pipeline.reproduce(fault.paper, params, notebooks_dir=fault.notebooks or tmp / "notebooks",
                                  results_dir=tmp / "results", book_dir=tmp / "book", stage_root=tmp / "stage")
    finally:
        signal.signal(signal.SIGINT, handler)


def _run(case: Case, fault: Fault, tmp: Path, monkeypatch) -> int:
    if fault.align:
        return cli.main(["align", *fault.align, "--quiet"])
    if fault.make:   # the repository's Makefile, read in tmp (its notebooks/ the repository's): nothing can run
        (tmp / "notebooks").symlink_to(paths.NOTEBOOKS_DIR)
        return subprocess.run(["make", "-s", "-C", str(tmp), "-f", str(paths.ROOT / "Makefile"), "reproduce",
                               *fault.make]).returncode
    if fault.notebooks is None and not (tmp / "notebooks").exists():
        _chapter(tmp)                                          # the tiny chapter that loads DATA
    _tiny_uses_every_dataset(monkeypatch)
    if not case.kernel:
        _without_kernel(monkeypatch)
    return _reproduce(tmp, fault)


def _isolate(tmp: Path, monkeypatch) -> None:
    """Caches and checkpoints under tmp; no data root from the environment."""
    monkeypatch.setenv("FALIGN_WORK", str(tmp / "work"))
    monkeypatch.setenv("FALIGN_CACHE", str(tmp / "cache"))
    for name in ("DATA_ROOT", "FALIGN_DATA", "FALIGN_RESULTS"):
        monkeypatch.delenv(name, raising=False)


def _previous_run(tmp: Path) -> dict[str, bytes]:
    """results/, book/ and aligned/ (``falign align``'s) as an earlier run left them; returns their contents."""
    for name, text in {"results/tiny/01_x.csv": "faces,data\n2,before\n", "results/tiny/run.json": "{}\n",
                       "results/rcsr/table1.csv": "a\n1\n", "book/tiny/01_x.ipynb": "{}\n",
                       "book/scorecard.md": "# Scorecard\n", "book/_toc.yml": "root: intro\n",
                       **{f"aligned/astronaut_face0{e}": f"earlier {e}\n" for e in cli.WRITERS}}.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    return _contents(tmp)


def _contents(tmp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp)): p.read_bytes() for folder in ("results", "book", "aligned")
            for p in sorted((tmp / folder).rglob("*")) if p.is_file()}


def _id(case: Case) -> str:
    return re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_gets_one_line_naming_the_file(case, tmp_path, monkeypatch, capfd):
    tmp = tmp_path.resolve()
    _isolate(tmp, monkeypatch)
    before = _previous_run(tmp)
    fault = case.build(tmp, monkeypatch)
    capfd.readouterr()                                             # only what the run prints
    status = _run(case, fault, tmp, monkeypatch)
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert (status, len(lines)) == (case.status, 1), err
    assert "\x1b" not in err and fault.names in lines[0] and re.search(case.says, lines[0]), lines[0]
    if status:
        assert _contents(tmp) == before, "results/, book/ or aligned/ changed after a failure"


def test_warm_and_clean_runs_agree_after_the_data_changes(tmp_path, monkeypatch):
    """The checkpoint key covers the training data: after the data changes, a warm rerun (the old model's
    checkpoint present) gives the table of a clean one, not the old model's."""
    tmp = tmp_path.resolve()
    _isolate(tmp, monkeypatch)
    _tiny_uses_every_dataset(monkeypatch)
    _without_kernel(monkeypatch)
    _chapter(tmp, TRAIN)
    fault = Fault(names="", data_root=str(_data(tmp)))

    def table() -> bytes:
        assert _reproduce(tmp, fault) == 0
        return (tmp / "results" / "tiny" / "losses.csv").read_bytes()

    _300w(tmp)
    on_a = table()
    (_data(tmp) / "300w" / "ibug" / "ibug_0.pts").write_text(pts_text(face68(0) + 1.5))    # data B
    warm = table()
    shutil.rmtree(tmp / "work")
    assert table() == warm != on_a


# The book's table ---------------------------------------------------------------------------------------

HEADER = "| input | what you get |"


def book_table() -> str:
    """The table of book/real_data.md's "What bad input gets", rendered from CASES."""
    rows = [f"| {c.name} | {c.gets} (exit {c.status}) |" for c in CASES]
    return "\n".join([HEADER, "|---|---|", *rows]) + "\n"


def with_book_table(page: str) -> str:
    """``page`` with its bad-input table (the lines from HEADER to the first line not in the table) replaced."""
    lines = page.splitlines(keepends=True)
    first = lines.index(HEADER + "\n")
    last = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "".join(lines[:first]) + book_table() + "".join(lines[last:])


def test_the_book_shows_this_table():
    page = (paths.BOOK_DIR / "real_data.md").read_text()
    assert with_book_table(page) == page, ("book/real_data.md: the bad-input table is out of date; regenerate it "
                                           "with .venv/bin/python tests/test_faults.py")


if __name__ == "__main__":
    page = paths.BOOK_DIR / "real_data.md"
    page.write_text(with_book_table(page.read_text()))
    print(f"{page}: {len(CASES)} bad inputs")
