"""Which classifier sizes bring real and synthetic images to the classifier by one resizing path."""

import numpy as np
import pytest

from training.data.images import classifier_size_problem, resize


@pytest.mark.parametrize("real, synthetic, size, fix", [
    ({28}, {32}, 28, "data.image_size = 32"),      # BreastMNIST: the GAN learned 28 px scans upsampled to 32
    ({28}, {32}, 16, "data.image_size = 32"),
    ({28}, {32}, 32, None),                        # the real images take the GAN's path
    ({28, 64}, {32}, 32, "data.image_size <= 28"),  # sizes on both sides of the GAN's: no classifier size
    ({28, 64}, {32}, 28, "data.image_size = 32"),    # works, prepare every image at one size
    ({28, 30}, {32}, 32, "data.image_size <= 28"),   # the 28 px images upsampled more than the 30 px ones
    ({64}, {32}, 32, None),                        # the demo: 64 px data, a 32 px GAN, both downsampled
    ({64}, {32}, 16, None),
    ({64}, {32}, 64, "data.image_size <= 32"),     # only the synthetic images would be upsampled
    ({32}, {32}, 64, None),                        # every image upsampled alike
    ({16, 32}, set(), 32, "data.image_size <= 16"),
    ({16, 32}, set(), 64, "data.image_size <= 16"),
    ({16, 32}, set(), 16, None),
    ({28}, set(), 32, None),                       # a real-only arm beside GAN arms at the GAN's size
])
def test_the_classifier_size_keeps_one_path_for_real_and_synthetic_images(real, synthetic, size, fix):
    problem = classifier_size_problem(real, synthetic, size)
    assert (problem and problem[1]) == fix


def test_a_round_trip_through_the_gan_size_removes_fine_detail_the_native_images_have():
    """Why 28 -> 32 -> 28 px is a path of its own: the anti-aliased resizes cut the band near 28 px's Nyquist."""
    rng = np.random.default_rng(0)
    native = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    round_trip = resize(resize(native, 32), 28)
    detail = [np.abs(np.diff(x.astype(float), axis=1)).mean() for x in (native, round_trip)]
    assert detail[1] < 0.8 * detail[0]
