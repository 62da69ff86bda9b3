"""The aligner protocol, self-describing checkpoints and ``falign.load`` on tiny random models; the
input checks of :mod:`falign.kit.inputs` (nothing silently wrong: issue 24)."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import falign
from falign.kit import aligner, inputs
from falign.base import paths
from falign.papers.rcsr import table4 as rcsr_table4
from falign.papers.pifa import aligner as pifa_aligner
from falign.papers.pifa.model import PIFA
from falign.synthface.morphable import builtin_model

PHOTO_BOX = [40.0, 30.0, 100.0, 96.0]


def tiny_pifa() -> PIFA:
    torch.manual_seed(0)
    return PIFA(builtin_model(), scheme="ibug68", size=16, fc_hidden=16, fc_grid=2,
                convs=tuple((4, 3) for _ in range(12))).eval()


def tiny_rcsr() -> torch.nn.Module:
    torch.manual_seed(0)
    model = rcsr_table4.build_model("rcsr", hidden=4, steps=2, patch_size=17, fc_width=16, cnn_width=0.25)
    model.mean_shape.copy_(0.2 + 0.6 * torch.rand(68, 2))
    return model.eval()


def make(kind: str) -> aligner.Aligner:
    if kind == "pifa":
        return aligner.make(tiny_pifa(), "pifa", provenance={"seed": 0})
    return aligner.make(tiny_rcsr(), "rcsr", preprocess={"size": 40}, provenance={"seed": 0})


@pytest.fixture(scope="module", params=["pifa", "rcsr"])
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def tiny(kind):
    return make(kind)


@pytest.fixture(scope="module")
def photo():
    """A smooth random photo: bilinear crops of it change little with sub-pixel shifts."""
    g = np.random.default_rng(0)
    small = g.integers(0, 256, (20, 24, 3)).astype(np.float64)
    big = np.kron(small, np.ones((6, 6, 1)))
    return big.clip(0, 255).astype(np.uint8)          # (120, 144, 3)


def test_protocol_shapes_in_image_coordinates(tiny, photo):
    assert isinstance(tiny, aligner.Predictor)
    boxes = [PHOTO_BOX, [10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 140.0, 110.0]]
    points, visible = tiny.align(photo, boxes)
    assert points.shape == (3, 68, 2) and points.dtype == torch.float32
    assert tiny.predict(photo, boxes).shape == (3, 68, 2)
    if tiny.kind == "pifa":
        assert visible.shape == (3, 68) and visible.dtype == torch.bool
    else:
        assert visible is None
    # An untrained model keeps its initial shape near the box: the points are in photo pixels.
    for b, p in zip(boxes, points):
        centre = torch.tensor([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        assert (p.mean(0) - centre).abs().max() < 0.5 * (b[2] - b[0])
    # One photo per box gives the same as one photo shared by every box.
    assert torch.allclose(tiny.predict([photo, photo, photo], boxes), points)


def test_translation_equivariance(tiny, photo):
    dx, dy = 7, 11
    canvas = np.zeros((photo.shape[0] + 30, photo.shape[1] + 30, 3), np.uint8)
    canvas[dy:dy + photo.shape[0], dx:dx + photo.shape[1]] = photo
    shifted = [PHOTO_BOX[0] + dx, PHOTO_BOX[1] + dy, PHOTO_BOX[2] + dx, PHOTO_BOX[3] + dy]
    a = tiny.predict(photo, [PHOTO_BOX])
    b = tiny.predict(canvas, [shifted])
    assert torch.allclose(b - torch.tensor([dx, dy]), a, atol=1e-3)


def test_crops_follow_the_stored_preprocessing(tiny, photo):
    crops, affines = tiny.crops(photo, [PHOTO_BOX])
    size = tiny.preprocess["size"]
    assert crops.shape == (1, 1 if tiny.preprocess["grey"] else 3, size, size)
    assert torch.equal((crops * 255).round(), crops * 255)        # uint8 levels, as training crops
    assert tiny.kind != "rcsr" or tiny.preprocess == {"size": 40, "margin": 0.1, "grey": True, "padding": "border"}


def test_checkpoint_round_trip(tiny, photo, tmp_path):
    path = tiny.save(tmp_path / "tiny.pt")
    again = aligner.load(path)
    assert type(again) is type(tiny) and again.scheme == tiny.scheme and again.preprocess == tiny.preprocess
    assert again.provenance == {"seed": 0} and again.source == str(path)
    boxes = [PHOTO_BOX, [5.0, 5.0, 50.0, 50.0]]
    assert torch.equal(again.predict(photo, boxes), tiny.predict(photo, boxes))
    assert torch.equal(falign.load(str(path)).predict(photo, boxes), tiny.predict(photo, boxes))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == aligner.FORMAT and raw["kind"] == tiny.kind and raw["code_version"]


def test_save_reads_the_constructor_arguments_back(tmp_path):
    net = tiny_pifa()
    args = pifa_aligner.PIFAAligner.describe(net)
    assert args["size"] == 16 and args["fc_hidden"] == 16 and args["fc_grid"] == 2 and len(args["convs"]) == 12
    aligner.save(tmp_path / "p.pt", net, "pifa")
    with pytest.raises(ValueError, match="do not rebuild"):
        aligner.save(tmp_path / "q.pt", net, "pifa", model_args={**args, "fc_hidden": 8})
    with pytest.raises(ValueError, match="size"):
        aligner.save(tmp_path / "r.pt", tiny_rcsr(), "rcsr")        # RCSR's crop size is not in the model
    assert not (tmp_path / "q.pt").exists() and not (tmp_path / "r.pt").exists()


def _one_line_naming(err, path) -> str:
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message
    return message


def stamped(ckpt: dict) -> dict:
    """A checkpoint edited on purpose, with its content hash recomputed: reaches the checks after the hash."""
    return {**ckpt, "content_hash": aligner.content_hash(ckpt)}


def test_bad_checkpoints_name_the_file(tmp_path):
    good = make("rcsr").save(tmp_path / "good.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    text = tmp_path / "text.pt"
    text.write_text("hello\n")
    ckpt = torch.load(good, weights_only=True)
    wrong_kind = tmp_path / "kind.pt"
    torch.save(stamped({**ckpt, "kind": "nope"}), wrong_kind)
    version = tmp_path / "version.pt"
    torch.save({**ckpt, "format_version": 99}, version)
    mismatched = tmp_path / "mismatched.pt"
    torch.save(stamped({**ckpt, "model_args": {**ckpt["model_args"], "hidden": 2}}), mismatched)
    extra = tmp_path / "extra.pt"
    torch.save(stamped({**ckpt, "state_dict": {**ckpt["state_dict"], "surplus": torch.zeros(1)}}), extra)
    edited = tmp_path / "edited.pt"
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "hidden": 2}}, edited)
    unhashed = tmp_path / "unhashed.pt"
    torch.save({k: v for k, v in ckpt.items() if k != "content_hash"}, unhashed)
    old = tmp_path / "old.pt"
    torch.save({**{k: v for k, v in ckpt.items() if k != "content_hash"}, "format_version": 1}, old)
    expected = {foreign: "bare state_dict", truncated: "cannot read", text: "cannot read",
                wrong_kind: "unknown aligner kind", version: "format version 99", mismatched: "shape mismatch",
                extra: "unexpected keys: surplus", edited: "content hash mismatch",
                unhashed: "no content hash", old: "format version 1",
                tmp_path / "missing.pt": "no such checkpoint"}
    for path, what in expected.items():
        with pytest.raises(aligner.CheckpointError) as err:
            aligner.load(path)
        assert what in _one_line_naming(err, path)


def test_names_map_to_shipped_weights(tmp_path, monkeypatch, photo):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    assert aligner.available() == []
    with pytest.raises(aligner.UnknownModelError, match="no chapter has shipped weights yet"):
        falign.load("rcsr")
    tiny = make("rcsr")
    tiny.save(tmp_path / "tinyrcsr" / "aligner.pt")
    assert aligner.available() == ["tinyrcsr"]
    with pytest.raises(aligner.UnknownModelError) as err:
        falign.load("nonexistent")
    assert "'nonexistent'" in str(err.value) and "shipped: tinyrcsr" in str(err.value)
    assert "make reproduce PAPER=" in str(err.value)
    assert torch.equal(falign.load("tinyrcsr").predict(photo, [PHOTO_BOX]), tiny.predict(photo, [PHOTO_BOX]))


class Centre(aligner.Aligner):
    """A peer that places every point at the box centre: proves the protocol, no weights. With
    ``preprocess["bad"]``, face 1's point 3 is that value instead (NaN: a diverged model)."""

    @classmethod
    def build(cls, model_args):
        return torch.nn.Linear(1, 1)

    @classmethod
    def describe(cls, model):
        return {}

    def forward_crops(self, crops, boxes):
        points = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None].repeat(1, 5, 1)
        if "bad" in self.preprocess:
            points[1:2, 3] = self.preprocess["bad"]
        return points, None


@pytest.fixture
def centre():
    """A :class:`Centre` aligner for ``preprocess``, registered for the test only."""
    aligner.register("centre-test", Centre)
    yield lambda **preprocess: aligner.make(torch.nn.Linear(1, 1), "centre-test", preprocess={"size": 8, **preprocess},
                                            scheme="five")
    aligner.KINDS.pop("centre-test")


def test_registry_accepts_a_new_kind(centre, photo):
    points = centre().predict(photo, [PHOTO_BOX])
    assert torch.allclose(points[0], torch.tensor([70.0, 63.0]).expand(5, 2), atol=1e-4)


def test_bad_boxes_and_images(photo):
    tiny = make("rcsr")
    with pytest.raises(inputs.InputError, match=r"box 0 .* under 1 px"):
        tiny.predict(photo, [[10, 10, 5, 20]])
    with pytest.raises(inputs.InputError, match="2 images for 1 boxes"):
        tiny.predict([photo, photo], [PHOTO_BOX])
    grey = photo.mean(2).astype(np.uint8)
    assert tiny.predict(grey, [PHOTO_BOX]).shape == (1, 68, 2)


def test_run_provenance_records_the_run():
    from types import SimpleNamespace

    trained = {"training": "rcsr main", "seed": 3, "precision": "float32", "memory_format": "contiguous"}
    run = SimpleNamespace(paper="rcsr", scale="smoke", data="synthetic", seed=3, datasets={"train": "abc123"},
                          device=torch.device("cpu"), trainings=lambda: [trained])
    record = aligner.run_provenance(run, epochs=np.int64(2))
    assert {"commit", "dirty", "torch"} <= set(record) and record["epochs"] == 2 and type(record["epochs"]) is int
    assert record["scale"] == "smoke" and record["seed"] == 3 and record["datasets"] == {"train": "abc123"}
    assert record["trainings"] == [trained] and {"cpu_capability", "native_bf16", "threads"} <= set(record["machine"])
    buffer = io.BytesIO()
    torch.save(record, buffer)         # torch.__version__ is a str subclass: stored as a plain str
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == record


# --------------------------------------------------------------------------------------------------
# Issue 24: images are converted only where that is unambiguous, and refused otherwise
# --------------------------------------------------------------------------------------------------
def one_line(err, *words) -> str:
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


@pytest.fixture(scope="module")
def rcsr_tiny():
    return make("rcsr")


def test_float_images_are_read_as_0_1_or_by_value_range(rcsr_tiny, photo):
    expected = rcsr_tiny.predict(photo, [PHOTO_BOX])
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(photo.astype(np.float32), [PHOTO_BOX])    # [0, 255] floats: never clipped to white
    one_line(err, "value_range=255")
    assert torch.equal(rcsr_tiny.predict(photo.astype(np.float32), [PHOTO_BOX], value_range=255), expected)
    assert torch.equal(rcsr_tiny.predict(photo / 255.0, [PHOTO_BOX]), expected)
    assert torch.equal(rcsr_tiny.predict(torch.from_numpy(photo / 255.0), [PHOTO_BOX]), expected)
    for bad, words in ((photo / 255.0 - 0.5, "negative"), (np.where(photo > 100, np.nan, photo / 255.0), "non-finite")):
        with pytest.raises(inputs.InputError) as err:
            rcsr_tiny.predict(bad, [PHOTO_BOX])
        one_line(err, words)


def test_deep_integer_images_are_scaled_from_their_range(rcsr_tiny, photo, tmp_path):
    expected = rcsr_tiny.predict(photo, [PHOTO_BOX])
    assert torch.equal(rcsr_tiny.predict(photo.astype(np.uint16) * 257, [PHOTO_BOX]), expected)
    assert torch.equal(rcsr_tiny.predict(photo.astype(np.uint16) * 16, [PHOTO_BOX], value_range=4080), expected)
    grey = photo[..., 0]
    pil16 = Image.fromarray(grey.astype(np.uint16) * 257)
    assert pil16.mode.startswith("I;16")
    assert torch.equal(rcsr_tiny.predict(pil16, [PHOTO_BOX]), rcsr_tiny.predict(grey, [PHOTO_BOX]))
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(photo.astype(np.int64), [PHOTO_BOX])      # np.array of Python ints: no usual range
    one_line(err, "int64", "value_range")
    assert np.array_equal(inputs.as_rgb8(photo.astype(np.int64), value_range=255), photo)


def test_refused_images_say_what_was_given(rcsr_tiny, photo):
    cases = {"bool": (photo > 128, "bool"), "none": (None, "got None"), "empty": (np.zeros((0, 0, 3), np.uint8), "empty"),
             "list": ([[1, 2], [3, 4]], "2 images for 1 boxes"), "chw": (np.zeros((3, 20, 20), np.uint8), "(3, 20, 20)"),
             "number": (3.0, "got float")}
    for name, (image, words) in cases.items():
        with pytest.raises(inputs.InputError) as err:
            rcsr_tiny.predict(image, [PHOTO_BOX])
        one_line(err, words)


def test_paths_alpha_and_tensors_are_read(rcsr_tiny, photo, tmp_path):
    expected = rcsr_tiny.predict(photo, [PHOTO_BOX])
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    assert torch.equal(rcsr_tiny.predict(str(path), [PHOTO_BOX]), expected)
    assert torch.equal(rcsr_tiny.predict(path, [PHOTO_BOX]), expected)
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert torch.equal(rcsr_tiny.predict(rgba, [PHOTO_BOX]), expected)
    assert torch.equal(rcsr_tiny.predict(torch.from_numpy(photo), [PHOTO_BOX]), expected)
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(str(tmp_path / "missing.png"), [PHOTO_BOX])
    assert one_line(err, "no such file").startswith(str(tmp_path / "missing.png"))
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict([photo, None], [PHOTO_BOX, PHOTO_BOX])
    assert one_line(err, "got None").startswith("images[1]:")


def test_bgr_arrays_are_reversed(photo):
    tiny = make("pifa")
    expected = tiny.predict(photo, [PHOTO_BOX])
    bgr = np.ascontiguousarray(photo[..., ::-1])
    assert torch.equal(tiny.predict(bgr, [PHOTO_BOX], bgr=True), expected)
    assert not torch.equal(tiny.predict(bgr, [PHOTO_BOX]), expected)          # the colour order matters
    assert np.array_equal(inputs.as_rgb8(bgr, bgr=True), photo)


def test_read_photo_reads_frame_0_of_an_animation(tmp_path, photo):
    path = tmp_path / "anim.gif"
    frames = [Image.fromarray(photo), Image.fromarray(255 - photo)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="2 frames; frame 0 was read"):
        image = inputs.read_photo(path)
    assert image.shape == photo.shape and image.dtype == np.uint8
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(inputs.InputError, match="empty file"):
        inputs.read_photo(tmp_path / "empty.png")


# --------------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------------
def test_boxes_are_4_numbers_each(rcsr_tiny, photo):
    for boxes in ([PHOTO_BOX + [0.9]], np.ones((4, 5)), [[1, 2, 3]], np.zeros((0, 4))):
        with pytest.raises(inputs.InputError) as err:
            rcsr_tiny.predict(photo, boxes)
        one_line(err, "4 numbers per box" if np.shape(boxes)[0] else "no face boxes")
    assert rcsr_tiny.predict(photo, PHOTO_BOX).shape == (1, 68, 2)                 # shape (4,): one face
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(photo, [PHOTO_BOX, PHOTO_BOX + [0.9]])
    one_line(err, "not an array of numbers")


def test_boxes_must_be_finite_and_a_pixel_wide(rcsr_tiny, photo):
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(photo, [PHOTO_BOX, [10, 10, 10.0001, 40]])
    one_line(err, "box 1", "10.0001", "under 1 px")
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(photo, [[10, 10, math.nan, 40]])
    one_line(err, "box 0", "not finite")


def test_boxes_must_be_half_inside_their_photo(rcsr_tiny, photo):
    with pytest.raises(inputs.InputError) as err:
        rcsr_tiny.predict(photo, [PHOTO_BOX, [900, 900, 1000, 1000]])
    one_line(err, "box 1", "outside the 144x120 image", "0% inside")
    small = photo[:50, :50]
    with pytest.raises(inputs.InputError) as err:       # one photo per box: each box against its own photo
        rcsr_tiny.predict([photo, small], [PHOTO_BOX, PHOTO_BOX])
    one_line(err, "box 1", "50x50 image")
    partly = [-20.0, -20.0, 40.0, 40.0]                  # (60 - 19.5)^2 / 60^2: 46% inside
    assert inputs.check_boxes([partly]).shape == (1, 4)
    with pytest.raises(inputs.InputError, match="46% inside"):
        inputs.check_boxes([partly], (144, 120))
    assert inputs.check_boxes([[-10.0, -10.0, 50.0, 50.0]], (144, 120)).dtype == np.float32


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------
def test_check_landmarks_flags_nan_and_far_points():
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float32)
    points = np.full((4, 3, 2), 5.0, np.float32)
    points[1, 2, 0] = np.nan
    points[2, 0, 1] = 20.5            # 10.5 px (1.05 box heights) below the box
    points[3, 0, 0] = -9.5            # inside the 1-box-size allowance
    assert inputs.check_landmarks(points, boxes).tolist() == [True, False, False, True]
    assert inputs.check_landmarks(points, boxes, far=2.0).tolist() == [True, False, True, True]
    problems = inputs.landmark_problems(torch.from_numpy(points), boxes)
    assert sorted(problems) == [1, 2] and "non-finite" in problems[1] and problems[2].startswith("face 2 (")


def test_non_finite_or_far_landmarks_are_an_error_not_a_result(centre, photo):
    for bad, words in ((math.nan, "non-finite"), (1e6, "outside the box")):
        model = centre(bad=bad)
        with pytest.raises(inputs.PredictionError) as err:
            model.predict(photo, [PHOTO_BOX, [10.0, 12.0, 60.0, 70.0]])
        one_line(err, "face 1", words)
        assert "face 0" not in str(err.value) and err.value.ok.tolist() == [True, False]
        assert err.value.points.shape == (2, 5, 2)
        assert model.predict(photo, [PHOTO_BOX]).shape == (1, 5, 2)       # face 0 alone is fine


def test_detect_and_align_finds_and_aligns_in_one_call(centre):
    """The astronaut beside her mirror image: two faces at the default min_score (the mission patches, 0.15
    and 0.05, are dropped), four at dlib's 0; largest keeps one; given boxes skip the detector; a face whose
    landmarks cannot be a face says why, without landmarks; no face: []."""
    import skimage.data

    pair = np.concatenate([skimage.data.astronaut(), skimage.data.astronaut()[:, ::-1]], 1)
    tiny = centre()
    faces = tiny.detect_and_align(pair)
    assert [round(f["score"], 1) for f in faces] == [1.3, 1.1] and all(f["problem"] is None for f in faces)
    assert faces[0]["box"].shape == (4,) and faces[0]["landmarks"].shape == (5, 2) and faces[0]["visible"] is None
    box = faces[0]["box"]
    assert np.allclose(faces[0]["landmarks"], [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])   # Centre's points
    assert len(tiny.detect_and_align(pair, min_score=0)) == 4
    assert len(tiny.detect_and_align(pair, min_score=0, largest=True)) == 1
    given = tiny.detect_and_align(pair, [[170, 70, 270, 170], [0, 0, 300, 300]], largest=True)
    assert len(given) == 1 and given[0]["score"] is None and given[0]["box"].tolist() == [0, 0, 300, 300]
    bad = centre(bad=math.nan).detect_and_align(pair, [[170, 70, 270, 170], [10, 12, 60, 70]])
    assert bad[0]["problem"] is None and bad[1]["landmarks"] is None and "non-finite" in bad[1]["problem"]
    assert tiny.detect_and_align(np.full((100, 100, 3), 128, np.uint8)) == []


# --------------------------------------------------------------------------------------------------
# Checkpoints verified on load
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return make("rcsr").save(tmp_path_factory.mktemp("ckpt") / "good.pt")


def test_non_finite_weights_are_refused_on_save_and_load(saved, tmp_path):
    ckpt = torch.load(saved, weights_only=True)
    name = max(ckpt["state_dict"], key=lambda k: ckpt["state_dict"][k].numel())
    state = {**ckpt["state_dict"], name: ckpt["state_dict"][name].clone()}
    state[name].view(-1)[3] = math.nan
    for label, edited in (("stamped", stamped({**ckpt, "state_dict": state})),
                          ("old", {**{k: v for k, v in ckpt.items() if k != "content_hash"}, "format_version": 1,
                                   "state_dict": state})):
        path = tmp_path / f"{label}.pt"
        torch.save(edited, path)
        with pytest.raises(aligner.CheckpointError) as err:
            falign.load(path)
        assert "1 non-finite" in _one_line_naming(err, path) and repr(name) in str(err.value)
    model = tiny_rcsr()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = math.inf
    with pytest.raises(ValueError, match="1 non-finite"):
        aligner.save(tmp_path / "inf.pt", model, "rcsr", preprocess={"size": 40})
    assert not (tmp_path / "inf.pt").exists()


def test_a_shipped_aligner_with_non_finite_weights_is_listed_as_refused(saved, tmp_path, monkeypatch, photo, capsys):
    """A chapter that loops over the shipped aligners (the photo page, the comparison, the benchmarks) shows
    one with NaN weights as refused, naming its file, and keeps the others: it neither stops nor scores NaN."""
    from falign.chapters import aligner as photo_page

    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    ckpt = torch.load(saved, weights_only=True)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / aligner.FILENAME).write_bytes(saved.read_bytes())
    state = {k: v.clone() for k, v in ckpt["state_dict"].items()}
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = math.nan
    broken = tmp_path / "broken" / aligner.FILENAME
    broken.parent.mkdir()
    torch.save(stamped({**ckpt, "state_dict": state}), broken)
    loaded, refused = aligner.shipped()
    assert list(loaded) == ["good"] and list(refused) == ["broken"]
    assert refused["broken"].startswith(f"{broken}: 1 non-finite") and "\n" not in refused["broken"]
    assert torch.isfinite(loaded["good"].predict(photo, [PHOTO_BOX])).all()
    assert list(photo_page.shipped()) == ["good", "dlib-ert-68 (peer)"]     # the real-trained peer beside it
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 1 and shown[0].startswith("broken is not shown: aligner.pt: 1 non-finite"), shown


def test_flipped_bytes_are_a_hash_mismatch(saved, tmp_path):
    ckpt = torch.load(saved, weights_only=True)
    biggest = max(ckpt["state_dict"].values(), key=torch.Tensor.numel)
    data = bytearray(saved.read_bytes())
    start = data.find(biggest.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    assert start > 0 and biggest.numel() * biggest.element_size() >= 2000
    data[start:start + 2000] = bytes(b ^ 0x5A for b in data[start:start + 2000])
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(aligner.CheckpointError) as err:
        aligner.load(path)
    assert "content hash mismatch: the file was changed after export" in _one_line_naming(err, path)


def test_an_edited_scheme_is_refused(saved, tmp_path):
    ckpt = torch.load(saved, weights_only=True)
    edited, restamped = tmp_path / "edited.pt", tmp_path / "restamped.pt"
    torch.save({**ckpt, "scheme": "ibug49"}, edited)
    torch.save(stamped({**ckpt, "scheme": "ibug49"}), restamped)
    with pytest.raises(aligner.CheckpointError) as err:
        aligner.load(edited)
    assert "content hash mismatch" in _one_line_naming(err, edited)
    with pytest.raises(aligner.CheckpointError) as err:
        aligner.load(restamped)
    assert "'ibug49' has 49 points, but the network returns 68" in _one_line_naming(err, restamped)
    with pytest.raises(ValueError, match="49 points"):
        aligner.save(tmp_path / "wrong.pt", tiny_rcsr(), "rcsr", preprocess={"size": 40}, scheme="ibug49")


def test_invalid_preprocessing_is_refused_on_load(saved, tmp_path):
    ckpt = torch.load(saved, weights_only=True)
    cases = {"margin-nan": ({"margin": math.nan}, "'margin' must be a finite number >= 0, got nan"),
             "margin-neg": ({"margin": -0.2}, "'margin'"), "size-zero": ({"size": 0}, "'size'"),
             "size-inf": ({"size": math.inf}, "'size'"), "grey": ({"grey": "yes"}, "'grey'"),
             "padding": ({"padding": "reflect"}, "'padding'")}
    for name, (change, words) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(stamped({**ckpt, "preprocess": {**ckpt["preprocess"], **change}}), path)
        with pytest.raises(aligner.CheckpointError) as err:
            aligner.load(path)
        assert words in _one_line_naming(err, path)
    with pytest.raises(ValueError, match="margin"):
        aligner.make(tiny_rcsr(), "rcsr", preprocess={"size": 40, "margin": math.nan})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine or torch build without CUDA")
def test_an_unusable_device_is_one_line(saved):
    for device in ("cuda", "cuda:0"):
        with pytest.raises(aligner.CheckpointError) as err:
            aligner.load(saved, device=device)
        one_line(err, f"device {device!r}", "CUDA is not available")
    with pytest.raises(aligner.CheckpointError) as err:
        aligner.load(saved, device="gpu")
    one_line(err, "device 'gpu'", "not a torch device")
    with pytest.raises(ValueError, match="CUDA is not available"):
        make("rcsr").to("cuda")


@pytest.mark.parametrize("name", ["pifa", "rcsr", "ccnn", "msrrn", "cfdrnn"])
def test_shipped_weights_load_verified(name):
    path = paths.RESULTS_DIR / name / aligner.FILENAME
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format_version"] == aligner.FORMAT_VERSION and raw["content_hash"] == aligner.content_hash(raw)
    model = aligner.load(name)
    assert model.source == str(path) and model.n_points == {"pifa": 34, "ccnn": 5}.get(name, 68)
