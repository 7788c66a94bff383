import math

import pytest
import torch

from training.gan.losses import LOSSES, gradient_penalty

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


def test_info_term_teaches_q_the_codes_and_g_to_express_them():
    """InfoGAN: minimising the objectives' information term makes Q read the codes back from G's images.

    The adversarial part is switched off (a zero loss): on a handful of steps against random "real"
    images it only adds noise; what is tested is that both objectives carry the information term.
    """
    from training.gan.config import DataConfig, ModelConfig
    from training.gan.latents import draw
    from training.gan.losses import GANLoss, d_objective, g_objective, info_loss
    from training.gan.networks import build_discriminator, build_generator

    torch.manual_seed(0)
    model, data = ModelConfig(z_dim=16, g_channels=8, d_channels=8, info_categories=3, info_continuous=2), \
        DataConfig(image_size=16, channels=1)
    G, D = build_generator(model, data), build_discriminator(model, data, "hinge")
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))
    stream, real = torch.Generator().manual_seed(0), torch.rand(8, 1, 16, 16) * 2 - 1
    z_test = draw(G.latent, 128, torch.Generator().manual_seed(1))

    def code_loss() -> float:
        with torch.no_grad():
            return info_loss(G.latent, D(G(z_test), codes=True)[1], z_test).item()

    no_adversary = GANLoss(lambda real, fake: 0 * (real.mean() + fake.mean()), lambda fake: 0 * fake.mean())
    before = code_loss()
    for _ in range(60):
        z = draw(G.latent, 8, stream)
        d_loss = d_objective(D, no_adversary, real, G(z).detach(), None, z, G.latent, info_weight=1.0)[0]
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        z = draw(G.latent, 8, stream)
        g_loss = g_objective(D, no_adversary, G(z), None, z, G.latent, info_weight=1.0)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    chance = math.log(3) + 0.5 * 2 / 3          # a uniform guess of the category; 0 for each continuous code
    assert before > 0.9 * chance and code_loss() < 0.5 * chance


def test_conditional_gradient_penalty_uses_the_labels():
    from training.gan.losses import gradient_penalty

    class Scaled(torch.nn.Module):   # a critic whose slope depends on the label: |grad| = label + 1 per pixel
        def forward(self, x, labels):
            return (x.flatten(1).sum(1)) * (labels.float() + 1)

    real, fake = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    zero = gradient_penalty(Scaled(), real, fake, torch.tensor([0, 0]))
    one = gradient_penalty(Scaled(), real, fake, torch.tensor([1, 1]))
    assert zero.item() == pytest.approx((2 - 1) ** 2) and one.item() == pytest.approx((4 - 1) ** 2)
