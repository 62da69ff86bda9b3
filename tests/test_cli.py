"""``falign align`` run in-process on a real photo with tiny random checkpoints."""

import errno
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from falign.kit import aligner, facecrop, inputs
from falign.base import paths
from falign.tools import cli
from falign.data import detect
from falign.data.formats.ibug import read_pts
from test_aligner import make

FACE = (175, 76, 265, 166)   # dlib's HOG box of the astronaut's face (left, top, right, bottom)
FACE_BOX = "170,70,270,170"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {kind: make(kind).save(folder / f"{kind}.pt") for kind in ("rcsr", "pifa")}


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_given_box(models, astronaut, tmp_path, capsys):
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", FACE_BOX,
                    "--out", tmp_path)
    assert code == 0, err
    record = json.loads((tmp_path / "astronaut_face0.json").read_text())
    points = np.array(record["landmarks"])
    assert points.shape == (68, 2) and record["visible"] is None and record["box_source"] == "given"
    assert record["scheme"] == "ibug68" and record["kind"] == "rcsr" and record["provenance"] == {"seed": 0}
    assert np.allclose(read_pts(tmp_path / "astronaut_face0.pts"), points, atol=1e-3)   # 1-based on disk
    raw = (tmp_path / "astronaut_face0.pts").read_text().splitlines()
    assert raw[:3] == ["version: 1", "n_points: 68", "{"] and raw[-1] == "}"
    assert np.allclose(np.array([list(map(float, r.split())) for r in raw[3:-1]]) - 1, points, atol=1e-3)
    with Image.open(tmp_path / "astronaut_face0.png") as png:
        assert png.size == (512, 512)


def test_detector_finds_the_face(models, astronaut, tmp_path, capsys):
    code, err = run(capsys, "align", astronaut, "--model", models["pifa"], "--out", tmp_path)
    assert code == 0, err
    record = json.loads((tmp_path / "astronaut_face0.json").read_text())
    assert record["box_source"].startswith("dlib")
    assert np.allclose(record["box"], np.add(FACE, [-0.5, -0.5, 0.5, 0.5]), atol=12)
    assert len(record["visible"]) == 68 and all(isinstance(v, bool) for v in record["visible"])
    assert (tmp_path / "astronaut_face0.pts").exists() and (tmp_path / "astronaut_face0.png").exists()


def test_bad_files_fail_alone(models, astronaut, tmp_path, capsys):
    text, empty, missing = tmp_path / "notes.txt", tmp_path / "empty.png", tmp_path / "missing.jpg"
    text.write_text("not an image\n")
    empty.write_bytes(b"")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((80, 80, 3), 128, np.uint8)).save(blank)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(astronaut.read_bytes()[:4000])
    out = tmp_path / "out"
    code, err = run(capsys, "align", text, empty, astronaut, missing, blank, corrupt, "--model", models["rcsr"],
                    "--out", out, "--quiet")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 5, err
    for bad, line in zip((text, empty, missing, blank, corrupt), lines):
        assert line.startswith(str(bad)), line
    assert "no face found" in lines[3]
    names = {p.name for p in out.iterdir()} - {cli.RESULTS}
    assert {f"astronaut_face0.{s}" for s in ("pts", "json", "png")} <= names
    assert all(n.startswith("astronaut_face") for n in names)


def test_box_outside_the_image_is_refused(models, astronaut, tmp_path, capsys):
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", "600,600,700,700",
                    "--out", tmp_path, "--quiet")
    assert code == 1 and err.startswith(str(astronaut)) and "outside" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_unknown_model_lists_the_available_ones(tmp_path, monkeypatch, astronaut, capsys):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    make("rcsr").save(tmp_path / "tiny" / aligner.FILENAME)
    code, err = run(capsys, "align", astronaut, "--model", "nope", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "shipped: tiny" in err
    code, err = run(capsys, "align", astronaut, "--model", tmp_path / "nope.pt", "--out", tmp_path / "out")
    assert code == 2 and "nope.pt" in err
    code, err = run(capsys, "align", astronaut, "--box", "170,70,270,170", "--out", tmp_path / "out", "--quiet")
    assert code == 0, err    # the default model falls back to the only one shipped


def test_the_packaged_peer_aligns_a_photo(astronaut, tmp_path, capsys, monkeypatch):
    """dlib's ERT ships inside face-recognition-models: `--model dlib-ert-68` needs no results/ file."""
    code, err = run(capsys, "align", astronaut, "--model", "dlib-ert-68", "--out", tmp_path, "--quiet")
    assert code == 0, err
    record = json.loads((tmp_path / "astronaut_face0.json").read_text())
    assert record["kind"] == "dlib-ert" and len(record["landmarks"]) == 68
    assert record["provenance"]["file"] == "shape_predictor_68_face_landmarks.dat"
    monkeypatch.setattr(aligner, "usable_device", torch.device)     # as on a machine with a GPU
    code, err = run(capsys, "align", astronaut, "--model", "dlib-ert-5", "--device", "cuda", "--out", tmp_path)
    assert code == 2 and err.strip() == ("falign align: error: argument --model: dlib-ert-5: dlib's ERT (dlib-bin) "
                                         "runs on the CPU only")


def test_help_and_bad_box(capsys):
    assert cli.main(["align", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "falign align astronaut.png" in help_text and "replaces each photo's earlier" in help_text
    code, err = run(capsys, "align", "x.png", "--box", "1,2,3")
    assert code == 2
    assert err == "falign align: error: argument --box: expected x1,y1,x2,y2 (four numbers), got '1,2,3'\n"


def test_16_bit_and_palette_images_convert(tmp_path):
    """What the command reads (:func:`falign.kit.inputs.read_photo`): 16-bit grey scaled, palettes expanded."""
    ramp = np.tile(np.linspace(0, 65535, 256), (4, 1)).round().astype(np.uint16)
    path16 = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path16)
    grey = inputs.read_photo(path16)
    assert grey.dtype == np.uint8 and grey.shape == (4, 256, 3)
    assert abs(int(grey[1, 128, 0]) - 128) <= 2 and grey.max() == 255 and grey.min() == 0   # not saturated
    rgb = skimage.data.astronaut()[::8, ::8]
    palette = Image.fromarray(rgb).quantize(64)
    path_p = tmp_path / "palette.png"
    palette.save(path_p)
    assert np.array_equal(inputs.read_photo(path_p), np.asarray(palette.convert("RGB")))


# --------------------------------------------------------------------------------------------------
# Arguments, outputs, interrupts and large photos (the fault table, tests/test_faults.py, has the rest)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", [["--box", "-20,60,200,280"], ["--box=-20,60,200,280"]])
def test_a_box_may_start_at_negative_coordinates(form, models, astronaut, tmp_path, capsys):
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], *form, "--out", tmp_path, "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "astronaut_face0.json").read_text())["box"] == [-20, 60, 200, 280]


def test_only_a_box_value_is_joined_to_box():
    assert cli._box_values_attached(["a.png", "--box", "-1,2,30,40", "--box", "--out", "-x"]) == [
        "a.png", "--box=-1,2,30,40", "--box", "--out", "-x"]


def test_a_second_run_replaces_a_photos_outputs(models, astronaut, tmp_path, capsys):
    """Another model, fewer faces: the photo's outputs are all the new run's; other photos' stay."""
    others = [tmp_path / "astronaut_face0_face0.pts", tmp_path / "other_face3.json", tmp_path / "notes.txt"]
    for path in others:
        path.write_text("not ours\n")
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", FACE_BOX, "--box", "0,0,100,100",
                    "--out", tmp_path)
    assert code == 0 and err.strip().endswith(f"2 face(s) from 1 of 1 photo(s) -> {tmp_path}/"), err
    code, err = run(capsys, "align", astronaut, "--model", models["pifa"], "--box", FACE_BOX, "--out", tmp_path)
    assert code == 0 and err.strip().endswith(f"1 face(s) from 1 of 1 photo(s) -> {tmp_path}/"), err
    assert sorted(p.name for p in tmp_path.glob("astronaut_face?.*")) == [f"astronaut_face0.{s}" for s in
                                                                        ("json", "png", "pts")]
    assert json.loads((tmp_path / "astronaut_face0.json").read_text())["kind"] == "pifa"
    assert all(p.read_text() == "not ours\n" for p in others)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_stem_with_dots_keeps_its_name(models, astronaut, tmp_path, capsys):
    photo = tmp_path / "my.photo.v2.png"
    photo.write_bytes(astronaut.read_bytes())
    code, err = run(capsys, "align", photo, "--model", models["rcsr"], "--box", FACE_BOX, "--out", tmp_path / "out")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [cli.RESULTS, *(f"my.photo.v2_face0.{s}" for s in ("json", "png", "pts"))]


def test_refused_landmarks_are_not_written_and_the_json_is_strict(models, astronaut, tmp_path, capsys, monkeypatch):
    """Face 1's landmarks are NaN: one line naming the photo and face 1; face 0 is written, JSON without NaN
    (Python's json would read a bare NaN; strict readers, e.g. JavaScript's, refuse it)."""
    align = aligner.Aligner.align

    def nan_for_face_1(self, images, boxes, **kw):
        points, visible = align(self, images, boxes, **kw)
        points[1] = float("nan")
        return points, visible

    monkeypatch.setattr(aligner.Aligner, "align", nan_for_face_1)
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", FACE_BOX, "--box", "0,0,100,100",
                    "--out", tmp_path)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2, err
    assert lines[0].startswith(f"{astronaut}: face 1 (")
    assert lines[0].endswith("non-finite (NaN or infinite) landmarks; not written")
    assert lines[1].endswith(f"1 face(s) from 1 of 1 photo(s) -> {tmp_path}/; 1 with errors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"astronaut_face0.{s}" for s in ("json", "png", "pts")] + [
        cli.RESULTS]
    strict = json.loads((tmp_path / "astronaut_face0.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert np.isfinite(strict["landmarks"]).all()


def test_an_aligner_that_refuses_some_faces_keeps_the_others(models, astronaut, tmp_path, capsys, monkeypatch):
    """An aligner that checks its own output raises PredictionError with the batch: the good faces are written."""
    align = aligner.Aligner.align

    def refuse_face_0(self, images, boxes, **kw):
        points, visible = align(self, images, boxes, **kw)
        points[0] = float("inf")
        raise inputs.PredictionError("face 0 refused", points, visible, np.array([False, True]))

    monkeypatch.setattr(aligner.Aligner, "align", refuse_face_0)
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", FACE_BOX, "--box", "0,0,100,100",
                    "--out", tmp_path, "--quiet")
    assert code == 1 and err.startswith(f"{astronaut}: face 0 (") and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"astronaut_face1.{s}" for s in ("json", "png", "pts")] + [
        cli.RESULTS]


def test_faces_the_aligner_refuses_are_not_written_even_with_finite_points(models, astronaut, tmp_path, capsys,
                                                                           monkeypatch):
    """The aligner's own verdict (PredictionError.ok) counts, not only the command's landmark check: a.png's
    face 1 is refused with finite points and not written; b.png's aligner refuses without saying which face,
    so the photo fails; c.png is still aligned, and the run exits 1."""
    align, calls = aligner.Aligner.align, []

    def refuse(self, images, boxes, **kw):
        calls.append(1)
        points, visible = align(self, images, boxes, **kw)
        if len(calls) == 1:
            raise inputs.PredictionError("checked: face 1 is no face", points, visible, np.array([True, False]))
        if len(calls) == 2:
            raise inputs.PredictionError("checked: no face here")
        return points, visible

    photos = [tmp_path / f"{stem}.png" for stem in "abc"]
    for photo in photos:
        photo.write_bytes(astronaut.read_bytes())
    monkeypatch.setattr(aligner.Aligner, "align", refuse)
    code, err = run(capsys, "align", *photos, "--model", models["rcsr"], "--box", FACE_BOX, "--box", "0,0,100,100",
                    "--out", tmp_path / "out", "--quiet")
    assert code == 1 and err.splitlines() == [
        f"{photos[0]}: face 1: refused by the aligner (checked: face 1 is no face); not written",
        f"{photos[1]}: checked: no face here"], err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([cli.RESULTS, *(f"{stem}_face{k}.{s}" for stem, k in (("a", 0), ("c", 0), ("c", 1))
                                            for s in ("json", "png", "pts"))])


def test_a_full_disk_stops_the_run_keeping_every_face_whole(models, astronaut, tmp_path, capsys, monkeypatch):
    """The first photo is written; the disk fills while the second one's overlay is written: one line, the first
    photo's files whole, no file of the second (its earlier outputs untouched), no temporary file left."""
    second = tmp_path / "second.png"
    second.write_bytes(astronaut.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "second_face0.pts").write_text("earlier\n")
    save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if "second" in str(fp):
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    code, err = run(capsys, "align", astronaut, second, "--model", models["rcsr"], "--box", FACE_BOX, "--out", out,
                    "--quiet")
    assert code == 1 and err == (f"falign align: {out}/second_face0.png: cannot write it (No space left on device); "
                                 f"stopped, 1 face(s) written to {out}/\n")
    assert sorted(p.name for p in out.iterdir()) == [*(f"astronaut_face0.{s}" for s in ("json", "png", "pts")),
                                                     cli.RESULTS, "second_face0.pts"]
    assert [json.loads(line)["image"] for line in (out / cli.RESULTS).read_text().splitlines()] == [
        str(astronaut.resolve())]                  # the faces written before the disk filled
    assert (out / "second_face0.pts").read_text() == "earlier\n"
    json.loads((out / "astronaut_face0.json").read_text())


def test_ctrl_c_stops_with_one_line(models, astronaut, tmp_path, capsys, monkeypatch):
    second = tmp_path / "second.png"
    second.write_bytes(astronaut.read_bytes())
    align, calls = aligner.Aligner.align, []

    def interrupted_on_the_second(self, images, boxes, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return align(self, images, boxes, **kw)

    monkeypatch.setattr(aligner.Aligner, "align", interrupted_on_the_second)
    out = tmp_path / "out"
    code, err = run(capsys, "align", astronaut, second, "--model", models["rcsr"], "--box", FACE_BOX, "--out", out)
    assert code == 130 and err.strip().splitlines()[-1] == f"falign align: interrupted; 1 face(s) written to {out}/"
    assert sorted(p.name for p in out.iterdir()) == [f"astronaut_face0.{s}" for s in ("json", "png", "pts")] + [
        cli.RESULTS]
    assert len((out / cli.RESULTS).read_text().splitlines()) == 1


def test_ctrl_c_waits_while_a_photos_outputs_are_renamed(tmp_path):
    """SIGINT during the renames is held until they are done, then raised as it would have been. The test
    sets Python's own SIGINT handler first: a process started in the background by a non-interactive shell
    inherits SIGINT ignored, and then the held interrupt is (rightly) ignored too."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with cli._ctrl_c_held():
                signal.raise_signal(signal.SIGINT)
                (tmp_path / "done").write_text("")     # still runs: the interrupt waits
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert (tmp_path / "done").exists()


def test_a_large_photo_is_detected_on_a_shrunk_copy(astronaut):
    """The astronaut at 5x (2560 px): detection scans a 512 px copy, the box comes back in full-size pixels."""
    big = np.kron(skimage.data.astronaut(), np.ones((5, 5, 1), np.uint8))
    boxes = detect.detect_faces(big, max_side=512, min_score=0.5)
    expected = (np.add(FACE, [-0.5, -0.5, 0.5, 0.5]) + 0.5) * 5 - 0.5
    assert boxes.shape == (1, 4) and np.abs(boxes[0] - expected).max() <= 5 * 2, boxes
    assert np.array_equal(detect.detect_faces(skimage.data.astronaut(), max_side=512),
                          detect.detect_faces(skimage.data.astronaut()))        # small photos are scanned as they are


def test_rescaling_keeps_the_image_edge():
    assert np.allclose(detect.rescale([[-0.5, -0.5], [99.5, 49.5], [10, 20]], (0.5, 2.0)),
                       [[-0.5, -0.5], [49.5, 99.5], [4.75, 40.5]])
    assert np.allclose(detect.rescale([-0.5, -0.5, 9.5, 19.5], (3, 3)), [-0.5, -0.5, 29.5, 59.5])


def test_the_overlay_of_a_large_photo_is_shrunk():
    image = np.zeros((100, 4096, 3), np.uint8)
    canvas = cli.overlay(image, [1000, 10, 1100, 90], np.array([[1050.0, 50.0]]))
    assert canvas.size == (2048, 50)
    drawn = np.argwhere(np.asarray(canvas)[..., 1] == 230)        # the visible point, green, at half the coordinates
    assert np.allclose(drawn.mean(0), [24.75, 524.75], atol=1)


# --------------------------------------------------------------------------------------------------
# Folders, faces.jsonl, --min-score's default, --largest-face and --warp5
# --------------------------------------------------------------------------------------------------
def test_a_folder_gives_its_image_files_and_a_bad_one_fails_alone(models, astronaut, tmp_path, capsys):
    """Image files of any case, sorted; other files skipped; sub-folders only with --recursive, never --out."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "b.png").write_bytes(astronaut.read_bytes())
    Image.open(astronaut).save(photos / "A.JPG", format="JPEG")
    (photos / "c.tiff").write_bytes(astronaut.read_bytes()[:3000])          # cut short: cannot be decoded
    (photos / "notes.txt").write_text("not a photo\n")
    (photos / "sub" / "d.webp").write_bytes(astronaut.read_bytes())        # a PNG named .webp: Pillow reads it
    out = photos / "aligned"
    code, err = run(capsys, "align", photos, "--model", models["rcsr"], "--box", FACE_BOX, "--out", out)
    lines = [line.rsplit("\r", 1)[-1].strip() for line in err.splitlines()]    # the text after the progress bar's
    assert code == 1 and "3/3 [" in err, err                                   # last redraw on each line
    assert [line for line in lines if "c.tiff" in line] == [f"{photos / 'c.tiff'}: cannot decode image (image file "
                                                            "is truncated)"], err
    assert lines[-1] == f"falign align: 2 face(s) from 2 of 3 photo(s) -> {out}/; 1 with errors", err
    assert [json.loads(line)["image"] for line in (out / cli.RESULTS).read_text().splitlines()] == [
        str((photos / name).resolve()) for name in ("A.JPG", "b.png")]
    code, err = run(capsys, "align", photos, "--recursive", "--model", models["rcsr"], "--box", FACE_BOX,
                    "--out", out, "--quiet")                  # the overlays in photos/aligned are no photos
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith(f"{photos / 'c.tiff'}: "), err
    assert [Path(json.loads(line)["image"]).name for line in (out / cli.RESULTS).read_text().splitlines()] == [
        "A.JPG", "b.png", "d.webp"]
    (tmp_path / "empty").mkdir()
    code, err = run(capsys, "align", photos, tmp_path / "empty", "--out", out)
    assert code == 2 and err == (f"falign align: error: argument PHOTO: {tmp_path / 'empty'}: a folder without image "
                                 f"files ({', '.join(cli.IMAGE_SUFFIXES)}; --recursive for its sub-folders)\n")


def strict_json(text: str):
    """JSON as a strict reader reads it: a bare NaN or Infinity fails the test."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in {text[:80]}"))


def test_faces_jsonl_and_json_stay_valid_json(astronaut, tmp_path, capsys, monkeypatch):
    """A model without visibility whose provenance holds NaN and infinity, and a second face with NaN landmarks:
    faces.jsonl has one line per written face, both files parse strictly, the non-finite numbers are null."""
    path = make("rcsr").save(tmp_path / "odd.pt")
    odd = aligner.load(path)
    odd.provenance = {"seed": 0, "val_loss": float("nan"), "curve": [1.0, float("inf")]}
    monkeypatch.setattr(aligner, "load", lambda *a, **k: odd)
    align = aligner.Aligner.align

    def nan_for_face_1(self, images, boxes, **kw):
        points, visible = align(self, images, boxes, **kw)
        points[1, 3] = float("nan")
        return points, visible

    monkeypatch.setattr(aligner.Aligner, "align", nan_for_face_1)
    code, err = run(capsys, "align", astronaut, "--model", path, "--box", FACE_BOX, "--box", "0,0,100,100",
                    "--out", tmp_path / "out", "--quiet")
    assert code == 1 and "face 1 (" in err, err
    record = strict_json((tmp_path / "out" / "astronaut_face0.json").read_text())
    assert record["provenance"] == {"seed": 0, "val_loss": None, "curve": [1.0, None]} and record["visible"] is None
    lines = (tmp_path / "out" / cli.RESULTS).read_text().splitlines()
    assert len(lines) == 1
    line = strict_json(lines[0])
    assert set(line) == {"image", "face", "box", "box_source", "model", "trained_boxes", "scheme", "landmarks",
                         "visible"}
    assert line["face"] == 0 and line["visible"] is None and line["landmarks"] == record["landmarks"]
    assert cli.json_safe({"landmarks": [[1.5, float("nan")], [np.float32("inf"), 2.0]], "n": 3}) == {
        "landmarks": [[1.5, None], [None, 2.0]], "n": 3}
    with pytest.raises(ValueError):                # a regression that lets NaN through fails loudly
        cli.write_results(tmp_path, [{"landmarks": [[float("nan"), 0.0]]}])


def test_the_default_min_score_drops_the_mission_patch(models, astronaut, tmp_path, capsys):
    """dlib's own threshold (0) finds the astronaut's face (1.16) and her mission patch (0.12)."""
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--out", tmp_path / "default", "--quiet")
    assert code == 0, err
    lines = (tmp_path / "default" / cli.RESULTS).read_text().splitlines()
    assert [round(json.loads(line)["detector_score"], 1) for line in lines] == [1.2]
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--out", tmp_path / "zero", "--quiet",
                    "--min-score", "0")
    assert code == 0, err
    lines = (tmp_path / "zero" / cli.RESULTS).read_text().splitlines()
    assert [round(json.loads(line)["detector_score"], 1) for line in lines] == [1.2, 0.1]


def test_largest_face_keeps_one_face_per_photo(models, astronaut, tmp_path, capsys):
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", FACE_BOX, "--box", "0,0,300,300",
                    "--box", "10,10,50,50", "--largest-face", "--out", tmp_path, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("astronaut_face*.json")) == ["astronaut_face0.json"]
    assert json.loads((tmp_path / "astronaut_face0.json").read_text())["box"] == [0, 0, 300, 300]


def test_warp5_writes_the_arcface_crop(astronaut, tmp_path, capsys):
    """dlib's ERT puts real landmarks on the astronaut: her five points land as near the template as a
    similarity can put them (the linear least-squares solution), within 6 px (she smiles wider than it)."""
    code, err = run(capsys, "align", astronaut, "--model", "dlib-ert-68", "--warp5", 112, "--out", tmp_path, "--quiet")
    assert code == 0, err
    with Image.open(tmp_path / "astronaut_face0_warp.png") as png:
        assert png.size == (112, 112) and png.mode == "RGB"
    record = json.loads((tmp_path / "astronaut_face0.json").read_text())
    affine = np.array(record["warp5"]["affine"])
    five, rows = facecrop.five_points(np.array(record["landmarks"]), "ibug68")
    placed = five @ affine[:, :2].T + affine[:, 2]
    assert record["warp5"]["size"] == 112 and np.abs(placed - facecrop.ARCFACE_112[rows]).max() < 6
    (x, y), one, zero = five.T, np.ones(5), np.zeros(5)          # u = a x - b y + tx, v = b x + a y + ty
    design = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    a, b, tx, ty = np.linalg.lstsq(design, facecrop.ARCFACE_112.T.reshape(-1), rcond=None)[0]
    assert np.allclose(affine, [[a, -b, tx], [b, a, ty]], atol=1e-5)
    code, err = run(capsys, "align", astronaut, "--model", "dlib-ert-5", "--warp5", 64, "--out", tmp_path, "--quiet")
    assert code == 0, err
    with Image.open(tmp_path / "astronaut_face0_warp.png") as png:    # replaced: the earlier run's whole output
        assert png.size == (64, 64)
    assert sorted(p.name for p in tmp_path.glob("astronaut_face0*")) == [
        f"astronaut_face0{e}" for e in (".json", ".png", ".pts", "_warp.png")]
    code, err = run(capsys, "align", astronaut, "--warp5", 8)
    assert code == 2 and err.startswith("falign align: error: argument --warp5: the crop's side in px, 16 to"), err


def test_the_similarity_estimate_recovers_a_known_similarity():
    """Points moved by known similarities (a batch: rotations, scales, shifts) give those similarities back;
    points moved by a mirror give a rotation, never a mirror."""
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (4, 5, 2))
    angle, scale, shift = rng.uniform(-np.pi, np.pi, 4), rng.uniform(0.2, 3, 4), rng.uniform(-50, 50, (4, 2))
    c, s = np.cos(angle), np.sin(angle)
    linear = scale[:, None, None] * np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    dst = src @ np.swapaxes(linear, -1, -2) + shift[:, None]
    found = facecrop.similarity(src, dst)
    assert found.shape == (4, 2, 3)
    assert np.allclose(found[..., :2], linear, atol=1e-9) and np.allclose(found[..., 2], shift, atol=1e-9)
    mirrored = facecrop.similarity(src[0], src[0] * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) > 0
    assert np.isnan(facecrop.similarity(np.ones((5, 2)), src[0])).all()
    with pytest.raises(ValueError, match="'cofw29' has no eye centres"):
        facecrop.check_scheme("cofw29", 29)


def test_the_detector_is_recorded_and_named(models, astronaut, tmp_path, capsys):
    """``--detector mmod``: faces.jsonl and the face's JSON name dlib's CNN as the box's source; a photo
    without a face gets one line naming the detector and the threshold it used (its default, 0)."""
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
    code, err = run(capsys, "align", astronaut, blank, "--model", models["rcsr"], "--detector", "mmod",
                    "--upsample", "0", "--out", tmp_path / "out", "--quiet")
    assert code == 1 and err == (f"{blank}: no face found by dlib CNN face detector (MMOD) with score >= 0; give "
                                 "one with --box x1,y1,x2,y2\n"), err
    lines = [strict_json(line) for line in (tmp_path / "out" / cli.RESULTS).read_text().splitlines()]
    assert [line["box_source"] for line in lines] == ["dlib CNN face detector (MMOD)"]
    assert 0.9 < lines[0]["detector_score"] < 1.2
    assert detect.iou(np.array(lines[0]["box"]), np.add(FACE, [-0.5, -0.5, 0.5, 0.5])) > 0.5
    record = json.loads((tmp_path / "out" / "astronaut_face0.json").read_text())
    assert record["box_source"] == "dlib CNN face detector (MMOD)" and record["landmarks"] == lines[0]["landmarks"]
