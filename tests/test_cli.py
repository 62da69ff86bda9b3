"""``falign align`` run in-process on a real photo with tiny random checkpoints."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from falign import aligner, cli, paths
from falign.data.formats.ibug import read_pts
from test_aligner import make

FACE = (175, 76, 265, 166)   # dlib's HOG box of the astronaut's face (left, top, right, bottom)


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
    code, err = run(capsys, "align", astronaut, "--model", models["rcsr"], "--box", "170,70,270,170",
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
    names = {p.name for p in out.iterdir()}
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


def test_the_packaged_peer_aligns_a_photo(astronaut, tmp_path, capsys):
    """dlib's ERT ships inside face-recognition-models: `--model dlib-ert-68` needs no results/ file."""
    import json

    code, err = run(capsys, "align", astronaut, "--model", "dlib-ert-68", "--out", tmp_path, "--quiet")
    assert code == 0, err
    record = json.loads((tmp_path / "astronaut_face0.json").read_text())
    assert record["kind"] == "dlib-ert" and len(record["landmarks"]) == 68
    assert record["provenance"]["file"] == "shape_predictor_68_face_landmarks.dat"
    code, err = run(capsys, "align", astronaut, "--model", "dlib-ert-5", "--device", "cuda", "--out", tmp_path)
    assert code == 2 and err.strip() == "falign align: dlib-ert-5: dlib's ERT (dlib-bin) runs on the CPU only"


def test_help_and_bad_box(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["align", "--help"])
    assert exit_.value.code == 0 and "falign align astronaut.png" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["align", "x.png", "--box", "1,2,3"])
    assert exit_.value.code == 2


def test_16_bit_and_palette_images_convert(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256), (4, 1)).round().astype(np.uint16)
    path16 = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path16)
    grey = cli.read_photo(path16)
    assert grey.dtype == np.uint8 and grey.shape == (4, 256, 3)
    assert abs(int(grey[1, 128, 0]) - 128) <= 2 and grey.max() == 255 and grey.min() == 0   # not saturated
    rgb = skimage.data.astronaut()[::8, ::8]
    palette = Image.fromarray(rgb).quantize(64)
    path_p = tmp_path / "palette.png"
    palette.save(path_p)
    assert np.array_equal(cli.read_photo(path_p), np.asarray(palette.convert("RGB")))
