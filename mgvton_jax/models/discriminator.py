"""pix2pixHD multiscale PatchGAN discriminator (docs/design.md, "Discriminators").

`PatchDiscriminator` (NLayerDiscriminator with getIntermFeat): 4x4 convs with zero padding 2,
the first n_layers of them stride 2 and the last two stride 1; widths min(ndf * 2^i, 512) for
i = 0..n_layers, then 1; LeakyReLU(0.2) after every conv but the last; the chosen norm after
every conv but the first and the last; no sigmoid (the loss decides). Because the padding is 2,
each stride-1 conv grows the map by one pixel: 256x192 -> 129x97, 65x49, 33x25, 34x26, 35x27
for n_layers 3.

`MultiscaleDiscriminator`: num_d independent PatchDiscriminators; scale i sees the input
average-pooled i times (3x3, stride 2, pad 1, padding excluded from the mean). Condition the
discriminator by concatenating condition and image along channels before calling it.

`dtype` is the compute dtype (layers.py); every returned feature map, the patch logits
included, is in it (the losses cast the logits to float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.models.layers import Conv, NormKind, make_norm

MAX_WIDTH = 512
LEAKY_SLOPE = 0.2
KERNEL_SIZE = 4
PADDING = 2  # pix2pixHD: ceil((4 - 1) / 2)


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with slope 0.2 (pix2pixHD), any shape."""
    return jax.nn.leaky_relu(x, LEAKY_SLOPE)


def downsample_average(x: jax.Array) -> jax.Array:
    """3x3 average pool, stride 2, pad 1, padding not counted in the mean.

    (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C); PyTorch AvgPool2d(3, stride=2, padding=1,
    count_include_pad=False).
    """
    return nnx.avg_pool(
        x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=False
    )


class PatchDiscriminator(nnx.Module):
    """One scale: (B, H, W, in_channels) -> list of n_layers + 2 feature maps (NHWC).

    Entry i has min(ndf * 2^i, 512) channels for i <= n_layers; the last entry is the
    (B, h, w, 1) patch logits. Spatial sizes: `conv_output_size(s, 4, stride, 2)` per conv.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormKind = "instance",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = [min(ndf * 2**i, MAX_WIDTH) for i in range(n_layers + 1)]
        first = Conv(
            in_channels, widths[0], KERNEL_SIZE, stride=2, padding=PADDING, dtype=dtype, rngs=rngs
        )
        blocks = [nnx.Sequential(first, leaky_relu)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            blocks.append(
                nnx.Sequential(
                    Conv(
                        widths[i - 1],
                        widths[i],
                        KERNEL_SIZE,
                        stride=stride,
                        padding=PADDING,
                        dtype=dtype,
                        rngs=rngs,
                    ),
                    make_norm(norm, widths[i], dtype=dtype, rngs=rngs),
                    leaky_relu,
                )
            )
        blocks.append(
            Conv(widths[-1], 1, KERNEL_SIZE, padding=PADDING, dtype=dtype, rngs=rngs)
        )
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """x: (B, H, W, in_channels) float -> [each block's output in `dtype`], last = logits."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nnx.Module):
    """num_d PatchDiscriminators on 1x, 1/2x, 1/4x, ... of the input.

    __call__ returns a list over scales (finest first) of lists over layers (see
    `PatchDiscriminator`); result[i][-1] is scale i's (B, h_i, w_i, 1) patch logits. All in the
    compute dtype `dtype`.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_d: int = 2,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormKind = "instance",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.scales = nnx.List(
            [
                PatchDiscriminator(
                    in_channels, ndf=ndf, n_layers=n_layers, norm=norm, dtype=dtype, rngs=rngs
                )
                for _ in range(num_d)
            ]
        )

    def __call__(self, x: jax.Array) -> list[list[jax.Array]]:
        """x: (B, H, W, in_channels) float -> [[features of scale i] for i in range(num_d)]."""
        outputs = []
        for i, discriminator in enumerate(self.scales):
            if i > 0:
                x = downsample_average(x)
            outputs.append(discriminator(x))
        return outputs
