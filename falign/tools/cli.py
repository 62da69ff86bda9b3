"""The ``falign`` command line. ``falign align PHOTO...`` puts landmarks on the faces of photos.

A PHOTO may be a folder: its image files (:data:`IMAGE_SUFFIXES`, any case; with ``--recursive`` those of
its sub-folders too, never those in ``--out``), sorted. Faces come from dlib's detector
(:meth:`falign.kit.aligner.Aligner.detect_and_align`, the API's one call): ``--detector hog`` (the default)
or ``mmod`` (its CNN: turned and tilted faces too, seconds per photo on a CPU), keeping scores of at least
``--min-score``, default the detector's :data:`falign.data.detect.DEFAULT_MIN_SCORE_BY_DETECTOR`;
``--largest-face`` keeps the largest; or from ``--box``. For every face it writes three files into ``--out`` (default ``aligned/``), named
``<photo stem>_face<k>``: a 300-W ``.pts`` file (1-based, as the iBUG tools read it), a ``.json`` file
(0-based landmarks, visibility, box, model, scheme, the weights' provenance) and a ``.png`` overlay; with
``--warp5 SIZE`` a fourth, ``_warp.png``: the face warped to ArcFace's 5-point template
(:mod:`falign.kit.facecrop`), the crop face recognisers take. Each run also writes :data:`RESULTS`
(``faces.jsonl``): one JSON line per face it wrote, replaced as a whole by the next run that writes a face.
JSON has no NaN: a non-finite number is written null.

Everything that can be checked before a photo is read is checked first: the arguments (model, device,
``--detector``, ``--upsample``, ``--min-score`` against the detector's floor, every ``--box``, ``--out`` a writable folder, a folder with image files, a
model whose scheme has the points ``--warp5`` needs) and the model's weights
(:func:`falign.load` refuses corrupt or non-finite ones). A problem there is one line and exit status 2.
Then each photo that cannot be aligned gets one line naming it (and the face, for landmarks that cannot
be a face: non-finite, or far outside the box, never written) and the others still run: exit status 1.

The ``--out`` policy: each run *replaces* a photo's earlier outputs, as a whole. Its new files are
written beside their final names first; only when all of them are written are the photo's earlier
``<stem>_face*.{pts,json,png}`` (of another model, or of more faces) deleted and the new files renamed
into place. So a photo's files always come from one run, a photo that fails keeps its earlier outputs,
a disk error (full, not writable) stops the run with one line (exit 1) and Ctrl-C with another (exit
130), both leaving every written face whole. The summary counts the faces actually written.

Large photos: memory peaks while a photo is decoded (:func:`falign.kit.inputs.read_photo`, about 18 bytes
per pixel with Pillow's copies; the array kept is 3), so photos over :data:`MAX_PIXELS` (200 megapixels,
about 3.5 GB) are refused in one line, as Pillow's decompression-bomb guard refuses them. The detector
scans a copy whose longest side is at most :data:`falign.data.detect.DETECT_SIDE` (2,048 px), upsampled after
by ``--upsample`` (at most 2: under 0.8 GB), with the boxes mapped back; the aligner crops every face
from the full-resolution photo; the overlay is drawn at most :data:`OVERLAY_SIDE` px a side. A 12,000 px
square photo takes about 15 s and 3 GB (it took 109 s and 7.1 GB when detection scanned it whole).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from falign.data import detect      # cheap: the rest (torch) is imported once the arguments are read
from falign.kit import registry

EPILOG = """\
example (a test photo from scikit-image; dlib's detector finds the face):
  python -c "import skimage.data, skimage.io; skimage.io.imsave('astronaut.png', skimage.data.astronaut())"
  falign align astronaut.png --model <name> --out aligned/
  # -> aligned/astronaut_face0.pts  (300-W points, 1-based)
  #    aligned/astronaut_face0.json (0-based points, visibility, box, model, provenance)
  #    aligned/astronaut_face0.png  (overlay: visible points green, hidden red)
  #    aligned/faces.jsonl          (this run's faces, one JSON line each)

more:
  falign align photos/ --largest-face --warp5 112  # every image in photos/, its largest face, and
                                                   # <stem>_face0_warp.png: the 112 px ArcFace crop
  falign align photos/ --recursive --min-score 0   # sub-folders too; dlib's own threshold (more false faces)
  falign align tilted.jpg --detector mmod          # dlib's CNN: turned and tilted faces; seconds per photo
  falign align a.jpg b.png --box 170,70,270,170    # this face box in every photo, no detector
  falign align a.jpg --box -20,60,200,280          # a box may start left of the photo (half inside)
  falign align photos/*.jpg --model path/to/aligner.pt

outputs: a run replaces each photo's earlier <stem>_face*.{pts,json,png} and <stem>_face*_warp.png in --out
as a whole (once all its new files are written); a photo that fails keeps its earlier outputs; faces.jsonl
lists the faces of the last run that wrote any.
exit status: 0 all photos aligned; 1 a photo failed or a disk error; 2 a bad argument or model; 130 Ctrl-C.
"""

DEFAULT_MODEL = registry.default_aligner() or ""   # a paper package registers the default
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")   # what a folder's photos end with
RESULTS = "faces.jsonl"                 # a run's faces, one JSON line each, in --out
JSONL_KEYS = ("image", "face", "box", "box_source", "detector_score", "model", "trained_boxes", "scheme", "landmarks", "visible",
              "warp5")                  # what a faces.jsonl line keeps of a face's record (no provenance)
WARP_SIZES = range(16, 2049)            # --warp5: the crop's side in px
MAX_PIXELS = 200_000_000                # larger photos are refused (decompression-bomb guard, memory)
OVERLAY_SIDE = 2048                     # the overlay .png's longest side at most
VISIBLE, HIDDEN, BOX = (0, 230, 0), (255, 60, 60), (255, 215, 0)


class PhotoError(Exception):
    """One photo could not be aligned; the message starts with the file."""


class OutputError(Exception):
    """An output file could not be written (disk full, not writable): the run stops."""


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``falign align: error: argument --box: ...``, without the
    usage block above it (``--help`` shows that)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _arg(*steps):
    """An argparse type that runs ``steps`` on the text in turn; a ValueError from any (its message names
    the value and the rule) becomes argparse's one-line error naming the argument."""

    def convert(text: str):
        value = text
        try:
            for step in steps:
                value = step(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    return convert


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _four_numbers(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"expected x1,y1,x2,y2 (four numbers), got {text!r}")
    return values


def _warp_size(size: int) -> int:
    if size not in WARP_SIZES:
        raise ValueError(f"the crop's side in px, {WARP_SIZES.start} to {WARP_SIZES.stop - 1} (ArcFace takes 112), "
                         f"got {size}")
    return size


def _model_name(text: str) -> str:
    if not text.strip():
        raise ValueError(f"empty; give a model name (default {DEFAULT_MODEL}) or a checkpoint path")
    return text


def _device(text: str):
    from falign.kit.aligner import usable_device

    return usable_device(text)


def _output_folder(text: str) -> Path:
    """``--out`` as a folder this run can write into, checked now: not a file, and writable (tried
    with a temporary file, which ``chmod`` alone would not tell for root, ACLs or a read-only mount)."""
    if not text:
        raise ValueError("empty; give a folder")
    folder = Path(text)
    try:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise ValueError(f"{existing} is a file, not a folder")
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise ValueError(f"{folder}: cannot write there ({err.strerror or err})") from None
    return folder


def _box_values_attached(argv: list[str]) -> list[str]:
    """``--box -20,60,200,280`` as ``--box=-20,60,200,280``: argparse takes a value that starts with
    '-' for an option unless it is a plain negative number, so a box left of the photo would read as
    "expected one argument". Only a value with a comma after a single dash is joined."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--box" and re.match(r"-[^-].*,", arg):
            out[-1] = f"--box={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="falign", description="Face alignment with the book's trained models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    align = commands.add_parser(
        "align", help="put landmarks on the faces of photos", epilog=EPILOG,
        description="Landmarks for every face of every photo: .pts, .json and an overlay .png per face.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    align.add_argument("photos", nargs="+", metavar="PHOTO",
                       help="image files (anything Pillow reads), or folders: their image files (extensions "
                            f"{', '.join(s[1:] for s in IMAGE_SUFFIXES)}, any case), sorted")
    align.add_argument("--recursive", action="store_true", help="a folder's sub-folders too (never --out)")
    align.add_argument("--model", type=_arg(_model_name),
                       help=f"a model name with shipped weights (results/<name>/aligner.pt; default "
                            f"{DEFAULT_MODEL}, else the first available), a packaged model (dlib's ERT: "
                            "dlib-ert-68, research use only, or dlib-ert-5), or a checkpoint path")
    align.add_argument("--box", type=_arg(_four_numbers), action="append", metavar="x1,y1,x2,y2",
                       help="face box in 0-based pixels, at least 1 px wide and high and at least half inside "
                            "the photo (repeat for several faces); default: detect faces")
    align.add_argument("--out", type=_arg(_output_folder), default="aligned",
                       help="output folder (default: aligned/); a photo's earlier outputs there are replaced")
    align.add_argument("--detector", type=_arg(detect.check_detector), default="hog", metavar="{hog,mmod}",
                       help="face detector: hog, dlib's HOG detector (default; near-frontal faces, fast), or mmod, "
                            "dlib's CNN, which finds turned and tilted faces HOG misses but takes seconds per photo "
                            "on a CPU")
    align.add_argument("--upsample", type=_arg(_integer, detect.check_upsample), default=1,
                       help=f"detector: upsample the photo this many times to find small faces, "
                            f"{detect.UPSAMPLE.start} to {detect.UPSAMPLE.stop - 1} (default 1; photos are first "
                            f"shrunk to {detect.DETECT_SIDE} px on their longest side)")
    hog, mmod = detect.DEFAULT_MIN_SCORE_BY_DETECTOR["hog"], detect.DEFAULT_MIN_SCORE_BY_DETECTOR["mmod"]
    align.add_argument("--min-score", type=_arg(_number),
                       help=f"detector: keep detections scoring at least this. hog: its SVM score, "
                            f"{detect.MIN_SCORE_BY_DETECTOR['hog']:g} or more (default {hog:g}: frontal faces score "
                            "about 1, false faces up to 0.15; 0 is dlib's own threshold, negative adds false alarms); "
                            f"mmod: its confidence, {detect.MIN_SCORE_BY_DETECTOR['mmod']:g} or more (default "
                            f"{mmod:g}, all dlib returns: faces score 0.5 to 1.2)")
    align.add_argument("--largest-face", action="store_true", help="keep only the largest face of each photo")
    align.add_argument("--warp5", type=_arg(_integer, _warp_size), metavar="SIZE",
                       help="also write <stem>_face<k>_warp.png: the face warped (rotation, scale, shift) so its eye "
                            "centres, nose tip and mouth corners sit on ArcFace's template, SIZE px a side "
                            "(112 for ArcFace)")
    align.add_argument("--device", type=_arg(_device), default="cpu",
                       help="torch device for the model: cpu, cuda or cuda:N (default cpu)")
    align.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``falign``; returns the exit status (also for ``--help``, argument errors and Ctrl-C)."""
    try:
        args = build_parser().parse_args(_box_values_attached(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except KeyboardInterrupt:            # while checking the arguments (importing torch takes a moment)
        print("falign: interrupted; nothing written", file=sys.stderr)
        return 130
    return {"align": align_command}[args.command](args)


# --------------------------------------------------------------------------------------------------
# falign align
# --------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What a run has done so far: the summary's numbers, and an interrupted run's."""

    faces: int = 0                 # faces whose files were written
    photos: int = 0                # photos with outputs written
    failed: int = 0                # photos with an error line
    records: list = field(default_factory=list)    # the written faces' records, for faces.jsonl


@dataclass
class Face:
    """One face ready to write: its index in the photo, box, landmarks, visibility, JSON record and the
    ``--warp5`` crop (None without it)."""

    index: int
    box: np.ndarray
    points: np.ndarray
    visible: np.ndarray | None
    record: dict
    warp: np.ndarray | None = None


def align_command(args: argparse.Namespace) -> int:
    """``falign align``: its exit status; a disk error or Ctrl-C ends it with one line saying what was written."""
    tally = Tally()
    try:
        return _align(args, tally)
    except OutputError as err:
        print(f"falign align: {err}; stopped, {tally.faces} face(s) written to {args.out}/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"falign align: interrupted; {tally.faces} face(s) written to {args.out}/", file=sys.stderr)
        return 130


def _align(args: argparse.Namespace, tally: Tally) -> int:
    def usage_error(message) -> int:
        print(f"falign align: error: {message}", file=sys.stderr)
        return 2

    try:          # before the heavy imports: the floor and the default depend on --detector
        min_score = detect.resolve_min_score(args.min_score, args.detector)
    except ValueError as err:
        return usage_error(f"argument --min-score: {err}")
    from tqdm import tqdm

    from falign.kit import aligner as aligners, facecrop, inputs

    try:
        boxes = inputs.check_boxes(args.box) if args.box else None
    except inputs.InputError as err:
        return usage_error(f"argument --box: {err}")
    try:
        photos = find_photos(args.photos, recursive=args.recursive, out=args.out)
    except ValueError as err:
        return usage_error(f"argument PHOTO: {err}")
    name = args.model or _default_model(aligners.available())
    try:
        model = aligners.load(name, device=args.device)
    except (aligners.UnknownModelError, aligners.CheckpointError) as err:
        return usage_error(f"argument --model: {err}")
    if args.warp5:
        try:
            facecrop.check_scheme(model.scheme, model.n_points)
        except ValueError as err:
            return usage_error(f"argument --warp5: model {name}: {err}")
    out, stems, earlier = args.out, {}, _outputs_by_stem(args.out)
    if not args.quiet and boxes is None:
        print(box_note(model, name, args.detector), file=sys.stderr)

    def say(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    try:
        with tqdm(photos, unit="photo", file=sys.stderr, disable=args.quiet or len(photos) < 2) as bar:
            for photo in bar:
                try:
                    if photo.stem in stems:
                        raise PhotoError(f"{photo}: its outputs would overwrite those of {stems[photo.stem]} "
                                         "(same file name); align it in a separate run or --out")
                    stems[photo.stem] = photo
                    image, faces, problem = align_photo(photo, model, name, boxes, say, detector=args.detector,
                                                        upsample=args.upsample, min_score=min_score,
                                                        largest=args.largest_face, warp5=args.warp5)
                except (PhotoError, inputs.InputError) as err:
                    faces, problem = [], str(err)
                except Exception as err:  # a bug or an odd file must not stop the other photos
                    faces, problem = [], f"{photo}: failed ({type(err).__name__}: {inputs.first_line(err)})"
                if problem:
                    tally.failed += 1
                    say(problem)
                if faces:
                    write_faces(out, photo.stem, image, faces, earlier.get(photo.stem, set()), tally)
    finally:                      # also when stopped, once a face is written: faces.jsonl lists this run's faces
        if tally.records:
            with _ctrl_c_held():
                write_results(out, tally.records)
    if not args.quiet:
        print(f"falign align: {tally.faces} face(s) from {tally.photos} of {len(photos)} photo(s) -> {out}/"
              + (f"; {tally.failed} with errors" if tally.failed else ""), file=sys.stderr)
    return 1 if tally.failed else 0


def box_note(model, name: str, detector: str) -> str:
    """One line saying which face boxes ``model`` was trained from and that it is given ``detector``'s, so a
    mismatch that costs accuracy is said, not hidden."""
    from falign.kit import aligner as aligners

    trained = model.box_convention
    line = (f"falign align: model {name}, trained from {aligners.BOX_CONVENTIONS.get(trained, trained)}; "
            f"given {detect.DETECTORS[detector]} boxes")
    if detector == "hog" and trained == aligners.DLIB_HOG_BOXES:
        return line + " (its own convention)"
    return line + " as they are (another convention: expect a larger error)"


def _default_model(names: list[str]) -> str:
    return DEFAULT_MODEL if DEFAULT_MODEL in names or not names else names[0]


def find_photos(paths: list[str], *, recursive: bool, out: Path) -> list[Path]:
    """The photos to align: each file as given (one that is not there fails when read, naming it) and each
    folder's image files (:data:`IMAGE_SUFFIXES`, any case; sub-folders' with ``recursive``), sorted, those
    in ``out`` left out (earlier overlays are no photos). A folder without any: a one-line ValueError."""
    photos, skip = [], out.resolve()
    for path in map(Path, paths):
        if not path.is_dir():
            photos.append(path)
            continue
        found = sorted(p for p in (path.rglob("*") if recursive else path.iterdir())
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and skip not in p.resolve().parents)
        if not found:
            raise ValueError(f"{path}: a folder without image files ({', '.join(IMAGE_SUFFIXES)}"
                             + (")" if recursive else "; --recursive for its sub-folders)"))
        photos += found
    return photos


def align_photo(photo: Path, model, model_name: str, boxes, say, *, detector: str = "hog", upsample: int = 1,
                min_score: float | None = None, largest: bool = False, warp5: int | None = None):
    """One photo read, its faces found (the given boxes, else ``detector``'s, ``min_score`` None for its
    default) and aligned by
    :meth:`~falign.kit.aligner.Aligner.detect_and_align`, and with ``warp5`` warped to the 5-point template.

    Returns the image, the faces whose landmarks can be written, and one line about those that cannot
    (non-finite, or far outside their box: a model that diverged; or refused by the aligner's own check),
    or None. ``say`` prints a line.
    """
    from falign.kit import facecrop, inputs

    min_score = detect.resolve_min_score(min_score, detector)
    image = _read(photo, say)
    h, w = image.shape[:2]
    try:
        found = model.detect_and_align(image, boxes, detector=detector, min_score=min_score, upsample=upsample,
                                       largest=largest)
    except inputs.InputError as err:             # a given box outside the photo
        raise PhotoError(f"{photo}: {err}") from None
    except inputs.PredictionError as err:        # the aligner refused the photo without saying which faces
        raise PhotoError(f"{photo}: {inputs.first_line(err)}") from None
    if not found:
        raise PhotoError(f"{photo}: no face found by {detect.DETECTORS[detector]} with score >= {min_score:g}; "
                         + _what_else(detector, min_score))
    faces = []
    for k, face in enumerate(found):
        if face["problem"]:
            continue
        warp, affine = facecrop.warp5(image, face["landmarks"], model.scheme, warp5) if warp5 else (None, None)
        record = json_safe({
            "image": str(photo.resolve()), "image_size": [w, h], "face": k,
            "coordinates": "0-based pixels, x right, y down, pixel centres at integers",
            "box": [round(float(v), 3) for v in face["box"]],
            "box_source": "given" if boxes is not None else detect.DETECTORS[detector],
            **({"detector_score": round(face["score"], 4)} if face["score"] is not None else {}),
            "model": model_name, "trained_boxes": model.box_convention, "kind": model.kind, "scheme": model.scheme,
            "checkpoint": str(Path(model.source).resolve()) if model.source else None,
            "landmarks": [[round(x, 3), round(y, 3)] for x, y in face["landmarks"].tolist()],
            "visible": None if face["visible"] is None else face["visible"].tolist(),
            **({"warp5": {"size": warp5, "template": "ArcFace (insightface arcface_dst), scaled by size / 112",
                          "affine": np.round(affine, 6).tolist()}} if warp5 else {}),
            "provenance": model.provenance,
        })
        faces.append(Face(k, face["box"], face["landmarks"], face["visible"], record, warp))
    problems = [face["problem"] for face in found if face["problem"]]
    problem = f"{photo}: " + "; ".join(problems) + "; not written" if problems else None
    return image, faces, problem


def _what_else(detector: str, min_score: float) -> str:
    """What a photo without a face found can try: a box, a lower score, the other detector."""
    tries = ["give one with --box x1,y1,x2,y2"]
    if min_score > detect.MIN_SCORE_BY_DETECTOR[detector]:
        tries.append("lower --min-score")
    if detector == "hog":
        tries.append("try --detector mmod (turned and tilted faces; slower)")
    return ", or ".join(tries)


def json_safe(value):
    """``value`` (dicts, lists, numbers, text) with every non-finite float as None: JSON has no NaN or
    Infinity (Python's json writes them bare; strict readers, JavaScript's among them, refuse the file)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------------
# Writing a photo's outputs: all of them or none
# --------------------------------------------------------------------------------------------------
def _write_pts(path: Path, image: np.ndarray, face: Face) -> None:
    from falign.data.formats.ibug import write_pts

    write_pts(path, face.points)


def _write_json(path: Path, image: np.ndarray, face: Face) -> None:
    """One key per line; NaN is refused (``allow_nan=False``: the record is :func:`json_safe` already)."""
    lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in face.record.items())
    path.write_text("{\n" + lines + "\n}\n", encoding="utf-8")


def _write_png(path: Path, image: np.ndarray, face: Face) -> None:
    overlay(image, face.box, face.points, face.visible).save(path, format="PNG")


def _write_warp(path: Path, image: np.ndarray, face: Face) -> None:
    from PIL import Image

    Image.fromarray(face.warp).save(path, format="PNG")


# A face's files: <stem>_face<k> and these endings, each with its writer (the warp only with --warp5).
WRITERS = {".pts": _write_pts, ".json": _write_json, ".png": _write_png, "_warp.png": _write_warp}


_OUTPUT = re.compile(rf"(?P<stem>.+)_face\d+(?:{'|'.join(map(re.escape, WRITERS))})")


def _outputs_by_stem(out: Path) -> dict[str, set[Path]]:
    """The outputs already in ``out``, by photo stem: listed once, not once per photo."""
    found: dict[str, set[Path]] = {}
    if out.is_dir():
        for path in out.iterdir():
            match = _OUTPUT.fullmatch(path.name)
            if match:
                found.setdefault(match["stem"], set()).add(path)
    return found


def write_faces(out: Path, stem: str, image: np.ndarray, faces: list[Face], earlier: set[Path], tally: Tally) -> None:
    """Replace one photo's outputs with ``faces``' (see the module's ``--out`` policy).

    Every new file is first written to a temporary file beside its name; a write that fails (disk
    full, not writable) is an :class:`OutputError` and removes them all, leaving ``earlier`` (the
    photo's files from before) as they were. Then ``earlier`` files that are not replaced are deleted
    and the new ones renamed into place, with Ctrl-C held until that is done, and ``tally`` counts them.
    """
    from falign.base import atomic_files as atomic

    with contextlib.ExitStack() as staged:
        new = set()
        for face in faces:
            for ending, write in WRITERS.items():
                if write is _write_warp and face.warp is None:
                    continue
                path = out / f"{stem}_face{face.index}{ending}"
                try:
                    tmp = staged.enter_context(atomic.atomic_path(path))
                    write(tmp, image, face)
                except OSError as err:
                    raise OutputError(f"{path}: cannot write it ({err.strerror or err})") from None
                new.add(path)
        with _ctrl_c_held():
            try:
                for old in earlier - new:
                    old.unlink(missing_ok=True)
                staged.close()                     # renames every temporary file to its name
            except OSError as err:
                raise OutputError(f"{out}: cannot replace the outputs of {stem} ({err.strerror or err})") from None
            tally.faces += len(faces)
            tally.photos += 1
            tally.records += [face.record for face in faces]


def write_results(out: Path, records: list[dict]) -> None:
    """:data:`RESULTS` in ``out``: one JSON line per record (its :data:`JSONL_KEYS`), replaced atomically."""
    from falign.base import atomic_files as atomic

    lines = (json.dumps({k: r[k] for k in JSONL_KEYS if k in r}, allow_nan=False) + "\n" for r in records)
    try:
        atomic.write_text(out / RESULTS, "".join(lines))
    except OSError as err:
        raise OutputError(f"{out / RESULTS}: cannot write it ({err.strerror or err})") from None


@contextlib.contextmanager
def _ctrl_c_held():
    """Hold Ctrl-C (SIGINT) until the block is done (a few renames), so it cannot split a photo's outputs;
    then deliver it as it would have been. (A signal mask would not do: torch's threads would take it.)"""
    caught = []
    try:
        before = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    except ValueError:                               # not the main thread, which alone receives SIGINT
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if caught:
        signal.raise_signal(signal.SIGINT)


def overlay(image: np.ndarray, box, points: np.ndarray, visible=None, max_side: int = OVERLAY_SIDE):
    """The photo (a PIL image) with the face box and the landmarks drawn on it: visible green, hidden red.
    Shrunk to at most ``max_side`` px on its longest side: a full-size overlay of a 12,000 px photo takes
    half a minute to encode and 40 MB per face."""
    from PIL import Image, ImageDraw

    small = detect.downscale(image, max_side)
    scale = np.divide(small.shape[1::-1], image.shape[1::-1])
    box, points = detect.rescale(box, scale), detect.rescale(points, scale)
    canvas = Image.fromarray(small)
    draw = ImageDraw.Draw(canvas)
    x1, y1, x2, y2 = (float(v) for v in box)
    r = max(1.0, math.sqrt((x2 - x1) * (y2 - y1)) / 90)
    draw.rectangle([x1, y1, x2, y2], outline=BOX, width=max(1, round(r / 2)))
    vis = np.ones(len(points), bool) if visible is None else np.asarray(visible, bool)
    for (x, y), v in zip(points.tolist(), vis.tolist()):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=VISIBLE if v else HIDDEN)
    return canvas


# --------------------------------------------------------------------------------------------------
# Reading photos
# --------------------------------------------------------------------------------------------------
def _read(photo: Path, say) -> np.ndarray:
    """:func:`falign.kit.inputs.read_photo` with its warnings (a multi-frame file read at frame 0) each
    ``say``-ed as one line naming the photo, and Pillow's decompression-bomb guard at :data:`MAX_PIXELS`:
    refused above it (one :class:`~falign.kit.inputs.InputError` line), no warning below it."""
    from PIL import Image

    from falign.kit import inputs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS // 2   # Pillow refuses above twice it
        try:
            image = inputs.read_photo(photo)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    for warning in caught:
        line = inputs.first_line(warning.message)
        say(line if line.startswith(str(photo)) else f"{photo}: {line}")
    return image


if __name__ == "__main__":
    raise SystemExit(main())
