"""PyTorch reference networks and training steps for `benchmarks/train_step.py`.

The networks have the layer shapes of the Flax ones in `mgvton_jax.models`, in NCHW:
- `global_generator`: pix2pixHD GlobalGenerator: reflect-pad 3 + 7x7 conv, norm, ReLU;
  n_downsample x [3x3 conv stride 2 pad 1, norm, ReLU]; n_blocks residual blocks of
  convs_per_block x [reflect-pad 1, 3x3 conv, norm, ReLU] (no last ReLU); n_downsample x
  [x2 upsampling (`upsampling`: transposed or resize convolution), norm, ReLU]; reflect-pad 3
  + 7x7 conv.
- `MultiscaleDiscriminator`: num_d PatchGANs (4x4 convs, zero pad 2, LeakyReLU 0.2, norm after
  every conv but the first and the last), scale i on the input average-pooled i times.
- `VGG19Features`: torchvision's vgg19().features[:30] (to relu5_1), random weights, frozen.
- `GeometricMatcher`, `WarpGanGenerator` (parsing matcher with affine and TPS grids,
  `TpsGrid`), as `mgvton_jax.models.gmm` / `warp_gan`; sampling by `F.grid_sample`
  (align_corners=True).

The steps (`parsing_step`, `warp_gan_step`, `refine_step`) mirror the stage steps of
`mgvton_jax.stages` on fixed random inputs: the frozen earlier stages' forwards (no gradient;
`FrozenStages`), one generator forward; with a D, a D update on real and detached fake first,
then the generator update through the updated (frozen) D; Adam on every trained network. The
Warp-GAN generator is the full one (`WarpGanGenerator`: parsing matcher, warped reference
features, soft gate). Each returns a callable running one step and returning the generator
loss; `device` and `autocast` place it on a GPU and in mixed precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_DISCRIMINATOR_WIDTH = 512
MAX_FEATURE_WIDTH = 512
LEAKY_SLOPE = 0.2
# torchvision VGG19 up to relu5_1: (convolutions, width) per block; a max-pool between blocks.
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (1, 512))
# pix2pixHD VGGLoss weights of relu1_1 .. relu5_1.
PERCEPTUAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RGB_CHANNELS = 3
BODY_SHAPE_SIZE = (16, 12)  # the blurred body shape's intermediate size
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


def encoder(in_channels: int, *, ngf: int, n_downsample: int, norm: str) -> list[nn.Module]:
    """Stem + downsampling: (B, in, H, W) -> (B, ngf * 2^n, H / 2^n, W / 2^n)."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7),
                               make_norm(norm, ngf), nn.ReLU(inplace=True)]
    for i in range(n_downsample):
        width = ngf * 2**i
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                   make_norm(norm, 2 * width), nn.ReLU(inplace=True)]
    return layers


def trunk_and_decoder(out_channels: int, *, ngf: int, n_downsample: int, n_blocks: int,
                      convs_per_block: int, norm: str, upsample: str,
                      out_activation: nn.Module | None = None) -> list[nn.Module]:
    """Residual blocks at the bottleneck, upsampling, 7x7 output conv (+ activation)."""
    layers: list[nn.Module] = [ResnetBlock(ngf * 2**n_downsample, convs_per_block, norm)
                               for _ in range(n_blocks)]
    for i in reversed(range(n_downsample)):
        width = ngf * 2**i
        layers += [*upsampling(2 * width, width, upsample), make_norm(norm, width),
                   nn.ReLU(inplace=True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7)]
    if out_activation is not None:
        layers.append(out_activation)
    return layers


def global_generator(in_channels: int, out_channels: int, *, ngf: int, n_downsample: int,
                     n_blocks: int, convs_per_block: int, norm: str, upsample: str,
                     out_activation: nn.Module | None = None) -> nn.Sequential:
    """pix2pixHD GlobalGenerator (module docstring): (B, in, H, W) -> (B, out, H, W) float32."""
    return nn.Sequential(
        *encoder(in_channels, ngf=ngf, n_downsample=n_downsample, norm=norm),
        *trunk_and_decoder(out_channels, ngf=ngf, n_downsample=n_downsample, n_blocks=n_blocks,
                           convs_per_block=convs_per_block, norm=norm, upsample=upsample,
                           out_activation=out_activation))


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


class FeatureExtractor(nn.Sequential):
    """CP-VTON FeatureExtraction (as `mgvton_jax.models.gmm.FeatureExtractor`)."""

    def __init__(self, in_channels: int, ngf: int, n_layers: int, norm: str):
        widths = [min(ngf * 2**i, MAX_FEATURE_WIDTH) for i in range(n_layers + 1)]
        layers: list[nn.Module] = []
        for width_in, width_out in zip([in_channels, *widths[:-1]], widths, strict=True):
            layers += [nn.Conv2d(width_in, width_out, 4, stride=2, padding=1), nn.ReLU(),
                       make_norm(norm, width_out)]
        last = widths[-1]
        layers += [nn.Conv2d(last, last, 3, padding=1), nn.ReLU(), make_norm(norm, last),
                   nn.Conv2d(last, last, 3, padding=1), nn.ReLU()]
        super().__init__(*layers)
        self.n_strided = n_layers + 1

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        for _ in range(self.n_strided):
            height, width = height // 2, width // 2
        return height, width


def l2_normalize(features: torch.Tensor) -> torch.Tensor:
    return features / torch.sqrt((features**2).sum(1, keepdim=True) + 1e-6)


def correlation(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) x 2 -> (B, h * w, h, w), stream-A locations column-major (CP-VTON)."""
    batch, _, height, width = features_a.shape
    volume = torch.einsum("bcij,bckl->bjikl", features_a, features_b)
    return volume.reshape(batch, width * height, height, width)


class ParameterRegressor(nn.Module):
    """CP-VTON FeatureRegression (as `mgvton_jax.models.gmm.ParameterRegressor`)."""

    def __init__(self, in_channels: int, out_dim: int, feature_size: tuple[int, int],
                 ngf: int, norm: str):
        super().__init__()
        widths = [8 * ngf, 4 * ngf, 2 * ngf, ngf]
        kernels = [(4, 2, 1), (4, 2, 1), (3, 1, 1), (3, 1, 1)]
        layers: list[nn.Module] = []
        height, width = feature_size
        for width_in, width_out, (kernel, stride, pad) in zip(
                [in_channels, *widths[:-1]], widths, kernels, strict=True):
            layers += [nn.Conv2d(width_in, width_out, kernel, stride=stride, padding=pad),
                       make_norm(norm, width_out), nn.ReLU()]
            height = (height + 2 * pad - kernel) // stride + 1
            width = (width + 2 * pad - kernel) // stride + 1
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(ngf * height * width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class TpsGrid(nn.Module):
    """CP-VTON TpsGridGen: theta (B, 2 G^2) -> sampling grid (B, H, W, 2), align_corners."""

    def __init__(self, grid_size: int, out_hw: tuple[int, int]):
        super().__init__()
        a = np.linspace(-1.0, 1.0, grid_size)
        control = np.stack([np.repeat(a, grid_size), np.tile(a, grid_size)], axis=-1)
        n = len(control)
        sq = np.sum((control[:, None] - control[None]) ** 2, axis=-1)
        system = np.zeros((n + 3, n + 3))
        system[:n, :n] = np.where(sq > 0, sq * np.log(np.where(sq > 0, sq, 1.0)), 0.0)
        system[:n, n:] = np.concatenate([np.ones((n, 1)), control], axis=1)
        system[n:, :n] = system[:n, n:].T
        ys, xs = np.meshgrid(np.linspace(-1, 1, out_hw[0]), np.linspace(-1, 1, out_hw[1]),
                             indexing="ij")
        points = np.stack([xs.ravel(), ys.ravel()], axis=-1)
        sq = np.sum((points[:, None] - control[None]) ** 2, axis=-1)
        features = np.concatenate(
            [np.where(sq > 0, sq * np.log(np.where(sq > 0, sq, 1.0)), 0.0),
             np.ones((len(points), 1)), points], axis=-1)
        self.out_hw, self.n = out_hw, n
        self.register_buffer("points", torch.tensor(points, dtype=torch.float32))
        self.register_buffer("features", torch.tensor(features, dtype=torch.float32))
        self.register_buffer("to_coefficients",
                             torch.tensor(np.linalg.inv(system)[:, :n], dtype=torch.float32))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        offsets = theta.float().reshape(-1, 2, self.n)
        coefficients = torch.einsum("bcn,mn->bcm", offsets, self.to_coefficients)
        grid = self.points + torch.einsum("bcm,pm->bpc", coefficients, self.features)
        return grid.reshape(-1, *self.out_hw, 2)


def apply_affine(affine: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B, 6) row-major 2x3, (B, H, W, 2) -> the grid's points mapped by the affine."""
    matrix = affine.reshape(-1, 1, 1, 2, 3)
    return matrix[..., 0] * grid[..., :1] + matrix[..., 1] * grid[..., 1:] + matrix[..., 2]


def sample(x: torch.Tensor, grid: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


class GeometricMatcher(nn.Module):
    """CP-VTON GMM (as `mgvton_jax.models.gmm.GeometricMatcher`): theta (B, 2 G^2)."""

    def __init__(self, in_a: int, in_b: int, image_size: tuple[int, int], *, ngf: int,
                 n_layers: int, grid_size: int, norm: str):
        super().__init__()
        self.extractor_a = FeatureExtractor(in_a, ngf, n_layers, norm)
        self.extractor_b = FeatureExtractor(in_b, ngf, n_layers, norm)
        size = self.extractor_a.output_size(*image_size)
        self.regressor = ParameterRegressor(size[0] * size[1], 2 * grid_size**2, size, ngf,
                                            norm)

    def forward(self, stream_a: torch.Tensor, stream_b: torch.Tensor) -> torch.Tensor:
        volume = correlation(l2_normalize(self.extractor_a(stream_a)),
                             l2_normalize(self.extractor_b(stream_b)))
        return torch.tanh(self.regressor(volume))


class WarpGanGenerator(nn.Module):
    """The Warp-GAN generator (as `mgvton_jax.models.warp_gan.WarpGANGenerator`): parsing
    matcher (affine, then TPS), reference encoder warped at the bottleneck, main encoder,
    soft gate, trunk and decoder. forward -> (image, warped reference parsing)."""

    def __init__(self, main_channels: int, reference_channels: int, parsing_channels: int,
                 image_size: tuple[int, int], *, ngf: int, n_downsample: int, n_blocks: int,
                 convs_per_block: int, norm: str, upsample: str, matcher_ngf: int,
                 matcher_n_layers: int, matcher_norm: str, grid_size: int):
        super().__init__()
        self.extractor = FeatureExtractor(parsing_channels, matcher_ngf, matcher_n_layers,
                                          matcher_norm)
        size = self.extractor.output_size(*image_size)
        self.affine_regressor = ParameterRegressor(size[0] * size[1], 6, size, matcher_ngf,
                                                   matcher_norm)
        self.tps_regressor = ParameterRegressor(size[0] * size[1], 2 * grid_size**2, size,
                                                matcher_ngf, matcher_norm)
        sizes = dict(ngf=ngf, n_downsample=n_downsample, norm=norm)
        self.ref_encoder = nn.Sequential(*encoder(reference_channels, **sizes))
        self.main_encoder = nn.Sequential(*encoder(main_channels, **sizes))
        channels = ngf * 2**n_downsample
        self.gate_conv = nn.Conv2d(2 * channels, channels, 1)
        self.feature_conv = nn.Conv2d(channels, channels, 1)
        self.trunk_decoder = nn.Sequential(*trunk_and_decoder(
            RGB_CHANNELS, n_blocks=n_blocks, convs_per_block=convs_per_block,
            upsample=upsample, out_activation=nn.Tanh(), **sizes))
        bottleneck = (image_size[0] // 2**n_downsample, image_size[1] // 2**n_downsample)
        self.image_grid = TpsGrid(grid_size, tuple(image_size))
        self.feature_grid = TpsGrid(grid_size, bottleneck)
        self.register_buffer("identity", torch.tensor([1.0, 0, 0, 0, 1, 0]))
        self.image_size = tuple(image_size)

    def forward(self, main: torch.Tensor, reference: torch.Tensor, target_parsing: torch.Tensor,
                ref_parsing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target_features = l2_normalize(self.extractor(target_parsing))
        affine = self.identity + self.affine_regressor(correlation(
            target_features, l2_normalize(self.extractor(ref_parsing))))
        aligned = sample(ref_parsing, F.affine_grid(
            affine.reshape(-1, 2, 3), [len(affine), 1, *self.image_size], align_corners=True))
        theta = torch.tanh(self.tps_regressor(correlation(
            target_features, l2_normalize(self.extractor(aligned)))))
        warped_parsing = sample(ref_parsing, apply_affine(affine, self.image_grid(theta)))
        warped = sample(self.ref_encoder(reference),
                        apply_affine(affine, self.feature_grid(theta)))
        main = self.main_encoder(main)
        merged = main + torch.sigmoid(self.gate_conv(torch.cat([main, warped], 1))) \
            * self.feature_conv(warped)
        return self.trunk_decoder(merged), warped_parsing


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
    loss = fake[0][0].new_zeros(())
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
                 num_labels: int, seed: int = 0, device: str = "cpu",
                 autocast: torch.dtype | None = None) -> Step:
    """Stage I: G condition -> label logits; D on [condition, parsing]; adversarial + L1 + CE.

    Args:
      generator_sizes, discriminator_sizes: `GENERATOR_FIELDS` / `DISCRIMINATOR_FIELDS`.
      train: lr, b1, b2, adam_eps. loss_weights: adversarial, l1, cross_entropy.
      batch, image_size (H, W), condition_channels (G input), num_labels (G output).
      device, autocast: where it runs, and the autocast dtype (None: float32).
    """
    height, width = image_size
    gen = global_generator(condition_channels, num_labels, **generator_sizes).to(device)
    disc = MultiscaleDiscriminator(condition_channels + num_labels,
                                   **discriminator_sizes).to(device)
    g_opt, d_opt = adam(gen, train), adam(disc, train)
    rng = torch.Generator().manual_seed(seed)
    condition = _random_images(rng, batch, condition_channels, height, width).to(device)
    target = _random_one_hot(rng, batch, num_labels, height, width).to(device)

    def step() -> float:
        with _autocast(device, autocast):
            return parsing_update()

    def parsing_update() -> float:
        logits = gen(condition).float()
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


class FrozenStages(nn.Module):
    """The earlier stages a later stage runs in inference mode, without gradients: stage I
    (GlobalGenerator condition -> 20 labels, softmax), the GMM (person stream [blurred body
    shape, clothes region] against the clothes mask; TPS warp of the clothes, border padding)
    and, for the refinement, the Warp-GAN generator."""

    def __init__(self, parsing_sizes: Mapping, gmm_sizes: Mapping, image_size: Sequence[int],
                 condition_channels: int, num_labels: int, clothes_labels: Sequence[int],
                 warp_gan: WarpGanGenerator | None = None):
        super().__init__()
        self.parsing = global_generator(condition_channels, num_labels, **parsing_sizes)
        self.gmm = GeometricMatcher(2, 1, tuple(image_size), **gmm_sizes)
        self.grid = TpsGrid(gmm_sizes["grid_size"], tuple(image_size))
        self.warp_gan = warp_gan
        self.clothes_labels = list(clothes_labels)
        self.image_size = tuple(image_size)
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parsing = self.parsing(inputs["condition"]).softmax(1)
        person = 1 - parsing[:, :1]
        coarse_shape = F.interpolate(person, size=BODY_SHAPE_SIZE, mode="bilinear",
                                     antialias=True)
        body_shape = F.interpolate(coarse_shape, size=self.image_size, mode="bilinear")
        region = parsing[:, self.clothes_labels].sum(1, keepdim=True)
        theta = self.gmm(torch.cat([body_shape, region], 1), inputs["clothes_mask"])
        values = {"parsing": parsing,
                  "warped_clothes": sample(inputs["clothes"], self.grid(theta), "border")}
        if self.warp_gan is not None:
            values["coarse"] = self.warp_gan(
                torch.cat([values["warped_clothes"], inputs["reference_without_clothes"],
                           inputs["target_pose"], parsing], 1),
                torch.cat([inputs["reference_without_clothes"], inputs["reference_parsing"]], 1),
                parsing, inputs["reference_parsing"])[0]
        return values


def _warp_gan_inputs(rng: torch.Generator, batch: int, height: int, width: int,
                     condition_channels: int, num_labels: int, pose_channels: int
                     ) -> dict[str, torch.Tensor]:
    """Random inputs of the Warp-GAN and refinement steps (NCHW float32)."""
    shape = (batch, 1, height, width)
    return {
        "condition": _random_images(rng, batch, condition_channels, height, width),
        "clothes": _random_images(rng, batch, RGB_CHANNELS, height, width),
        "clothes_mask": (torch.rand(shape, generator=rng) > 0.5).float(),
        "reference_without_clothes": _random_images(rng, batch, RGB_CHANNELS, height, width),
        "reference_parsing": _random_one_hot(rng, batch, num_labels, height, width),
        "target_parsing": _random_one_hot(rng, batch, num_labels, height, width),
        "target_pose": (torch.rand(batch, pose_channels, height, width, generator=rng) > 0.9
                        ).float(),
        "target": _random_images(rng, batch, RGB_CHANNELS, height, width),
    }


def warp_gan_step(generator_sizes: Mapping, discriminator_sizes: Mapping,
                  frozen_sizes: Mapping, train: Mapping[str, float],
                  loss_weights: Mapping[str, float], *, feature_matching_layers: int,
                  vgg_width_divisor: int, imagenet_normalize: bool, batch: int,
                  image_size: Sequence[int], condition_channels: int, num_labels: int,
                  pose_channels: int, clothes_labels: Sequence[int], seed: int = 0,
                  device: str = "cpu", autocast: torch.dtype | None = None) -> Step:
    """Stage II, as `mgvton_jax.stages.warp_gan`: the frozen stage I and GMM forwards, the
    Warp-GAN generator (matcher, warped reference features, gate) once, D on [pose, parsing,
    image] updated first, then G through the updated D: adversarial + perceptual (VGG19 on
    fake and real) + feature matching + L1 + L1 of the matcher's warped reference parsing.

    Args:
      generator_sizes: config.model.warp_gan; discriminator_sizes: `DISCRIMINATOR_FIELDS`;
        frozen_sizes: {"parsing": `GENERATOR_FIELDS`, "gmm": config.model.gmm}.
      train: lr, b1, b2, adam_eps. loss_weights: adversarial, perceptual, feature_matching,
        l1, parsing_match.
      device, autocast: where it runs, and the autocast dtype (None: float32).
    """
    height, width = image_size
    frozen = FrozenStages(frozen_sizes["parsing"], frozen_sizes["gmm"], image_size,
                          condition_channels, num_labels, clothes_labels).to(device)
    main_channels = 2 * RGB_CHANNELS + pose_channels + num_labels
    gen = WarpGanGenerator(main_channels, RGB_CHANNELS + num_labels, num_labels, image_size,
                           **generator_sizes).to(device)
    disc = MultiscaleDiscriminator(pose_channels + num_labels + RGB_CHANNELS,
                                   **discriminator_sizes).to(device)
    vgg = VGG19Features(vgg_width_divisor, imagenet_normalize).to(device)
    g_opt, d_opt = adam(gen, train), adam(disc, train)
    rng = torch.Generator().manual_seed(seed)
    inputs = {k: v.to(device) for k, v in _warp_gan_inputs(
        rng, batch, height, width, condition_channels, num_labels, pose_channels).items()}
    target = inputs["target"]

    def step() -> float:
        with _autocast(device, autocast):
            values = frozen(inputs)
            parsing = values["parsing"]
            condition = torch.cat([inputs["target_pose"], parsing], 1)
            fake, warped_parsing = gen(
                torch.cat([values["warped_clothes"], inputs["reference_without_clothes"],
                           inputs["target_pose"], parsing], 1),
                torch.cat([inputs["reference_without_clothes"], inputs["reference_parsing"]],
                          1), parsing, inputs["reference_parsing"])
            real_input = torch.cat([condition, target], 1)
            discriminator_update(disc, d_opt, real_input, torch.cat([condition, fake], 1))
            with frozen_parameters(disc):
                fake_features = disc(torch.cat([condition, fake], 1))
                with torch.no_grad():
                    real_features = disc(real_input)
                loss = (loss_weights["adversarial"] * gan_g_loss(fake_features)
                        + loss_weights["perceptual"] * perceptual_loss(vgg, fake, target)
                        + loss_weights["feature_matching"] * feature_matching_loss(
                            real_features, fake_features, feature_matching_layers)
                        + loss_weights["l1"] * (fake - target).abs().mean()
                        + loss_weights["parsing_match"]
                        * (warped_parsing - inputs["target_parsing"]).abs().mean())
                apply_gradients(g_opt, loss)
        return loss.item()

    return step


def refine_step(generator_sizes: Mapping, frozen_sizes: Mapping, train: Mapping[str, float],
                loss_weights: Mapping[str, float], *, vgg_width_divisor: int,
                imagenet_normalize: bool, batch: int, image_size: Sequence[int],
                condition_channels: int, num_labels: int, pose_channels: int,
                clothes_labels: Sequence[int], seed: int = 0, device: str = "cpu",
                autocast: torch.dtype | None = None) -> Step:
    """Refinement render, as `mgvton_jax.stages.refine`: the frozen stage I, GMM and Warp-GAN
    forwards, then G [warped clothes, coarse, pose] -> mask (sigmoid); result = mask * warped +
    (1 - mask) * coarse; perceptual(result, target) + mean |1 - mask| + L1(result, target).

    Args: as `warp_gan_step`, frozen_sizes also with "warp_gan"; loss_weights: perceptual,
      mask, l1.
    """
    height, width = image_size
    main_channels = 2 * RGB_CHANNELS + pose_channels + num_labels
    warp_gan = WarpGanGenerator(main_channels, RGB_CHANNELS + num_labels, num_labels,
                                image_size, **frozen_sizes["warp_gan"])
    frozen = FrozenStages(frozen_sizes["parsing"], frozen_sizes["gmm"], image_size,
                          condition_channels, num_labels, clothes_labels, warp_gan).to(device)
    gen = global_generator(2 * RGB_CHANNELS + pose_channels, 1, out_activation=nn.Sigmoid(),
                           **generator_sizes).to(device)
    vgg = VGG19Features(vgg_width_divisor, imagenet_normalize).to(device)
    g_opt = adam(gen, train)
    rng = torch.Generator().manual_seed(seed)
    inputs = {k: v.to(device) for k, v in _warp_gan_inputs(
        rng, batch, height, width, condition_channels, num_labels, pose_channels).items()}
    target = inputs["target"]

    def step() -> float:
        with _autocast(device, autocast):
            values = frozen(inputs)
            warped, coarse = values["warped_clothes"], values["coarse"]
            mask = gen(torch.cat([warped, coarse, inputs["target_pose"]], 1))
            result = mask * warped + (1 - mask) * coarse
            loss = (loss_weights["perceptual"] * perceptual_loss(vgg, result, target)
                    + loss_weights["mask"] * (1 - mask).abs().mean()
                    + loss_weights["l1"] * (result - target).abs().mean())
            apply_gradients(g_opt, loss)
        return loss.item()

    return step


def _autocast(device: str, dtype: torch.dtype | None):
    """Mixed precision in `dtype` on `device` (None: plain float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)
