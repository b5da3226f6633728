"""The 2-D convolution every network uses, with a weight gradient that is fast on XLA:CPU.

XLA:CPU computes a convolution's weight gradient as another convolution whose "kernel" is the
output gradient (as large as the image) and whose output is the small kernel. For some shapes
that is 10-100x slower than PyTorch: 4x4 stride-1 discriminator layers and transposed
convolutions take seconds at 256x192 (benchmarks/README.md). On CPU, `conv2d`'s backward pass
instead writes the weight gradient as one matrix product per kernel row, with the kernel's
column offsets folded into the channels of one operand (`kernel_gradient`); the input gradient
and the forward pass stay XLA's own. Other platforms keep XLA's gradient throughout
(`jax.lax.platform_dependent`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def xla_conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding,
               input_dilation: int = 1) -> jax.Array:
    """Cross-correlation of x (B, H, W, Cin) with kernel (k, k, Cin, Cout), XLA's gradients.

    padding ((top, bottom), (left, right)) is zero padding applied after the input is dilated
    by `input_dilation` (zeros between pixels, as a transposed convolution). Output
    (B, H', W', Cout) with H' = ((H - 1) * input_dilation + 1 + top + bottom - k) // stride + 1.
    """
    return lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding=padding,
        lhs_dilation=(input_dilation, input_dilation), dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding,
           input_dilation: int = 1) -> jax.Array:
    """`xla_conv2d` (same arguments, shapes and values) whose weight gradient on CPU is
    `kernel_gradient`. x and kernel must have the same dtype. Reverse-mode only (a custom VJP:
    no forward-mode derivatives)."""
    return xla_conv2d(x, kernel, stride, padding, input_dilation)


def _conv2d_forward(x, kernel, stride, padding, input_dilation):
    return xla_conv2d(x, kernel, stride, padding, input_dilation), (x, kernel)


def _conv2d_backward(stride, padding, input_dilation, residuals, dy):
    x, kernel = residuals
    _, pullback = jax.vjp(
        lambda x, kernel: xla_conv2d(x, kernel, stride, padding, input_dilation), x, kernel)
    dx = pullback(dy)[0]

    def by_matmul(x, dy):
        return kernel_gradient(x, dy, kernel.shape[0], stride, padding, input_dilation
                               ).astype(kernel.dtype)

    def by_xla(x, dy):
        del x
        return pullback(dy)[1]

    return dx, lax.platform_dependent(x, dy, cpu=by_matmul, default=by_xla)


conv2d.defvjp(_conv2d_forward, _conv2d_backward)


def _contract_positions(a: jax.Array, b: jax.Array) -> jax.Array:
    """(B, H, W, P), (B, H, W, Q) -> (P, Q): the sum over every position of a^T b, float32."""
    return lax.dot_general(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]),
                           (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _strided(x: jax.Array, start: int, count: int, step: int, axis: int) -> jax.Array:
    """`count` entries of x along `axis` from `start`, every `step`."""
    return lax.slice_in_dim(x, start, start + step * (count - 1) + 1, step, axis)


def kernel_gradient(x: jax.Array, dy: jax.Array, kernel_size: int, stride: int,
                    padding: Padding, input_dilation: int = 1) -> jax.Array:
    """The gradient of `xla_conv2d`'s kernel, (k, k, Cin, Cout) float32, as matrix products.

    x: (B, H, W, Cin), the convolution's input; dy: (B, H', W', Cout), the gradient of its
    output. dW[i, j] = sum over output positions p of x_padded[stride * p + (i, j)]^T dy[p].
    One product per kernel row i sums over positions, with the k column offsets j stacked
    along the channels of one operand, built where it costs least:
    - stride 1: dy's column shifts are stacked once; each row i takes rows i.. of padded x;
    - stride 1 and input dilation d > 1 (transposed convolutions): x is used as it is, and
      dy is gathered at (top + d * a - i, left + d * b - j) for every input pixel (a, b), so
      no product runs over the zeros between the dilated pixels;
    - stride s > 1: padded x is gathered at (s * h + i, s * w + j) for every output pixel.
    """
    if stride > 1 and input_dilation > 1:
        raise ValueError("kernel_gradient: a stride and an input dilation together")
    if input_dilation > 1:
        return _dilated_input_gradient(x, dy, kernel_size, padding, input_dilation)
    (top, bottom), (left, right) = padding
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    if stride == 1:
        return _unit_stride_gradient(padded, dy, kernel_size)
    return _strided_gradient(padded, dy, kernel_size, stride)


def _unit_stride_gradient(padded: jax.Array, dy: jax.Array, k: int) -> jax.Array:
    _, out_h, _, out_channels = dy.shape
    width = padded.shape[2]
    # shifted[.., q, j * Cout + o] = dy[.., q - j, o] (zero outside dy), for padded columns q.
    wide = jnp.pad(dy, ((0, 0), (0, 0), (k - 1, k - 1), (0, 0)))
    shifted = jnp.concatenate(
        [lax.slice_in_dim(wide, k - 1 - j, k - 1 - j + width, axis=2) for j in range(k)],
        axis=-1)
    rows = [_contract_positions(lax.slice_in_dim(padded, i, i + out_h, axis=1), shifted)
            for i in range(k)]  # (Cin, k * Cout) each, j-major
    gradient = jnp.stack(rows).reshape(k, padded.shape[-1], k, out_channels)
    return gradient.transpose(0, 2, 1, 3)


def _strided_gradient(padded: jax.Array, dy: jax.Array, k: int, stride: int) -> jax.Array:
    _, out_h, out_w, out_channels = dy.shape
    rows = []
    for i in range(k):
        band = _strided(padded, i, out_h, stride, axis=1)
        stacked = jnp.concatenate(
            [_strided(band, j, out_w, stride, axis=2) for j in range(k)], axis=-1)
        rows.append(_contract_positions(stacked, dy))  # (k * Cin, Cout), j-major
    return jnp.stack(rows).reshape(k, k, padded.shape[-1], out_channels)


def _dilated_input_gradient(x: jax.Array, dy: jax.Array, k: int, padding: Padding,
                            dilation: int) -> jax.Array:
    _, height, width, channels = x.shape
    _, out_h, out_w, out_channels = dy.shape
    (top, _), (left, _) = padding
    # dy indices top + d * a - i over a < H, i < k (zero outside [0, H')), likewise columns.
    pad_top, pad_left = max(0, k - 1 - top), max(0, k - 1 - left)
    pad_bottom = max(0, top + dilation * (height - 1) - (out_h - 1))
    pad_right = max(0, left + dilation * (width - 1) - (out_w - 1))
    padded = jnp.pad(dy, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
    rows = []
    for i in range(k):
        band = _strided(padded, top - i + pad_top, height, dilation, axis=1)
        stacked = jnp.concatenate(
            [_strided(band, left - j + pad_left, width, dilation, axis=2) for j in range(k)],
            axis=-1)
        rows.append(_contract_positions(x, stacked))  # (Cin, k * Cout), j-major
    gradient = jnp.stack(rows).reshape(k, channels, k, out_channels)
    return gradient.transpose(0, 2, 1, 3)
