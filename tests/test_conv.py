"""Tests of mgvton_jax.ops.conv (the convolution with a matrix-product weight gradient on CPU)
and mgvton_jax.xla (the CPU compiler options)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mgvton_jax import xla
from mgvton_jax.ops.conv import conv2d, kernel_gradient, xla_conv2d


def numpy_kernel_gradient(x, dy, k, stride, padding, dilation):
    """dW[i, j] = sum_p x_padded[stride * p + (i, j)]^T dy[p], by loops in float64."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    b, h, w, c = x.shape
    dilated = np.zeros((b, (h - 1) * dilation + 1, (w - 1) * dilation + 1, c))
    dilated[:, ::dilation, ::dilation] = x
    (top, bottom), (left, right) = padding
    padded = np.pad(dilated, ((0, 0), (top, bottom), (left, right), (0, 0)))
    _, out_h, out_w, out_c = dy.shape
    gradient = np.zeros((k, k, c, out_c))
    for i in range(k):
        for j in range(k):
            window = padded[:, i:i + stride * (out_h - 1) + 1:stride,
                            j:j + stride * (out_w - 1) + 1:stride]
            gradient[i, j] = np.einsum("bhwc,bhwo->co", window, dy)
    return gradient


def pad(p):
    return ((p, p), (p, p))


# (batch, height, width, Cin, Cout, kernel, stride, padding, input dilation): every kind of
# convolution the networks use, plus odd sizes and asymmetric padding.
CASES = {
    "7x7 stem": (2, 14, 10, 5, 4, 7, 1, pad(3), 1),
    "3x3 same": (2, 9, 7, 6, 5, 3, 1, pad(1), 1),
    "3x3 stride 2": (2, 9, 8, 3, 6, 3, 2, pad(1), 1),
    "4x4 stride 2 (D)": (2, 11, 9, 4, 3, 4, 2, pad(2), 1),
    "4x4 stride 1 (D)": (2, 6, 5, 4, 3, 4, 1, pad(2), 1),
    "4x4 to 1 channel": (1, 6, 7, 5, 1, 4, 1, pad(2), 1),
    "transposed 3x3": (2, 5, 4, 6, 3, 3, 1, ((1, 2), (1, 2)), 2),
    "asymmetric padding": (2, 7, 6, 3, 4, 4, 1, ((0, 3), (2, 1)), 1),
    "valid": (1, 8, 9, 3, 2, 5, 1, pad(0), 1),
}


def case_arrays(case, seed=0):
    b, h, w, c, o, k, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((b, h, w, c)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, c, o)) * 0.2, jnp.float32)
    out = xla_conv2d(x, kernel, stride, padding, dilation)
    dy = jnp.asarray(rng.standard_normal(out.shape), jnp.float32)
    return x, kernel, dy, (stride, padding, dilation)


@pytest.mark.parametrize("name", CASES)
def test_kernel_gradient_matches_numpy_loops(name):
    x, kernel, dy, (stride, padding, dilation) = case_arrays(CASES[name])
    got = kernel_gradient(x, dy, kernel.shape[0], stride, padding, dilation)
    expected = numpy_kernel_gradient(x, dy, kernel.shape[0], stride, padding, dilation)
    assert got.shape == kernel.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("name", CASES)
def test_conv2d_gradients_equal_xla(name):
    x, kernel, dy, args = case_arrays(CASES[name], seed=1)
    out, pullback = jax.vjp(lambda x, w: conv2d(x, w, *args), x, kernel)
    expected_out, expected_pullback = jax.vjp(lambda x, w: xla_conv2d(x, w, *args), x, kernel)
    np.testing.assert_array_equal(out, expected_out)
    dx, dw = pullback(dy)
    expected_dx, expected_dw = expected_pullback(dy)
    np.testing.assert_array_equal(dx, expected_dx)  # the input gradient is XLA's own
    np.testing.assert_allclose(dw, expected_dw, rtol=1e-5,
                               atol=1e-5 * float(jnp.abs(expected_dw).max()))


def test_conv2d_gradient_checked_numerically():
    with jax.enable_x64(True):
        x, kernel, _, args = case_arrays(CASES["4x4 stride 1 (D)"])
        x, kernel = x.astype(jnp.float64), kernel.astype(jnp.float64)
        check_grads(lambda x, w: conv2d(x, w, *args), (x, kernel), order=1, modes=["rev"])


def test_cpu_backward_has_no_weight_gradient_convolution():
    """On CPU the backward pass is one forward and one input-gradient convolution; the weight
    gradient is matrix products."""
    x, kernel, dy, args = case_arrays(CASES["4x4 stride 1 (D)"])

    def backward(conv):
        return jax.jit(lambda x, w, dy: jax.vjp(lambda x, w: conv(x, w, *args), x, w)[1](dy))

    def convolutions(conv):
        hlo = backward(conv).lower(x, kernel, dy).as_text()
        return hlo.count("stablehlo.convolution"), hlo.count("stablehlo.dot_general")

    assert convolutions(xla_conv2d) == (2, 0)  # input and weight gradient (no forward: unused)
    assert convolutions(conv2d)[0] == 1
    assert convolutions(conv2d)[1] == kernel.shape[0]  # one product per kernel row


def test_xla_jit_compiles_without_ynnpack_fusions_on_cpu():
    x = jnp.ones((4, 70, 54, 24))
    kernel = jnp.ones((7, 7, 24, 8))

    def compiled(jit):
        fn = jit(lambda x, w: jnp.tanh(xla_conv2d(x, w, 1, pad(0))) * 2.0 + 1.0)
        return fn.lower(x, kernel).compile().as_text()

    assert "__ynn_fusion" in compiled(jax.jit)  # why the option exists (jax 0.10 on CPU)
    assert "__ynn_fusion" not in compiled(xla.jit)
