"""The QA checks on hand-made sets whose answer is known, called as plain functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from quality.checks.artefacts import check_artefacts
from quality.checks.diversity import check_diversity, pca_components
from quality.checks.fidelity import check_fidelity, split_halves
from quality.checks.memorisation import check_memorisation
from quality.checks.pixel_statistics import check_statistics
from quality.checks.verdicts import FAIL, INSUFFICIENT, PASS, WARN, grade_above, grade_below, needs_more, worst
from quality.features.image_sets import load_pair
from quality.features.neighbours import close_pairs, nearest_neighbours
from training.core.errors import DataError

SIZE = 32


def smooth_images(seed: int, n: int, size: int = SIZE, channels: int = 3) -> np.ndarray:
    """float32 (n, C, size, size) in [0, 1]: random 4x4 colour fields upsampled, plus mild noise.

    Each call with another seed is an independent draw from the same distribution.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, channels), dtype=np.float32)
    for i in range(n):
        low = (rng.random((4, 4, channels)) * 255).astype(np.uint8)
        img = Image.fromarray(low[:, :, 0] if channels == 1 else low).resize((size, size), Image.Resampling.BICUBIC)
        pixels = np.asarray(img, dtype=np.float32).reshape(size, size, channels) / 255
        out[i] = np.clip(pixels + rng.normal(0, 0.02, pixels.shape), 0, 1)
    return out.transpose(0, 3, 1, 2).copy()


def to_uint8(unit: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.round(unit * 255).astype(np.uint8))


def checkerboard(unit: np.ndarray, period: int, amplitude: float = 0.08) -> np.ndarray:
    """Add the periodic pattern a stride-2 transposed convolution leaves (period 2 or 4 pixels)."""
    y, x = np.mgrid[:unit.shape[2], :unit.shape[3]]
    pattern = np.where(((y // (period // 2)) + (x // (period // 2))) % 2 == 0, 1.0, -1.0)
    return np.clip(unit + amplitude * pattern, 0, 1).astype(np.float32)


NUM_IMAGES = 160     # per set: enough for every image check's evidence rule on these sets (statistics: 123)


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return smooth_images(0, NUM_IMAGES)


@pytest.fixture(scope="module")
def independent() -> np.ndarray:
    return smooth_images(1, NUM_IMAGES)


# Verdict rules.

def test_grades_and_worst():
    assert grade_above(0.1, 0.2, 0.5) == PASS and grade_above(0.3, 0.2, 0.5) == WARN and grade_above(0.6, 0.2, 0.5) == FAIL
    assert grade_below(0.9, 0.5, 0.2) == PASS and grade_below(0.3, 0.5, 0.2) == WARN and grade_below(0.1, 0.5, 0.2) == FAIL
    assert worst([PASS, FAIL, WARN]) == FAIL and worst([]) == PASS
    assert worst([PASS, INSUFFICIENT, WARN]) == INSUFFICIENT and worst([INSUFFICIENT, FAIL]) == FAIL


def test_too_few_images_turn_a_pass_or_a_warning_into_insufficient_but_a_fail_stands():
    assert needs_more(PASS, 49, 50) == INSUFFICIENT and needs_more(WARN, 10, 50) == INSUFFICIENT
    assert needs_more(FAIL, 10, 50) == FAIL and needs_more(PASS, 50, 50) == PASS


# Neighbour search: reference test against scikit-learn.

def test_nearest_neighbours_match_scikit_learn():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    reference, query = rng.random((300, 40)), rng.random((70, 40))
    distances, indices = nearest_neighbours(query, reference)
    expected_d, expected_i = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(query)
    np.testing.assert_allclose(distances, expected_d[:, 0], rtol=1e-4)
    np.testing.assert_array_equal(indices, expected_i[:, 0])
    loo, loo_index = nearest_neighbours(reference, reference, leave_one_out=True)
    expected_d, expected_i = NearestNeighbors(n_neighbors=2).fit(reference).kneighbors(reference)
    np.testing.assert_allclose(loo, expected_d[:, 1], rtol=1e-4)
    assert (loo_index != np.arange(len(reference))).all()


def test_close_pairs_counts_each_pair_once():
    points = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0], [9.0, 9.0], [9.0, 9.05]])
    num_pairs, has_close = close_pairs(points, radius=0.5)
    assert num_pairs == 2
    assert has_close.tolist() == [True, True, False, True, True]


# Statistics.

def test_statistics_pass_for_an_independent_draw_and_flag_a_brightness_shift(real, independent, tmp_path):
    same = check_statistics(real, independent, tmp_path)
    assert same["verdict"] == PASS
    assert (tmp_path / "statistics_histograms.png").is_file() and same["figures"] == ["statistics_histograms.png"]
    assert len(same["real"]["mean"]) == 3 and 0 <= same["real"]["min"][0] <= same["real"]["max"][0] <= 1
    brighter = check_statistics(real, np.clip(independent + 0.25, 0, 1))
    assert brighter["verdict"] == FAIL
    assert min(brighter["brightness_shift_sd"]) > brighter["thresholds"]["shift_fail_sd"]
    assert "brightness" in brighter["reason"]


def test_statistics_tolerance_widens_for_small_sets(real):
    small, large = check_statistics(real[:5], real[5:10]), check_statistics(real, real)
    assert small["noise_allowance_sd"] > large["noise_allowance_sd"]
    assert large["brightness_shift_sd"] == pytest.approx([0, 0, 0], abs=1e-9)


# Diversity.

def test_collapsed_set_is_a_mode_collapse_and_an_independent_draw_is_not(real, independent, tmp_path):
    collapsed = check_diversity(real, np.repeat(independent[:1], len(independent), axis=0), tmp_path)
    assert collapsed["verdict"] == FAIL
    assert collapsed["pairwise_distance_ratio"] < 0.01 and "mode collapse" in collapsed["reason"]
    assert collapsed["synthetic_near_duplicate_share"] == 1.0
    assert (tmp_path / "diversity_pca.png").is_file()
    varied = check_diversity(real, independent)
    assert varied["verdict"] == PASS
    assert 0.8 < varied["pairwise_distance_ratio"] < 1.25
    assert varied["synthetic_near_duplicate_pairs"] == 0


def test_partial_collapse_warns(real, independent):
    few_modes = np.concatenate([np.repeat(independent[i:i + 1], 12, axis=0) for i in range(4)])
    few_modes = np.clip(few_modes + np.random.default_rng(0).normal(0, 0.01, few_modes.shape), 0, 1)
    result = check_diversity(real, few_modes.astype(np.float32))
    assert result["verdict"] in (WARN, FAIL)
    assert result["synthetic_near_duplicate_share"] > 0.5


def test_pca_components_shrink_for_small_sets():
    assert pca_components(200, 3072) == 50
    assert pca_components(12, 3072) == 11
    assert pca_components(300, 20) == 20
    result = check_diversity(smooth_images(2, 6), smooth_images(3, 5))
    assert result["pca_components"] == 10


def test_the_baseline_compares_real_images_the_encoder_never_saw_when_there_are_some():
    """A fresh real sample must be as new to the feature space as the synthetic one (fidelity docstring)."""
    from quality.checks.fidelity import baseline, baseline_parts

    rng = np.random.default_rng(0)
    unseen = np.array([True, False] * 5)
    a, b, from_unseen = baseline_parts(10, unseen, rng)
    assert from_unseen and a.tolist() == [0, 2, 4, 6, 8] and b.tolist() == [1, 3, 5, 7, 9]
    a, b, from_unseen = baseline_parts(10, np.eye(10, dtype=bool)[0], rng)      # one unseen image: too few
    assert not from_unseen and len(a) == len(b) == 5
    seen_sets = []
    fid = lambda x, y: seen_sets.append((x.tolist(), y.tolist())) or 1.0
    result = baseline(np.arange(10), np.arange(100, 120), rng, fid, unseen)
    assert seen_sets[0] == ([0, 2, 4, 6, 8], [1, 3, 5, 7, 9])         # real side: unseen vs the seen reference
    assert seen_sets[1][1] == [1, 3, 5, 7, 9] and len(seen_sets[1][0]) == 5
    assert result["real_side"] == "images the feature encoder never trained on"


# Memorisation.

def test_copies_of_real_images_are_flagged(real, tmp_path):
    real_u8 = to_uint8(real)
    result = check_memorisation(real_u8, real_u8[:20], tmp_path)
    assert result["verdict"] == FAIL
    assert result["possible_copies"]["flagged_share"] == 1.0 and result["exact_copies"] == 20
    assert result["possible_copies"]["spaces"] == ["pixel"]
    assert (tmp_path / "memorisation_closest_pairs.png").is_file()
    assert (tmp_path / "memorisation_distances.png").is_file()


def test_near_copies_are_flagged_without_being_exact(real):
    real_u8 = to_uint8(real)
    noisy = (real_u8[:20].int() + torch.randint(-2, 3, real_u8[:20].shape, generator=torch.Generator().manual_seed(0)))
    result = check_memorisation(real_u8, noisy.clamp(0, 255).to(torch.uint8))
    assert result["exact_copies"] == 0
    assert result["possible_copies"]["flagged_share"] > 0.9 and result["verdict"] == FAIL


def test_an_independent_draw_is_not_flagged_much(real, independent):
    result = check_memorisation(to_uint8(real), to_uint8(independent),
                                real_features=real.reshape(len(real), -1)[:, ::7],
                                synthetic_features=independent.reshape(len(independent), -1)[:, ::7])
    assert result["verdict"] != FAIL
    assert result["pixel"]["close_share"] <= 0.1 and result["feature"]["close_share"] <= 0.1
    assert result["possible_copies"]["spaces"] == ["pixel", "feature"]
    assert result["exact_copies"] == 0


def test_a_copy_must_be_close_in_pixels_and_in_features(real, independent):
    """Pixel near-copies whose features are an independent draw's are close in pixels alone: not copies.
    With their own features they are close in both, and fail."""
    real_u8, noisy = to_uint8(real), to_uint8(real[:20] + 0.004)
    features = lambda x: x.reshape(len(x), -1)[:, ::7]
    pixels_only = check_memorisation(real_u8, noisy, real_features=features(real),
                                     synthetic_features=features(independent[:20]))
    assert pixels_only["pixel"]["close_share"] > 0.9 and pixels_only["possible_copies"]["num_flagged"] == 0
    assert "pixel alone 100.0%" in pixels_only["reason"]
    # No copy found, but 20 images cannot show a copy rate at the warning share apart from chance.
    assert pixels_only["verdict"] == INSUFFICIENT and pixels_only["evidence"]["needed"] > 20
    both = check_memorisation(real_u8, noisy, real_features=features(real), synthetic_features=features(real[:20]))
    assert both["verdict"] == FAIL and both["possible_copies"]["flagged_share"] > 0.9


def test_the_chance_of_a_possible_copy_counts_real_images_close_in_every_space():
    """A real image closer to another real one than the thresholds in both spaces is what chance gives."""
    from quality.checks.memorisation import NearestReal, possible_copies

    def space(real_to_real):
        return NearestReal(np.array(real_to_real, float), np.array([0.5, 5.0]), np.array([0, 1]), threshold=1.0)

    pixels, features = space([0.5, 0.5, 2, 2, 2, 2, 2, 2, 2]), space([0.5, 2, 0.5, 2, 2, 2, 2, 2, 2])
    assert possible_copies({"pixel": pixels}).chance_share == 3 / 10          # (2 + 1) / (9 + 1)
    both = possible_copies({"pixel": pixels, "feature": features})
    assert both.chance_share == 2 / 10 and both.flagged.tolist() == [True, False]


def test_closest_pairs_name_the_files(real):
    real_u8 = to_uint8(real)
    names = [f"r{i}.png" for i in range(len(real))]
    result = check_memorisation(real_u8, real_u8[[3]], real_names=names, synthetic_names=["s0.png"])
    assert result["closest_pairs_pixel"][0]["real"] == "r3.png" and result["closest_pairs_pixel"][0]["flagged"]


# Artefacts.

@pytest.mark.parametrize("period", [2, 4])
def test_checkerboard_is_flagged_and_a_smooth_set_is_not(real, independent, period, tmp_path):
    smooth = check_artefacts(real, independent, tmp_path)
    assert smooth["verdict"] == PASS, smooth["reason"]
    assert (tmp_path / "artefacts_spectra.png").is_file()
    checked = check_artefacts(real, checkerboard(independent, period))
    assert checked["verdict"] == FAIL, checked["reason"]
    assert checked["max_peak_ratio"] > 10
    if period == 2:
        assert checked["max_peak_frequency"] in ("0.5,0.5", "0.5,0", "0,0.5")


def test_a_blurred_set_warns_as_blurry_and_never_fails(real, independent):
    """A 3x3 box blur of an independent draw keeps its layout and colours but loses the fine detail."""
    padded = np.pad(independent, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    blurred = sum(padded[:, :, dy:dy + SIZE, dx:dx + SIZE] for dy in range(3) for dx in range(3)) / 9
    result = check_artefacts(real, blurred.astype(np.float32))
    assert result["verdict"] == WARN and result["blurry"], result["reason"]
    assert result["high_frequency_ratio"] < 0.2 and "too little fine detail" in result["reason"]
    assert not check_artefacts(real, independent)["blurry"]


def test_artefacts_on_grey_images():
    real, synthetic = smooth_images(4, NUM_IMAGES, channels=1), smooth_images(5, NUM_IMAGES, channels=1)
    assert check_artefacts(real, synthetic)["verdict"] == PASS
    assert check_artefacts(real, checkerboard(synthetic, 2))["verdict"] == FAIL


# Fidelity (tiny domain encoder, as in test_fidelity.py).

@pytest.fixture(scope="module")
def domain(tiny_demo, tmp_path_factory):
    from quality.features.domain_encoder import get_domain_encoder
    from quality.features.extractors import domain_space
    from training.data.folders import load_class, load_split

    cache = tmp_path_factory.mktemp("cache")
    images, labels, classes = load_split(tiny_demo, "train", 32, 3)
    space = domain_space(get_domain_encoder(images, labels, classes, epochs=2, cache_dir=cache))
    return space, load_class(tiny_demo, "train", "malignant", 32, 3), cache


def test_a_set_compared_with_itself_has_fid_zero_and_passes(domain):
    space, real, cache = domain
    result = check_fidelity(real, real, space, cache, rng=np.random.default_rng(0))
    assert abs(result["fid"]) < 1e-3
    assert result["verdict"] == PASS and result["feature_extractor"] == "domain"
    assert result["real_baseline"]["real_vs_real_fid"] > 0
    assert "baseline" in result["reason"] and "not comparable with Inception" in result["reason"]
    assert result["skipped"].get("is")   # IS needs Inception


def test_noise_fails_fidelity_relative_to_the_real_baseline(domain):
    space, real, cache = domain
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    result = check_fidelity(real, noise, space, cache, rng=np.random.default_rng(0))
    assert result["verdict"] == FAIL
    assert result["real_baseline"]["ratio"] > result["thresholds"]["baseline_ratio_fail_above"]


def test_the_screens_fidelity_is_qas_and_its_fid_is_torch_fidelitys(domain):
    """The checkpoint screen skips torch-fidelity's full set of numbers: same baseline, same verdict; and the
    FID computed from extracted features is torch-fidelity's FID of the images."""
    from quality.features.frechet import extract_features, fid_from_features, fidelity_metrics

    space, real, cache = domain
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for synthetic, verdict in ((real.flip(0), PASS), (noise, FAIL)):
        full = check_fidelity(real, synthetic, space, cache, rng=np.random.default_rng(3))
        screen = check_fidelity(real, synthetic, space, cache, rng=np.random.default_rng(3), report_metrics=False)
        assert full["verdict"] == screen["verdict"] == verdict
        assert screen["real_baseline"] == full["real_baseline"] and "kid_mean" not in screen
        from_features = fid_from_features(extract_features(synthetic, space), extract_features(real, space))
        assert from_features == pytest.approx(fidelity_metrics(synthetic, real, space, cache_dir=cache)["fid"], rel=1e-3)


def test_fidelity_is_skipped_with_a_reason_for_too_few_images(domain):
    space, real, cache = domain
    result = check_fidelity(real, real[:1], space, cache)
    assert result["verdict"] == INSUFFICIENT and "needs at least 2" in result["reason"]


def test_inception_verdict_uses_the_user_guide_thresholds():
    from quality.checks.fidelity import inception_verdict

    assert inception_verdict(25.0)[0] == PASS
    assert inception_verdict(35.0)[0] == WARN
    assert inception_verdict(45.0)[0] == FAIL


def test_split_halves_is_a_partition():
    a, b = split_halves(9, np.random.default_rng(0))
    assert len(a) == 5 and len(b) == 4 and sorted(np.concatenate([a, b]).tolist()) == list(range(9))


# Loading the two folders.

def write_pngs(folder, images: np.ndarray, prefix: str = "img") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"{prefix}_{i:06d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_loading_ignores_non_images_and_sub_folders_and_skips_corrupt_files(tmp_path):
    rng = np.random.default_rng(0)
    write_pngs(tmp_path / "real", rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    synthetic = tmp_path / "synthetic"
    write_pngs(synthetic, rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), "synthetic_malignant")
    write_pngs(synthetic / "rejected", rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8))
    (synthetic / "manifest.jsonl").write_text("{}\n")
    (synthetic / "broken.png").write_bytes(b"not a png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(synthetic / "preview_grid.png")
    real_set, synthetic_set = load_pair(tmp_path / "real", synthetic)
    # Compared at the generator's resolution: the real images are the ones resized.
    assert real_set.images.shape == (6, 3, 8, 8) and real_set.num_resized == 6
    assert synthetic_set.images.shape == (5, 3, 8, 8) and synthetic_set.num_resized == 0
    assert synthetic_set.sizes_found == ["8x8"]
    assert len(synthetic_set.skipped) == 1 and "broken.png" in synthetic_set.skipped[0]["path"]


def test_grey_against_colour_is_one_error_naming_both_folders(tmp_path):
    rng = np.random.default_rng(0)
    write_pngs(tmp_path / "real", rng.integers(0, 256, (4, 16, 16), dtype=np.uint8))
    write_pngs(tmp_path / "synthetic", rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="channel mismatch") as err:
        load_pair(tmp_path / "real", tmp_path / "synthetic")
    assert str(tmp_path / "real") in str(err.value) and str(tmp_path / "synthetic") in str(err.value)


def test_grey_saved_as_rgb_counts_as_grey(tmp_path):
    rng = np.random.default_rng(0)
    write_pngs(tmp_path / "real", rng.integers(0, 256, (4, 16, 16), dtype=np.uint8))
    grey_rgb = np.repeat(rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8), 3, axis=3)
    write_pngs(tmp_path / "synthetic", grey_rgb)
    real_set, synthetic_set = load_pair(tmp_path / "real", tmp_path / "synthetic")
    assert real_set.images.shape[1] == synthetic_set.images.shape[1] == 1


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "real folder not found"),
    (lambda d: d.mkdir(), "holds no images"),
    (lambda d: (d.mkdir(), (d / "a.png").write_bytes(b"junk")), "no readable images"),
])
def test_bad_real_folders_are_data_errors(tmp_path, make, message):
    write_pngs(tmp_path / "synthetic", np.zeros((2, 8, 8), dtype=np.uint8))
    make(tmp_path / "real")
    with pytest.raises(DataError, match=message):
        load_pair(tmp_path / "real", tmp_path / "synthetic")
