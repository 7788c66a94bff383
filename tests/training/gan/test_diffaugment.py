import pytest
import torch
import torch.nn.functional as F

from training.core.errors import ConfigError
from training.gan.diffaugment import AUGMENTS, AdaptiveProbability, check_policy, cutout, diff_augment, translation


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by (dy, dx) pixels with a zero fill: out[i, j] = x[i + dy, j + dx]."""
    h, w = x.shape[-2:]
    padded = F.pad(x, [w, w, h, h])
    return padded[..., h + dy:2 * h + dy, w + dx:2 * w + dx]


def test_policy_off_is_identity_and_every_op_keeps_shape_and_range():
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert diff_augment(x, None) is x
    for name in AUGMENTS:
        y = diff_augment(x, name)
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_translation_is_an_integer_shift_of_at_most_an_eighth_with_zero_fill():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 16, 16) + 0.5                  # no zeros inside, so the fill is visible
    y = translation(x)
    seen = set()
    for xi, yi in zip(x, y):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(yi, shifted(xi, dy, dx))]
        assert len(matches) == 1                          # exactly one shift within 16 * 0.125 = 2 pixels
        seen.add(matches[0])
    assert len(seen) > 10                                  # the shifts vary across the batch


def test_cutout_zeroes_one_square_of_half_the_side_clipped_at_the_border():
    torch.manual_seed(1)
    x = torch.rand(64, 1, 16, 16) + 0.5
    y = cutout(x)
    for xi, yi in zip(x, y):
        zero = yi[0] == 0
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols)        # a rectangle
        assert len(rows) <= 8 and len(cols) <= 8          # half of 16, less where clipped
        assert torch.equal(yi[0][~zero], xi[0][~zero])    # the rest untouched
        interior = 0 < rows.min() and rows.max() < 15 and 0 < cols.min() and cols.max() < 15
        assert not interior or (len(rows), len(cols)) == (8, 8)


def test_color_moves_brightness_by_at_most_half_and_keeps_gradients():
    torch.manual_seed(2)
    x = torch.zeros(256, 3, 8, 8, requires_grad=True)
    y = diff_augment(x, "color")
    shift = y.mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 + 1e-6 and shift.std() > 0.1      # brightness in [-0.5, 0.5]
    y.square().sum().backward()
    assert x.grad is not None


def test_gradients_flow_through_the_full_policy():
    x = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_(True)
    diff_augment(x, "color,translation,cutout").square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_op_is_a_config_error_naming_it():
    check_policy("color, translation")
    with pytest.raises(ConfigError, match="unknown op 'rotate'"):
        check_policy("color,rotate")


def test_adaptive_probability_follows_the_overfitting_signal_in_steps_and_stays_in_0_1():
    ada = AdaptiveProbability(target=0.6, speed_images=64, batch_size=8, interval=4)    # step = 8 * 4 / 64
    for _ in range(4 * 3):                      # D sure of every real image: r = 1 > 0.6, three intervals
        ada.observe(sign_sum=8.0, count=8)
    assert ada.p == pytest.approx(1.0)          # 0 -> 0.5 -> 1.0 -> clamped at 1.0
    for _ in range(4):                          # D unsure: r = 0 < 0.6
        ada.observe(sign_sum=0.0, count=8)
    assert ada.p == pytest.approx(0.5)
    for _ in range(3):                          # an unfinished interval changes nothing yet
        ada.observe(sign_sum=-8.0, count=8)
    assert ada.p == pytest.approx(0.5)


def test_probability_zero_is_identity_and_between_mixes_plain_and_augmented_images():
    torch.manual_seed(3)
    x = torch.rand(400, 1, 8, 8) + 0.5
    assert diff_augment(x, "cutout", p=0.0) is x
    changed = (diff_augment(x, "cutout", p=0.3) != x).flatten(1).any(1).float().mean()
    assert 0.2 < changed < 0.4
