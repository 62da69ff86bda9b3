"""3D morphable model (PIFA Sec. 3.1): the model container, weak-perspective camera, normals,
landmark fitting, and loaders for the Basel Face Model.

A shape is ``S = mean + sum_k p_k basis_k`` (Eq. 1) with 199 identity then 29 expression
coefficients ``p`` (raw coefficients: ``sigma`` is their standard deviation, used for sampling and
for PIFA's 1/sigma loss weights). A camera is the 2x4 matrix ``M`` of Eq. 3-4: ``U = M [S; 1]``.

Conventions (shared by the whole book)
--------------------------------------
* Model axes: x to the viewer's right (the subject's right half has x < 0), y up, z toward the
  camera. Images: x right, y *down*, so a frontal face has ``M = [[s, 0, 0, tx], [0, -s, 0, ty]]``.
* Pose (:func:`pose_to_M`): ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` with right-handed rotations
  about the model axes, angles in degrees, ``M = s [[1, 0, 0], [0, -1, 0]] R | (tx, ty)``.
  yaw > 0: the nose turns toward the image's right (the subject looks to their left), so the
  image-left half of the face (iBUG 0-7) comes into view and the image-right jaw (9-16) hides.
  pitch > 0: the nose goes down in the image (the face looks down). roll > 0: the face turns
  counter-clockwise as seen in the image.
* Depth: :func:`depth_axis` points toward the camera, so a larger ``dot(vertex, depth_axis)`` is
  nearer. With y-down images that is ``-(m1 x m2) / |m1 x m2|`` (for the frontal M above,
  ``m1 x m2 = (0, 0, -s^2)`` points away from the viewer).
* Triangles are counter-clockwise seen from the front, so :func:`vertex_normals` point outward.

The built-in model (:func:`builtin_model`) is procedural (:mod:`falign.synthface.mesh`): units are about a
millimetre, the face is ~150 units wide. :func:`get_model` switches to the Basel Face Model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np
import torch

from falign.synthface import mesh as facemesh

__all__ = [
    "MorphableModel", "VERTEX_LABELS", "builtin_model", "get_model", "project", "pose_to_M", "M_to_pose",
    "depth_axis", "vertex_normals", "fit", "load_bfm2009", "load_expression_bases", "load_keypoints",
]

VERTEX_LABELS = facemesh.LABELS  # ("skin", "brow", "lip", "eye", "iris", "mouth", "nostril")


@dataclasses.dataclass
class MorphableModel:
    """A linear 3D face model; float32 tensors on one device.

    ``vertex_labels`` (V,) int64, optional: index into :data:`VERTEX_LABELS` -- 0 skin, 1 brow, 2 lip,
    3 eye (sclera between the lids), 4 iris, 5 mouth (the line where the lips meet; it stretches into
    the open mouth), 6 nostril -- for the renderer's albedo. ``id_names``/``exp_names`` name the
    variation each basis was built from (built-in model only)."""

    mean: torch.Tensor  # (V, 3)
    id_basis: torch.Tensor  # (K_id, V, 3), unit norm, mutually orthogonal
    id_sigma: torch.Tensor  # (K_id,)
    exp_basis: torch.Tensor  # (K_exp, V, 3)
    exp_sigma: torch.Tensor  # (K_exp,)
    triangles: torch.Tensor  # (F, 3) int64, 0-based, counter-clockwise from the front
    landmark_vertices: dict[str, torch.Tensor]  # scheme name -> (N,) int64 vertex indices
    name: str = "model"
    vertex_labels: torch.Tensor | None = None
    id_names: tuple[str, ...] | None = None
    exp_names: tuple[str, ...] | None = None

    @property
    def n_id(self) -> int:
        return self.id_basis.shape[0]

    @property
    def n_exp(self) -> int:
        return self.exp_basis.shape[0]

    @property
    def n_params(self) -> int:
        return self.n_id + self.n_exp

    @property
    def sigma(self) -> torch.Tensor:
        """(n_params,) standard deviations of p: identity then expression."""
        return torch.cat([self.id_sigma, self.exp_sigma])

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def shape(self, p: torch.Tensor) -> torch.Tensor:
        """Eq. 1: (B, n_params) -> (B, V, 3); an unbatched (n_params,) gives (V, 3)."""
        return self._combine(p, self.mean, self.id_basis, self.exp_basis)

    def landmarks(self, p: torch.Tensor, scheme: str = "ibug68") -> torch.Tensor:
        """The 3D landmarks ``S_p(:, b)`` of Eq. 3, (B, N, 3), computed on those vertices only."""
        mean, basis = self.landmark_model(scheme)
        return self._combine(p, mean, basis[: self.n_id], basis[self.n_id:])

    def landmark_model(self, scheme: str = "ibug68") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (N, 3) and bases (n_params, N, 3) of a scheme's 3D landmarks: the scheme's vertices
        if the model has them, else (for schemes derived from iBUG-68, e.g. "five", "ibug51",
        "aflw-pifa34") the same averages of iBUG-68 vertices that ``falign.measure.landmarks.convert`` uses."""
        direct = scheme in self.landmark_vertices
        if not direct and "ibug68" not in self.landmark_vertices:
            raise KeyError(f"model {self.name!r} has no landmark vertices for {scheme!r}, nor iBUG-68 "
                           "ones to derive them from (a loaded BFM needs keypoints)")
        idx = self.landmark_vertices[scheme if direct else "ibug68"]
        mean = self.mean[idx]
        basis = torch.cat([self.id_basis[:, idx], self.exp_basis[:, idx]])
        if not direct:
            W = torch.as_tensor(_weights_from_ibug68(scheme), dtype=mean.dtype, device=mean.device)
            mean, basis = W @ mean, W @ basis
        return mean, basis

    def _combine(self, p, mean, id_basis, exp_basis):
        p = torch.as_tensor(p, dtype=mean.dtype, device=mean.device)
        if p.shape[-1] != self.n_params:
            raise ValueError(f"p has {p.shape[-1]} coefficients, model {self.name!r} takes {self.n_params}")
        flat = p.reshape(-1, self.n_params)
        offset = flat[:, : self.n_id] @ id_basis.reshape(self.n_id, mean.numel()) \
            + flat[:, self.n_id:] @ exp_basis.reshape(self.n_exp, mean.numel())
        return (mean + offset.reshape(-1, *mean.shape)).reshape(*p.shape[:-1], *mean.shape)

    def to(self, device) -> MorphableModel:
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to(device)
            return {k: t.to(device) for k, t in v.items()} if isinstance(v, dict) else v
        return dataclasses.replace(self, **{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})


@functools.lru_cache(maxsize=None)
def _weights_from_ibug68(scheme: str) -> np.ndarray:
    """(N, 68) W with scheme points = W @ iBUG-68 points, read off ``falign.measure.landmarks.convert``
    (linear: derived points are means of iBUG points), so 3D landmarks follow the 2D definition."""
    from falign.measure.landmarks import convert
    unit = np.zeros((68, 68, 2))
    unit[np.arange(68), np.arange(68)] = 1.0
    return np.ascontiguousarray(convert(unit, "ibug68", scheme)[..., 0].T)


# --- camera and geometry -------------------------------------------------------------------------

def project(M: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Eq. 3 weak perspective ``U = M [S; 1]``: M (B, 2, 4), S (B, V, 3) -> (B, V, 2); unbatched
    (2, 4) and (V, 3) work too."""
    return S @ M[..., :3].transpose(-1, -2) + M[..., None, :, 3]


def _rotation(yaw, pitch, roll) -> torch.Tensor:
    """R = Rz(roll) Ry(yaw) Rx(pitch), radians, (B,) -> (B, 3, 3)."""
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    Rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    Ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    Rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return Rz @ Ry @ Rx


def pose_to_M(scale, yaw, pitch, roll, tx, ty) -> torch.Tensor:
    """(B, 2, 4) camera from pose; angles in degrees; floats or (B,) tensors (broadcast together).
    See the module docstring for the sign conventions."""
    given = [a for a in (scale, yaw, pitch, roll, tx, ty) if isinstance(a, torch.Tensor)]
    device = given[0].device if given else None
    dtype = torch.float64 if any(a.dtype == torch.float64 for a in given) else torch.float32
    args = [torch.as_tensor(a, dtype=dtype, device=device).reshape(-1) for a in (scale, yaw, pitch, roll, tx, ty)]
    scale, yaw, pitch, roll, tx, ty = torch.broadcast_tensors(*args)
    R = _rotation(*(torch.deg2rad(a) for a in (yaw, pitch, roll)))
    flip = torch.tensor([1.0, -1.0], dtype=dtype, device=R.device)[:, None]
    return torch.cat([scale[:, None, None] * flip * R[:, :2], torch.stack([tx, ty], -1)[..., None]], -1)


def _orthonormal_rows(M: torch.Tensor) -> torch.Tensor:
    """The rotation R whose first two rows, (m1, -m2) orthonormalised symmetrically (SVD), best fit M."""
    A = M[..., :3] * torch.tensor([1.0, -1.0], dtype=M.dtype, device=M.device)[:, None]
    U, _, Vh = torch.linalg.svd(A, full_matrices=False)
    r12 = U @ Vh
    return torch.cat([r12, torch.linalg.cross(r12[..., 0, :], r12[..., 1, :])[..., None, :]], -2)


def M_to_pose(M: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pose_to_M`: dict of (B,) scale, yaw, pitch, roll (degrees), tx, ty.
    scale = mean norm of the two rows; the rotation is the nearest one to the normalised rows.
    Exact for cameras from :func:`pose_to_M` with |yaw| < 90."""
    M = torch.as_tensor(M).reshape(-1, 2, 4)
    R = _orthonormal_rows(M)
    return {
        "scale": M[:, :, :3].norm(dim=-1).mean(-1),
        "yaw": torch.rad2deg(torch.asin((-R[:, 2, 0]).clamp(-1, 1))),
        "pitch": torch.rad2deg(torch.atan2(R[:, 2, 1], R[:, 2, 2])),
        "roll": torch.rad2deg(torch.atan2(R[:, 1, 0], R[:, 0, 0])),
        "tx": M[:, 0, 3],
        "ty": M[:, 1, 3],
    }


def depth_axis(M: torch.Tensor) -> torch.Tensor:
    """(B, 3) unit vector toward the camera: ``-(m1 x m2) / |m1 x m2|`` (see module docstring)."""
    n = torch.linalg.cross(M[..., 1, :3], M[..., 0, :3])
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def vertex_normals(S: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) unit normals: sum of the adjacent faces' cross products (area weighted); an
    unbatched (V, 3) shape gives (V, 3)."""
    if S.dim() == 2:
        return vertex_normals(S[None], triangles)[0]
    v = S[:, triangles]  # (B, F, 3, 3)
    face = torch.linalg.cross(v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0])
    normals = torch.zeros_like(S)
    for k in range(3):
        normals.index_add_(1, triangles[:, k], face)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# --- fitting -----------------------------------------------------------------------------------

def fit(model: MorphableModel, landmarks2d, visible=None, scheme: str = "ibug68", n_iter: int = 20,
        reg: float = 1.0) -> dict:
    """Estimate the camera M and shape p from 2D landmarks (PIFA's data preparation, after [18]).

    Alternating least squares on the visible points: given the 3D landmarks, M is a linear least-
    squares problem (8 unknowns, an affine camera as in Eq. 4); given M, p solves a Tikhonov-
    regularised one, the MAP estimate for landmark noise of std ``reg`` model units (about mm)
    under the prior p_k ~ N(0, sigma_k). Batched: landmarks (N, 2) or (B, N, 2), numpy or torch;
    visible (N,) / (B, N) bool, default all. Returns dict(M (B, 2, 4), p (B, K), rms (B,) pixel
    reprojection error on the visible points), unbatched for unbatched input, numpy for numpy input.
    ``scheme``: any scheme with landmark vertices in the model or derived from iBUG-68 (see
    :meth:`MorphableModel.landmark_model`); independent annotations (Helen, COFW) have no vertices.
    """
    is_numpy = not isinstance(landmarks2d, torch.Tensor)
    U = torch.as_tensor(np.asarray(landmarks2d) if is_numpy else landmarks2d)
    batched = U.dim() == 3
    U = U.reshape(-1, *U.shape[-2:]).to(torch.float64)
    B, N = U.shape[:2]
    mean, basis = (t.to(U) for t in model.landmark_model(scheme))  # (N, 3), (K, N, 3)
    if N != len(mean):
        raise ValueError(f"{N} landmarks given, scheme {scheme!r} has {len(mean)} points")
    w = torch.ones(B, N, dtype=torch.float64) if visible is None else \
        torch.as_tensor(np.asarray(visible) if is_numpy else visible).reshape(B, N).to(torch.float64)
    w = w.to(U.device)
    if (w.sum(1) < 4).any():
        raise ValueError("fit needs at least 4 visible landmarks per face")
    if reg <= 0 or n_iter < 1:
        raise ValueError(f"fit needs reg > 0 and n_iter >= 1, got reg={reg}, n_iter={n_iter}")
    var = model.sigma.to(U) ** 2
    # prior covariance of the 3D landmarks, cov[(j, l), (n, m)] = sum_k var_k S_k[n, j] S_k[m, l]
    cov = torch.einsum("k,knj,kml->jlnm", var, basis, basis).reshape(9, N * N)
    M = _fit_camera(mean.expand(B, N, 3), U, w)
    for _ in range(n_iter):
        p = _fit_shape(M, mean, basis, var, cov, U, w, reg)
        S = mean + torch.einsum("bk,knc->bnc", p, basis)
        M = _fit_camera(S, U, w)
    rms = (((project(M, S) - U) ** 2).sum(-1) * w).sum(1).div(w.sum(1)).sqrt()
    out = {"M": M.float(), "p": p.float(), "rms": rms.float()}
    if not batched:
        out = {k: v[0] for k, v in out.items()}
    return {k: v.cpu().numpy() for k, v in out.items()} if is_numpy else out


def _fit_camera(S, U, w):
    """Weighted linear least squares for M given 3D points S (B, N, 3) and 2D points U (B, N, 2)."""
    A = torch.cat([S, torch.ones_like(S[..., :1])], -1)  # (B, N, 4)
    Aw = A * w[..., None]
    lhs = Aw.transpose(1, 2) @ A + 1e-9 * torch.eye(4, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(lhs, Aw.transpose(1, 2) @ U).transpose(1, 2)


def _fit_shape(M, mean, basis, var, cov, U, w, reg):
    """MAP p given M: min |W^1/2 (U - M [S0 + sum p_k S_k; 1])|^2 / (reg s)^2 + sum p_k^2 / sigma_k^2.

    Solved in landmark space (2N unknowns instead of K): p = Sigma J^T W^1/2 (W^1/2 J Sigma J^T W^1/2
    + (reg s)^2 I)^-1 W^1/2 r, where J Sigma J^T is the prior covariance ``cov`` of the 3D landmarks
    seen through R, so the per-face cost does not grow with the number of bases."""
    R, t = M[..., :3], M[..., 3]
    B, N = U.shape[:2]
    pairs = torch.einsum("bij,bkl->bikjl", R, R).reshape(B, 4, 9)  # R_ij R_kl
    JSJ = (pairs @ cov).reshape(B, 2, 2, N, N).permute(0, 3, 1, 4, 2).reshape(B, 2 * N, 2 * N)
    sw = w.sqrt().repeat_interleave(2, dim=1)
    lam = (reg * R.norm(dim=-1).mean(-1)) ** 2  # s = pixels per model unit
    A = JSJ.mul_(sw[:, :, None]).mul_(sw[:, None, :])
    A.diagonal(dim1=1, dim2=2).add_(lam[:, None])
    r = (U - mean @ R.transpose(1, 2) - t[:, None]).flatten(1)
    alpha = sw * torch.cholesky_solve((sw * r)[..., None], torch.linalg.cholesky(A))[..., 0]
    return var * torch.einsum("knj,bnj->bk", basis, alpha.reshape(B, N, 2) @ R)


# --- models --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def builtin_model() -> MorphableModel:
    """falign's procedural face (see :mod:`falign.synthface.mesh`): ~5.9k vertices, 199 identity and 29
    expression bases, iBUG-68 landmark vertices and vertex labels. Deterministic; built once (~1 s)
    and cached, so treat the tensors as read-only (``.to`` returns a copy).

    Sampling p ~ N(0, sigma) gives plausible faces (landmarks move ~3% of the face size). Like any
    linear model it cannot know that some motions are one-sided: a negative "jaw_open" pushes the
    lower lip into the upper one, and "eye_close_left/right" shut the eye at +2 sigma and cross the
    lids beyond. Samplers that want natural expressions take |p| for "jaw_open" and clip the eye
    closures at 2 sigma; ``exp_names`` gives their indices."""
    mesh = facemesh.build_mesh()
    bases = facemesh.build_bases(mesh)

    def f32(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    return MorphableModel(
        mean=f32(mesh["mean"]), id_basis=f32(bases["id_basis"]), id_sigma=f32(bases["id_sigma"]),
        exp_basis=f32(bases["exp_basis"]), exp_sigma=f32(bases["exp_sigma"]),
        triangles=torch.as_tensor(mesh["triangles"], dtype=torch.int64),
        landmark_vertices={"ibug68": torch.as_tensor(mesh["ibug68"], dtype=torch.int64)},
        name="builtin", vertex_labels=torch.as_tensor(mesh["labels"], dtype=torch.int64),
        id_names=tuple(bases["id_names"]), exp_names=tuple(bases["exp_names"]),
    )


BFM_FILES = ("01_MorphableModel.mat", "Model_Expression.mat", "Model_info.mat")


def _bfm_dir() -> Path:
    env = os.environ.get("FALIGN_BFM")
    if env:
        path = Path(env).expanduser()
        return path.parent if path.is_file() else path
    from falign.base.paths import data_root
    root = data_root()
    if root is None:
        raise FileNotFoundError(
            "the Basel Face Model is not configured: set FALIGN_BFM to the folder holding "
            f"{', '.join(BFM_FILES)} (BFM 2009 plus 3DDFA's expression bases and keypoints/trimIndex), "
            "or DATA_ROOT so that they are in DATA_ROOT/bfm/")
    return root / "bfm"


def get_model(name: str = "builtin") -> MorphableModel:
    """The model the book uses: "builtin" (procedural, default) or "bfm" (Basel Face Model 2009 with
    3DDFA's 29 expression bases, read from ``$FALIGN_BFM`` or ``DATA_ROOT/bfm/``)."""
    if name == "builtin":
        return builtin_model()
    if name != "bfm":
        raise ValueError(f"unknown morphable model {name!r}: use 'builtin' or 'bfm'")
    return _load_bfm_folder(_bfm_dir().resolve())


@functools.lru_cache(maxsize=2)
def _load_bfm_folder(folder: Path) -> MorphableModel:
    missing = [f for f in BFM_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; the BFM model needs "
                                f"{', '.join(BFM_FILES)} there (01_MorphableModel.mat from the Basel "
                                "Face Model 2009; Model_Expression.mat and Model_info.mat from 3DDFA)")
    return load_bfm2009(folder / BFM_FILES[0], folder / BFM_FILES[1], folder / BFM_FILES[2])


# --- loaders -------------------------------------------------------------------------------------

def _loadmat(path) -> dict[str, np.ndarray]:
    """Variables of a MATLAB file, v5 (scipy) or v7.3 (HDF5, via h5py, transposed back)."""
    import scipy.io
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except (NotImplementedError, ValueError):  # v7.3 (HDF5): MATLAB writes column-major arrays
        import h5py
        try:
            with h5py.File(path, "r") as f:
                return {k: np.asarray(v).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
        except OSError as err:
            raise ValueError(f"{path}: neither a MATLAB v5 nor a v7.3 (HDF5) file ({err})") from None


def _need(data: dict, key: str, path) -> np.ndarray:
    if key not in data:
        raise KeyError(f"{path}: no variable {key!r} (found: {', '.join(sorted(data))})")
    return np.asarray(data[key], dtype=np.float64)


def _unit_basis(pc: np.ndarray, ev: np.ndarray, n_vertices: int, path):
    """(3V, K) columns and (K,) std -> unit-norm (K, V, 3) basis and sigma = std * column norm, so
    that the distribution of shapes is unchanged."""
    if pc.shape[0] != 3 * n_vertices or ev.size != pc.shape[1]:
        raise ValueError(f"{path}: basis {pc.shape} and std {ev.shape} do not fit {n_vertices} vertices")
    norms = np.linalg.norm(pc, axis=0)
    return (pc / norms).T.reshape(-1, n_vertices, 3), ev.ravel() * norms


def load_expression_bases(path, scale: float = 1e-3) -> dict[str, np.ndarray]:
    """3DDFA's ``Model_Expression.mat``: ``mu_exp`` (3V, 1), ``w_exp`` (3V, K), ``sigma_exp`` (K, 1),
    xyz interleaved. Returns mean offset (V, 3), unit-norm basis (K, V, 3), sigma (K,), all times
    ``scale`` (1e-3: BFM micrometres to millimetres), and ``trimIndex`` (0-based) when the file has one."""
    data = _loadmat(path)
    mu = _need(data, "mu_exp", path).reshape(-1, 3)
    basis, sigma = _unit_basis(_need(data, "w_exp", path), _need(data, "sigma_exp", path), len(mu), path)
    out = {"mean": mu * scale, "basis": basis, "sigma": sigma * scale}
    if "trimIndex" in data:
        out["trimIndex"] = np.asarray(data["trimIndex"]).ravel().astype(np.int64) - 1
    return out


def load_keypoints(path, n_vertices: int | None = None, convention: str = "auto",
                   one_based: bool | None = None) -> torch.Tensor:
    """68 landmark vertex indices from ``keypoints`` in a .mat (1-based) or a .npy/.txt (0-based).

    convention "xyz": indices into the flattened xyz array (3DDFA), vertex = index // 3; 204 entries
    (x, y, z of each point) are accepted too. "vertex": vertex indices. "auto": xyz when every index
    is a multiple of 3 (a vertex list is that only by a 3^-68 chance), else vertex."""
    path = Path(path)
    if one_based is None:
        one_based = path.suffix == ".mat"
    if path.suffix == ".mat":
        data = _loadmat(path)
        key = next((k for k in ("keypoints", "kpt_ind") if k in data), "keypoints")
        raw = _need(data, key, path)
    elif path.suffix == ".npy":
        raw = np.load(path)
    else:
        raw = np.loadtxt(path)
    idx = np.asarray(raw).ravel().astype(np.int64) - int(one_based)
    if len(idx) == 3 * 68 and np.array_equal(idx[1::3], idx[::3] + 1) and np.array_equal(idx[2::3], idx[::3] + 2):
        idx, convention = idx[::3], "xyz"
    if convention == "auto":
        convention = "xyz" if (idx % 3 == 0).all() else "vertex"
    if convention == "xyz":
        if (idx % 3 != 0).any():
            raise ValueError(f"{path}: keypoints are not x indices into a flattened xyz array "
                             "(not multiples of 3); pass convention='vertex'")
        idx = idx // 3
    elif convention != "vertex":
        raise ValueError(f"convention must be 'auto', 'xyz' or 'vertex', not {convention!r}")
    if len(idx) != 68 or idx.min() < 0 or (n_vertices is not None and idx.max() >= n_vertices):
        raise ValueError(f"{path}: expected 68 keypoints indexing {n_vertices or 'the'} vertices, got "
                         f"{len(idx)} in [{idx.min()}, {idx.max()}]")
    return torch.as_tensor(idx)


def _orient_outward(mean: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Flip the winding if most of the area faces -z (the file's triangles are clockwise)."""
    v = mean[tri]
    face_z = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 2]
    return tri if face_z.sum() >= 0 else tri[:, [0, 2, 1]]


def load_bfm2009(path, expression_path=None, keypoints_path=None, scale: float = 1e-3) -> MorphableModel:
    """Basel Face Model 2009 ``01_MorphableModel.mat`` (``shapeMU`` (3V, 1), ``shapePC`` (3V, K),
    ``shapeEV`` (K, 1) standard deviations, ``tl`` (F, 3) 1-based; texture ignored).

    BFM stores micrometres: ``scale`` = 1e-3 gives millimetres, the built-in model's units, so
    cameras are comparable. Bases are made unit-norm with sigma absorbing their norms (so p has the
    file's distribution). ``expression_path``: 3DDFA's ``Model_Expression.mat``, added as
    ``mu_exp`` to the mean and 29 expression bases; 3DDFA trims BFM to 53215 vertices, so when the
    counts differ, ``trimIndex`` (1-based, from the expression or the keypoints file, i.e. 3DDFA's
    ``Model_info.mat``) selects the vertices, and triangles leaving them are dropped. Without
    ``expression_path`` the model has no expression bases. ``keypoints_path``: see
    :func:`load_keypoints`; indices refer to the (trimmed) model. Triangle winding is made
    counter-clockwise from the front.
    """
    data = _loadmat(path)
    mean = _need(data, "shapeMU", path).reshape(-1, 3) * scale
    id_basis, id_sigma = _unit_basis(_need(data, "shapePC", path), _need(data, "shapeEV", path), len(mean), path)
    id_sigma = id_sigma * scale
    tri = _need(data, "tl", path).astype(np.int64) - 1
    exp_basis, exp_sigma = np.zeros((0, len(mean), 3)), np.zeros(0)
    if expression_path is not None:
        expr = load_expression_bases(expression_path, scale)
        if len(expr["mean"]) != len(mean):
            trim = expr.get("trimIndex")
            if trim is None and keypoints_path is not None and Path(keypoints_path).suffix == ".mat":
                info = _loadmat(keypoints_path)
                trim = np.asarray(info["trimIndex"]).ravel().astype(np.int64) - 1 if "trimIndex" in info else None
            if trim is None or len(trim) != len(expr["mean"]):
                raise ValueError(f"{expression_path} has {len(expr['mean'])} vertices, {path} has {len(mean)}, "
                                 "and no trimIndex (3DDFA's Model_info.mat) maps one onto the other")
            new = np.full(len(mean), -1)
            new[trim] = np.arange(len(trim))
            tri = new[tri]
            tri = tri[(tri >= 0).all(1)]
            mean, id_basis = mean[trim], id_basis[:, trim]
        mean = mean + expr["mean"]
        exp_basis, exp_sigma = expr["basis"], expr["sigma"]
    landmarks = {}
    if keypoints_path is not None:
        landmarks["ibug68"] = load_keypoints(keypoints_path, n_vertices=len(mean))

    def f32(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    return MorphableModel(
        mean=f32(mean), id_basis=f32(id_basis), id_sigma=f32(id_sigma), exp_basis=f32(exp_basis),
        exp_sigma=f32(exp_sigma), triangles=torch.as_tensor(_orient_outward(mean, tri)),
        landmark_vertices=landmarks, name="bfm2009")


def centred_camera(model: MorphableModel, yaw: float = 0.0, pitch: float = 0.0, size: int = 114,
                   fill: float = 0.5, scheme: str = "ibug68") -> torch.Tensor:
    """A camera (1, 2, 4) that shows the mean face at ``yaw``, ``pitch`` (degrees) in the middle of a
    ``size`` x ``size`` crop, its landmarks spanning ``fill`` of the width: the views of the figures."""
    landmarks = model.mean[model.landmark_vertices[scheme]]
    M = pose_to_M(fill * size / float(landmarks[:, 0].max() - landmarks[:, 0].min()), yaw, pitch, 0.0, 0.0, 0.0)
    M[:, :, 3] = (size - 1) / 2 - M[:, :, :3] @ landmarks.mean(0)
    return M
