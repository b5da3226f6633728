"""The one convolution block and the one normalisation choice that every network uses.

Every network in `mgvton_jax.models` builds its convolutions from `Conv` / `UpConv` and its
normalisation layers from `make_norm`, so both can be re-implemented here without touching the
networks. Every convolution goes through `_convolve`, whose weight gradient is computed as
matrix products on CPU, where XLA's own is slow (`mgvton_jax.ops.conv`, docs/design.md, "CPU
performance").

Initialisation (pix2pixHD / CP-VTON `weights_init`): convolution kernels N(0, 0.02), biases 0;
BatchNorm scale N(1, 0.02), bias 0.

Compute dtype: every layer (and every network) takes `dtype`, the dtype its arithmetic runs in
(float32 by default, bfloat16 for mixed precision). Parameters are always created float32 and
cast to `dtype` where they are used; `Conv` / `UpConv` cast their input to `dtype`, and
`make_norm` layers return `dtype` (BatchNorm / InstanceNorm statistics and running averages stay
float32, Flax computes them in at least float32).

Train / eval mode of BatchNorm: `nnx.BatchNorm` reads its `use_running_average` attribute
(False after construction = training mode, batch statistics, running averages updated).
For inference use the NNX view `nnx.view(model, use_running_average=True)`, which returns a model
sharing the same parameters with every BatchNorm in eval mode (running statistics, nothing
updated). A network without BatchNorm (e.g. the InstanceNorm discriminator) has no such
attribute: pass `raise_if_not_found=False` to `nnx.view` when the network type is not known.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.ops.conv import conv2d

PadMode = Literal["zero", "reflect"]
NormKind = Literal["batch", "instance", "none"]
UpsampleKind = Literal["transpose", "resize"]

_PAD_MODES = ("zero", "reflect")
UPSAMPLE_KINDS = ("transpose", "resize")
_NORM_KINDS = ("batch", "instance", "none")

# pix2pixHD / CP-VTON initialisation.
INIT_STDDEV = 0.02
conv_kernel_init = jax.nn.initializers.normal(INIT_STDDEV)

# PyTorch BatchNorm2d defaults: running = 0.9 * running + 0.1 * batch (PyTorch momentum 0.1).
BATCH_NORM_MOMENTUM = 0.9
NORM_EPSILON = 1e-5


def batch_norm_scale_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """N(1, 0.02) of `shape` and `dtype`: BatchNorm scale initialisation (pix2pixHD)."""
    return 1.0 + INIT_STDDEV * jax.random.normal(key, shape, dtype)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one axis (PyTorch formula, floor division)."""
    return (size + 2 * padding - kernel) // stride + 1


def _convolve(
    x: jax.Array,
    kernel: jax.Array,
    stride: int,
    padding: tuple[tuple[int, int], tuple[int, int]],
    input_dilation: int = 1,
) -> jax.Array:
    """Cross-correlation of NHWC `x` (B, H, W, Cin) with an HWIO `kernel` (k, k, Cin, Cout).

    The single convolution of the package (ordinary and transposed convolutions), computed in
    x's dtype; its weight gradient on CPU is `mgvton_jax.ops.conv.kernel_gradient`.
    """
    return conv2d(x, kernel.astype(x.dtype), stride, padding, input_dilation)


class Conv(nnx.Module):
    """2-D convolution with explicit padding: (B, H, W, Cin) -> (B, H', W', Cout).

    H' = (H + 2 * padding - kernel_size) // stride + 1 (same for W). `pad_mode` "zero" pads
    with zeros, "reflect" mirrors without repeating the edge (PyTorch ReflectionPad2d,
    np.pad mode "reflect"). Parameters: `kernel` (k, k, Cin, Cout) float32, N(0, 0.02);
    `bias` (Cout,) zeros, or None when use_bias is False. Computes in `dtype`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        pad_mode: PadMode = "zero",
        use_bias: bool = True,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
        self.stride = stride
        self.padding = padding
        self.pad_mode = pad_mode
        self.dtype = dtype
        shape = (kernel_size, kernel_size, in_features, out_features)
        self.kernel = nnx.Param(conv_kernel_init(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, Cin) float -> (B, H', W', Cout) of the compute dtype."""
        x = x.astype(self.dtype)
        pad = self.padding
        if self.pad_mode == "reflect" and pad > 0:
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
            pad = 0
        y = _convolve(x, self.kernel[...], self.stride, ((pad, pad), (pad, pad)))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


class UpConv(nnx.Module):
    """x2 upsampling with a 3x3 kernel: (B, H, W, Cin) -> (B, 2H, 2W, Cout).

    kind "transpose" (pix2pixHD's ConvTranspose2d(3, stride=2, padding=1, output_padding=1)):
    the input is dilated by 2 (zeros between pixels), padded by 1 before and 2 after, and
    cross-correlated with `kernel` (3, 3, Cin, Cout); the equivalent PyTorch weight
    (Cin, Cout, 3, 3) is `kernel` flipped in both spatial axes. kind "resize" (Odena et al.
    2016, "Deconvolution and checkerboard artifacts"): nearest-neighbour x2, then a 3x3
    convolution with zero padding 1; every output pixel sees the same number of input pixels,
    so there is no checkerboard. Same parameters either way; init and compute dtype as `Conv`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        kind: UpsampleKind = "transpose",
        use_bias: bool = True,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if kind not in UPSAMPLE_KINDS:
            raise ValueError(f"upsample must be one of {UPSAMPLE_KINDS}, got {kind!r}")
        self.kind = kind
        self.dtype = dtype
        self.kernel = nnx.Param(conv_kernel_init(rngs.params(), (3, 3, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, Cin) float -> (B, 2H, 2W, Cout) of the compute dtype."""
        x = x.astype(self.dtype)
        if self.kind == "resize":
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            y = _convolve(x, self.kernel[...], 1, ((1, 1), (1, 1)))
        else:
            # PyTorch padding 1, output_padding 1 -> pad (1, 2) after dilation.
            y = _convolve(x, self.kernel[...], 1, ((1, 2), (1, 2)), input_dilation=2)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


class Identity(nnx.Module):
    """The "none" normalisation: returns its input unchanged (any shape)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: any array -> x."""
        return x


Norm = nnx.BatchNorm | nnx.InstanceNorm | Identity


def make_norm(
    kind: NormKind, features: int, *, dtype: DTypeLike = jnp.float32, rngs: nnx.Rngs
) -> Norm:
    """The normalisation layer of `kind` over the last (channel) axis of NHWC inputs.

    "batch" and "instance" return `dtype` (statistics in float32, parameters float32).

    "batch": nnx.BatchNorm, scale N(1, 0.02), bias 0, momentum 0.9 (= PyTorch 0.1), eps 1e-5,
      axis_name None (under jit + a sharded batch the statistics are already global), training
      mode at construction (see the module docstring for eval mode). Running variance is the
      biased batch variance (PyTorch stores the unbiased one).
    "instance": per-example, per-channel normalisation over H and W, eps 1e-5, no affine
      parameters (pix2pixHD's InstanceNorm2d(affine=False)).
    "none": `Identity` (its input is already in the compute dtype of the preceding conv).
    """
    if kind == "batch":
        return nnx.BatchNorm(
            features,
            use_running_average=False,
            momentum=BATCH_NORM_MOMENTUM,
            epsilon=NORM_EPSILON,
            scale_init=batch_norm_scale_init,
            axis_name=None,
            dtype=dtype,
            rngs=rngs,
        )
    if kind == "instance":
        return nnx.InstanceNorm(
            features,
            epsilon=NORM_EPSILON,
            use_scale=False,
            use_bias=False,
            dtype=dtype,
            rngs=rngs,
        )
    if kind == "none":
        return Identity()
    raise ValueError(f"norm must be one of {_NORM_KINDS}, got {kind!r}")
