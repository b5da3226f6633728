"""Mask-based geometric matching module: CP-VTON's GMM (docs/design.md, "GMM").

Two feature extractors (no weight sharing) -> per-location L2 normalisation -> correlation
volume -> regression of the 2*G*G TPS control-point offsets (tanh). The trainer turns theta
into a sampling grid with `mgvton_jax.ops.warp.tps_grid` and warps with `grid_sample`.

Sizes for the paper's 256x192 input, ngf 64, n_layers 3: features 16x12x512, correlation
16x12x192, regression 4x3x64 -> flatten 768 -> 50 (G = 5).

The pieces (`FeatureExtractor`, `l2_normalize`, `correlation`, `ParameterRegressor`) are
reused by the Warp-GAN parsing matcher.

`dtype` is the compute dtype (layers.py): features and the correlation volume are in it; the
regressed parameters (theta) are float32, since the sampling grid and its losses need them so.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.constants import IMAGE_SIZE
from mgvton_jax.models.layers import Conv, NormKind, conv_kernel_init, conv_output_size, make_norm

MAX_WIDTH = 512
L2_EPSILON = 1e-6


def l2_normalize(features: jax.Array, eps: float = L2_EPSILON) -> jax.Array:
    """Per-location L2 normalisation over channels: f / sqrt(sum_c f^2 + eps).

    features: (B, h, w, C) float -> same shape and dtype.
    """
    return features / jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True) + eps)


def correlation(features_a: jax.Array, features_b: jax.Array) -> jax.Array:
    """Correlation volume of two equally sized feature maps (CP-VTON FeatureCorrelation).

    out[b, y_B, x_B, k] = <A[b, y_A, x_A, :], B[b, y_B, x_B, :]> with k = x_A * h + y_A
    (stream-A locations flattened column-major).

    features_a, features_b: (B, h, w, C) float -> (B, h, w, h * w).
    """
    batch, height, width, _ = features_a.shape
    volume = jnp.einsum("bijc,bklc->bklji", features_a, features_b)  # i, j = y_A, x_A
    return volume.reshape(batch, height, width, width * height)


class FeatureExtractor(nnx.Module):
    """CP-VTON FeatureExtraction: (B, H, W, in_channels) -> (B, H/2^(n+1), W/2^(n+1), C_out).

    (n_layers + 1) x [4x4 conv stride 2 (zero pad 1), ReLU, norm] with widths
    min(ngf * 2^i, 512), i = 0..n_layers; then [3x3 conv, ReLU, norm] and [3x3 conv, ReLU] at
    the last width C_out = `out_channels`. (Order conv -> ReLU -> norm, as CP-VTON.) Sizes
    halve with floor at each stride-2 conv (`output_size`). Computes in `dtype`.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ngf: int = 64,
        n_layers: int = 3,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = [min(ngf * 2**i, MAX_WIDTH) for i in range(n_layers + 1)]
        layers = []
        for width_in, width_out in zip([in_channels, *widths[:-1]], widths, strict=True):
            layers += [
                Conv(width_in, width_out, 4, stride=2, padding=1, dtype=dtype, rngs=rngs),
                nnx.relu,
                make_norm(norm, width_out, dtype=dtype, rngs=rngs),
            ]
        out_channels = widths[-1]
        layers += [
            Conv(out_channels, out_channels, 3, padding=1, dtype=dtype, rngs=rngs),
            nnx.relu,
            make_norm(norm, out_channels, dtype=dtype, rngs=rngs),
            Conv(out_channels, out_channels, 3, padding=1, dtype=dtype, rngs=rngs),
            nnx.relu,
        ]
        self.layers = nnx.Sequential(*layers)
        self.n_strided = n_layers + 1
        self.out_channels = out_channels

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the feature map for an (height, width) input."""
        for _ in range(self.n_strided):
            height = conv_output_size(height, 4, 2, 1)
            width = conv_output_size(width, 4, 2, 1)
        return height, width

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, in_channels) float -> (B, h, w, out_channels) in `dtype`."""
        return self.layers(x)


class ParameterRegressor(nnx.Module):
    """CP-VTON FeatureRegression: (B, h, w, in_channels) -> (B, out_dim) transformation params.

    [4x4 conv stride 2 pad 1, norm, ReLU] to 8*ngf, the same to 4*ngf, [3x3 conv, norm, ReLU]
    to 2*ngf and to ngf, flatten (NHWC order), Linear -> out_dim, `out_activation` ("tanh" as
    CP-VTON, or "none"). `feature_size` (h, w) is fixed at construction because the Linear
    layer's input size depends on it. With zero_init_output the Linear starts at zero, so the
    output starts at activation(0) = 0 (a residual around an identity transform). Convs and
    Linear compute in `dtype`; the activation runs in float32 and the output is float32.
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        *,
        feature_size: tuple[int, int],
        ngf: int = 64,
        norm: NormKind = "batch",
        out_activation: Literal["tanh", "none"] = "tanh",
        zero_init_output: bool = False,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = [8 * ngf, 4 * ngf, 2 * ngf, ngf]
        kernels = [(4, 2, 1), (4, 2, 1), (3, 1, 1), (3, 1, 1)]  # (kernel, stride, padding)
        layers = []
        height, width = feature_size
        for width_in, width_out, (kernel, stride, pad) in zip(
            [in_channels, *widths[:-1]], widths, kernels, strict=True
        ):
            layers += [
                Conv(
                    width_in,
                    width_out,
                    kernel,
                    stride=stride,
                    padding=pad,
                    dtype=dtype,
                    rngs=rngs,
                ),
                make_norm(norm, width_out, dtype=dtype, rngs=rngs),
                nnx.relu,
            ]
            height = conv_output_size(height, kernel, stride, pad)
            width = conv_output_size(width, kernel, stride, pad)
        if height < 1 or width < 1:
            raise ValueError(
                f"feature map {feature_size} is too small for the regressor's two stride-2 "
                "convs; use a larger input or fewer feature-extractor layers"
            )
        if out_activation not in ("tanh", "none"):
            raise ValueError(f"out_activation must be 'tanh' or 'none', got {out_activation!r}")
        self.convs = nnx.Sequential(*layers)
        kernel_init = jax.nn.initializers.zeros if zero_init_output else conv_kernel_init
        self.linear = nnx.Linear(
            ngf * height * width, out_dim, kernel_init=kernel_init, dtype=dtype, rngs=rngs
        )
        self.out_activation = out_activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, h, w, in_channels) float -> (B, out_dim) float32."""
        y = self.convs(x)
        y = self.linear(y.reshape(y.shape[0], -1)).astype(jnp.float32)
        return jnp.tanh(y) if self.out_activation == "tanh" else y


class GeometricMatcher(nnx.Module):
    """CP-VTON GMM: (stream A, stream B) -> TPS offsets theta (B, 2*G*G) in [-1, 1].

    Stream A (B, H, W, in_channels_a): the person side (the stage gives 2 channels = [body
    shape, clothes-region mask of the parsing], values in [0, 1]). Stream B (B, H, W,
    in_channels_b): the clothes side (the clothes mask, 1 channel). theta warps stream B onto
    stream A (via `tps_grid` + `grid_sample`). (H, W) must equal `image_size`. `dtype` is the
    compute dtype; theta is float32.
    """

    def __init__(
        self,
        in_channels_a: int,
        in_channels_b: int,
        *,
        image_size: tuple[int, int] = IMAGE_SIZE,
        ngf: int = 64,
        n_layers: int = 3,
        grid_size: int = 5,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.image_size = tuple(image_size)
        self.grid_size = grid_size
        extractor_args = dict(ngf=ngf, n_layers=n_layers, norm=norm, dtype=dtype, rngs=rngs)
        self.extractor_a = FeatureExtractor(in_channels_a, **extractor_args)
        self.extractor_b = FeatureExtractor(in_channels_b, **extractor_args)
        feature_size = self.extractor_a.output_size(*self.image_size)
        self.regressor = ParameterRegressor(
            feature_size[0] * feature_size[1],
            2 * grid_size * grid_size,
            feature_size=feature_size,
            ngf=ngf,
            norm=norm,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, stream_a: jax.Array, stream_b: jax.Array) -> jax.Array:
        """stream_a: (B, H, W, Ca), stream_b: (B, H, W, Cb) float -> theta (B, 2*G*G) float32."""
        check_image_size(stream_a, self.image_size)
        features_a = l2_normalize(self.extractor_a(stream_a))
        features_b = l2_normalize(self.extractor_b(stream_b))
        return self.regressor(correlation(features_a, features_b))


def check_image_size(x: jax.Array, image_size: tuple[int, int]) -> None:
    """Raises ValueError unless x (B, H, W, C) has (H, W) == image_size (fixed by a Linear)."""
    if tuple(x.shape[1:3]) != tuple(image_size):
        raise ValueError(
            f"input size {tuple(x.shape[1:3])} differs from the image_size {tuple(image_size)} "
            "the matcher was built for"
        )
