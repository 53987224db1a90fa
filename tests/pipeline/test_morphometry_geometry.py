"""Vessel morphometry on geometry with known answers (docs/MORPHOMETRY.md): lines, sines, tubes, fractals."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.engine import morphometry as M
from vessel_seg.pipeline.engine.optic_disc import OpticDisc, locate_optic_disc
from vessel_seg.pipeline.engine.skeleton import path_length, thin

N = 1024


def canvas() -> np.ndarray:
    return np.zeros((N, N), np.uint8)


def everywhere() -> np.ndarray:
    return np.ones((N, N), bool)


def measure(mask: np.ndarray, work_diameter: int = N) -> dict:
    return M.measure(mask.astype(bool), everywhere(), disc=OpticDisc(found=False, reason="test"),
                     work_diameter=work_diameter)


def sine_mask(amplitude: float, wavelength: float, angle: float = 0.3, thickness: int = 3) -> np.ndarray:
    img = canvas()
    x = np.arange(-450.0, 450.0, 0.25)
    y = amplitude * np.sin(2 * np.pi * x / wavelength)
    c, s = math.cos(angle), math.sin(angle)
    pts = np.stack([N / 2 + c * x - s * y, N / 2 + s * x + c * y], 1).round().astype(np.int32)
    cv2.polylines(img, [pts], False, 1, thickness)
    return img.astype(bool)


def sine_truth(amplitude: float, wavelength: float):
    """(arc / chord, total |curvature| per unit length) of y = A sin(2 pi x / wavelength), by integration."""
    k = 2 * np.pi / wavelength
    x = np.linspace(0.0, wavelength, 200001)
    arc = float(np.sum(np.sqrt(1 + (amplitude * k * np.cos(k * x[:-1])) ** 2) * np.diff(x)))
    # the tangent angle swings between +-atan(A k) twice per period
    return arc / wavelength, 4.0 * math.atan(amplitude * k) / arc


# ------------------------------------------------------------------------------------------- thinning
def test_thinning_gives_a_one_pixel_wide_curve_with_the_same_connectivity():
    _rgb, vessels, _fov = make_fundus(768, 768, seed=3)
    skel = thin(vessels)
    assert not (skel[:-1, :-1] & skel[1:, :-1] & skel[:-1, 1:] & skel[1:, 1:]).any()   # no 2x2 block
    assert skel.sum() < 0.5 * vessels.sum() and not (skel & ~vessels).any()
    n_before = cv2.connectedComponents(vessels.astype(np.uint8), connectivity=8)[0]
    n_after = cv2.connectedComponents(skel.astype(np.uint8), connectivity=8)[0]
    assert n_after == n_before


@pytest.mark.parametrize("angle_deg", [0, 20, 45, 70, 90])
def test_thinning_keeps_a_thick_line_at_any_angle_whole(angle_deg):
    img = canvas()
    a = math.radians(angle_deg)
    p0 = (int(N / 2 - 300 * math.cos(a)), int(N / 2 - 300 * math.sin(a)))
    p1 = (int(N / 2 + 300 * math.cos(a)), int(N / 2 + 300 * math.sin(a)))
    cv2.line(img, p0, p1, 1, 3)
    skel = thin(img)
    ends, branches = M.classify_skeleton(skel)
    assert ends.sum() == 2 and branches.sum() == 0
    # Kulpa's weights: -5.2 % (0 and 45 degrees) .. +2.7 % (22.5 degrees); thinning shortens each end a little
    assert 0.94 * 600 <= path_length(skel) <= 1.03 * 600


# ------------------------------------------------------------------------------------------- tortuosity
def test_a_straight_line_has_arc_chord_one_and_no_curvature():
    img = canvas()
    cv2.line(img, (100, 200), (900, 460), 1, 5)
    t = measure(img)["tortuosity"]
    assert t["segments"] == 1
    assert t["arc_chord"] == pytest.approx(1.0, abs=0.002)
    assert t["curvature_rad_per_fovd"] < 1.0            # a sine below has 10; pixel noise stays under 1


@pytest.mark.parametrize("amplitude,wavelength", [(20, 200), (40, 300), (10, 400)])
def test_a_sine_of_known_amplitude_has_its_arc_chord_and_curvature(amplitude, wavelength):
    arc_chord, turning_per_px = sine_truth(amplitude, wavelength)
    t = measure(sine_mask(amplitude, wavelength))["tortuosity"]
    assert t["arc_chord"] == pytest.approx(arc_chord, rel=0.01)
    assert t["curvature_rad_per_fovd"] == pytest.approx(turning_per_px * N, rel=0.12)


def test_tortuosity_is_length_weighted_over_segments():
    straight = canvas()
    cv2.line(straight, (50, 100), (950, 100), 1, 3)
    wavy = sine_mask(40, 300, angle=0.0)
    both = straight.astype(bool) | wavy
    t_wavy = measure(wavy)["tortuosity"]["arc_chord"]
    t_both = measure(both)["tortuosity"]
    assert t_both["segments"] == 2
    arc_wavy = 900 * t_wavy
    expected = (900 * 1.0 + arc_wavy * t_wavy) / (900 + arc_wavy)
    assert t_both["arc_chord"] == pytest.approx(expected, rel=0.003)


# ------------------------------------------------------------------------------------------- width
@pytest.mark.parametrize("width", [3, 5, 7, 9, 15])
def test_a_tube_of_known_width_measures_that_width(width):
    img = canvas()
    img[500:500 + width, 100:900] = 1
    w = measure(img)["width"]
    assert w["mean_fovd"] * N == pytest.approx(width, abs=0.05)
    assert w["median_fovd"] * N == pytest.approx(width, abs=0.05)
    assert sum(w["histogram"]["fraction"]) == pytest.approx(1.0, abs=1e-3)


def test_an_even_width_reads_at_most_one_working_pixel_low():
    img = canvas()
    img[500:508, 100:900] = 1
    assert 7.0 - 0.05 <= measure(img)["width"]["mean_fovd"] * N <= 8.0 + 0.05


def test_width_and_density_are_camera_independent_fractions_of_the_fov():
    """The same retina photographed with a FOV of 2400 pixels and (area-averaged) of 600 gives the same numbers."""
    d = 2400
    img = np.zeros((d, d), np.uint8)
    fov = np.zeros((d, d), np.uint8)
    cv2.circle(fov, (d // 2, d // 2), d // 2, 255, -1)
    cv2.line(img, (d // 10, d // 2), (9 * d // 10, d // 2), 255, 24)
    cv2.circle(img, (d // 2, d // 2), d // 4, 255, 16)
    out = []
    for size in (d, d // 4):
        m = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) >= 128
        f = cv2.resize(fov, (size, size), interpolation=cv2.INTER_AREA) >= 128
        out.append(M.measure(m, f, disc=OpticDisc(found=False, reason="test")))
    big, small = out
    assert small["density"]["fov"] == pytest.approx(big["density"]["fov"], rel=0.02)
    assert small["width"]["mean_fovd"] == pytest.approx(big["width"]["mean_fovd"], rel=0.05)
    assert small["length"]["total_fovd"] == pytest.approx(big["length"]["total_fovd"], rel=0.02)
    assert small["fractal_dimension"]["mask"] == pytest.approx(big["fractal_dimension"]["mask"], abs=0.02)
    assert big["width"]["mean_px"] == pytest.approx(4 * small["width"]["mean_px"], rel=0.05)


# ------------------------------------------------------------------------------------------- fractal dimension
def test_box_counting_dimension_of_a_filled_square_is_two():
    square = np.zeros((N, N), bool)
    square[256:768, 256:768] = True
    assert M.box_counting_dimension(square, [2, 4, 8, 16, 32, 64, 128]) == pytest.approx(2.0, abs=1e-9)


def test_box_counting_dimension_of_a_line_is_one():
    line = np.zeros((N, N), bool)
    line[300, :] = True
    assert M.box_counting_dimension(line, [2, 4, 8, 16, 32, 64, 128]) == pytest.approx(1.0, abs=1e-9)


def test_box_counting_dimension_of_the_sierpinski_triangle_is_log2_of_3():
    i, j = np.ogrid[:N, :N]
    sierpinski = (i & j) == 0
    assert M.box_counting_dimension(sierpinski, [2, 4, 8, 16, 32, 64, 128]) == pytest.approx(math.log(3, 2),
                                                                                            abs=1e-9)


def test_fractal_dimension_of_mask_and_skeleton_in_the_result():
    fd = measure(sine_mask(20, 200))["fractal_dimension"]
    assert 0.9 <= fd["skeleton"] <= fd["mask"] < 1.3      # a finite curve: a little under 1 at large boxes


def test_an_empty_mask_has_null_measurements_not_errors():
    m = measure(canvas())
    assert m["density"]["fov"] == 0.0
    assert m["fractal_dimension"]["mask"] is None and m["tortuosity"]["arc_chord"] is None
    assert m["width"]["mean_fovd"] is None and m["end_points"] == 0 and m["branch_points"] == 0


# ------------------------------------------------------------------------------------------- branch points
def test_a_cross_has_one_branch_point_and_four_ends():
    img = canvas()
    cv2.line(img, (200, 512), (800, 512), 1, 5)
    cv2.line(img, (512, 200), (512, 800), 1, 5)
    m = measure(img)
    assert m["branch_points"] == 1 and m["end_points"] == 4


# ------------------------------------------------------------------------------------------- zones
def test_zone_densities_follow_their_rings_around_the_disc():
    r = 40.0
    centre = (512.0, 512.0)
    yy, xx = np.ogrid[:N, :N]
    d = np.sqrt((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2)
    ring_b = (d >= 2 * r) & (d < 3 * r)          # exactly zone B filled
    m = M.measure(ring_b, everywhere(), disc=OpticDisc(found=True, x=centre[0], y=centre[1], radius=r),
                  work_diameter=N)
    assert m["density"]["zone_b"] == pytest.approx(1.0, abs=0.01)
    assert m["density"]["zone_c"] == pytest.approx((9 - 4) / (25 - 4.0), abs=0.01)
    assert m["density"]["zone_reason"] is None and m["optic_disc"]["found"] is True


def test_without_an_optic_disc_the_zones_are_null_with_the_reason():
    gray = np.full((600, 600, 3), 120, np.uint8)
    fov = np.zeros((600, 600), np.uint8)
    cv2.circle(fov, (300, 300), 280, 1, -1)
    disc = locate_optic_disc(gray, fov.astype(bool))
    assert not disc.found and "brighter" in disc.reason
    m = M.measure(np.zeros((600, 600), bool), fov.astype(bool), rgb=gray)
    assert m["density"]["zone_b"] is None and m["density"]["zone_c"] is None
    assert m["density"]["zone_reason"].startswith("optic disc not found")
    assert m["optic_disc"] == {"found": False, "reason": disc.reason, "contrast": m["optic_disc"]["contrast"]}


def test_the_optic_disc_of_a_synthetic_fundus_is_its_bright_blob():
    rgb, vessels, fov = make_fundus(800, 800, seed=11)
    disc = locate_optic_disc(rgb, fov, vessels)
    assert disc.found
    # the disc is the brightest region: its centre is far brighter than the retina's median
    lum = rgb[..., :2].mean(axis=2)
    assert lum[int(disc.y), int(disc.x)] > np.median(lum[fov]) + 40
    assert 0.04 * 736 <= disc.radius <= 0.10 * 736 + 1


def test_a_mask_that_is_not_a_vessel_tree_is_not_skeletonised():
    blob = np.zeros((N, N), bool)
    blob[100:900, 100:900] = True                       # density 0.61
    m = measure(blob)
    assert m["density"]["fov"] == pytest.approx(0.61, abs=0.01)
    assert "not a vessel tree" in m["not_measured"]
    assert m["fractal_dimension"]["mask"] is None and m["width"]["mean_fovd"] is None and m["end_points"] is None


def test_values_measured_on_a_reduced_decode_are_given_in_the_original_pixels():
    """A camera JPEG decoded at 1/4 is measured there; its pixel values are reported x4, fractions unchanged."""
    from vessel_seg.pipeline.engine.morphometry import in_original_pixels

    found = {"version": 1, "working_fov_diameter_px": 768, "fov_diameter_px": 500.0,
             "optic_disc": {"found": True, "x": 100.0, "y": 50.0, "radius_px": 30.0, "radius_fovd": 0.06},
             "length": {"total_fovd": 16.8, "total_px": 8400.0},
             "width": {"mean_fovd": 0.004, "mean_px": 2.0, "samples": 10}, "branch_points": 12}
    out = in_original_pixels(found, 4.0)
    assert out["fov_diameter_px"] == 2000.0 and out["working_fov_diameter_px"] == 768
    assert (out["optic_disc"]["x"], out["optic_disc"]["y"], out["optic_disc"]["radius_px"]) == (400.0, 200.0, 120.0)
    assert out["optic_disc"]["radius_fovd"] == 0.06 and out["length"]["total_fovd"] == 16.8
    assert out["length"]["total_px"] == 33600.0 and out["width"]["mean_px"] == 8.0
    assert out["width"]["samples"] == 10 and out["branch_points"] == 12
    assert in_original_pixels(found, 1.0) is found
