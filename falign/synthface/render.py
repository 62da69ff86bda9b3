"""Batched z-buffer renderer and SynthFace image helpers (pure torch, CPU and GPU).

SynthFace renders hundreds of small faces per second per CPU core and PIFA's visualization layer
needs a per-pixel nearest-point test, so everything here works on whole batches with tensor ops:
no Python loop touches a pixel, vertex or triangle (the rasteriser loops over a handful of
window sizes, the image helpers over a handful of shapes).

Conventions
-----------
* Screen coordinates: x right, y down, in pixels, pixel centres at integers (0-based); z is depth
  with *larger = nearer the camera*. A triangle is front-facing when it is counter-clockwise as
  the viewer sees it (negative signed area in x-right / y-down coordinates), matching the
  morphable model's counter-clockwise-from-the-front triangles.
* Images are float32 in [0, 1], channels last: ``(B, H, W, 3)``, the layout of ``Sample.image``
  and of the rasteriser's ``(B, H, W)`` maps, so no permutes are needed between the two.
* Every random helper takes a ``torch.Generator`` (on the images' device): same seed, same images.
* CPU throughput: feed batches of about 2**20 pixels (64 images at 128x128, 16 at 256x256).
  Much larger tensors are fresh ``mmap`` allocations for glibc each time, and their page faults
  then cost more than the arithmetic. On a GPU, larger batches are better.
"""

from __future__ import annotations

import bisect
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "Raster",
    "rasterize",
    "interpolate",
    "shade",
    "render_mesh",
    "vertex_visibility",
    "zbuffer_points",
    "random_backgrounds",
    "draw_occluders",
    "add_noise",
    "gaussian_blur",
]

# Window sides (pixels) for the candidate pixels of a triangle: a triangle tests the centres of the
# smallest kx-by-ky window of these sides that holds its bounding box, so small triangles (the
# common case for dense meshes) waste few tests.
_SIDES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
_SUBPIXEL = 16  # vertices snap to 1/16 pixel, so edge functions are exact integers
_NARROW = 30  # triangles up to this snapped extent (px) get exact float32 edge functions, others f64
_MIN_CLASS_WORK = 2**15  # window classes testing fewer candidate pixels merge into a square class
_MAX_CANDIDATES = 2**21  # candidate pixels tested at once (bounds the temporaries' memory)


class Raster(NamedTuple):
    """Per-pixel result of :func:`rasterize`; unpacks as ``tri_index, bary, depth``."""

    tri_index: torch.Tensor  # (B, H, W) long, triangle index into ``triangles``, -1 = background
    bary: torch.Tensor  # (B, H, W, 3) float32 barycentric weights, 0 on background
    depth: torch.Tensor  # (B, H, W) float32 interpolated z, -inf on background


def _depth_key(z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pack float32 depth and a 32-bit id into one int64 that orders by depth, then by id.

    One ``scatter_reduce(amax)`` on these keys is a z-buffer that also remembers who won. The
    float bits are remapped (an involution, see :func:`_key_depth`) so that int order = float order.
    """
    bits = z.to(torch.float32).contiguous().view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return bits.long() * (1 << 32) + ids


def _key_depth(key: torch.Tensor) -> torch.Tensor:
    """The float32 depth packed into keys by :func:`_depth_key`."""
    bits = (key >> 32).int()
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).view(torch.float32)


# The empty z-buffer: depth -inf and hit id 0, below every real key (ids start at 1).
_EMPTY = int(_depth_key(torch.tensor([-math.inf]), torch.tensor([0])))


def _edge_rows(X: torch.Tensor, Y: torch.Tensor, flip: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Edge functions of snapped triangles as planar rows (c, a, b): E = c + a*DX + b*DY.

    X, Y (3, T) are integer-valued vertex positions in 1/_SUBPIXEL pixel units relative to the
    window origin, (DX, DY) a window pixel in the same units; edge i is opposite vertex i. Signs
    are set so that the inside of a front-facing triangle is E > 0 on all three edges; ``flip``
    (T,) = -1 turns back-facing ones around (None: all are front-facing).

    All products and sums are exact integers for the sizes each dtype is used for (float32 for
    narrow triangles: |X|, |Y| < 64 px; float64 otherwise), so the two triangles of a shared edge
    agree bit for bit: E of one is exactly -E of the other. A centre exactly on an edge (E == 0)
    belongs to the side where (a, b) > (0, 0) lexicographically (tested as a + eps*b > 0, exact
    for integers), folded in as +0.5 on the integer E of owning edges.
    """
    A, B, C = torch.empty_like(X), torch.empty_like(X), torch.empty_like(X)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        torch.sub(Y[k], Y[j], out=A[i])
        torch.sub(X[j], X[k], out=B[i])
        torch.mul(Y[j], X[k], out=C[i]).sub_(X[j] * Y[k])
    if flip is not None:
        A *= flip
        B *= flip
        C *= flip
    eps = 2.0**-12 if X.dtype == torch.float32 else 2.0**-30  # |eps * b| < 1/2 <= |a| unless a == 0
    return C.add_(A.add(B, alpha=eps) > 0, alpha=0.5), A, B


def _plane_rows(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, ox: torch.Tensor, oy: torch.Tensor):
    """Rows (c, a, b), each (3, T), of three planes over the window with origin (ox, oy): depth,
    barycentric 1 and barycentric 2 (barycentric 0 = 1 - the others), from unsnapped corners.

    Values at the origin rather than at pixel 0 keep the numbers small, hence accurate. A
    degenerate triangle (covering a pixel only after snapping) gets constant planes: vertex 0.
    """
    inv = ((x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])).reciprocal_().nan_to_num_(0, 0, 0)
    a, b, c = torch.empty(3, 3, x.shape[1], device=x.device)
    torch.mul(y[2] - y[0], inv, out=a[1])  # d bary1 / dx
    torch.mul(x[0] - x[2], inv, out=b[1])  # d bary1 / dy
    torch.mul(y[0] - y[1], inv, out=a[2])
    torch.mul(x[1] - x[0], inv, out=b[2])
    dz1, dz2 = z[1] - z[0], z[2] - z[0]
    torch.mul(a[1], dz1, out=a[0]).addcmul_(a[2], dz2)  # d depth / dx
    torch.mul(b[1], dz1, out=b[0]).addcmul_(b[2], dz2)
    rx, ry = ox - x[0], oy - y[0]
    torch.addcmul(z[0], a[0], rx, out=c[0]).addcmul_(b[0], ry)
    torch.mul(a[1], rx, out=c[1]).addcmul_(b[1], ry)
    torch.mul(a[2], rx, out=c[2]).addcmul_(b[2], ry)
    return c, a, b


def _window_values(rows: tuple[torch.Tensor, ...], s: int, e: int, dx: torch.Tensor, dy: torch.Tensor):
    """Planes (c, a, b) of triangles s:e evaluated at window offsets (dx, dy): (R, e - s, K)."""
    c, a, b = (r[:, s:e, None] for r in rows)
    return torch.addcmul(c, a, dx).addcmul_(b, dy)


def _bin_triangles(snapped: torch.Tensor, tri: torch.Tensor, H: int, W: int, cull_backfaces: bool):
    """Screen every triangle (id n = f*B + b) and sort the useful ones by window class.

    Returns n (T,) sorted, per-class counts and windows (kx, ky), the number of narrow
    triangles m (classes of wide, float64 triangles come last), the first pixel-centre column
    and row of each triangle's clipped box (2, F*B), and the exact signed area of the snapped
    triangles (F*B,) (negative = front-facing).
    """
    s = snapped.index_select(1, tri.reshape(-1)).view(2, 3, -1)  # (xy, corner, n) in 1/16 px
    lo, hi = s.amin(1), s.amax(1)
    limit = torch.tensor([[W - 1.0], [H - 1.0]], device=s.device)
    first = (lo * (1 / _SUBPIXEL)).ceil_().clamp_(min=0)
    count = (torch.minimum((hi * (1 / _SUBPIXEL)).floor_(), limit) - first + 1).clamp_(min=0).nan_to_num_(0)
    d1, d2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    area = d1[0] * d2[1] - d1[1] * d2[0]
    extent = (hi - lo).amax(0)
    big = extent >= 2**12  # float32 products may round beyond 256 px: exact sign in float64
    if big.any():
        i = big.nonzero().squeeze(1)
        a64, b64 = d1[:, i].double(), d2[:, i].double()
        area[i] = (a64[0] * b64[1] - a64[1] * b64[0]).sign().to(area.dtype)
    keep = (count[0] > 0) & (count[1] > 0) & torch.isfinite(area) & ((area < 0) if cull_backfaces else (area != 0))
    kept = keep.nonzero().squeeze(1)  # the rest of the screening only looks at triangles that draw
    count = count.index_select(1, kept).long()

    def side_table(limit: int) -> tuple[torch.Tensor, list[int]]:  # pixel count -> side class
        sides = [k for k in _SIDES if k < limit] + [limit]
        return torch.bucketize(torch.arange(limit + 1), torch.tensor(sides)).to(s.device), sides

    (table_x, sides_x), (table_y, sides_y) = side_table(W), side_table(H)
    n_pairs = len(sides_x) * len(sides_y)
    cls = table_x.index_select(0, count[0]).mul_(len(sides_y)).add_(table_y.index_select(0, count[1]))
    cls.add_((extent.index_select(0, kept) > _NARROW * _SUBPIXEL) * n_pairs)
    hist = torch.bincount(cls, minlength=2 * n_pairs).tolist()
    windows = [(sides_x[c % n_pairs // len(sides_y)], sides_y[c % len(sides_y)]) for c in range(2 * n_pairs)]
    # Each class costs a few dozen tensor ops whatever its size: classes with little work join
    # the square class of their longer side.
    remap, counts = list(range(2 * n_pairs)), [0] * (2 * n_pairs)
    for c, (kx, ky) in enumerate(windows):
        if 0 < hist[c] * kx * ky < _MIN_CLASS_WORK:
            side = max(kx, ky)
            sx, sy = bisect.bisect_left(sides_x, min(side, W)), bisect.bisect_left(sides_y, min(side, H))
            remap[c] = c - c % n_pairs + sx * len(sides_y) + sy
        counts[remap[c]] += hist[c]
    order = torch.tensor(remap, device=s.device, dtype=torch.int32).index_select(0, cls).sort(stable=True)[1]
    n = kept.index_select(0, order)
    return n, counts, windows, sum(counts[:n_pairs]), first, area


def rasterize(
    verts: torch.Tensor, triangles: torch.Tensor, H: int, W: int, cull_backfaces: bool = False
) -> Raster:
    """Z-buffer rasterisation of a batch of meshes sharing one triangle list.

    verts (B, V, 3) screen x, y (pixels) and z (larger = nearer); triangles (F, 3) vertex indices.
    A pixel is covered when its centre is inside a triangle. Coverage uses vertices snapped to
    1/16 pixel (as GPUs do) with exact edge functions and a fixed tie-break for centres on an
    edge, so a mesh has no cracks and no doubly drawn pixels; barycentrics and depth use the
    unsnapped vertices. ``cull_backfaces`` drops back-facing (clockwise as seen) triangles.
    Exact for vertices within about a million pixels of the image.

    How: triangles are grouped by the size of the window of pixel centres around their box; each
    group evaluates its edge functions, depth and barycentric planes at all its window pixels by
    broadcasting, and the nearest hit per pixel wins a ``scatter_reduce(amax)`` on packed
    (depth, hit id) keys. The hits carry barycentrics and triangle index to the pixels.
    """
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"rasterize: verts must be (B, V, 3), got {tuple(verts.shape)}")
    if triangles.ndim != 2 or triangles.shape[-1] != 3:
        raise ValueError(f"rasterize: triangles must be (F, 3), got {tuple(triangles.shape)}")
    device, f32 = verts.device, torch.float32
    B = verts.shape[0]
    tri = triangles.to(device=device, dtype=torch.long).t()  # (3, F)
    vt = verts.to(f32).permute(2, 1, 0).contiguous()  # (xyz, V, B): a triangle's corners are rows
    snapped = (vt[:2] * _SUBPIXEL).round() + 0 * vt[2]  # a non-finite z poisons x, y -> dropped
    n, counts, windows, m, first, area = _bin_triangles(snapped, tri, H, W, cull_backfaces)

    # Kept triangles: corners, window origin (windows stay inside the image), edge and plane rows.
    b, f = n % B, n // B
    x, y, z = vt.view(3, -1).index_select(1, ((tri * B).index_select(1, f) + b).view(-1)).view(3, 3, -1)
    k = torch.tensor(windows).t().repeat_interleave(torch.tensor(counts), dim=1).to(device, f32)
    ox, oy = torch.minimum(first.index_select(1, n), torch.tensor([[W], [H]], device=device) - k)
    base = b * (H * W) + (oy * W + ox).long()
    flip = None if cull_backfaces else -area.index_select(0, n).sign()
    X, Y = (x * _SUBPIXEL).round_().sub_(ox * _SUBPIXEL), (y * _SUBPIXEL).round_().sub_(oy * _SUBPIXEL)
    edges = _edge_rows(X[:, :m], Y[:, :m], None if flip is None else flip[:m])
    edges64 = _edge_rows(X[:, m:].double(), Y[:, m:].double(), None if flip is None else flip[m:].double())
    planes = _plane_rows(x, y, z, ox, oy)

    # Draw each window class; hit 0 is the background (zero barycentrics, triangle -1).
    buf = torch.full((B * H * W,), _EMPTY, dtype=torch.long, device=device)
    bary_rows, tri_rows, n_hits = [torch.zeros(1, 3, device=device)], [f.new_full((1,), -1)], 1
    slices, start = [], 0  # (first, end, kx, ky), classes cut into pieces of bounded memory
    for (kx, ky), cnt in zip(windows, counts):
        step = max(1, _MAX_CANDIDATES // (kx * ky))
        slices += [(s, min(s + step, start + cnt), kx, ky) for s in range(start, start + cnt, step)]
        start += cnt
    for s, e, kx, ky in slices:
        dx = torch.arange(kx, device=device, dtype=f32).repeat(ky)
        dy = torch.arange(ky, device=device, dtype=f32).repeat_interleave(kx)
        if s < m:
            E = _window_values(edges, s, e, dx * _SUBPIXEL, dy * _SUBPIXEL)
        else:
            E = _window_values(edges64, s - m, e - m, dx.double() * _SUBPIXEL, dy.double() * _SUBPIXEL)
        inside = torch.minimum(E[0], E[1])
        t, o = (torch.minimum(inside, E[2], out=inside) > 0).nonzero(as_tuple=True)
        t += s
        c, a, b = (r.index_select(1, t) for r in planes)  # planes at the hits only
        depth, w1, w2 = c.addcmul_(a, dx.index_select(0, o)).addcmul_(b, dy.index_select(0, o))
        pix = base.index_select(0, t) + (dy * W + dx).long().index_select(0, o)
        ids = torch.arange(n_hits, n_hits + len(t), device=device)
        buf.scatter_reduce_(0, pix, _depth_key(depth, ids), "amax")
        rows = torch.empty(len(t), 3, device=device)
        rows[:, 0], rows[:, 1], rows[:, 2] = 1 - w1 - w2, w1, w2
        bary_rows.append(rows)
        tri_rows.append(f.index_select(0, t))
        n_hits += len(t)

    # Resolve: the winning hit per pixel carries its depth (in the key), barycentrics, triangle.
    h = buf & 0xFFFFFFFF
    bary = torch.cat(bary_rows).index_select(0, h)
    tri_index = torch.cat(tri_rows).index_select(0, h)
    return Raster(tri_index.view(B, H, W), bary.view(B, H, W, 3), _key_depth(buf).view(B, H, W))


def interpolate(
    attr: torch.Tensor, triangles: torch.Tensor, tri_index: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Barycentric (screen-space, not perspective-corrected) interpolation of per-vertex values.

    attr (B, V, C), tri_index (B, H, W) and bary (B, H, W, 3) from :func:`rasterize`; returns
    (B, H, W, C), zero on background pixels. Weak-perspective faces need no perspective correction.
    """
    B, V, C = attr.shape
    P = tri_index.numel()
    tri = tri_index.reshape(B, -1).clamp(min=0)
    offset = torch.arange(B, device=tri.device)[:, None] * V
    table, w = attr.reshape(B * V, C), bary.reshape(P, 3).to(attr.dtype)
    out = torch.zeros(P, C, dtype=table.dtype, device=table.device)
    for k, corner in enumerate(triangles.to(tri.device).t()):  # one corner at a time: small temporaries
        vertex = (corner.index_select(0, tri.view(-1)).view(B, -1) + offset).view(-1)
        out.addcmul_(table.index_select(0, vertex), w[:, k : k + 1])
    return out.view(*tri_index.shape, C)


def _per_image(value, B: int, device: torch.device) -> torch.Tensor:
    """Scalar, (B,) or (B, C) -> float tensor broadcastable against (B, ..., C) as (B, 1, C)."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.ndim == 0:
        t = t.expand(B)
    return t.reshape(B, 1, -1)


def shade(
    normals: torch.Tensor, albedo: torch.Tensor, light_dir: torch.Tensor, ambient, diffuse, lights=()
) -> torch.Tensor:
    """Lambertian + ambient colour per vertex: albedo * (ambient + diffuse * max(0, n . l)).

    normals (B, V, 3) unit; albedo (B, V, 3) or (V, 3) in [0, 1]; light_dir (B, 3) points from the
    surface toward the light, in the normals' frame (normalised here); ambient, diffuse: scalar,
    (B,) or (B, 3) (coloured light); ``lights``: more (direction, diffuse) pairs, summed in.
    Returns (B, V, 3), not clamped.
    """
    B = normals.shape[0]
    light = F.normalize(light_dir.to(normals.dtype).reshape(B, 1, 3), dim=-1)
    lambert = (normals * light).sum(-1, keepdim=True).clamp_(min=0)
    amb, dif = _per_image(ambient, B, normals.device), _per_image(diffuse, B, normals.device)
    total = amb + dif * lambert
    for direction, strength in lights:
        more = (normals * F.normalize(direction.to(normals.dtype).reshape(B, 1, 3), dim=-1)).sum(-1, keepdim=True)
        total = total + _per_image(strength, B, normals.device) * more.clamp_(min=0)
    return albedo * total


def render_mesh(
    verts: torch.Tensor,
    triangles: torch.Tensor,
    albedo: torch.Tensor,
    normals: torch.Tensor,
    light_dir: torch.Tensor,
    ambient,
    diffuse,
    H: int,
    W: int,
    background: torch.Tensor | None = None,
    cull_backfaces: bool = False,
    raster: Raster | None = None,
    lights=(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render shaded meshes: rgb (B, H, W, 3) float in [0, 1] and coverage mask (B, H, W) bool.

    Gouraud shading (:func:`shade` per vertex, colours interpolated), composited over
    ``background`` (B, H, W, 3) or black. Pass the ``raster`` of an earlier :func:`rasterize` call
    (SynthFace also needs its depth for visibility) to skip rasterising twice.
    """
    if raster is None:
        raster = rasterize(verts, triangles, H, W, cull_backfaces)
    colours = shade(normals, albedo.expand_as(normals), light_dir, ambient, diffuse, lights)
    rgb = interpolate(colours, triangles, raster.tri_index, raster.bary)
    mask = raster.tri_index >= 0
    if background is not None:
        rgb.addcmul_(background, ~mask[..., None])
    return rgb.clamp_(0, 1), mask


def _pixel_of(xy: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounded pixel of points xy (..., 2): (inside the image, flat index y*W + x clamped to it)."""
    x, y = xy.nan_to_num(-1.0).round().unbind(-1)
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    return inside, (y.clamp(0, H - 1) * W + x.clamp(0, W - 1)).long()


def vertex_visibility(verts: torch.Tensor, depth: torch.Tensor, tol: float) -> torch.Tensor:
    """(B, V) bool: vertex inside the image and not hidden, i.e. z >= z-buffer - tol at its pixel.

    verts (B, V, 3) screen coordinates as given to :func:`rasterize`, depth (B, H, W) its z-buffer;
    the pixel is the vertex position rounded. ``tol`` (depth units) absorbs the depth difference
    between a vertex and the surface interpolated at the pixel centre; background counts as -inf,
    so silhouette vertices are visible.
    """
    B, H, W = depth.shape
    inside, pix = _pixel_of(verts[..., :2], H, W)
    zbuf = depth.reshape(B, H * W).gather(1, pix)
    return inside & (verts[..., 2] >= zbuf - tol)


def zbuffer_points(xy: torch.Tensor, z: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H, W) long: index of the nearest point (largest z) at each pixel, -1 where none.

    Points xy (B, V, 2) are rounded to pixels; those outside the image or with non-finite z are
    ignored. A point-splat z-buffer, e.g. for PIFA's visualization layer (not differentiable).
    """
    B, V = z.shape
    ok, pix = _pixel_of(xy, H, W)
    ok &= torch.isfinite(z)
    pix = torch.where(ok, pix + torch.arange(B, device=z.device)[:, None] * (H * W), B * H * W)
    ids = torch.arange(1, V + 1, device=z.device).expand(B, V)
    buf = torch.full((B * H * W + 1,), _EMPTY, dtype=torch.long, device=z.device)
    buf.scatter_reduce_(0, pix.reshape(-1), _depth_key(z, ids).reshape(-1), "amax")
    return ((buf[:-1] & 0xFFFFFFFF) - 1).view(B, H, W)


# ---------------------------------------------------------------------------------------------
# SynthFace image helpers. Images are (B, H, W, 3) float in [0, 1]; randomness comes only from the
# given torch.Generator, so a seed fixes the images (on a given device).


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def _grid(H: int, W: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates shaped to broadcast against (B, H, W): x (1, 1, W), y (1, H, 1)."""
    x = torch.arange(W, device=device, dtype=torch.float32).view(1, 1, W)
    y = torch.arange(H, device=device, dtype=torch.float32).view(1, H, 1)
    return x, y


def _smooth_field(generator: torch.Generator, B: int, H: int, W: int, cells: int, channels: int):
    """(B, H, W, channels) smooth random field in about [-0.5, 0.5]: a random cells x cells grid
    blended with Gaussian weights. Separable, so it costs two small matrix products."""
    dev = generator.device

    def weights(n: int) -> torch.Tensor:  # (n, cells), rows sum to 1
        pos = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) * (cells / n) - 0.5
        w = torch.exp(-0.5 * (pos[:, None] - torch.arange(cells, device=dev)) ** 2 / 0.6**2)
        return w / w.sum(1, keepdim=True)

    grid = _rand(generator, B, cells, cells, channels) - 0.5
    rows = torch.einsum("wj,bijc->biwc", weights(W), grid).reshape(B, cells, W * channels)
    return (weights(H) @ rows).view(B, H, W, channels)


def _ellipses(x, y, cx, cy, ax, ay, angle) -> torch.Tensor:
    """(B, H, W) bool inside rotated ellipses (centre, semi-axes, angle: (B,) each).

    Written as the quadratic form qxx x^2 + qxy x y + qyy y^2 + ... <= 1 split into an x part
    (B, 1, W), a y part (B, H, 1) and the cross term, so only three ops touch every pixel.
    """
    c, s = angle.cos(), angle.sin()
    ia, ib = 1 / ax.clamp(min=1e-6) ** 2, 1 / ay.clamp(min=1e-6) ** 2
    qxx, qyy, qxy = c * c * ia + s * s * ib, s * s * ia + c * c * ib, 2 * c * s * (ia - ib)
    col = lambda v: v[:, None, None]  # noqa: E731
    dx, dy = x - col(cx), y - col(cy)
    q = col(qxx) * dx * dx + col(qyy) * dy * dy
    return q.addcmul_(col(qxy) * dx, dy) <= 1


def random_backgrounds(B: int, H: int, W: int, generator: torch.Generator, n_shapes: int = 6) -> torch.Tensor:
    """(B, H, W, 3) cluttered backgrounds: a two-colour gradient, up to ``n_shapes`` flat-coloured
    rotated ellipses and rectangles, and a low-frequency texture that shades it all.

    Faces must be found against varied, structured backgrounds, not a constant colour; every
    ingredient is random per image (including how many shapes and how strong the texture).
    """
    dev = generator.device
    x, y = _grid(H, W, dev)
    side = max(H, W)
    col = lambda v: v[:, None, None]  # noqa: E731
    # Gradient between two colours along a random direction.
    c0, c1, theta = _rand(generator, B, 3), _rand(generator, B, 3), _rand(generator, B) * (2 * math.pi)
    ramp = (x - (W - 1) / 2) * col(theta.cos() / side) + (y - (H - 1) / 2) * col(theta.sin() / side)
    base = torch.addcmul(col(c0), (ramp + 0.5).unsqueeze(-1), col(c1 - c0))
    # Clutter painted in order (even slots ellipses, odd slots axis-aligned rectangles); the top
    # shape index per pixel picks the colour from a small table.
    g = _rand(generator, 6, n_shapes, B)
    present = g[0] < _rand(generator, B)  # each image shows a random share of the shapes
    top = torch.zeros(B, H, W, dtype=torch.uint8, device=dev)
    for k in range(n_shapes):
        cx, cy, ax = g[1, k] * W, g[2, k] * H, (0.04 + 0.3 * g[3, k]) * side * present[k]
        ay = ax * (0.3 + 1.4 * g[4, k])
        if k % 2 == 0:
            inside = _ellipses(x, y, cx, cy, ax, ay, g[5, k] * math.pi)
        else:
            inside = ((x - col(cx)).abs() <= col(ax)) & ((y - col(cy)).abs() <= col(ay))
        torch.maximum(top, inside.view(torch.uint8) * (k + 1), out=top)
    # Colours as packed 8-bit RGBA words: one 4-byte gather per pixel instead of three floats.
    colours = torch.cat([torch.zeros(B, 1, 4, device=dev), _rand(generator, B, n_shapes, 4)], 1)
    colours = (colours * 255).round().to(torch.uint8).view(torch.int32).view(-1)
    index = top.int() + torch.arange(B, device=dev, dtype=torch.int32).view(B, 1, 1) * (n_shapes + 1)
    rgba = colours.index_select(0, index.view(-1)).view(torch.uint8).view(B, H, W, 4)
    img = torch.addcmul(rgba.float()[..., :3].mul_(1 / 255), base, (top == 0).unsqueeze(-1))
    # Low-frequency texture as multiplicative shading of random strength.
    shading = _smooth_field(generator, B, H, W, 6, 3) * (0.8 * _rand(generator, B, 1, 1, 1))
    return img.mul_(shading.add_(1)).clamp_(0, 1)


def draw_occluders(
    images: torch.Tensor,
    generator: torch.Generator,
    prob: float = 0.3,
    kinds: tuple[str, ...] = ("bar", "blob"),
    boxes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint an occluder on each image with probability ``prob``; returns (images, mask (B, H, W)).

    Kinds: "bar" is a long rotated rectangle (glasses, scarf, microphone), "blob" a hand-like
    union of four ellipses (a palm and three fingers); each occluded image gets one, the kind
    drawn uniformly from ``kinds``. Occluders are placed relative to ``boxes``
    (B, 4) = x1, y1, x2, y2 (the faces), or the whole image, so they actually cover faces. The
    mask marks occluded pixels: SynthFace uses it to set landmark visibility.
    """
    unknown = set(kinds) - {"bar", "blob"}
    if unknown or not kinds:
        raise ValueError(f"draw_occluders: kinds must be from ('bar', 'blob'), got {kinds}")
    B, H, W, _ = images.shape
    dev = generator.device
    u = _rand(generator, 18, B)  # all draws up front: results do not depend on which images get one
    chosen = (u[0] < prob).nonzero().squeeze(1)
    mask = torch.zeros(B, H, W, dtype=torch.bool, device=images.device)
    if len(chosen) == 0:
        return images.clone(), mask
    u = u[:, chosen]
    if boxes is None:
        boxes = torch.tensor([0.0, 0.0, W - 1.0, H - 1.0], device=dev).expand(B, 4)
    x1, y1, x2, y2 = boxes.to(device=dev, dtype=torch.float32)[chosen].unbind(-1)
    size = ((x2 - x1).clamp(min=1) * (y2 - y1).clamp(min=1)).sqrt()
    cx = (x1 + x2) / 2 + (u[1] - 0.5) * 0.6 * (x2 - x1)
    cy = (y1 + y2) / 2 + (u[2] - 0.5) * 0.6 * (y2 - y1)
    bar_kind = torch.tensor([k == "bar" for k in kinds], device=dev)
    is_bar = bar_kind[(u[3] * len(kinds)).long().clamp(max=len(kinds) - 1)]
    x, y = _grid(H, W, dev)
    col = lambda v: v[:, None, None]  # noqa: E731
    # Bar: rotated rectangle |u| <= half length, |v| <= half width, mostly near horizontal.
    angle = (u[4] - 0.5) * (math.pi / 2)
    c, s = col(angle.cos()), col(angle.sin())
    dx, dy = x - col(cx), y - col(cy)
    half_len, half_wid = col(size * (0.4 + 0.5 * u[5])), col(size * (0.05 + 0.12 * u[6]))
    along = dx * c + dy * s
    bar = (along.abs() <= half_len) & ((dy * c - dx * s).abs() <= half_wid)
    # Blob: palm ellipse plus three finger ellipses fanned out along a random direction.
    palm = size * (0.16 + 0.12 * u[7])
    blob = _ellipses(x, y, cx, cy, palm, palm * 1.2, u[8] * math.pi)
    direction = u[9] * (2 * math.pi)
    for k in range(3):
        a = direction + (k - 1) * 0.4 + (u[10 + k] - 0.5) * 0.25
        length = palm * (0.8 + 0.3 * u[13 + k])
        blob |= _ellipses(
            x, y, cx + (palm + 0.6 * length) * a.cos(), cy + (palm + 0.6 * length) * a.sin(),
            length, palm * (0.22 + 0.06 * u[16]), a,
        )
    occ = torch.where(col(is_bar), bar, blob)
    # Colour: random, or skin-like for hands, with a soft linear shading across the occluder.
    dark, light = torch.tensor([0.3, 0.18, 0.12], device=dev), torch.tensor([0.95, 0.8, 0.7], device=dev)
    skin = torch.lerp(dark, light, u[17, :, None])
    colour = torch.where(is_bar[:, None], _rand(generator, B, 3)[chosen], skin)
    shade = 0.8 + 0.2 * (along / half_len.clamp(min=1)).clamp_(-1, 1)
    paint = colour[:, None, None, :] * shade.unsqueeze(-1)
    sub = images.index_select(0, chosen)
    sub = torch.lerp(sub, paint.expand_as(sub), occ.unsqueeze(-1).to(sub.dtype))
    mask[chosen] = occ
    return images.index_copy(0, chosen, sub), mask


def _byte_pairs(generator: torch.Generator, shape: torch.Size) -> torch.Tensor:
    """Float tensor of sums of two uniform random bytes: triangular noise, mean 255.

    Sensor noise only needs the right mean and spread, and drawing 64 random bits and splitting them
    into bytes is about ten times cheaper than torch.randn on CPU.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=generator.device)
    pair = words.random_(-(2**63), None, generator=generator).view(torch.uint8)[: 2 * n].view(2, n)
    return pair[0].float().add_(pair[1]).view(shape)


def add_noise(images: torch.Tensor, sigma, generator: torch.Generator) -> torch.Tensor:
    """images + sigma * zero-mean unit-variance noise (sigma a float or (B,) per image), clamped
    to [0, 1]. The noise is triangular (sum of two uniforms), not Gaussian: see _byte_pairs."""
    sig = _per_image(sigma, images.shape[0], images.device).view(-1, *([1] * (images.ndim - 1)))
    scale = sig / math.sqrt(2 * (256**2 - 1) / 12)  # unit variance
    return torch.addcmul(images - 255 * scale, _byte_pairs(generator, images.shape), scale).clamp_(0, 1)


def gaussian_blur(images: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W, C) images; sigma (pixels) a float or (B,) per image.

    Images with sigma <= 0 are returned unchanged. Borders replicate the edge pixel. The kernel
    radius is ceil(3 * max sigma), applied as shifted multiply-adds (fast on CPU, unlike
    depthwise convolution).
    """
    B = images.shape[0]
    sig = _per_image(sigma, B, images.device).view(B)
    chosen = (sig > 0).nonzero().squeeze(1)
    if len(chosen) == 0:
        return images.clone()
    sig = sig[chosen]
    r = max(1, math.ceil(3 * float(sig.max())))
    taps = torch.arange(-r, r + 1, device=images.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps[None] / sig[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).view(len(chosen), 2 * r + 1, 1, 1, 1)
    out = images.index_select(0, chosen)
    for dim in (1, 2):
        n = out.shape[dim]
        edge_lo, edge_hi = out.narrow(dim, 0, 1), out.narrow(dim, n - 1, 1)
        padded = torch.cat([edge_lo.repeat_interleave(r, dim), out, edge_hi.repeat_interleave(r, dim)], dim)
        acc = padded.narrow(dim, 0, n) * kernel[:, 0]
        for k in range(1, 2 * r + 1):
            acc.addcmul_(padded.narrow(dim, k, n), kernel[:, k])
        out = acc
    return images.index_copy(0, chosen, out)
