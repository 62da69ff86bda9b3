"""Tests of falign.synthface.render: coverage rules, z-buffer, interpolation, visibility, image helpers."""

import math

import pytest
import torch

from falign.synthface import render


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: threads only add overhead on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grid_mesh(xs, ys, z=None):
    """Vertices on the grid xs x ys (screen coords, z = 0 or a function) and its triangles,
    counter-clockwise as seen (front-facing)."""
    xs, ys = torch.as_tensor(xs, dtype=torch.float32), torch.as_tensor(ys, dtype=torch.float32)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    zz = torch.zeros_like(xx) if z is None else z(xx, yy)
    verts = torch.stack([xx, yy, zz], -1).view(-1, 3)
    nx, ny = len(xs), len(ys)
    i = torch.arange(nx * ny).view(ny, nx)
    a, b, c, d = i[:-1, :-1], i[:-1, 1:], i[1:, :-1], i[1:, 1:]
    # On screen (y down) a -> c -> d is counter-clockwise as the viewer sees it.
    tris = torch.cat([torch.stack([a, c, d], -1).view(-1, 3), torch.stack([a, d, b], -1).view(-1, 3)])
    return verts, tris


def icosphere(subdivisions=3):
    """Unit sphere (V, 3) with outward, counter-clockwise-from-outside triangles (x right, y up)."""
    t = (1 + 5**0.5) / 2
    v = torch.tensor(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
         [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=torch.float32)
    f = torch.tensor(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    for _ in range(subdivisions):
        edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(1).values
        uniq, inv = torch.unique(edges, dim=0, return_inverse=True)
        mid = len(v) + inv.view(3, -1)  # new vertex per edge: ab, bc, ca
        v = torch.cat([v, (v[uniq[:, 0]] + v[uniq[:, 1]]) / 2])
        a, b, c = f.unbind(1)
        ab, bc, ca = mid
        f = torch.cat([torch.stack(s, 1) for s in ([a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca])])
    return torch.nn.functional.normalize(v, dim=1), f


def sphere_screen(H, radius=0.4, subdivisions=3):
    """Sphere centred in an H x H image: screen verts (1, V, 3) (z toward the viewer), triangles,
    screen-frame normals (1, V, 3)."""
    v, f = icosphere(subdivisions)
    s = radius * H
    screen = torch.stack([(H - 1) / 2 + s * v[:, 0], (H - 1) / 2 - s * v[:, 1], s * v[:, 2]], -1)
    normals = torch.stack([v[:, 0], -v[:, 1], v[:, 2]], -1)  # screen frame: x right, y down, z near
    return screen[None], f, normals[None]


def per_triangle_coverage(verts, tris, H, W):
    """(F, H, W) bool coverage of each triangle alone: unshared vertices, one batch item per
    triangle, every other triangle moved off screen."""
    F_ = len(tris)
    own = verts[tris.reshape(-1)].view(F_, 3, 3)  # triangle f uses vertices 3f..3f+2
    batch = own.expand(F_, F_, 3, 3).clone()
    off = ~torch.eye(F_, dtype=torch.bool)
    batch[off] = batch[off] + torch.tensor([-10 * W, 0.0, 0.0])
    r = render.rasterize(batch.view(F_, 3 * F_, 3), torch.arange(3 * F_).view(F_, 3), H, W)
    return r.tri_index >= 0


def pixel_centres_inside_box(x0, y0, x1, y1, H, W):
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)


# ---------------------------------------------------------------------------------------------
# Coverage


def test_square_of_two_triangles_covers_each_pixel_once():
    verts, tris = grid_mesh([2.3, 20.6], [3.7, 17.2])
    cover = per_triangle_coverage(verts, tris, 24, 24)
    assert cover.sum(0).max() == 1
    assert torch.equal(cover.any(0), pixel_centres_inside_box(2.3, 3.7, 20.6, 17.2, 24, 24))
    r = render.rasterize(verts[None], tris, 24, 24)
    assert torch.equal(r.tri_index[0] >= 0, cover.any(0))


def test_edges_through_pixel_centres_have_one_owner():
    # Integer vertices: every edge and vertex lies on pixel centres, so only the tie-break decides.
    verts, tris = grid_mesh([1, 4, 5, 9, 12], [2, 3, 7, 11])
    cover = per_triangle_coverage(verts, tris, 14, 14).sum(0)
    assert cover.max() == 1
    assert (cover[3:11, 2:12] == 1).all()  # strictly inside the outer boundary


@pytest.mark.parametrize("seed", [0, 1])
def test_jittered_mesh_with_small_and_wide_triangles_has_no_cracks(seed):
    # Uneven spacing mixes narrow (exact float32) and wide (float64) triangles sharing edges.
    g = torch.Generator().manual_seed(seed)
    xs = torch.tensor([1.3, 3.1, 4.2, 45.9, 47.3, 50.6])
    ys = torch.tensor([0.7, 2.4, 6.8, 40.1, 43.6])
    verts, tris = grid_mesh(xs, ys)
    ny, nx = len(ys), len(xs)
    interior = torch.zeros(ny, nx, dtype=torch.bool)
    interior[1:-1, 1:-1] = True
    verts[interior.view(-1), :2] += (torch.rand(int(interior.sum()), 2, generator=g) - 0.5) * 0.9
    cover = per_triangle_coverage(verts, tris, 48, 56).sum(0)
    assert cover.max() == 1
    assert torch.equal(cover == 1, pixel_centres_inside_box(1.3, 0.7, 50.6, 43.6, 48, 56))


def brute_force_raster(verts, tris, H, W):
    """Reference: every pixel against every triangle in float64, same snapping and tie-break."""
    v = verts.double()
    snap = (v[:, :2] * 16).round()
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    p = torch.stack([xs, ys], -1).view(-1, 1, 2).double() * 16  # (P, 1, 2)
    corners = snap[tris]  # (F, 3, 2)
    a, b = corners.roll(-1, 1), corners.roll(-2, 1)  # edge i from corner i+1 to i+2
    d1, d2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    sgn = -area.sign()[:, None]  # front-facing = negative area
    A, B = (b[..., 1] - a[..., 1]) * sgn, (a[..., 0] - b[..., 0]) * sgn
    E = A * (p[..., 0:1] - a[..., 0]) + B * (p[..., 1:2] - a[..., 1])  # (P, F, 3), exact
    owner = (A > 0) | ((A == 0) & (B > 0))
    inside = ((E > 0) | ((E == 0) & owner)).all(-1) & (area != 0)
    raw = v[tris]  # unsnapped corners for depth
    d1, d2 = raw[:, 1, :2] - raw[:, 0, :2], raw[:, 2, :2] - raw[:, 0, :2]
    det = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    q = p[..., :] / 16 - raw[:, 0, :2]  # (P, F, 2)
    w1 = (q[..., 0] * d2[:, 1] - q[..., 1] * d2[:, 0]) / det
    w2 = (d1[:, 0] * q[..., 1] - d1[:, 1] * q[..., 0]) / det
    z = raw[:, 0, 2] + w1 * (raw[:, 1, 2] - raw[:, 0, 2]) + w2 * (raw[:, 2, 2] - raw[:, 0, 2])
    z = torch.where(inside, z, -math.inf)
    best, index = z.max(1)
    second = z.topk(2, dim=1).values[:, 1] if z.shape[1] > 1 else torch.full_like(best, -math.inf)
    index = torch.where(torch.isfinite(best), index, -1)
    margin = torch.where(torch.isfinite(best), best - second, math.inf)  # inf: one or no surface
    return index.view(H, W), best.view(H, W), margin.view(H, W)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed):
    # Overlapping random triangles of all sizes (tiny to larger than the image), both windings.
    g = torch.Generator().manual_seed(seed)
    H, W, F_ = 24, 30, 60
    centre = torch.rand(F_, 1, 2, generator=g) * torch.tensor([W + 10.0, H + 10.0]) - 5
    scale = torch.exp(torch.rand(F_, 1, 1, generator=g) * 5 - 1.5)  # 0.2 .. 30 px
    xy = centre + scale * (torch.rand(F_, 3, 2, generator=g) - 0.5) * 2
    z = torch.rand(F_, 3, 1, generator=g) * 10
    verts = torch.cat([xy, z], -1).view(-1, 3)
    tris = torch.arange(3 * F_).view(F_, 3)
    ref_index, ref_depth, margin = brute_force_raster(verts, tris, H, W)
    r = render.rasterize(verts[None], tris, H, W)
    clear = margin > 1e-4  # skip pixels where two surfaces are within rounding of each other
    assert clear.float().mean() > 0.9
    assert torch.equal(r.tri_index[0][clear], ref_index[clear])
    covered = ref_index >= 0
    assert torch.allclose(r.depth[0][covered].double(), ref_depth[covered], atol=1e-3)
    cull = render.rasterize(verts[None], tris, H, W, cull_backfaces=True).tri_index[0]
    front = brute_force_raster(verts, tris[_signed_area(verts, tris) < 0], H, W)[0]
    keep = torch.nonzero(_signed_area(verts, tris) < 0).squeeze(1)
    expected = torch.where(front >= 0, keep[front.clamp(min=0)], -1)
    margin_front = brute_force_raster(verts, tris[keep], H, W)[2] > 1e-4
    assert torch.equal(cull[margin_front], expected[margin_front])


def _signed_area(verts, tris):
    s = (verts[:, :2].double() * 16).round()[tris]
    d1, d2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    return d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]


def test_triangles_partly_outside_the_image_are_clipped():
    verts, tris = grid_mesh([-30.5, 10.2, 70.3], [-20.4, 5.5, 50.7])
    r = render.rasterize(verts[None], tris, 32, 40)
    assert (r.tri_index >= 0).all()


def test_backface_culling():
    verts, tris = grid_mesh([1.5, 9.5], [1.5, 9.5])
    front = render.rasterize(verts[None], tris, 12, 12, cull_backfaces=True).tri_index
    back = render.rasterize(verts[None], tris.flip(1), 12, 12, cull_backfaces=True).tri_index
    both = render.rasterize(verts[None], tris.flip(1), 12, 12).tri_index
    assert (front >= 0).sum() == 64 and (back < 0).all() and (both >= 0).sum() == 64


def test_degenerate_and_nonfinite_triangles_are_ignored():
    verts = torch.tensor([[[1.0, 1, 0], [9, 1, 0], [5, 1, 0], [1, 2, 0], [9, 9, math.nan], [1, 9, 0]]])
    tris = torch.tensor([[0, 1, 2], [3, 4, 5]])  # a zero-area triangle, one with a NaN corner
    assert (render.rasterize(verts, tris, 12, 12).tri_index == -1).all()


# ---------------------------------------------------------------------------------------------
# Depth, barycentrics, interpolation


@pytest.mark.parametrize("flip_order", [False, True])
def test_nearer_of_two_overlapping_quads_wins(flip_order):
    va, ta = grid_mesh([2.5, 14.5], [2.5, 14.5], z=lambda x, y: torch.full_like(x, 1.0))
    vb, tb = grid_mesh([8.5, 20.5], [8.5, 20.5], z=lambda x, y: torch.full_like(x, 3.0))
    verts, tris = torch.cat([va, vb]), torch.cat([ta, tb + len(va)])
    if flip_order:
        tris = tris.flip(0)
    r = render.rasterize(verts[None], tris, 24, 24)
    b_ids = torch.arange(2, 4) if not flip_order else torch.arange(0, 2)
    overlap = pixel_centres_inside_box(8.5, 8.5, 14.5, 14.5, 24, 24)
    assert torch.isin(r.tri_index[0][overlap], b_ids).all()
    assert (r.depth[0][overlap] == 3.0).all()
    only_a = pixel_centres_inside_box(2.5, 2.5, 14.5, 14.5, 24, 24) & ~overlap
    assert (r.depth[0][only_a] == 1.0).all()
    assert torch.isinf(r.depth[0][r.tri_index[0] < 0]).all()


def test_barycentrics_interpolate_linear_functions_exactly():
    g = torch.Generator().manual_seed(0)
    verts, tris = grid_mesh(torch.linspace(1.2, 60.7, 9), torch.linspace(0.6, 45.3, 7))
    verts[:, :2] += (torch.rand(len(verts), 2, generator=g) - 0.5) * 2.0
    verts[:, 2] = 0.3 * verts[:, 0] - 0.2 * verts[:, 1] + 5.0  # a plane: depth is linear too
    r = render.rasterize(verts[None], tris, 48, 64)
    covered = r.tri_index[0] >= 0
    assert covered.sum() > 2000
    assert torch.allclose(r.bary[0][covered].sum(-1), torch.ones(()), atol=1e-5)
    # Coverage uses vertices snapped to 1/16 px, barycentrics the exact ones: tiny overshoots.
    assert (r.bary[0][covered] > -0.02).all() and (r.bary[0][~covered] == 0).all()
    attr = torch.stack([2 * verts[:, 0] + 3 * verts[:, 1] - 1, -verts[:, 1]], -1)[None]
    out = render.interpolate(attr, tris, r.tri_index, r.bary)[0]
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    expected = torch.stack([2 * xx + 3 * yy - 1, -yy], -1)
    assert torch.allclose(out[covered], expected[covered], atol=2e-4)
    assert (out[~covered] == 0).all()
    assert torch.allclose(r.depth[0][covered], (0.3 * xx - 0.2 * yy + 5.0)[covered], atol=2e-5)


# ---------------------------------------------------------------------------------------------
# Visibility and point z-buffer


@pytest.mark.parametrize("cull", [False, True])
def test_sphere_visible_vertices_are_the_front_half(cull):
    H = 96
    verts, tris, _ = sphere_screen(H)
    r = render.rasterize(verts, tris, H, H, cull_backfaces=cull)
    vis = render.vertex_visibility(verts, r.depth, tol=0.02 * H)[0]
    z = verts[0, :, 2] / (0.4 * H)  # unit sphere z
    assert vis[z > 0.15].all()
    assert not vis[z < -0.15].any()


def test_vertex_visibility_outside_image_and_background():
    depth = torch.full((1, 4, 5), -math.inf)
    depth[0, 1, 2] = 2.0
    verts = torch.tensor([[[2.2, 0.9, 1], [2.0, 1.0, 2.5], [1, 1, -9], [-0.6, 1, 9], [4.4, 3.4, 0]]])
    vis = render.vertex_visibility(verts, depth, tol=0.1)
    assert vis.tolist() == [[False, True, True, False, True]]


def test_zbuffer_points_nearest_wins():
    xy = torch.tensor([[[1.2, 2.3], [0.8, 1.7], [1.0, 2.0], [3.0, 0.0], [9.0, 9.0], [-0.7, 0.0]]])
    z = torch.tensor([[1.0, 3.0, 2.0, -5.0, 100.0, 100.0]])
    idx = render.zbuffer_points(xy, z, 4, 5)
    assert idx.shape == (1, 4, 5) and idx.dtype == torch.long
    assert idx[0, 2, 1] == 1 and idx[0, 0, 3] == 3
    assert (idx >= 0).sum() == 2  # the last two points are outside the image


def test_zbuffer_points_batched_independent():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3, 50, 2, generator=g) * 8
    z = torch.randn(3, 50, generator=g)
    both = render.zbuffer_points(xy, z, 8, 8)
    for b in range(3):
        assert torch.equal(both[b], render.zbuffer_points(xy[b : b + 1], z[b : b + 1], 8, 8)[0])


# ---------------------------------------------------------------------------------------------
# Shading and rendering


def test_lit_sphere_is_brighter_on_the_lit_side():
    H = 64
    verts, tris, normals = sphere_screen(H)
    albedo = torch.full((verts.shape[1], 3), 0.8)
    light = torch.tensor([[1.0, 0.0, 0.5]])  # from the right, toward the viewer
    rgb, mask = render.render_mesh(verts, tris, albedo, normals, light, 0.1, 0.9, H, H, cull_backfaces=True)
    assert rgb.shape == (1, H, H, 3) and rgb.dtype == torch.float32 and mask.dtype == torch.bool
    assert 0 <= rgb.min() and rgb.max() <= 1
    lum = rgb[0].mean(-1)
    right = lum[:, H // 2 + 4 :][mask[0][:, H // 2 + 4 :]]
    left = lum[:, : H // 2 - 4][mask[0][:, : H // 2 - 4]]
    assert right.mean() > left.mean() + 0.3
    assert (rgb[0][~mask[0]] == 0).all()  # black background by default


def test_render_mesh_composites_background_and_reuses_raster():
    H = 32
    verts, tris, normals = sphere_screen(H)
    bg = torch.full((1, H, H, 3), 0.25)
    raster = render.rasterize(verts, tris, H, H)
    args = (verts, tris, torch.rand(verts.shape[1], 3), normals, torch.tensor([[0.0, 0, 1]]), 0.3, 0.7, H, H)
    rgb, mask = render.render_mesh(*args, background=bg)
    rgb2, mask2 = render.render_mesh(*args, background=bg, raster=raster)
    assert torch.equal(rgb, rgb2) and torch.equal(mask, mask2)
    assert (rgb[0][~mask[0]] == 0.25).all() and mask.float().mean() > 0.3


def test_shade_is_lambert_plus_ambient():
    normals = torch.tensor([[[0.0, 0, 1], [0, 0, -1], [1, 0, 0]]])
    albedo = torch.tensor([[0.5, 1.0, 1.0]]).expand(3, 3)
    out = render.shade(normals, albedo, torch.tensor([[0.0, 0, 2]]), torch.tensor([0.2]), torch.tensor([0.6]))
    expected = torch.tensor([0.8, 0.2, 0.2])[:, None] * torch.tensor([0.5, 1.0, 1.0])
    assert torch.allclose(out[0], expected)


# ---------------------------------------------------------------------------------------------
# Determinism, shapes, errors


def test_cpu_results_identical_across_calls():
    g = torch.Generator().manual_seed(3)
    verts, tris, normals = sphere_screen(48)
    verts = verts + torch.rand(4, *verts.shape[1:], generator=g) * 0.3
    a = render.rasterize(verts, tris, 48, 48)
    b = render.rasterize(verts, tris, 48, 48)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.tri_index.shape == (4, 48, 48) and a.tri_index.dtype == torch.long
    assert a.bary.shape == (4, 48, 48, 3) and a.bary.dtype == torch.float32
    assert a.depth.shape == (4, 48, 48) and a.depth.dtype == torch.float32


def test_batch_items_are_independent():
    verts, tris, _ = sphere_screen(40)
    shifted = verts + torch.tensor([5.3, -2.1, 0.0])
    both = render.rasterize(torch.cat([verts, shifted]), tris, 40, 40)
    one = render.rasterize(shifted, tris, 40, 40)
    assert all(torch.equal(x[1], y[0]) for x, y in zip(both, one))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="verts"):
        render.rasterize(torch.zeros(4, 3), torch.zeros(1, 3, dtype=torch.long), 8, 8)
    with pytest.raises(ValueError, match="triangles"):
        render.rasterize(torch.zeros(1, 4, 3), torch.zeros(3, dtype=torch.long), 8, 8)
    with pytest.raises(ValueError, match="kinds"):
        render.draw_occluders(torch.zeros(1, 8, 8, 3), torch.Generator(), kinds=("hat",))


def test_empty_scene():
    r = render.rasterize(torch.full((2, 3, 3), 100.0), torch.tensor([[0, 1, 2]]), 8, 8)
    assert (r.tri_index == -1).all() and (r.bary == 0).all() and torch.isinf(r.depth).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    verts, tris, normals = sphere_screen(64)
    cpu = render.rasterize(verts, tris, 64, 64)
    gpu = render.rasterize(verts.cuda(), tris.cuda(), 64, 64)
    assert torch.equal(cpu.tri_index, gpu.tri_index.cpu())
    assert torch.allclose(cpu.bary, gpu.bary.cpu(), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# SynthFace image helpers


def test_backgrounds_deterministic_by_seed():
    a = render.random_backgrounds(3, 40, 48, torch.Generator().manual_seed(7))
    b = render.random_backgrounds(3, 40, 48, torch.Generator().manual_seed(7))
    c = render.random_backgrounds(3, 40, 48, torch.Generator().manual_seed(8))
    assert a.shape == (3, 40, 48, 3) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.05


def test_occluders_deterministic_and_masked():
    images = torch.full((16, 32, 32, 3), 0.5)
    boxes = torch.tensor([8.0, 8.0, 24.0, 24.0]).expand(16, 4)
    out, mask = render.draw_occluders(images, torch.Generator().manual_seed(1), prob=0.6, boxes=boxes)
    out2, mask2 = render.draw_occluders(images, torch.Generator().manual_seed(1), prob=0.6, boxes=boxes)
    assert torch.equal(out, out2) and torch.equal(mask, mask2)
    assert mask.shape == (16, 32, 32) and mask.dtype == torch.bool
    assert (out[~mask] == 0.5).all()  # only occluded pixels change
    has = mask.flatten(1).any(1)
    assert 3 <= has.sum() <= 15
    assert (mask[has][:, 8:25, 8:25].flatten(1).any(1)).all()  # occluders overlap the box
    _, none = render.draw_occluders(images, torch.Generator().manual_seed(1), prob=0.0)
    assert not none.any()
    for kinds in (("bar",), ("blob",)):
        _, m = render.draw_occluders(images, torch.Generator().manual_seed(2), prob=1.0, kinds=kinds)
        assert m.flatten(1).any(1).all()


def test_noise_statistics_and_determinism():
    images = torch.full((4, 64, 64, 3), 0.5)
    a = render.add_noise(images, 0.05, torch.Generator().manual_seed(0))
    b = render.add_noise(images, 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    d = a - 0.5
    assert abs(d.mean()) < 2e-3 and abs(d.std() - 0.05) < 2e-3
    per_image = render.add_noise(images, torch.tensor([0.0, 0.1, 0.0, 0.0]), torch.Generator())
    assert (per_image[[0, 2, 3]] == 0.5).all() and per_image[1].std() > 0.05


def test_gaussian_blur():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 20, 24, 3, generator=g)
    flat = torch.full((1, 10, 10, 3), 0.3)
    assert torch.allclose(render.gaussian_blur(flat, 1.5), flat)  # borders replicate
    out = render.gaussian_blur(images, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(out[0], images[0])
    assert out[2].std() < out[1].std() < images[1].std()
    assert torch.allclose(out.mean((1, 2)), images.mean((1, 2)), atol=0.02)
    # Separable blur of a centred impulse is the outer product of the 1-D Gaussian.
    impulse = torch.zeros(1, 21, 21, 1)
    impulse[0, 10, 10] = 1
    k = render.gaussian_blur(impulse, 1.5)[0, :, :, 0]
    assert torch.allclose(k, k[10].outer(k[:, 10]) / k[10, 10], atol=1e-6)
    assert torch.allclose(k.sum(), torch.tensor(1.0), atol=1e-5)
