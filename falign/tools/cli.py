"""The ``falign`` command line. ``falign align PHOTO...`` puts landmarks on the faces of photos.

For every face it writes three files into ``--out`` (default ``aligned/``), named
``<photo stem>_face<k>``: a 300-W ``.pts`` file (1-based, as the iBUG tools read it), a ``.json`` file
(0-based landmarks, visibility, box, model, scheme, the weights' provenance) and a ``.png`` overlay.

Everything that can be checked before a photo is read is checked first: the arguments (model, device,
``--upsample``, ``--min-score``, every ``--box``, ``--out`` a writable folder) and the model's weights
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
from dataclasses import dataclass
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

more:
  falign align a.jpg b.png --box 170,70,270,170    # this face box in every photo, no detector
  falign align a.jpg --box -20,60,200,280          # a box may start left of the photo (half inside)
  falign align photos/*.jpg --model path/to/aligner.pt

outputs: a run replaces each photo's earlier <stem>_face*.{pts,json,png} in --out as a whole (once all
its new files are written); a photo that fails keeps its earlier outputs.
exit status: 0 all photos aligned; 1 a photo failed or a disk error; 2 a bad argument or model; 130 Ctrl-C.
"""

DEFAULT_MODEL = registry.default_aligner() or ""   # a paper package registers the default
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
    align.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (anything Pillow reads)")
    align.add_argument("--model", type=_arg(_model_name),
                       help=f"a model name with shipped weights (results/<name>/aligner.pt; default "
                            f"{DEFAULT_MODEL}, else the first available), a packaged model (dlib's ERT: "
                            "dlib-ert-68, research use only, or dlib-ert-5), or a checkpoint path")
    align.add_argument("--box", type=_arg(_four_numbers), action="append", metavar="x1,y1,x2,y2",
                       help="face box in 0-based pixels, at least 1 px wide and high and at least half inside "
                            "the photo (repeat for several faces); default: detect faces")
    align.add_argument("--out", type=_arg(_output_folder), default="aligned",
                       help="output folder (default: aligned/); a photo's earlier outputs there are replaced")
    align.add_argument("--upsample", type=_arg(_integer, detect.check_upsample), default=1,
                       help=f"detector: upsample the photo this many times to find small faces, "
                            f"{detect.UPSAMPLE.start} to {detect.UPSAMPLE.stop - 1} (default 1; photos are first "
                            f"shrunk to {detect.DETECT_SIDE} px on their longest side)")
    align.add_argument("--min-score", type=_arg(_number, detect.check_min_score), default=0.0,
                       help=f"detector: keep detections with at least this SVM score, {detect.MIN_SCORE:g} or "
                            "more (default 0, dlib's own threshold; 0.5 drops weak ones, negative adds false alarms)")
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

    faces: int = 0                 # faces whose three files were written
    photos: int = 0                # photos with outputs written
    failed: int = 0                # photos with an error line


@dataclass
class Face:
    """One face ready to write: its index in the photo, box, landmarks, visibility and JSON record."""

    index: int
    box: np.ndarray
    points: np.ndarray
    visible: np.ndarray | None
    record: dict


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
    from tqdm import tqdm

    from falign.kit import aligner as aligners, inputs

    def usage_error(message) -> int:
        print(f"falign align: error: {message}", file=sys.stderr)
        return 2

    try:
        boxes = inputs.check_boxes(args.box) if args.box else None
    except inputs.InputError as err:
        return usage_error(f"argument --box: {err}")
    name = args.model or _default_model(aligners.available())
    try:
        model = aligners.load(name, device=args.device)
    except (aligners.UnknownModelError, aligners.CheckpointError) as err:
        return usage_error(f"argument --model: {err}")
    out, stems, earlier = args.out, {}, _outputs_by_stem(args.out)

    def say(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    with tqdm(args.photos, unit="photo", file=sys.stderr, disable=args.quiet or len(args.photos) < 2) as bar:
        for photo in map(Path, bar):
            try:
                if photo.stem in stems:
                    raise PhotoError(f"{photo}: its outputs would overwrite those of {stems[photo.stem]} "
                                     "(same file name); align it in a separate run or --out")
                stems[photo.stem] = photo
                image, faces, problem = align_photo(photo, model, name, boxes, say, upsample=args.upsample,
                                                    min_score=args.min_score)
            except (PhotoError, inputs.InputError) as err:
                faces, problem = [], str(err)
            except Exception as err:  # a bug or an odd file must not stop the other photos
                faces, problem = [], f"{photo}: failed ({type(err).__name__}: {inputs.first_line(err)})"
            if problem:
                tally.failed += 1
                say(problem)
            if faces:
                write_faces(out, photo.stem, image, faces, earlier.get(photo.stem, set()), tally)
    if not args.quiet:
        print(f"falign align: {tally.faces} face(s) from {tally.photos} of {len(args.photos)} photo(s) -> {out}/"
              + (f"; {tally.failed} with errors" if tally.failed else ""), file=sys.stderr)
    return 1 if tally.failed else 0


def _default_model(names: list[str]) -> str:
    return DEFAULT_MODEL if DEFAULT_MODEL in names or not names else names[0]


def align_photo(photo: Path, model, model_name: str, boxes, say, *, upsample: int = 1, min_score: float = 0.0):
    """One photo read, its faces found (the given boxes, else the detector's) and aligned.

    Returns the image, the faces whose landmarks can be written, and one line about those that cannot
    (non-finite, or far outside their box: a model that diverged; or refused by the aligner's own check),
    or None. ``say`` prints a line.
    """
    from falign.kit import inputs

    image = _read(photo, say)
    h, w = image.shape[:2]
    scores = None
    if boxes is not None:
        try:
            boxes = inputs.check_boxes(boxes, image_size=(w, h))
        except inputs.InputError as err:
            raise PhotoError(f"{photo}: {err}") from None
        source = "given"
    else:
        boxes, scores = detect.detect_faces(image, upsample=upsample, min_score=min_score,
                                             max_side=detect.DETECT_SIDE, return_scores=True)
        if len(boxes) == 0:
            raise PhotoError(f"{photo}: no face found by {detect.DETECTOR}; give one with --box x1,y1,x2,y2")
        source = detect.DETECTOR
    refused, why = [], ""
    try:
        points, visible = model.align(image, boxes)
    except inputs.PredictionError as err:    # the aligner refused some faces: keep the others
        if err.points is None or err.ok is None:     # it did not say which: the whole photo fails
            raise PhotoError(f"{photo}: {inputs.first_line(err)}") from None
        points, visible, why = err.points, err.visible, inputs.first_line(err)
        refused = np.flatnonzero(~np.asarray(err.ok, bool))
    problems = inputs.landmark_problems(points, boxes)    # also for aligners that do not check
    for k in refused:                                     # the aligner's own verdict counts too
        problems.setdefault(int(k), f"face {k}: refused by the aligner ({why})")
    points = np.asarray(points, np.float32)
    visible = None if visible is None else np.asarray(visible, bool)
    faces = []
    for k in (k for k in range(len(boxes)) if k not in problems):
        record = {
            "image": str(photo.resolve()), "image_size": [w, h], "face": k,
            "coordinates": "0-based pixels, x right, y down, pixel centres at integers",
            "box": [round(float(v), 3) for v in boxes[k]], "box_source": source,
            **({"detector_score": round(float(scores[k]), 4)} if scores is not None else {}),
            "model": model_name, "kind": model.kind, "scheme": model.scheme,
            "checkpoint": str(Path(model.source).resolve()) if model.source else None,
            "landmarks": [[round(x, 3), round(y, 3)] for x, y in points[k].tolist()],
            "visible": None if visible is None else visible[k].tolist(),
            "provenance": model.provenance,
        }
        faces.append(Face(k, boxes[k], points[k], None if visible is None else visible[k], record))
    problem = None
    if problems:
        problem = f"{photo}: " + "; ".join(problems[k] for k in sorted(problems)) + "; not written"
    return image, faces, problem


# --------------------------------------------------------------------------------------------------
# Writing a photo's outputs: all of them or none
# --------------------------------------------------------------------------------------------------
def _write_pts(path: Path, image: np.ndarray, face: Face) -> None:
    from falign.data.formats.ibug import write_pts

    write_pts(path, face.points)


def _write_json(path: Path, image: np.ndarray, face: Face) -> None:
    """One key per line; NaN is refused (``allow_nan=False``), as JSON has no NaN."""
    lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in face.record.items())
    path.write_text("{\n" + lines + "\n}\n", encoding="utf-8")


def _write_png(path: Path, image: np.ndarray, face: Face) -> None:
    overlay(image, face.box, face.points, face.visible).save(path, format="PNG")


WRITERS = {"pts": _write_pts, "json": _write_json, "png": _write_png}


_OUTPUT = re.compile(rf"(?P<stem>.+)_face\d+\.(?:{'|'.join(WRITERS)})")


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
            for suffix, write in WRITERS.items():
                path = out / f"{stem}_face{face.index}.{suffix}"
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
