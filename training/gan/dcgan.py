"""DCGAN generator and discriminator whose depth follows the image size (32, 64 or 128 px).

G: z (B, z_dim) -> 4x4 map -> one 2x upsampling block per level -> (B, C, S, S) in [-1, 1].
D: (B, C, S, S) -> one stride-2 block per level -> 4x4 map -> one logit per image.
Widths double per level away from the image, as in Radford et al. (2016).

Images of another size (28 px MedMNIST scans) are learned at their own size, without resampling: the
networks work at the next power of two, G's output is cropped to the image size, and D frames every
input, real or generated, in the same black border. Nothing outside the two networks sees the frame.

Two variants share these networks:
* conditional (`model.conditional`): G takes a learned class embedding beside z; D adds a projection
  term <embed(y), pooled features> to its logit (Miyato & Koyama, 2018), so one pair of networks
  learns every class;
* InfoGAN (`model.info_categories`, `model.info_continuous`): z carries codes (training.gan.latents) and
  D gets a head Q that predicts them back from its features (Chen et al., 2016).
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as _spectral_norm

from training.gan.latents import LatentSpec


def network_size(image_size: int) -> int:
    """The power of two, at least 32, that the networks work at for `image_size` px images (28 -> 32)."""
    return max(32, 2 ** math.ceil(math.log2(image_size)))


def levels_for(image_size: int) -> int:
    """Upsampling levels of G (stride-2 blocks of D) for `image_size` px images: 32 -> 3, 64 -> 4, 128 -> 5."""
    return int(math.log2(network_size(image_size))) - 2


def frame_margins(image_size: int) -> tuple[int, int]:
    """(before, after) pixels of black frame around an `image_size` px image in the networks' square."""
    extra = network_size(image_size) - image_size
    return extra // 2, extra - extra // 2


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv/linear weights ~ N(0, 0.02); norm scales ~ N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class NearestUpsample2x(nn.Module):
    """Nearest-neighbour 2x upsampling as a broadcast copy.

    Equal to `nn.Upsample(scale_factor=2, mode="nearest")` bit for bit, but on CPU (torch 2.x) that
    kernel took 70 % of G's forward time; the broadcast is ~7x faster forward, ~3x with backward.
    It has no parameters, so checkpoints are the same either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No sizes spelled out (-1 and flatten): exported graphs (ONNX) keep a dynamic batch size.
        return x[:, :, :, None, :, None].expand(-1, -1, -1, 2, -1, 2).flatten(4, 5).flatten(2, 3)


class BilinearUpsample2x(nn.Module):
    """Bilinear 2x upsampling: each new pixel a blend of its neighbours, so the 3x3 conv after it does not
    start from 2x2 blocks of copies (the pixel grid a nearest-neighbour G leaves at small widths)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


UPSAMPLERS = {"resize_conv": NearestUpsample2x, "bilinear": BilinearUpsample2x}


class NoiseInjection(nn.Module):
    """Adds one map of Gaussian noise per image, scaled by a learned weight per channel (zero at the start),
    as StyleGAN does after each conv (Karras et al. 2019): a source of per-pixel randomness for stochastic
    fine detail, so z need not encode where each speckle goes.

    Training draws fresh noise; otherwise `forward` gets the map from `Generator.noise_maps`, a function of
    the image's latent, so an image depends on its z alone (resumed or sharded synthesis writes the same bytes).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


def latent_seeds(z: torch.Tensor) -> list[int]:
    """One 63-bit seed per row of z, from a hash of its float bits."""
    rows = z.detach().to("cpu", torch.float32).contiguous().numpy()
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 1 for row in rows]


def _upsample_block(in_ch: int, out_ch: int, upsample: str, padding: str = "zeros", noise: bool = False) -> list[nn.Module]:
    if upsample == "transposed":
        conv = [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False)]
    else:  # resize, then a 3x3 conv: free of the transposed-conv checkerboard
        conv = [UPSAMPLERS[upsample](), nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False, padding_mode=padding)]
    return [*conv, *([NoiseInjection(out_ch)] if noise else []), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


def with_class(z: torch.Tensor, labels: torch.Tensor | None, class_embedding: nn.Embedding | None) -> torch.Tensor:
    """G's input: z, with the labels' embedding beside it for a conditional G (which then needs labels)."""
    if class_embedding is None:
        return z
    if labels is None:
        raise ValueError("a conditional generator needs class labels")
    return torch.cat([z, class_embedding(labels)], 1)


class Generator(nn.Module):
    def __init__(self, latent: LatentSpec | int, image_size: int, channels: int, width: int, upsample: str = "resize_conv",
                 output_block: bool = False, padding: str = "zeros", noise: bool = False):
        """`padding`: how G's 3x3 convs pad their input, "zeros" (DCGAN) or "reflect" (mirrored
        neighbours, as CycleGAN's generator pads): zeros pull the border and above all the corner pixels
        towards a value of their own, which a linear model on pixels learns to tell apart."""
        super().__init__()
        latent = latent if isinstance(latent, LatentSpec) else LatentSpec(latent)   # an int: plain noise of that size
        levels = levels_for(image_size)
        self.latent, self.z_dim, self.image_size, self.channels = latent, latent.z_dim, image_size, channels
        widths = [width * 2 ** i for i in reversed(range(levels))]   # e.g. 512, 256, 128, 64 at 64 px
        # Conditional: a class embedding as wide as the noise is concatenated to z.
        self.class_embedding = nn.Embedding(latent.num_classes, latent.noise_dim) if latent.num_classes else None
        stem_in = latent.z_dim + (latent.noise_dim if latent.num_classes else 0)
        self.stem = nn.Sequential(                                    # (B, z) -> (B, widths[0], 4, 4)
            nn.Unflatten(1, (stem_in, 1, 1)),
            nn.ConvTranspose2d(stem_in, widths[0], 4, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = []
        for in_ch, out_ch in zip(widths[:-1], widths[1:]):
            blocks += _upsample_block(in_ch, out_ch, upsample, padding, noise)
        if output_block:   # the last upsampling in a block too: a ReLU at full resolution, then a plain RGB conv
            blocks += _upsample_block(widths[-1], widths[-1], upsample, padding, noise)
        self.blocks = nn.Sequential(*blocks)                          # -> (B, width, S/2, S/2), or S with output_block
        self.margins = frame_margins(image_size)                      # cropped off the output
        # The side of each noise layer's map: the block's output resolution (8, 16, ... px).
        self.noise_sizes = [8 * 2 ** i for i, layer in enumerate(m for m in blocks if isinstance(m, NoiseInjection))]
        if output_block:
            self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1, padding_mode=padding)
        elif upsample == "transposed":
            self.to_image = nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1)
        else:
            self.to_image = nn.Sequential(UPSAMPLERS[upsample](),
                                          nn.Conv2d(widths[-1], channels, 3, padding=1, padding_mode=padding))
        self.apply(init_weights)

    def noise_maps(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Each noise layer's (B, 1, S, S) map for latents z, drawn from a generator seeded by each row of z."""
        sizes, per_image = self.noise_sizes, []
        for seed in latent_seeds(z):
            values = torch.randn(sum(s * s for s in sizes), generator=torch.Generator().manual_seed(seed))
            per_image.append(values.split([s * s for s in sizes]))
        return [torch.stack([maps[i] for maps in per_image]).view(len(z), 1, s, s).to(z.device)
                for i, s in enumerate(sizes)]

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(with_class(z, labels, self.class_embedding))
        if self.noise_sizes and not self.training:     # evaluation: the image's noise follows from its z
            noise = iter(self.noise_maps(z))
            for layer in self.blocks:
                h = layer(h, next(noise)) if isinstance(layer, NoiseInjection) else layer(h)
        else:
            h = self.blocks(h)
        image = torch.tanh(self.to_image(h))   # (B, C, S, S) in [-1, 1] at the network's size
        before, after = self.margins
        return image[:, :, before:image.shape[2] - after, before:image.shape[3] - after] if after else image


class Discriminator(nn.Module):
    """DCGAN D: strided 4x4 convs down to 4 x 4, then one logit (a projection term for a conditional D, a Q head
    for InfoGAN's codes)."""

    def __init__(self, image_size: int, channels: int, width: int, norm: str = "none", spectral_norm: bool = True,
                 latent: LatentSpec | None = None):
        super().__init__()
        levels = levels_for(image_size)
        self.margins = frame_margins(image_size)                      # black frame added to every input
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        widths = [width * 2 ** i for i in range(levels)]             # e.g. 64, 128, 256, 512 at 64 px
        layers: list[nn.Module] = [sn(nn.Conv2d(channels, widths[0], 4, stride=2, padding=1)),
                                   nn.LeakyReLU(0.2, inplace=True)]   # no norm on the first layer (DCGAN)
        for in_ch, out_ch in zip(widths[:-1], widths[1:]):
            layers.append(sn(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=norm != "batch")))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.features = nn.Sequential(*layers)                        # -> (B, widths[-1], 4, 4)
        self.to_logit = sn(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=0))
        latent = latent or LatentSpec(0)
        self.projection = sn(nn.Embedding(latent.num_classes, widths[-1])) if latent.num_classes else None
        codes = latent.info_categories + latent.info_continuous
        self.q_head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, 128), nn.LeakyReLU(0.2, inplace=True),
                                    nn.Linear(128, codes)) if codes else None
        self.apply(init_weights)

    def input_blocks(self) -> list[nn.Module]:
        """D's conv blocks from the input on (what `model.freeze_d_blocks` counts)."""
        return [layer for layer in self.features if isinstance(layer, nn.Conv2d)]

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, codes: bool = False):
        """Logits (B,); with `codes`, also Q's code predictions (B, categories + continuous)."""
        before, after = self.margins
        if after:       # -1 is black: the real images' frame and G's are the same constant, nothing to learn
            x = F.pad(x, (before, after, before, after), value=-1.0)
        h = self.features(x)
        logit = self.to_logit(h).flatten()                            # (B,) logits / critic scores
        if self.projection is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs class labels")
            logit = logit + (self.projection(labels) * h.sum((2, 3))).sum(1)
        return (logit, self.q_head(h)) if codes else logit


def build_generator(model, data, num_classes: int = 0) -> Generator:
    """G from the `model` and `data` config sections (`num_classes` for a conditional model)."""
    return Generator(model.latent_spec(num_classes), data.image_size, data.channels, model.g_channels, model.upsample,
                     model.g_output_block, model.g_padding, model.g_noise)


def build_discriminator(model, data, loss_name: str, num_classes: int = 0) -> Discriminator:
    """D from the `model` and `data` config sections; its norm depends on the loss (no BN for WGAN-GP)."""
    return Discriminator(data.image_size, data.channels, model.d_channels, model.resolved_d_norm(loss_name),
                         model.spectral_norm, model.latent_spec(num_classes))

