from pathlib import Path

import numpy as np
import pytest
import torch

from training.gan.checkpoint import load_generator
from training.gan.config import DataConfig, ModelConfig
from training.gan.dcgan import NoiseInjection
from training.gan.networks import build_discriminator, build_generator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("upsample", ["resize_conv", "transposed"])
def test_generator_shape_and_range(size, channels, upsample):
    model = ModelConfig(z_dim=8, g_channels=8, d_channels=8, upsample=upsample)
    G = build_generator(model, DataConfig(image_size=size, channels=channels)).eval()
    out = G(torch.randn(3, 8))
    assert out.shape == (3, channels, size, size)
    assert out.min() >= -1 and out.max() <= 1 and not torch.isnan(out).any()


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("loss, sn", [("hinge", True), ("wasserstein", False), ("bce", False)])
def test_discriminator_one_logit_per_image(size, loss, sn):
    model = ModelConfig(d_channels=4, spectral_norm=sn)
    D = build_discriminator(model, DataConfig(image_size=size, channels=1), loss)
    out = D(torch.randn(2, 1, size, size))
    assert out.shape == (2,) and torch.isfinite(out).all()
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert has_bn == (loss == "bce")                         # auto: BN only without SN and without WGAN-GP
    assert any("weight_orig" in n for n, _ in D.named_parameters()) == sn


def test_depth_follows_image_size():
    count = lambda size: sum(isinstance(m, torch.nn.Conv2d) for m in build_discriminator(
        ModelConfig(d_channels=4), DataConfig(image_size=size), "hinge").modules())
    assert count(64) == count(32) + 1 and count(128) == count(64) + 1


def test_nearest_upsample_equals_torch_interpolate_forward_and_backward():
    from training.gan.dcgan import NearestUpsample2x

    x = torch.randn(2, 3, 5, 7, requires_grad=True)
    ours = NearestUpsample2x()(x)
    reference = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.equal(ours, reference)
    grad = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad(ours, x, grad)
    (g_ref,) = torch.autograd.grad(reference, x, grad)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_a_frozen_generator_checkpoint_loads_and_generates_what_it_did_when_saved():
    """tests/fixtures: a real saved file, so a change to the architecture or format that breaks old files fails here."""
    G, record = load_generator(FIXTURES / "generator_dcgan_32px.pth")
    assert record["epoch"] == 7 and record["class_name"] == "malignant" and record["metrics"]["fid"] == 12.5
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = G(z).numpy()
    expected = np.load(FIXTURES / "generator_dcgan_32px_expected.npy")
    assert out.shape == (4, 3, 32, 32) and np.abs(out - expected).max() < 1e-5



@pytest.mark.parametrize("upsample", ["bilinear", "transposed"])
def test_output_block_adds_a_nonlinearity_at_full_resolution(upsample):
    data = DataConfig(image_size=32, channels=3)
    plain = build_generator(ModelConfig(z_dim=8, g_channels=8, upsample=upsample), data)
    deeper = build_generator(ModelConfig(z_dim=8, g_channels=8, upsample=upsample, g_output_block=True), data).eval()
    assert deeper(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    full_res = lambda G: [m for m in G.blocks if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(full_res(deeper)) == len(full_res(plain)) + 1
    assert deeper.blocks(deeper.stem(torch.randn(2, 8))).shape[-1] == 32     # the blocks reach the output size


def test_noise_inputs_vary_in_training_and_follow_the_latent_outside_it():
    data = DataConfig(image_size=32, channels=3)
    G = build_generator(ModelConfig(z_dim=8, g_channels=8, upsample="bilinear", g_output_block=True, g_noise=True), data)
    assert G.noise_sizes == [8, 16, 32]
    for layer in G.modules():                     # the learned weights start at 0: give the noise a visible effect
        if isinstance(layer, NoiseInjection):
            torch.nn.init.constant_(layer.weight, 1.0)
    z = torch.randn(4, 8)
    G.train()
    assert not torch.equal(G(z), G(z))           # fresh noise at every training step
    G.eval()
    once, again = G(z), G(z)
    assert torch.equal(once, again)
    # An image depends on its own z only, not on the batch around it ...
    assert torch.allclose(G(z[2:3].repeat(2, 1))[0], once[2], atol=1e-5)
    assert torch.allclose(G(torch.cat([z[3:], z[:3]]))[1:], once[:3], atol=1e-5)
    # ... and the noise does change it: with the weights at 0 again the images differ.
    for layer in G.modules():
        if isinstance(layer, NoiseInjection):
            torch.nn.init.zeros_(layer.weight)
    assert (G(z) - once).abs().max() > 1e-2


def test_retired_discriminator_options_load_when_off_and_are_refused_when_on(tmp_path):
    """d_patch_head, d_highpass, d_minibatch_std and arch were removed (no gain measured): configs and
    checkpoints that have them off (arch: dcgan) still load, one that had them on is refused in one line."""
    from training.core.config import from_dict, load_config
    from training.core.errors import ConfigError
    from training.gan.config import GANConfig

    old = {"d_patch_head": False, "d_highpass": False, "d_minibatch_std": False, "arch": "dcgan", "g_noise": True}
    assert from_dict(ModelConfig, old).g_noise
    with pytest.raises(ConfigError, match="'model.d_highpass' was removed"):
        from_dict(GANConfig, {"model": {**old, "d_highpass": True}})
    with pytest.raises(ConfigError, match="'model.d_patch_head' was removed"):
        load_config(GANConfig, "experiments/demo_gan.yaml", ["model.d_patch_head=true"])
    with pytest.raises(ConfigError, match="'model.arch' was removed"):
        from_dict(GANConfig, {"model": {**old, "arch": "resnet"}})


def test_reflect_padding_keeps_a_constant_map_constant_to_the_corners():
    """G's 3x3 convs with reflect padding see mirrored neighbours at the border, so a constant map stays
    constant up to the corner pixels; zero padding makes the border and corners differ from the interior."""
    data = DataConfig(image_size=32, channels=1)
    for padding, border_differs in (("zeros", True), ("reflect", False)):
        G = build_generator(ModelConfig(z_dim=8, g_channels=8, upsample="bilinear", g_padding=padding), data).eval()
        conv = G.to_image[1]
        torch.nn.init.constant_(conv.weight, 0.01)
        torch.nn.init.zeros_(conv.bias)
        out = conv(G.to_image[0](torch.ones(1, 8, 16, 16)))[0, 0]
        assert (not torch.allclose(out[0, 0], out[16, 16])) == border_differs, padding


def test_reflect_padding_is_refused_with_transposed_convs():
    from training.core.errors import ConfigError

    with pytest.raises(ConfigError, match="model.g_padding"):
        ModelConfig(upsample="transposed", g_padding="reflect").validate()


@pytest.mark.parametrize("size", [28, 100])
def test_images_between_powers_of_two_are_learned_at_their_own_size_inside_one_black_frame(size):
    """28 px scans are not resampled: G's output is the centre of its network-size map, and D puts every
    input, real or generated, in the same black (-1) frame, so the frame tells D nothing."""
    model, data = ModelConfig(z_dim=8, g_channels=4, d_channels=4), DataConfig(image_size=size, channels=1)
    G, D = build_generator(model, data).eval(), build_discriminator(model, data, "hinge")
    z = torch.randn(2, 8)
    image, full = G(z), torch.tanh(G.to_image(G.blocks(G.stem(z))))
    side = full.shape[-1]
    before = (side - size) // 2
    assert side == (32 if size == 28 else 128) and image.shape == (2, 1, size, size)
    assert torch.equal(image, full[:, :, before:before + size, before:before + size])
    seen = []
    D.features[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    real = torch.rand(2, 1, size, size) * 2 - 1
    for x in (real, image.detach()):
        D(x)
        frame = torch.ones(side, side, dtype=torch.bool)
        frame[before:before + size, before:before + size] = False
        assert torch.equal(seen[-1][:, :, before:before + size, before:before + size], x)
        assert (seen[-1][:, :, frame] == -1).all()
