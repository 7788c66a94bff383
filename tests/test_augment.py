import torch

from training.gan.diffaugment import cutout, diff_augment, translation


def test_policy_off_is_identity_and_ops_keep_shape():
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert diff_augment(x, None) is x
    y = diff_augment(x, "color,translation,cutout")
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(x, y)


def test_gradients_flow_through_augmentations():
    x = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_(True)
    diff_augment(x, "color,translation,cutout").square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content_and_cutout_zeroes_a_quarter():
    torch.manual_seed(0)
    x = torch.ones(64, 1, 16, 16)
    zero_frac = (cutout(x) == 0).float().mean(dim=(1, 2, 3))
    assert zero_frac.max() <= 0.25 + 1e-6 and zero_frac.mean() > 0.1
    shifted = translation(torch.arange(256.).view(1, 1, 16, 16).repeat(32, 1, 1, 1))
    assert (shifted != torch.arange(256.).view(1, 1, 16, 16)).any()
