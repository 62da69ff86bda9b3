"""falign.synthface.morphable: the built-in procedural 3DMM, camera, normals, fitting and the BFM loaders."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from falign.synthface import mesh as facemesh, morphable as mm


@pytest.fixture(scope="module")
def model() -> mm.MorphableModel:
    return mm.builtin_model()


def _random_faces(model, n, seed, max_yaw=60.0):
    """Modest shapes (half a sigma) seen under random poses; returns p, M, 2D landmarks."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    p = 0.5 * torch.randn(n, model.n_params, generator=g) * model.sigma
    M = mm.pose_to_M(uniform(0.4, 1.5), uniform(-max_yaw, max_yaw), uniform(-20, 20), uniform(-20, 20),
                     uniform(80, 120), uniform(80, 120))
    return p, M, mm.project(M, model.landmarks(p))


# ---- the built-in model ------------------------------------------------------------------------
def test_builtin_model_layout(model):
    V = model.mean.shape[0]
    assert 3000 <= V <= 6500
    assert model.id_basis.shape == (199, V, 3) and model.exp_basis.shape == (29, V, 3)
    assert model.id_sigma.shape == (199,) and model.exp_sigma.shape == (29,) and model.n_params == 228
    assert model.mean.dtype == model.id_basis.dtype == torch.float32
    assert model.triangles.dtype == torch.int64 and model.triangles.min() == 0
    assert model.triangles.max() == V - 1
    lm = model.landmark_vertices["ibug68"]
    assert lm.dtype == torch.int64 and lm.shape == (68,) and len(set(lm.tolist())) == 68
    assert model.vertex_labels.shape == (V,)
    counts = torch.bincount(model.vertex_labels, minlength=len(mm.VERTEX_LABELS))
    assert (counts > 0).all(), dict(zip(mm.VERTEX_LABELS, counts.tolist()))
    assert len(model.id_names) == 199 and "jaw_open" in model.exp_names


def test_units_face_is_about_150_wide(model):
    lm = model.mean[model.landmark_vertices["ibug68"]]
    assert 135 < (lm[16] - lm[0]).norm() < 160  # jaw ends, at the ears
    assert 160 < model.mean[:, 1].max() - model.mean[:, 1].min() < 200  # chin to hairline
    assert 85 < (lm[45] - lm[36]).norm() < 100  # outer eye corners


def test_bases_orthonormal_and_sigma_decreasing(model):
    for basis, sigma in ((model.id_basis, model.id_sigma), (model.exp_basis, model.exp_sigma)):
        B = basis.reshape(len(basis), -1).double()
        assert torch.allclose(B @ B.T, torch.eye(len(B), dtype=torch.float64), atol=1e-5)
        assert (sigma > 0).all() and (sigma[1:] <= sigma[:-1]).all()


def test_samples_move_landmarks_by_a_few_percent(model):
    g = torch.Generator().manual_seed(0)
    p = torch.randn(256, model.n_params, generator=g) * model.sigma
    moved = (model.landmarks(p) - model.mean[model.landmark_vertices["ibug68"]]).norm(dim=-1)
    rms = moved.pow(2).mean().sqrt() / 150
    assert 0.01 < rms < 0.06


def test_build_is_deterministic(model):
    mm.builtin_model.cache_clear()
    again = mm.builtin_model()
    assert again is not model
    for name in ("mean", "id_basis", "id_sigma", "exp_basis", "exp_sigma", "triangles", "vertex_labels"):
        assert torch.equal(getattr(again, name), getattr(model, name)), name
    assert torch.equal(again.landmark_vertices["ibug68"], model.landmark_vertices["ibug68"])


def test_mesh_has_no_folded_triangles():
    """Every triangle keeps its counter-clockwise orientation in the (theta, y) parameter plane,
    so snapping rows to lids and lips and vertices to landmarks folded nothing."""
    mesh = facemesh.build_mesh()
    uv = np.stack([mesh["theta"] * 70, mesh["param_y"]], 1)[mesh["triangles"]]
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    assert (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).min() > 0.1


def test_landmarks_in_plausible_places(model):
    lm = model.mean[model.landmark_vertices["ibug68"]]
    M = mm.pose_to_M(1.0, 0.0, 0.0, 0.0, 100.0, 100.0)
    u = mm.project(M, lm[None])[0]  # image coordinates, y down
    x, y = u[:, 0], u[:, 1]
    eyes, nose_tip, mouth = y[36:48].mean(), y[30], y[48:68].mean()
    assert y[17:27].mean() < eyes < nose_tip < mouth < y[8]  # brows, eyes, nose, mouth, chin
    assert int(y.argmax()) == 8  # the chin is the lowest landmark
    assert (torch.diff(x[0:9]) > 0).all() and (torch.diff(x[8:17]) > 0).all()  # jaw left to right
    assert (torch.diff(x[17:27]) > 0).all() and (torch.diff(x[31:36]) > 0).all()
    assert x[36] < x[39] < x[42] < x[45] and x[48] < x[54] and x[60] < x[64]
    assert y[37] < y[41] and y[44] < y[46] and y[51] < y[62] < y[66] < y[57]  # lids, lips
    assert (x[27:31] - 100).abs().max() < 1e-4  # the nose bridge is on the midline
    flip = [16 - i for i in range(17)]
    flip += [26 - i for i in range(10)] + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    flip += [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    flip += [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    mirrored = lm[flip] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(mirrored, lm, atol=1e-4)  # the mean face is symmetric
    nose = lm[30]
    assert nose[2] == model.mean[:, 2].max()  # the nose tip is the most forward point


def test_labels_sit_where_the_landmarks_say(model):
    lab = model.vertex_labels[model.landmark_vertices["ibug68"]]
    named = {name: i for i, name in enumerate(mm.VERTEX_LABELS)}
    assert (lab[list(range(48, 60))] == named["lip"]).all()
    assert (lab[[61, 62, 63, 65, 66, 67]] == named["mouth"]).all()
    assert (lab[list(range(17, 27))] == named["brow"]).all()
    centre = model.mean[model.landmark_vertices["ibug68"][42:48]].mean(0)
    nearest = (model.mean - centre).norm(dim=1).argmin()
    assert model.vertex_labels[nearest] == named["iris"]


def test_shape_is_linear_and_batched(model):
    idx = model.landmark_vertices["ibug68"]
    assert torch.equal(model.shape(torch.zeros(model.n_params)), model.mean)
    p = torch.randn(3, model.n_params) * model.sigma
    S = model.shape(p)
    assert S.shape == (3, len(model.mean), 3)
    expected = model.mean + torch.einsum("bk,kvc->bvc", p[:, :199], model.id_basis) \
        + torch.einsum("bk,kvc->bvc", p[:, 199:], model.exp_basis)
    assert torch.allclose(S, expected, atol=1e-3)
    assert torch.allclose(model.landmarks(p), S[:, idx], atol=1e-4)
    assert model.landmarks(p[0]).shape == (68, 3)
    with pytest.raises(ValueError, match="coefficients"):
        model.shape(torch.zeros(10))


def test_derived_scheme_landmarks_follow_convert(model):
    from falign.measure.landmarks import convert
    p = torch.randn(2, model.n_params) * model.sigma
    five = model.landmarks(p, "five")
    assert five.shape == (2, 5, 3)
    assert torch.allclose(five[..., :2], convert(model.landmarks(p)[..., :2], "ibug68", "five"), atol=1e-4)


def test_expressions_open_the_mouth_and_close_the_eyes(model):
    lm = model.landmark_vertices["ibug68"]

    def gap(p, upper, lower):
        S = model.shape(p)
        return (S[lm[upper], 1] - S[lm[lower], 1]).item()

    p = torch.zeros(model.n_params)
    k = model.exp_names.index("jaw_open")
    p[199 + k] = 2 * model.exp_sigma[k]
    assert gap(p, 62, 66) > 8 > gap(torch.zeros(model.n_params), 62, 66)
    p = torch.zeros(model.n_params)
    k = model.exp_names.index("eye_close_left")  # the subject's left eye: iBUG 42-47
    p[199 + k] = 2 * model.exp_sigma[k]
    assert abs(gap(p, 44, 46)) < 1.5 < 8 < gap(p, 37, 41)


def test_to_device_copies(model):
    moved = model.to("cpu")
    assert moved is not model and torch.equal(moved.mean, model.mean)
    assert moved.landmark_vertices["ibug68"].device.type == "cpu"


# ---- camera ------------------------------------------------------------------------------------
def test_project_hand_computed():
    M = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]])
    S = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 2.0, 1.0]]])
    expected = torch.tensor([[[1 - 3 + 4, 5 - 7 + 8], [0.5 + 4 + 3 + 4, 2.5 + 12 + 7 + 8]]])
    assert torch.allclose(mm.project(M, S), expected)
    assert torch.allclose(mm.project(M[0], S[0]), expected[0])


def test_frontal_pose_and_depth_axis():
    M = mm.pose_to_M(2.0, 0.0, 0.0, 0.0, 10.0, 20.0)
    assert torch.allclose(M, torch.tensor([[[2.0, 0, 0, 10], [0, -2.0, 0, 20]]]), atol=1e-6)
    assert torch.allclose(mm.depth_axis(M), torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-6)


def test_pose_sign_conventions(model):
    lm = model.mean[model.landmark_vertices["ibug68"]][None]
    yawed = mm.pose_to_M(1.0, 30.0, 0.0, 0.0, 0.0, 0.0)
    u = mm.project(yawed, lm)[0]
    assert u[30, 0] > (u[0, 0] + u[16, 0]) / 2 + 10  # yaw > 0: the nose turns to the image right
    depth = lm[0] @ mm.depth_axis(yawed)[0]
    assert depth[0] > depth[16]  # ... and the image-left jaw comes nearer
    pitched = mm.project(mm.pose_to_M(1.0, 0.0, 30.0, 0.0, 0.0, 0.0), lm)[0]
    frontal = mm.project(mm.pose_to_M(1.0, 0.0, 0.0, 0.0, 0.0, 0.0), lm)[0]
    assert pitched[30, 1] - pitched[27, 1] > frontal[30, 1] - frontal[27, 1]  # pitch > 0 looks down
    rolled = mm.project(mm.pose_to_M(1.0, 0.0, 0.0, 10.0, 0.0, 0.0), lm)[0]
    assert rolled[45, 1] < rolled[36, 1]  # roll > 0: counter-clockwise in the image


def test_pose_round_trip():
    g = torch.Generator().manual_seed(1)
    n = 200
    pose = {
        "scale": 0.1 + 3 * torch.rand(n, generator=g, dtype=torch.float64),
        "yaw": (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 85,
        "pitch": (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 80,
        "roll": (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 170,
        "tx": torch.randn(n, generator=g, dtype=torch.float64) * 50,
        "ty": torch.randn(n, generator=g, dtype=torch.float64) * 50,
    }
    M = mm.pose_to_M(**pose)
    assert M.shape == (n, 2, 4) and M.dtype == torch.float64
    back = mm.M_to_pose(M)
    for key, value in pose.items():
        assert torch.allclose(back[key], value, atol=1e-6), key
    assert torch.allclose(mm.pose_to_M(**back), M, atol=1e-9)


def test_M_to_pose_orthonormalises_noisy_rows():
    M = mm.pose_to_M(1.5, 20.0, -10.0, 5.0, 3.0, 4.0)
    noisy = M + 0.01 * torch.tensor([[[1.0, -1.0, 0.5, 0.0], [0.3, 0.2, -1.0, 0.0]]])
    pose = mm.M_to_pose(noisy)
    assert abs(pose["yaw"].item() - 20) < 1.5 and abs(pose["pitch"].item() + 10) < 1.5
    assert abs(pose["scale"].item() - 1.5) < 0.03


# ---- normals -----------------------------------------------------------------------------------
def _sphere(n_lat=12, n_lon=24):
    lat = torch.linspace(-80, 80, n_lat, dtype=torch.float64).deg2rad()
    lon = torch.linspace(-180, 180, n_lon + 1, dtype=torch.float64)[:-1].deg2rad()
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    verts = torch.stack([lo.sin() * la.cos(), la.sin(), lo.cos() * la.cos()], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n_lat - 1), torch.arange(n_lon), indexing="ij")
    v00, v01 = i * n_lon + j, i * n_lon + (j + 1) % n_lon
    v10, v11 = v00 + n_lon, v01 + n_lon
    tris = torch.cat([torch.stack([v00, v01, v11], -1).reshape(-1, 3), torch.stack([v00, v11, v10], -1).reshape(-1, 3)])
    return verts, tris


def test_vertex_normals_flat_and_sphere():
    flat = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])  # counter-clockwise seen from +z
    n = mm.vertex_normals(flat[None], tris)
    assert torch.allclose(n, torch.tensor([0.0, 0, 1]).expand(1, 4, 3))
    verts, tris = _sphere()
    scaled = torch.stack([verts * 2, verts * 5])
    n = mm.vertex_normals(scaled, tris)
    assert n.shape == (2, len(verts), 3)
    assert torch.allclose(n.norm(dim=-1), torch.ones(2, len(verts), dtype=torch.float64))
    assert ((n * verts).sum(-1) > 0.95).all()  # outward


def test_face_normals_outward_and_sides_hide_at_large_yaw(model):
    n = mm.vertex_normals(model.mean, model.triangles)
    lm = model.landmark_vertices["ibug68"]
    assert n[lm[30], 2] > 0.5 and n[lm[8], 1] < 0  # nose tip faces the camera, the chin faces down
    assert n[lm[0], 0] < -0.8 and n[lm[16], 0] > 0.8  # jaw ends face sideways
    facing = n[lm] @ mm.depth_axis(mm.pose_to_M(1.0, 90.0, 0.0, 0.0, 0.0, 0.0))[0]
    assert (facing[list(range(9, 17))] < 0).all()  # profile: the far jaw turns away
    assert (facing[list(range(1, 6))] > 0).all()


# ---- fitting -----------------------------------------------------------------------------------
def _relative_error(model, fitted, U, visible=None):
    err = (mm.project(fitted["M"], model.landmarks(fitted["p"])) - U).norm(dim=-1)
    size = (U.amax(1) - U.amin(1)).norm(dim=-1)  # landmark box diagonal
    if visible is None:
        return err.mean(1) / size
    return (err * visible).sum(1) / visible.sum(1) / size


def test_fit_recovers_projected_landmarks(model):
    _, _, U = _random_faces(model, 12, seed=3)
    fitted = mm.fit(model, U)
    assert fitted["M"].shape == (12, 2, 4) and fitted["p"].shape == (12, 228)
    assert _relative_error(model, fitted, U).max() < 0.005
    assert fitted["rms"].shape == (12,)


def test_fit_with_invisible_points(model):
    _, _, U = _random_faces(model, 12, seed=4)
    g = torch.Generator().manual_seed(5)
    visible = torch.ones(12, 68, dtype=torch.bool)
    visible.scatter_(1, torch.stack([torch.randperm(68, generator=g)[:10] for _ in range(12)]), False)
    fitted = mm.fit(model, U, visible)
    assert _relative_error(model, fitted, U, visible).max() < 0.005
    assert _relative_error(model, fitted, U).max() < 0.02  # hidden points follow the prior


def test_fit_numpy_unbatched_and_derived_scheme(model):
    _, _, U = _random_faces(model, 1, seed=6)
    fitted = mm.fit(model, U[0].numpy())
    assert isinstance(fitted["M"], np.ndarray) and fitted["M"].shape == (2, 4) and fitted["p"].shape == (228,)
    five = mm.fit(model, mm.project(mm.pose_to_M(1.0, 10.0, 0.0, 0.0, 50.0, 50.0), model.landmarks(
        torch.zeros(1, 228), "five")), scheme="five")
    assert five["rms"].max() < 0.05
    with pytest.raises(ValueError, match="visible"):
        mm.fit(model, U, torch.zeros(1, 68, dtype=torch.bool))
    with pytest.raises(ValueError, match="landmarks given"):
        mm.fit(model, U[:, :30])


# ---- loaders -----------------------------------------------------------------------------------
def _fake_bfm(tmp_path, clockwise=False, v73=False):
    """A tiny BFM-like model: a 12x10 grid (120 vertices) facing +z, 6 PCs, trimmed by 3DDFA-style
    files to its first 100 vertices; returns the arrays written."""
    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.arange(12.0), np.arange(10.0))
    verts = np.stack([gx.ravel() - 5.5, gy.ravel() - 4.5, -0.1 * (gx.ravel() - 5.5) ** 2], 1) * 1e4
    tri = facemesh._triangles(10, 12)
    if clockwise:
        tri = tri[:, [0, 2, 1]]
    pc = np.linalg.qr(rng.normal(size=(360, 6)))[0] * rng.uniform(0.5, 2, 6)
    trim = np.arange(100)
    w_exp = rng.normal(size=(300, 4))
    keypoints = rng.choice(100, 68, replace=False)
    arrays = {
        "bfm": {"shapeMU": verts.reshape(-1, 1), "shapePC": pc, "shapeEV": np.linspace(5e3, 1e3, 6)[:, None],
                "tl": tri + 1.0, "texMU": np.zeros((360, 1))},
        "exp": {"mu_exp": rng.normal(size=(300, 1)) * 100, "w_exp": w_exp, "sigma_exp": np.ones((4, 1)) * 2},
        "info": {"keypoints": (3 * keypoints + 1)[None].astype(float), "trimIndex": (trim + 1)[:, None].astype(float)},
    }
    for name, data in arrays.items():
        path = tmp_path / f"{name}.mat"
        if v73:
            with h5py.File(path, "w", userblock_size=512) as f:
                for key, value in data.items():
                    f[key] = np.asarray(value).T  # MATLAB writes column-major
            with open(path, "r+b") as f:
                f.write(b"MATLAB 7.3 MAT-file, fake for falign tests".ljust(116) + bytes(8) + b"\x00\x02IM")
        else:
            scipy.io.savemat(path, data)
    return arrays, keypoints, trim


@pytest.mark.parametrize("v73", [False, True])
def test_load_bfm2009(tmp_path, v73):
    arrays, keypoints, trim = _fake_bfm(tmp_path, clockwise=True, v73=v73)
    model = mm.load_bfm2009(tmp_path / "bfm.mat", tmp_path / "exp.mat", tmp_path / "info.mat")
    bfm, exp = arrays["bfm"], arrays["exp"]
    xyz = (3 * trim[:, None] + np.arange(3)).ravel()
    assert model.mean.shape == (100, 3) and model.n_id == 6 and model.n_exp == 4
    expected_mean = (bfm["shapeMU"][xyz] + exp["mu_exp"]).reshape(-1, 3) * 1e-3
    assert np.allclose(model.mean.numpy(), expected_mean, atol=1e-4)
    # unit-norm bases; basis * sigma is the file's one-sigma deformation, in millimetres
    assert torch.allclose(model.exp_basis.reshape(4, -1).norm(dim=1), torch.ones(4), atol=1e-5)
    one_sigma = (model.id_basis * model.id_sigma[:, None, None]).reshape(6, -1).T.numpy()
    assert np.allclose(one_sigma, bfm["shapePC"][xyz] * bfm["shapeEV"].T * 1e-3, rtol=1e-4, atol=1e-6)
    one_sigma = (model.exp_basis * model.exp_sigma[:, None, None]).reshape(4, -1).T.numpy()
    assert np.allclose(one_sigma, exp["w_exp"] * 2e-3, rtol=1e-4, atol=1e-6)
    assert torch.equal(model.landmark_vertices["ibug68"], torch.as_tensor(keypoints))
    assert len(model.triangles) == (facemesh._triangles(10, 12) < 100).all(1).sum()  # kept vertices only
    n = mm.vertex_normals(model.mean, model.triangles)
    assert (n[:, 2] > 0).all()  # clockwise file triangles were turned to face the camera
    fitted = mm.fit(model, mm.project(mm.pose_to_M(5.0, 10.0, 0.0, 0.0, 100.0, 100.0), model.landmarks(
        torch.zeros(1, 10))))
    assert fitted["rms"].max() < 0.5


def test_load_bfm_without_expressions(tmp_path):
    _fake_bfm(tmp_path)
    model = mm.load_bfm2009(tmp_path / "bfm.mat")
    assert model.mean.shape == (120, 3) and model.n_params == 6 and model.landmark_vertices == {}
    assert model.shape(torch.zeros(6)).shape == (120, 3)
    with pytest.raises(KeyError, match="no landmark vertices"):
        model.landmarks(torch.zeros(6))


def test_load_keypoints_conventions(tmp_path):
    vertices = np.arange(68) * 7 + 2
    np.save(tmp_path / "flat.npy", 3 * vertices)
    np.save(tmp_path / "triples.npy", (3 * vertices[:, None] + np.arange(3)).ravel())
    np.save(tmp_path / "vertex.npy", vertices)
    scipy.io.savemat(tmp_path / "one_based.mat", {"keypoints": vertices[None] + 1.0})
    for name in ("flat.npy", "triples.npy", "vertex.npy"):
        assert torch.equal(mm.load_keypoints(tmp_path / name), torch.as_tensor(vertices)), name
    assert torch.equal(mm.load_keypoints(tmp_path / "one_based.mat", convention="vertex"), torch.as_tensor(vertices))
    with pytest.raises(ValueError, match="multiples of 3"):
        mm.load_keypoints(tmp_path / "vertex.npy", convention="xyz")
    with pytest.raises(ValueError, match="68 keypoints"):
        mm.load_keypoints(tmp_path / "vertex.npy", n_vertices=100)


def test_loader_errors_name_the_file(tmp_path):
    scipy.io.savemat(tmp_path / "bad.mat", {"shapeMU": np.zeros((6, 1))})
    with pytest.raises(KeyError, match="bad.mat.*shapePC"):
        mm.load_bfm2009(tmp_path / "bad.mat")
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        mm.load_bfm2009(tmp_path / "missing.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 20)
    with pytest.raises(ValueError, match="junk.mat"):
        mm.load_bfm2009(tmp_path / "junk.mat")


def test_get_model(tmp_path, monkeypatch):
    assert mm.get_model("builtin") is mm.builtin_model()
    with pytest.raises(ValueError, match="unknown"):
        mm.get_model("flame")
    monkeypatch.setenv("FALIGN_BFM", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="01_MorphableModel.mat"):
        mm.get_model("bfm")
    _fake_bfm(tmp_path)
    for src, dst in zip(("bfm", "exp", "info"), mm.BFM_FILES):
        (tmp_path / f"{src}.mat").rename(tmp_path / dst)
    model = mm.get_model("bfm")
    assert model.name == "bfm2009" and model.n_params == 10 and model.mean.shape == (100, 3)
    monkeypatch.delenv("FALIGN_BFM")
    monkeypatch.setenv("DATA_ROOT", str(tmp_path.parent))
    (tmp_path.parent / "bfm").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match="Model_Expression.mat"):
        mm.get_model("bfm")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda(model):
    gpu = model.to("cuda")
    _, _, U = _random_faces(model, 4, seed=7)
    fitted = mm.fit(gpu, U.cuda())
    assert fitted["M"].device.type == "cuda"
    assert _relative_error(gpu, fitted, U.cuda()).max() < 0.005
    assert math.isclose(gpu.shape(torch.zeros(228, device="cuda")).sum().item(), model.mean.sum().item(), rel_tol=1e-5)
