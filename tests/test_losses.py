import pytest
import torch

from training.losses import LOSSES, gradient_penalty

GOOD_D = (torch.tensor([3.0, 2.0]), torch.tensor([-3.0, -2.0]))   # D separates real (high) from fake (low)
BAD_D = (torch.tensor([-3.0, -2.0]), torch.tensor([3.0, 2.0]))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_d_loss_lower_when_d_is_right(name):
    loss = LOSSES[name]
    assert loss.d_loss(*GOOD_D) < loss.d_loss(*BAD_D)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_g_loss_gradient_pushes_fake_scores_up(name):
    fake = torch.tensor([-1.0, 0.5], requires_grad=True)
    LOSSES[name].g_loss(fake).backward()
    assert (fake.grad < 0).all()    # descending the loss raises D's score of the fakes


def test_known_values():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 0.0])
    assert LOSSES["hinge"].d_loss(real, fake).item() == pytest.approx((0.5 + 0) / 2 + (0.5 + 1) / 2)
    assert LOSSES["wasserstein"].d_loss(real, fake).item() == pytest.approx(-0.25 - 1.25)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))
    assert LOSSES["bce"].d_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    assert LOSSES["bce"].g_loss(fake).item() == pytest.approx(bce(fake, torch.ones(2)).item(), rel=1e-6)


def test_gradient_penalty_zero_for_unit_slope_and_positive_otherwise():
    x = torch.randn(4, 1, 2, 2)
    unit = lambda t: t.flatten(1)[:, 0]            # gradient (1, 0, 0, 0): norm 1
    steep = lambda t: 3 * t.flatten(1)[:, 0]       # norm 3
    assert gradient_penalty(unit, x, -x).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_penalty(steep, x, -x).item() == pytest.approx(4.0, rel=1e-5)
