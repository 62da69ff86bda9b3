"""The ``falign`` command line. ``falign align PHOTO...`` puts landmarks on the faces of photos.

For every face it writes three files into ``--out`` (default ``aligned/``), named
``<photo stem>_face<k>``: a 300-W ``.pts`` file (1-based, as the iBUG tools read it), a ``.json`` file
(0-based landmarks, visibility, box, model, scheme, the weights' provenance) and a ``.png`` overlay.
A file that cannot be aligned gets one line on stderr naming it and the others still run; the exit
status is 1 if any file failed, 2 for a usage error (an unknown model, a bad ``--box``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

EPILOG = """\
example (a test photo from scikit-image; dlib's detector finds the face):
  python -c "import skimage.data, skimage.io; skimage.io.imsave('astronaut.png', skimage.data.astronaut())"
  falign align astronaut.png --model rcsr --out aligned/
  # -> aligned/astronaut_face0.pts  (300-W points, 1-based)
  #    aligned/astronaut_face0.json (0-based points, visibility, box, model, provenance)
  #    aligned/astronaut_face0.png  (overlay: visible points green, hidden red)

more:
  falign align a.jpg b.png --box 170,70,270,170    # this face box in every photo, no detector
  falign align photos/*.jpg --model path/to/aligner.pt
"""

DEFAULT_MODEL = "rcsr"
VISIBLE, HIDDEN, BOX = (0, 230, 0), (255, 60, 60), (255, 215, 0)


class PhotoError(Exception):
    """One photo could not be aligned; the message starts with the file."""


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------
def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x1,y1,x2,y2 (four numbers), got {text!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise argparse.ArgumentTypeError(f"expected x1 < x2 and y1 < y2, got {text!r}")
    return x1, y1, x2, y2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="falign", description="Face alignment with the book's trained models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    align = commands.add_parser(
        "align", help="put landmarks on the faces of photos", epilog=EPILOG,
        description="Landmarks for every face of every photo: .pts, .json and an overlay .png per face.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    align.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (anything Pillow reads)")
    align.add_argument("--model", default=None,
                       help=f"a model name with shipped weights (results/<name>/aligner.pt; default "
                            f"{DEFAULT_MODEL}, else the first available), a packaged model (dlib's ERT: "
                            "dlib-ert-68, research use only, or dlib-ert-5), or a checkpoint path")
    align.add_argument("--box", type=_box, action="append", metavar="x1,y1,x2,y2",
                       help="face box in 0-based pixels (repeat for several faces); default: detect faces")
    align.add_argument("--out", default="aligned", help="output folder (default: aligned/)")
    align.add_argument("--upsample", type=int, default=1,
                       help="detector: upsample the photo this many times to find small faces (default 1)")
    align.add_argument("--min-score", type=float, default=0.0,
                       help="detector: keep detections with at least this SVM score (default 0; 0.5 drops weak ones)")
    align.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    align.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"align": align_command}[args.command](args)


# --------------------------------------------------------------------------------------------------
# falign align
# --------------------------------------------------------------------------------------------------
def align_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from falign import aligner as aligners

    name = args.model or _default_model(aligners.available())
    try:
        model = aligners.load(name, device=args.device)
    except (aligners.UnknownModelError, aligners.CheckpointError) as err:
        print(f"falign align: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    failed, faces, stems = 0, 0, {}
    bar = tqdm(args.photos, unit="photo", file=sys.stderr, disable=args.quiet or len(args.photos) < 2)
    for photo in bar:
        try:
            stem = Path(photo).stem
            if stem in stems:
                raise PhotoError(f"{photo}: its outputs would overwrite those of {stems[stem]} "
                                 "(same file name); align it in a separate run or --out")
            stems[stem] = photo
            faces += align_photo(Path(photo), model, name, args.box, out, upsample=args.upsample,
                                 min_score=args.min_score)
        except PhotoError as err:
            failed += 1
            tqdm.write(str(err), file=sys.stderr)
        except Exception as err:  # a bug or an odd file must not stop the other photos
            failed += 1
            tqdm.write(f"{photo}: failed ({type(err).__name__}: {_first_line(err)})", file=sys.stderr)
    if not args.quiet:
        done = len(args.photos) - failed
        print(f"falign align: {faces} face(s) in {done} of {len(args.photos)} photo(s) -> {out}/"
              + (f"; {failed} failed" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _default_model(names: list[str]) -> str:
    return DEFAULT_MODEL if DEFAULT_MODEL in names or not names else names[0]


def align_photo(photo: Path, model, model_name: str, boxes, out: Path, *, upsample: int = 1,
                min_score: float = 0.0) -> int:
    """Align every face of one photo (the given boxes, else the detector's); returns the face count."""
    from falign import detect
    from falign.data.sample import inside_fraction

    image = read_photo(photo)
    h, w = image.shape[:2]
    scores = None
    if boxes:
        boxes = np.asarray(boxes, np.float32)
        for box in boxes:
            if inside_fraction(box, w, h) < 0.5:
                raise PhotoError(f"{photo}: box {','.join(f'{v:g}' for v in box)} lies outside the "
                                 f"{w}x{h} image (at least half of it must be inside)")
        source = "given"
    else:
        boxes, scores = detect.detect_faces(image, upsample=upsample, min_score=min_score,
                                             return_scores=True)
        if len(boxes) == 0:
            raise PhotoError(f"{photo}: no face found by {detect.DETECTOR}; give one with --box x1,y1,x2,y2")
        source = detect.DETECTOR
    points, visible = model.align(image, boxes)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(len(boxes)):
        base = out / f"{photo.stem}_face{k}"
        record = {
            "image": str(photo.resolve()), "image_size": [w, h], "face": k,
            "coordinates": "0-based pixels, x right, y down, pixel centres at integers",
            "box": [round(float(v), 3) for v in boxes[k]], "box_source": source,
            **({"detector_score": round(float(scores[k]), 4)} if scores is not None else {}),
            "model": model_name, "kind": model.kind, "scheme": model.scheme,
            "checkpoint": str(Path(model.source).resolve()) if model.source else None,
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in points[k].tolist()],
            "visible": None if visible is None else [bool(v) for v in visible[k].tolist()],
            "provenance": model.provenance,
        }
        _write_outputs(base, image, boxes[k], points[k].numpy(), None if visible is None else visible[k].numpy(),
                       record)
    return len(boxes)


def _write_outputs(base: Path, image: np.ndarray, box, points: np.ndarray, visible, record: dict) -> None:
    from PIL import Image

    from falign import atomic
    from falign.data.formats.ibug import write_pts

    with atomic.atomic_path(base.with_suffix(".pts")) as tmp:
        write_pts(tmp, points)
    lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items())   # a key per line
    atomic.write_text(base.with_suffix(".json"), "{\n" + lines + "\n}\n")
    with atomic.atomic_path(base.with_suffix(".png")) as tmp:
        Image.fromarray(overlay(image, box, points, visible)).save(tmp, format="PNG")


def overlay(image: np.ndarray, box, points: np.ndarray, visible=None) -> np.ndarray:
    """The photo with the face box and the landmarks drawn on it: visible green, hidden red."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    x1, y1, x2, y2 = (float(v) for v in box)
    r = max(1.0, math.sqrt((x2 - x1) * (y2 - y1)) / 90)
    draw.rectangle([x1, y1, x2, y2], outline=BOX, width=max(1, round(r / 2)))
    vis = np.ones(len(points), bool) if visible is None else np.asarray(visible, bool)
    for (x, y), v in zip(points.tolist(), vis.tolist()):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=VISIBLE if v else HIDDEN)
    return np.asarray(canvas)


# --------------------------------------------------------------------------------------------------
# Reading photos
# --------------------------------------------------------------------------------------------------
def read_photo(path: Path) -> np.ndarray:
    """Decode a photo to RGB uint8 (H, W, 3), upright (EXIF orientation applied).

    Pixels convert as the dataset loaders convert them (:func:`falign.data.sample.rgb8`: 16-bit grey
    scaled, not clipped to white).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from falign.data.sample import rgb8

    if not path.exists():
        raise PhotoError(f"{path}: no such file")
    if path.is_dir():
        raise PhotoError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path}: empty file, not an image")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return rgb8(img)
    except UnidentifiedImageError:
        raise PhotoError(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise PhotoError(f"{path}: cannot decode image ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


if __name__ == "__main__":
    raise SystemExit(main())
