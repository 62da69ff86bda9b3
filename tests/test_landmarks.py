"""Landmark schemes: counts, names, flip permutations and conversions."""

import numpy as np
import pytest
import torch

from falign.measure.landmarks import SCHEME_NAMES, Scheme, convert, convert_visibility, flip_points, get_scheme

EXPECTED_COUNTS = {"ibug68": 68, "ibug51": 51, "ibug49": 49, "five": 5, "afw6": 6,
                   "aflw-pifa34": 34, "helen194": 194, "cofw29": 29, "menpo39": 39,
                   "aflw21": 21, "aflw19": 19}
SYMMETRIC = [n for n in SCHEME_NAMES if get_scheme(n).flip_perm is not None]
DERIVED_FROM_68 = ["ibug51", "ibug49", "five", "afw6", "aflw-pifa34"]


def _mirror_name(name: str) -> str:
    return (name.replace("left", "\0").replace("right", "left").replace("\0", "right"))


def _random_points(n, batch=(3,), seed=0):
    return np.random.default_rng(seed).uniform(0, 200, (*batch, n, 2))


def test_every_scheme_is_registered_with_its_count():
    assert set(SCHEME_NAMES) == set(EXPECTED_COUNTS)
    for name, count in EXPECTED_COUNTS.items():
        scheme = get_scheme(name)
        assert isinstance(scheme, Scheme) and scheme.name == name
        assert scheme.n_points == len(scheme.point_names) == count
        assert len(set(scheme.point_names)) == count


def test_helen_groups_add_up_to_194():
    groups = {}
    for point in get_scheme("helen194").point_names:
        group = point.rsplit("_", 1)[0]
        groups[group] = groups.get(group, 0) + 1
    assert groups == {"contour": 41, "nose": 17, "outer_lip": 28, "inner_lip": 28,
                      "right_eye": 20, "left_eye": 20, "right_brow": 20, "left_brow": 20}


def test_get_scheme_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match="ibug68.*aflw19"):
        get_scheme("ibug69")
    scheme = get_scheme("five")
    assert get_scheme(scheme) is scheme


@pytest.mark.parametrize("name", SYMMETRIC)
def test_flip_perm_is_an_involution_mapping_left_names_to_right(name):
    scheme = get_scheme(name)
    perm = scheme.flip_perm
    np.testing.assert_array_equal(np.sort(perm), np.arange(scheme.n_points))
    np.testing.assert_array_equal(perm[perm], np.arange(scheme.n_points))
    for i, j in enumerate(perm):
        assert scheme.point_names[j] == _mirror_name(scheme.point_names[i]), (name, i, j)


def test_ibug68_flip_perm_is_the_standard_mirror_mapping():
    expected = {}
    pairs = [(i, 16 - i) for i in range(17)] + [(17 + i, 26 - i) for i in range(10)]
    pairs += [(27, 27), (28, 28), (29, 29), (30, 30), (31, 35), (32, 34), (33, 33),
              (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
              (48, 54), (49, 53), (50, 52), (51, 51), (55, 59), (56, 58), (57, 57),
              (60, 64), (61, 63), (62, 62), (65, 67), (66, 66)]
    for a, b in pairs:
        expected[a], expected[b] = b, a
    assert sorted(expected) == list(range(68))
    np.testing.assert_array_equal(get_scheme("ibug68").flip_perm, [expected[i] for i in range(68)])


def test_flip_perm_is_read_only():
    with pytest.raises(ValueError):
        get_scheme("ibug68").flip_perm[0] = 3


def test_schemes_without_a_known_symmetry_have_no_flip():
    for name in ("helen194", "menpo39"):
        assert get_scheme(name).flip_perm is None
        with pytest.raises(ValueError, match=name):
            flip_points(_random_points(get_scheme(name).n_points), 100, name)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_flipping_twice_is_the_identity(name):
    points = _random_points(get_scheme(name).n_points)
    once = flip_points(points, 201, name)
    np.testing.assert_allclose(flip_points(once, 201, name), points)
    assert not np.allclose(once, points)


def test_flip_mirrors_about_the_pixel_centre_axis_and_swaps_sides():
    points = _random_points(68, batch=())
    flipped = flip_points(points, 120, "ibug68")
    # the flipped image-left outer eye corner is the mirrored image-right one
    np.testing.assert_allclose(flipped[36], [119 - points[45, 0], points[45, 1]])
    np.testing.assert_allclose(flipped[8], [119 - points[8, 0], points[8, 1]])


def test_flip_works_on_torch_and_per_image_widths():
    points = _random_points(68, batch=(2,))
    widths = np.array([[150.0], [210.0]])
    expected = np.stack([flip_points(points[k], widths[k, 0], "ibug68") for k in range(2)])
    np.testing.assert_allclose(flip_points(points, widths, "ibug68"), expected)
    flipped = flip_points(torch.tensor(points), torch.tensor(widths), "ibug68")
    np.testing.assert_allclose(flipped.numpy(), expected)


@pytest.mark.parametrize("name", DERIVED_FROM_68)
def test_conversion_commutes_with_flipping(name):
    # derived flip permutations are consistent with the 68-point one
    points = _random_points(68)
    np.testing.assert_allclose(flip_points(convert(points, "ibug68", name), 300, name),
                               convert(flip_points(points, 300, "ibug68"), "ibug68", name))


def test_68_to_five_takes_eye_means_nose_tip_and_mouth_corners():
    points = _random_points(68)
    five = convert(points, "ibug68", "five")
    assert five.shape == (3, 5, 2)
    np.testing.assert_allclose(five[:, 0], points[:, 36:42].mean(axis=1))
    np.testing.assert_allclose(five[:, 1], points[:, 42:48].mean(axis=1))
    np.testing.assert_allclose(five[:, 2:], points[:, [30, 48, 54]])


def test_68_to_afw6():
    points = _random_points(68)
    afw = convert(points, "ibug68", "afw6")
    np.testing.assert_allclose(afw[:, :2], convert(points, "ibug68", "five")[:, :2])
    np.testing.assert_allclose(afw[:, [2, 3, 5]], points[:, [30, 48, 54]])
    np.testing.assert_allclose(afw[:, 4], (points[:, 62] + points[:, 66]) / 2)


def test_68_to_subsets_and_chained_conversion():
    points = _random_points(68)
    np.testing.assert_array_equal(convert(points, "ibug68", "ibug51"), points[:, 17:])
    keep49 = [i for i in range(17, 68) if i not in (60, 64)]
    np.testing.assert_array_equal(convert(points, "ibug68", "ibug49"), points[:, keep49])
    np.testing.assert_array_equal(convert(convert(points, "ibug68", "ibug51"), "ibug51", "ibug49"),
                                  points[:, keep49])
    np.testing.assert_allclose(convert(convert(points, "ibug68", "ibug51"), "ibug51", "five"),
                               convert(points, "ibug68", "five"))
    pifa = convert(points, "ibug68", "aflw-pifa34")
    assert pifa.shape == (3, 34, 2)
    aflw = _random_points(21)
    np.testing.assert_array_equal(convert(aflw, "aflw21", "aflw19"),
                                  np.delete(aflw, [12, 16], axis=1))


def test_identity_conversion_returns_a_copy():
    points = _random_points(29)
    out = convert(points, "cofw29", "cofw29")
    np.testing.assert_array_equal(out, points)
    out[0, 0, 0] = -1
    assert points[0, 0, 0] != -1


def test_convert_accepts_torch_and_keeps_dtype():
    points = _random_points(68).astype(np.float32)
    out = convert(torch.from_numpy(points), "ibug68", "five")
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), convert(points, "ibug68", "five"), rtol=1e-6)
    assert convert(points, "ibug68", "five").dtype == np.float32


@pytest.mark.parametrize("src,dst", [("five", "ibug68"), ("cofw29", "ibug68"),
                                     ("ibug51", "aflw-pifa34"), ("aflw19", "aflw21"),
                                     ("menpo39", "five")])
def test_undefined_conversions_name_both_schemes(src, dst):
    with pytest.raises(ValueError, match=f"'{src}' to '{dst}'"):
        convert(_random_points(get_scheme(src).n_points), src, dst)


def test_conversion_rejects_points_of_the_wrong_scheme():
    with pytest.raises(ValueError, match="ibug68"):
        convert(_random_points(51), "ibug68", "five")


def test_visibility_conversion_requires_all_sources_visible():
    visible = np.ones((2, 68), bool)
    visible[0, 40] = False     # one point of the image-left eye
    visible[1, 66] = False     # one inner-lip midpoint
    five = convert_visibility(visible, "ibug68", "five")
    np.testing.assert_array_equal(five, [[False, True, True, True, True], [True] * 5])
    afw = convert_visibility(visible, "ibug68", "afw6")
    np.testing.assert_array_equal(afw[1], [True, True, True, True, False, True])
    np.testing.assert_array_equal(convert_visibility(visible, "ibug68", "ibug51"), visible[:, 17:])
    torch_five = convert_visibility(torch.from_numpy(visible), "ibug68", "five")
    assert torch_five.dtype == torch.bool
    np.testing.assert_array_equal(torch_five.numpy(), five)


def test_normaliser_indices_of_derived_schemes():
    assert get_scheme("ibug68").outer_eye_corners == (36, 45)
    assert get_scheme("ibug51").outer_eye_corners == (19, 28)
    assert get_scheme("ibug49").eye_centre_groups == (tuple(range(19, 25)), tuple(range(25, 31)))
    assert get_scheme("five").eye_centre_groups == ((0,), (1,))
    assert get_scheme("afw6").outer_eye_corners is None
    pifa = get_scheme("aflw-pifa34")
    assert [pifa.point_names[i] for i in pifa.outer_eye_corners] == ["left_eye_outer",
                                                                    "right_eye_outer"]
    assert get_scheme("aflw19").eye_centre_groups == ((7,), (10,))
    assert get_scheme("menpo39").outer_eye_corners is None


# --- the chapter's functions (falign.chapters.landmarks) --------------------------------------------

def test_the_scheme_table_lists_every_scheme():
    from falign.chapters import landmarks as chapter

    table = chapter.scheme_table()
    assert list(table["scheme"]) == list(SCHEME_NAMES)
    assert table.set_index("scheme").loc["ibug68", "normalisers available"] == "inter-ocular, inter-pupil, box-based"


def test_toy_faces_are_seeded_and_scored_under_every_normaliser():
    from falign.chapters import landmarks as chapter
    from falign.measure import metrics

    gt, pred, visible = chapter.toy_faces(20, seed=3)
    again = chapter.toy_faces(20, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((gt, pred, visible), again))
    assert gt.shape == pred.shape == (20, 68, 2) and visible.shape == (20, 68) and visible.dtype == bool
    errors = chapter.toy_errors(pred, gt, visible)
    assert list(errors) == list(chapter.NORMALISERS)
    assert np.allclose(errors["box width"], metrics.nme(pred, gt, norm="box-width", boxes=metrics.landmark_boxes(gt)))
    assert np.allclose(errors["inter-ocular, visible only"],
                       metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68", visible=visible))
    summary = chapter.toy_summary(errors)
    assert "mean (%)" in summary.columns and "n" in summary.columns
    assert np.isclose(summary.loc[0, "mean (%)"], 100 * metrics.mean_error(errors["inter-ocular"]))
    ratios = chapter.normaliser_ratios(gt, errors)
    assert (ratios.set_index("normaliser d").loc["inter-pupil", "median d / d_inter-ocular"] < 1)


def test_integrated_aucs_approach_the_exact_one_and_failures_differ_only_on_ties():
    from falign.chapters import landmarks as chapter

    errors = np.random.default_rng(0).uniform(0, 0.12, 500)
    table, exact = chapter.auc_integration(errors, 0.08)
    assert abs(table["trapezoid − exact"].iloc[-1]) < 1e-3 and (table["rectangle (left) − exact"] < 0).all()
    rules = chapter.failure_rules(np.array([0.05, 0.08, 0.081, 0.2]), 0.08)
    assert rules["failure rate, e ≥ α (ours, %)"].iloc[0] - rules["failure rate, e > α (%)"].iloc[0] == 25.0


def test_faces_with_no_scored_point_are_left_out_with_a_warning():
    from falign.chapters import landmarks as chapter

    gt, pred, visible = chapter.toy_faces(10, seed=0)
    errors = chapter.fully_hidden(pred, gt, visible, n=3)
    assert np.isnan(errors[:3]).all() and np.isfinite(errors[3:]).all()
    mean, warning = chapter.mean_error_and_warning(errors)
    assert np.isclose(mean, errors[3:].mean()) and "3 of 10" in warning
    assert chapter.mean_error_and_warning(errors[3:])[1] == ""


def test_the_mean_face_is_its_own_mirror_image():
    """The rendered mean face is symmetric and centred, so flip_perm must map its landmarks onto
    themselves: the flip permutation checked against the model's geometry."""
    from falign.chapters import landmarks as chapter

    face = chapter.mean_face(96)
    assert face.image.shape == (96, 96, 3) and face.points68.shape == (68, 2)
    assert chapter.mirror_gap(face) < 1e-3
    inter_ocular, inter_pupil = chapter.mean_face_normalisers(face)
    assert inter_pupil < inter_ocular
