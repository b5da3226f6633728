"""PyTorch reference networks and training steps for `benchmarks/train_step.py` (CPU, float32).

The networks have the layer shapes of the Flax ones in `mgvton_jax.models`, in NCHW:
- `global_generator`: pix2pixHD GlobalGenerator: reflect-pad 3 + 7x7 conv, norm, ReLU;
  n_downsample x [3x3 conv stride 2 pad 1, norm, ReLU]; n_blocks residual blocks of
  convs_per_block x [reflect-pad 1, 3x3 conv, norm, ReLU] (no last ReLU); n_downsample x
  [x2 upsampling (`upsampling`: transposed or resize convolution), norm, ReLU]; reflect-pad 3
  + 7x7 conv.
- `MultiscaleDiscriminator`: num_d PatchGANs (4x4 convs, zero pad 2, LeakyReLU 0.2, norm after
  every conv but the first and the last), scale i on the input average-pooled i times.
- `VGG19Features`: torchvision's vgg19().features[:30] (to relu5_1), random weights, frozen.

The steps (`parsing_step`, `warp_gan_step`, `refine_step`) mirror the stage steps of
`mgvton_jax.stages` on fixed random inputs: one generator forward; with a D, a D update
on real and detached fake first, then the generator update through the updated (frozen) D;
Adam on every trained network. Each returns a callable running one step and returning the
generator loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MAX_DISCRIMINATOR_WIDTH = 512
LEAKY_SLOPE = 0.2
# torchvision VGG19 up to relu5_1: (convolutions, width) per block; a max-pool between blocks.
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (1, 512))
# pix2pixHD VGGLoss weights of relu1_1 .. relu5_1.
PERCEPTUAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RGB_CHANNELS = 3
# The keyword arguments of `global_generator` / `MultiscaleDiscriminator` taken from a config.
GENERATOR_FIELDS = ("ngf", "n_downsample", "n_blocks", "convs_per_block", "norm", "upsample")
DISCRIMINATOR_FIELDS = ("ndf", "n_layers", "num_d", "norm")

Step = Callable[[], float]


def make_norm(kind: str, channels: int) -> nn.Module:
    """"batch" (BatchNorm2d, training mode), "instance" (InstanceNorm2d, no affine) or "none"."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ResnetBlock(nn.Module):
    """x + F(x) at constant width; (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, channels: int, convs_per_block: int, norm: str):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(convs_per_block):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                       make_norm(norm, channels), nn.ReLU(inplace=True)]
        self.residual = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, h, w) float32 -> (B, C, h, w)."""
        return x + self.residual(x)


def upsampling(in_channels: int, out_channels: int, kind: str) -> list[nn.Module]:
    """x2 upsampling as `mgvton_jax.models.layers.UpConv`: "transpose" (3x3 transposed conv,
    stride 2, padding 1, output padding 1) or "resize" (nearest x2, 3x3 conv, padding 1)."""
    if kind == "transpose":
        return [nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                                   output_padding=1)]
    if kind == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(in_channels, out_channels, 3, padding=1)]
    raise ValueError(f"unknown upsample {kind!r}")


def global_generator(in_channels: int, out_channels: int, *, ngf: int, n_downsample: int,
                     n_blocks: int, convs_per_block: int, norm: str, upsample: str,
                     out_activation: nn.Module | None = None) -> nn.Sequential:
    """pix2pixHD GlobalGenerator (module docstring): (B, in, H, W) -> (B, out, H, W) float32."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7),
                               make_norm(norm, ngf), nn.ReLU(inplace=True)]
    for i in range(n_downsample):
        width = ngf * 2**i
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                   make_norm(norm, 2 * width), nn.ReLU(inplace=True)]
    layers += [ResnetBlock(ngf * 2**n_downsample, convs_per_block, norm)
               for _ in range(n_blocks)]
    for i in reversed(range(n_downsample)):
        width = ngf * 2**i
        layers += [*upsampling(2 * width, width, upsample), make_norm(norm, width),
                   nn.ReLU(inplace=True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7)]
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    """One PatchGAN scale: (B, C, H, W) -> [each block's output], the last = patch logits."""

    def __init__(self, in_channels: int, ndf: int, n_layers: int, norm: str):
        super().__init__()
        widths = [min(ndf * 2**i, MAX_DISCRIMINATOR_WIDTH) for i in range(n_layers + 1)]
        blocks = [nn.Sequential(nn.Conv2d(in_channels, widths[0], 4, stride=2, padding=2),
                                nn.LeakyReLU(LEAKY_SLOPE, inplace=True))]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(widths[i - 1], widths[i], 4, stride=stride, padding=2),
                make_norm(norm, widths[i]), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)))
        blocks.append(nn.Conv2d(widths[-1], 1, 4, padding=2))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, C, H, W) float32 -> list of n_layers + 2 NCHW feature maps."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """num_d PatchGANs on 1x, 1/2x, ... of the input; returns [scale][layer] feature maps."""

    def __init__(self, in_channels: int, *, ndf: int, n_layers: int, num_d: int, norm: str):
        super().__init__()
        self.scales = nn.ModuleList(
            [PatchDiscriminator(in_channels, ndf, n_layers, norm) for _ in range(num_d)])
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """x: (B, C, H, W) float32 -> [[features of scale i] for each scale], finest first."""
        outputs = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = self.downsample(x)
            outputs.append(scale(x))
        return outputs


class VGG19Features(nn.Module):
    """Frozen VGG19 to relu5_1 with random weights: (B, 3, H, W) in [-1, 1] -> 5 features.

    Returns relu1_1 .. relu5_1 (the ReLU after each block's first conv). `width_divisor`
    shrinks every width (as `mgvton_jax.models.vgg.random_vgg19_params`).
    """

    def __init__(self, width_divisor: int = 1, imagenet_normalize: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        self.feature_indices: list[int] = []
        in_channels = RGB_CHANNELS
        for block, (convs, width) in enumerate(VGG19_BLOCKS):
            if block > 0:
                layers.append(nn.MaxPool2d(2))
            for conv in range(convs):
                layers += [nn.Conv2d(in_channels, width // width_divisor, 3, padding=1),
                           nn.ReLU(inplace=True)]
                in_channels = width // width_divisor
                if conv == 0:
                    self.feature_indices.append(len(layers) - 1)
        self.layers = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) float32 in [-1, 1] -> [relu1_1, ..., relu5_1] NCHW."""
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        features = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.feature_indices:
                features.append(x)
        return features


def perceptual_loss(vgg: VGG19Features, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_i w_i * mean |phi_i(x) - phi_i(y)|, no gradient through y; scalar."""
    with torch.no_grad():
        y_features = vgg(y)
    return sum(w * (fx - fy).abs().mean()
               for w, fx, fy in zip(PERCEPTUAL_WEIGHTS, vgg(x), y_features, strict=True))


def gan_d_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """0.5 * sum over scales of BCE-with-logits (real -> 1, fake -> 0); scalar."""
    real_term = sum(F.binary_cross_entropy_with_logits(s[-1], torch.ones_like(s[-1]))
                    for s in real)
    fake_term = sum(F.binary_cross_entropy_with_logits(s[-1], torch.zeros_like(s[-1]))
                    for s in fake)
    return 0.5 * (real_term + fake_term)


def gan_g_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Non-saturating generator loss summed over scales; scalar."""
    return sum(F.binary_cross_entropy_with_logits(s[-1], torch.ones_like(s[-1])) for s in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]],
                          num_layers: int) -> torch.Tensor:
    """pix2pixHD feature matching over the first num_layers layers of each scale; scalar."""
    loss = torch.zeros(())
    for real_scale, fake_scale in zip(real, fake, strict=True):
        weight = 4.0 / (len(fake_scale) - 1) / len(fake)
        for r, f in zip(real_scale[:num_layers], fake_scale[:num_layers], strict=True):
            loss = loss + weight * (f - r.detach()).abs().mean()
    return loss


@contextlib.contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Within the block `module`'s parameters get no gradient (D during the G update)."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


def adam(module: nn.Module, adam_settings: Mapping[str, float]) -> torch.optim.Adam:
    """Adam over module's parameters; adam_settings: lr, b1, b2, adam_eps (the config's train)."""
    return torch.optim.Adam(module.parameters(), lr=adam_settings["lr"],
                            betas=(adam_settings["b1"], adam_settings["b2"]),
                            eps=adam_settings["adam_eps"])


def apply_gradients(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on `loss`."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def discriminator_update(disc: MultiscaleDiscriminator, optimizer: torch.optim.Optimizer,
                         real: torch.Tensor, fake: torch.Tensor) -> None:
    """One D step on real and detached fake (B, C, H, W) inputs."""
    apply_gradients(optimizer, gan_d_loss(disc(real), disc(fake.detach())))


def _random_images(generator: torch.Generator, batch: int, channels: int, height: int,
                   width: int) -> torch.Tensor:
    return torch.rand(batch, channels, height, width, generator=generator) * 2 - 1


def _random_one_hot(generator: torch.Generator, batch: int, classes: int, height: int,
                    width: int) -> torch.Tensor:
    labels = torch.randint(classes, (batch, height, width), generator=generator)
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def parsing_step(generator_sizes: Mapping, discriminator_sizes: Mapping,
                 train: Mapping[str, float], loss_weights: Mapping[str, float], *,
                 batch: int, image_size: Sequence[int], condition_channels: int,
                 num_labels: int, seed: int = 0) -> Step:
    """Stage I: G condition -> label logits; D on [condition, parsing]; adversarial + L1 + CE.

    Args:
      generator_sizes, discriminator_sizes: `GENERATOR_FIELDS` / `DISCRIMINATOR_FIELDS`.
      train: lr, b1, b2, adam_eps. loss_weights: adversarial, l1, cross_entropy.
      batch, image_size (H, W), condition_channels (G input), num_labels (G output).
    """
    height, width = image_size
    gen = global_generator(condition_channels, num_labels, **generator_sizes)
    disc = MultiscaleDiscriminator(condition_channels + num_labels, **discriminator_sizes)
    g_opt, d_opt = adam(gen, train), adam(disc, train)
    rng = torch.Generator().manual_seed(seed)
    condition = _random_images(rng, batch, condition_channels, height, width)
    target = _random_one_hot(rng, batch, num_labels, height, width)

    def step() -> float:
        logits = gen(condition)
        probs = logits.softmax(1)
        discriminator_update(disc, d_opt, torch.cat([condition, target], 1),
                             torch.cat([condition, probs], 1))
        with frozen_parameters(disc):
            loss = (loss_weights["adversarial"] * gan_g_loss(disc(torch.cat([condition, probs], 1)))
                    + loss_weights["l1"] * (probs - target).abs().mean()
                    + loss_weights["cross_entropy"]
                    * -(target * logits.log_softmax(1)).sum(1).mean())
            apply_gradients(g_opt, loss)
        return loss.item()

    return step


def warp_gan_step(generator_sizes: Mapping, discriminator_sizes: Mapping,
                  train: Mapping[str, float], loss_weights: Mapping[str, float], *,
                  feature_matching_layers: int, vgg_width_divisor: int,
                  imagenet_normalize: bool, batch: int, image_size: Sequence[int],
                  generator_channels: int, condition_channels: int, seed: int = 0) -> Step:
    """Warp-GAN stand-in: one GlobalGenerator generator_channels -> RGB (tanh); D on
    [condition, image]; adversarial + perceptual (VGG19 on fake and real) + feature matching +
    L1. No parsing matcher, no feature warping, no frozen earlier stages.

    Args: as `parsing_step`; loss_weights: adversarial, perceptual, feature_matching, l1.
    """
    height, width = image_size
    gen = global_generator(generator_channels, RGB_CHANNELS, out_activation=nn.Tanh(),
                           **generator_sizes)
    disc = MultiscaleDiscriminator(condition_channels + RGB_CHANNELS, **discriminator_sizes)
    vgg = VGG19Features(vgg_width_divisor, imagenet_normalize)
    g_opt, d_opt = adam(gen, train), adam(disc, train)
    rng = torch.Generator().manual_seed(seed)
    inputs = _random_images(rng, batch, generator_channels, height, width)
    condition = _random_images(rng, batch, condition_channels, height, width)
    target = _random_images(rng, batch, RGB_CHANNELS, height, width)
    real_input = torch.cat([condition, target], 1)

    def step() -> float:
        fake = gen(inputs)
        discriminator_update(disc, d_opt, real_input, torch.cat([condition, fake], 1))
        with frozen_parameters(disc):
            fake_features = disc(torch.cat([condition, fake], 1))
            with torch.no_grad():
                real_features = disc(real_input)
            loss = (loss_weights["adversarial"] * gan_g_loss(fake_features)
                    + loss_weights["perceptual"] * perceptual_loss(vgg, fake, target)
                    + loss_weights["feature_matching"] * feature_matching_loss(
                        real_features, fake_features, feature_matching_layers)
                    + loss_weights["l1"] * (fake - target).abs().mean())
            apply_gradients(g_opt, loss)
        return loss.item()

    return step


def refine_step(generator_sizes: Mapping, train: Mapping[str, float],
                loss_weights: Mapping[str, float], *, vgg_width_divisor: int,
                imagenet_normalize: bool, batch: int, image_size: Sequence[int],
                pose_channels: int, seed: int = 0) -> Step:
    """Refinement render: G [warped clothes, coarse, pose] -> mask (sigmoid); result = mask *
    warped + (1 - mask) * coarse; perceptual(result, target) + mean |1 - mask| + L1(result,
    target). No D.

    Args: as `parsing_step`; loss_weights: perceptual, mask, l1.
    """
    height, width = image_size
    gen = global_generator(2 * RGB_CHANNELS + pose_channels, 1, out_activation=nn.Sigmoid(),
                           **generator_sizes)
    vgg = VGG19Features(vgg_width_divisor, imagenet_normalize)
    g_opt = adam(gen, train)
    rng = torch.Generator().manual_seed(seed)
    warped, coarse, target = (_random_images(rng, batch, RGB_CHANNELS, height, width)
                              for _ in range(3))
    pose = (torch.rand(batch, pose_channels, height, width, generator=rng) > 0.9).float()

    def step() -> float:
        mask = gen(torch.cat([warped, coarse, pose], 1))
        result = mask * warped + (1 - mask) * coarse
        loss = (loss_weights["perceptual"] * perceptual_loss(vgg, result, target)
                + loss_weights["mask"] * (1 - mask).abs().mean()
                + loss_weights["l1"] * (result - target).abs().mean())
        apply_gradients(g_opt, loss)
        return loss.item()

    return step
