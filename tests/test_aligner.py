"""The aligner protocol, self-describing checkpoints and ``falign.load`` on tiny random models."""

import io

import numpy as np
import pytest
import torch

import falign
from falign import aligner, paths
from falign.models import rcsr_table4
from falign.models.pifa import PIFA
from falign.morphable import builtin_model

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
    args = aligner.PIFAAligner.describe(net)
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
    torch.save({**ckpt, "kind": "nope"}, wrong_kind)
    version = tmp_path / "version.pt"
    torch.save({**ckpt, "format_version": 99}, version)
    mismatched = tmp_path / "mismatched.pt"
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "hidden": 2}}, mismatched)
    extra = tmp_path / "extra.pt"
    torch.save({**ckpt, "state_dict": {**ckpt["state_dict"], "surplus": torch.zeros(1)}}, extra)
    expected = {foreign: "bare state_dict", truncated: "cannot read", text: "cannot read",
                wrong_kind: "unknown aligner kind", version: "format version 99", mismatched: "shape mismatch",
                extra: "unexpected keys: surplus",
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


def test_registry_accepts_a_new_kind(photo):
    class Centre(aligner.Aligner):
        """A peer that places every point at the box centre: proves the protocol, no weights."""

        @classmethod
        def build(cls, model_args):
            return torch.nn.Linear(1, 1)

        @classmethod
        def describe(cls, model):
            return {}

        def forward_crops(self, crops, boxes):
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            return centre[:, None].expand(-1, 5, 2), None

    aligner.register("centre-test", Centre)
    try:
        a = aligner.make(torch.nn.Linear(1, 1), "centre-test", preprocess={"size": 8}, scheme="five")
        points = a.predict(photo, [PHOTO_BOX])
        assert torch.allclose(points[0], torch.tensor([70.0, 63.0]).expand(5, 2), atol=1e-4)
    finally:
        aligner.KINDS.pop("centre-test")


def test_bad_boxes_and_images(photo):
    tiny = make("rcsr")
    with pytest.raises(ValueError, match="x2 > x1"):
        tiny.predict(photo, [[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="2 images for 1 boxes"):
        tiny.predict([photo, photo], [PHOTO_BOX])
    grey = photo.mean(2).astype(np.uint8)
    assert tiny.predict(grey, [PHOTO_BOX]).shape == (1, 68, 2)


def test_run_provenance_records_the_run():
    from types import SimpleNamespace

    run = SimpleNamespace(paper="rcsr", scale="smoke", data="synthetic", seed=3, datasets={"train": "abc123"},
                          device=torch.device("cpu"))
    record = aligner.run_provenance(run, epochs=np.int64(2))
    assert {"commit", "dirty", "torch"} <= set(record) and record["epochs"] == 2 and type(record["epochs"]) is int
    assert record["scale"] == "smoke" and record["seed"] == 3 and record["datasets"] == {"train": "abc123"}
    buffer = io.BytesIO()
    torch.save(record, buffer)         # torch.__version__ is a str subclass: stored as a plain str
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == record
