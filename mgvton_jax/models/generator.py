"""ResNet-like encoder / residual trunk / decoder generator (pix2pixHD GlobalGenerator).

docs/design.md, "Generators". Layout for ngf=64, n_downsample=3, n_blocks=9 (the paper's sizes):
reflect-pad 3 + 7x7 conv -> 64, norm, ReLU; 3 x [3x3 conv stride 2 (zero pad 1), norm, ReLU]
64 -> 128 -> 256 -> 512; 9 residual blocks at 512; 3 x [`UpConv` x2, norm, ReLU]
512 -> 256 -> 128 -> 64; reflect-pad 3 + 7x7 conv -> out_channels; output activation.
All convolutions have a bias (as pix2pixHD, also in front of a norm).

The pieces (`Encoder`, `ResidualTrunk`, `Decoder`) are public: the Warp-GAN generator combines
two encoders at the bottleneck before one trunk and decoder.

Every class takes `dtype`, the compute dtype (layers.py): encoder and trunk outputs are in it,
the decoder's activation output is always float32 (losses run in full precision). `remat=True`
rematerialises each residual block of the trunk (about 73% of the generator FLOPs and of its
activation memory at the paper's sizes): the backward pass recomputes a block's activations
from its input instead of storing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.models.layers import Conv, NormKind, UpConv, UpsampleKind, make_norm

RGB_CHANNELS = 3

OutActivation = Literal["tanh", "sigmoid", "none"]

OUT_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "none": lambda x: x,
}


def check_spatial_size(height: int, width: int, n_downsample: int) -> None:
    """Raises ValueError unless height and width are multiples of 2**n_downsample.

    The decoder must restore exactly the input size, and each stride-2 conv floors odd sizes.
    """
    factor = 2**n_downsample
    if height % factor or width % factor:
        raise ValueError(
            f"input size {height}x{width} must be divisible by 2**n_downsample = {factor}"
        )


class Encoder(nnx.Module):
    """Stem + downsampling: (B, H, W, in_channels) -> (B, H/2^n, W/2^n, ngf * 2^n).

    Attribute `out_channels` = ngf * 2**n_downsample. Output in the compute dtype `dtype`.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ngf: int = 64,
        n_downsample: int = 3,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        layers = [
            Conv(in_channels, ngf, 7, padding=3, pad_mode="reflect", dtype=dtype, rngs=rngs),
            make_norm(norm, ngf, dtype=dtype, rngs=rngs),
            nnx.relu,
        ]
        for i in range(n_downsample):
            width = ngf * 2**i
            layers += [
                Conv(width, 2 * width, 3, stride=2, padding=1, dtype=dtype, rngs=rngs),
                make_norm(norm, 2 * width, dtype=dtype, rngs=rngs),
                nnx.relu,
            ]
        self.layers = nnx.Sequential(*layers)
        self.out_channels = ngf * 2**n_downsample

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, in_channels) float -> (B, H/2^n, W/2^n, out_channels), `dtype`."""
        return self.layers(x)


class ResnetBlock(nnx.Module):
    """Residual block at constant width: out = x + F(x), (B, h, w, C) -> (B, h, w, C).

    F = convs_per_block x [reflect-pad 1, 3x3 conv, norm, ReLU], without the last ReLU
    (2 convs = pix2pixHD, 3 = the paper's wording). Computes in `dtype`.
    """

    def __init__(
        self,
        channels: int,
        *,
        convs_per_block: int = 2,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        layers = []
        for _ in range(convs_per_block):
            layers += [
                Conv(channels, channels, 3, padding=1, pad_mode="reflect", dtype=dtype, rngs=rngs),
                make_norm(norm, channels, dtype=dtype, rngs=rngs),
                nnx.relu,
            ]
        self.residual = nnx.Sequential(*layers[:-1])

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, h, w, C) float -> (B, h, w, C) in the compute dtype."""
        residual = self.residual(x)
        return x.astype(residual.dtype) + residual


class ResidualTrunk(nnx.Module):
    """n_blocks `ResnetBlock`s at constant width: (B, h, w, C) -> (B, h, w, C) in `dtype`.

    With `remat` each block runs under `nnx.remat`: only block inputs are kept for the backward
    pass, which recomputes the rest (same values and gradients, less memory, more FLOPs).
    """

    def __init__(
        self,
        channels: int,
        *,
        n_blocks: int = 9,
        convs_per_block: int = 2,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        self.remat = remat
        self.blocks = nnx.List(
            [
                ResnetBlock(
                    channels, convs_per_block=convs_per_block, norm=norm, dtype=dtype, rngs=rngs
                )
                for _ in range(n_blocks)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, h, w, C) float -> (B, h, w, C) in the compute dtype."""
        call_block = nnx.remat(ResnetBlock.__call__) if self.remat else ResnetBlock.__call__
        for block in self.blocks:
            x = call_block(block, x)
        return x


class Decoder(nnx.Module):
    """Upsampling + output conv: (B, h, w, ngf * 2^n) -> (B, h * 2^n, w * 2^n, out_channels).

    n_downsample x [`UpConv` of kind `upsample`, norm, ReLU] halving the width, then
    reflect-pad 3 + 7x7 conv to out_channels and `out_activation` ("tanh" for images in
    [-1, 1], "sigmoid" for masks in [0, 1], "none" for logits). Computes in `dtype`; the
    activation runs on the last conv's output cast to float32, so the result is float32 for
    any compute dtype.
    """

    def __init__(
        self,
        out_channels: int,
        *,
        ngf: int = 64,
        n_downsample: int = 3,
        norm: NormKind = "batch",
        out_activation: OutActivation = "tanh",
        upsample: UpsampleKind = "transpose",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if out_activation not in OUT_ACTIVATIONS:
            raise ValueError(
                f"out_activation must be one of {tuple(OUT_ACTIVATIONS)}, got {out_activation!r}"
            )
        layers = []
        for i in reversed(range(n_downsample)):
            width = ngf * 2**i
            layers += [
                UpConv(2 * width, width, kind=upsample, dtype=dtype, rngs=rngs),
                make_norm(norm, width, dtype=dtype, rngs=rngs),
                nnx.relu,
            ]
        layers.append(
            Conv(ngf, out_channels, 7, padding=3, pad_mode="reflect", dtype=dtype, rngs=rngs)
        )
        self.layers = nnx.Sequential(*layers)
        self.out_activation = out_activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, h, w, ngf * 2^n) float -> (B, h * 2^n, w * 2^n, out_channels) float32."""
        return OUT_ACTIVATIONS[self.out_activation](self.layers(x).astype(jnp.float32))


def trunk_and_decoder(
    channels: int,
    out_channels: int,
    *,
    ngf: int,
    n_downsample: int,
    n_blocks: int,
    convs_per_block: int,
    norm: NormKind,
    out_activation: OutActivation,
    upsample: UpsampleKind,
    dtype: DTypeLike,
    remat: bool,
    rngs: nnx.Rngs,
) -> tuple[ResidualTrunk, Decoder]:
    """The back half every generator shares: a `ResidualTrunk` at the bottleneck width
    `channels`, then a `Decoder` to out_channels at full resolution."""
    trunk = ResidualTrunk(channels, n_blocks=n_blocks, convs_per_block=convs_per_block,
                          norm=norm, dtype=dtype, remat=remat, rngs=rngs)
    decoder = Decoder(out_channels, ngf=ngf, n_downsample=n_downsample, norm=norm,
                      out_activation=out_activation, upsample=upsample, dtype=dtype, rngs=rngs)
    return trunk, decoder


class ResnetGenerator(nnx.Module):
    """pix2pixHD GlobalGenerator: (B, H, W, in_channels) -> (B, H, W, out_channels).

    H and W must be multiples of 2**n_downsample (ValueError otherwise). Submodules `encoder`,
    `trunk`, `decoder` can be called on their own; the bottleneck is (B, H/2^n, W/2^n,
    ngf * 2^n), 32x24x512 at the paper's 256x192 size. `upsample` is the decoder's `UpConv`
    kind (the paper's "transpose" or "resize"). `dtype` is the compute dtype (the output is
    float32), `remat` rematerialises the trunk's blocks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        ngf: int = 64,
        n_downsample: int = 3,
        n_blocks: int = 9,
        convs_per_block: int = 2,
        norm: NormKind = "batch",
        out_activation: OutActivation = "tanh",
        upsample: UpsampleKind = "transpose",
        dtype: DTypeLike = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        self.n_downsample = n_downsample
        self.encoder = Encoder(
            in_channels, ngf=ngf, n_downsample=n_downsample, norm=norm, dtype=dtype, rngs=rngs
        )
        self.trunk, self.decoder = trunk_and_decoder(
            self.encoder.out_channels, out_channels, ngf=ngf, n_downsample=n_downsample,
            n_blocks=n_blocks, convs_per_block=convs_per_block, norm=norm,
            out_activation=out_activation, upsample=upsample, dtype=dtype, remat=remat,
            rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, in_channels) float -> (B, H, W, out_channels) float32."""
        check_spatial_size(x.shape[1], x.shape[2], self.n_downsample)
        return self.decoder(self.trunk(self.encoder(x)))
