"""Tests for mgvton_jax.ops.warp: TPS/affine grids and bilinear grid sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from mgvton_jax.ops import warp

PADDINGS = ("border", "zeros")


def numpy_identity(height: int, width: int) -> np.ndarray:
    """(H, W, 2) float64 identity grid built pixel by pixel."""
    grid = np.zeros((height, width, 2))
    for row in range(height):
        for col in range(width):
            grid[row, col] = (-1 + 2 * col / (width - 1), -1 + 2 * row / (height - 1))
    return grid


def reference_tps(theta: np.ndarray, grid_size: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Slow float64 TPS: solves the (N+3) interpolation system per example and coordinate."""

    def kernel(p: np.ndarray, q: np.ndarray) -> float:
        r2 = float(np.sum((p - q) ** 2))
        return r2 * np.log(r2) if r2 > 0 else 0.0

    a = np.linspace(-1, 1, grid_size)
    control = np.array([(a[i], a[j]) for i in range(grid_size) for j in range(grid_size)])
    n = len(control)
    system = np.zeros((n + 3, n + 3))
    for k in range(n):
        for m in range(n):
            system[k, m] = kernel(control[k], control[m])
        system[k, n:] = system[n:, k] = (1.0, *control[k])
    height, width = out_hw
    identity = numpy_identity(height, width)
    out = np.zeros((len(theta), height, width, 2))
    for b in range(len(theta)):
        for c in range(2):
            targets = control[:, c] + theta[b, c * n : (c + 1) * n]
            solution = np.linalg.solve(system, np.concatenate([targets, np.zeros(3)]))
            for row in range(height):
                for col in range(width):
                    p = identity[row, col]
                    value = solution[n] + solution[n + 1] * p[0] + solution[n + 2] * p[1]
                    value += sum(solution[k] * kernel(p, control[k]) for k in range(n))
                    out[b, row, col, c] = value
    return out


def reference_sample(image: np.ndarray, grid: np.ndarray, padding: str) -> np.ndarray:
    """Slow float64 bilinear sampler, one output pixel and one tap at a time."""
    batch, in_height, in_width, channels = image.shape
    out = np.zeros(grid.shape[:3] + (channels,))
    for b in range(batch):
        for row in range(grid.shape[1]):
            for col in range(grid.shape[2]):
                x, y = grid[b, row, col]
                u = (x + 1) / 2 * (in_width - 1)
                v = (y + 1) / 2 * (in_height - 1)
                if padding == "border":
                    u = min(max(u, 0.0), in_width - 1.0)
                    v = min(max(v, 0.0), in_height - 1.0)
                u0, v0 = int(np.floor(u)), int(np.floor(v))
                for r, weight_r in ((v0, 1 - (v - v0)), (v0 + 1, v - v0)):
                    for c, weight_c in ((u0, 1 - (u - u0)), (u0 + 1, u - u0)):
                        if 0 <= r < in_height and 0 <= c < in_width:
                            out[b, row, col] += weight_r * weight_c * image[b, r, c]
    return out


def random_image(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def off_pixel_grid(seed: int, batch: int, out_hw: tuple[int, int], in_hw: tuple[int, int]):
    """(B, H, W, 2) float64 grid 2 pixels beyond the image on every side, with fractional
    pixel parts in [0.2, 0.8] so that no finite-difference step crosses a bilinear kink."""
    rng = np.random.default_rng(seed)
    in_height, in_width = in_hw
    shape = (batch, *out_hw)
    u = rng.integers(-2, in_width + 1, shape) + rng.uniform(0.2, 0.8, shape)
    v = rng.integers(-2, in_height + 1, shape) + rng.uniform(0.2, 0.8, shape)
    return np.stack([2 * u / (in_width - 1) - 1, 2 * v / (in_height - 1) - 1], axis=-1)


# ---- identity ----------------------------------------------------------------------------


def test_identity_grid_matches_pixel_loop():
    np.testing.assert_allclose(warp.identity_grid(5, 7), numpy_identity(5, 7), atol=1e-7)


@pytest.mark.parametrize("grid_size", [3, 5])
def test_tps_zero_theta_is_identity(grid_size):
    grid = warp.tps_grid(jnp.zeros((2, 2 * grid_size**2)), grid_size, (9, 6))
    assert grid.shape == (2, 9, 6, 2)
    np.testing.assert_allclose(grid, np.broadcast_to(numpy_identity(9, 6), grid.shape), atol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_sample_identity_returns_image(padding):
    image = random_image(0, (2, 6, 5, 3))
    grid = jnp.broadcast_to(warp.identity_grid(6, 5), (2, 6, 5, 2))
    np.testing.assert_allclose(warp.grid_sample(image, grid, padding), image, atol=1e-5)


# ---- translation -------------------------------------------------------------------------


def test_tps_constant_x_offset_translates():
    grid_size, delta = 4, 0.3
    theta = np.zeros((1, 2 * grid_size**2), np.float32)
    theta[:, : grid_size**2] = delta
    grid = np.asarray(warp.tps_grid(jnp.asarray(theta), grid_size, (7, 5)))[0]
    identity = numpy_identity(7, 5)
    np.testing.assert_allclose(grid[..., 0], identity[..., 0] + delta, atol=1e-5)
    np.testing.assert_allclose(grid[..., 1], identity[..., 1], atol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("axis", [0, 1])
def test_one_pixel_shift(padding, axis):
    """Grid moved by one pixel along x (axis 0) or y (axis 1) reads the next column/row."""
    height, width = 6, 5
    image = random_image(1, (2, height, width, 3))
    shift = np.zeros(2, np.float32)
    shift[axis] = 2 / ((width, height)[axis] - 1)
    grid = jnp.broadcast_to(warp.identity_grid(height, width) + shift, (2, height, width, 2))
    image_axis = 2 - axis
    last = np.take(image, [-1], axis=image_axis)
    edge = last if padding == "border" else np.zeros_like(last)
    expected = np.concatenate([np.take(image, range(1, image.shape[image_axis]), image_axis),
                               edge], axis=image_axis)
    np.testing.assert_allclose(warp.grid_sample(image, grid, padding), expected, atol=1e-5)


# ---- TPS interpolation and reference -----------------------------------------------------


@pytest.mark.parametrize("grid_size", [3, 5])
def test_tps_interpolates_control_points(grid_size):
    n = grid_size**2
    theta = np.random.default_rng(2).uniform(-0.2, 0.2, (2, 2 * n)).astype(np.float32)
    side = 2 * (grid_size - 1) + 1  # control point a[i] sits on pixel 2 i
    grid = np.asarray(warp.tps_grid(jnp.asarray(theta), grid_size, (side, side)))
    a = np.linspace(-1, 1, grid_size)
    for i in range(grid_size):
        for j in range(grid_size):
            k = i * grid_size + j
            expected = np.stack([a[i] + theta[:, k], a[j] + theta[:, n + k]], axis=-1)
            np.testing.assert_allclose(grid[:, 2 * j, 2 * i], expected, atol=1e-5)


@pytest.mark.parametrize("grid_size", [3, 4])
def test_tps_matches_numpy_reference(grid_size):
    theta = np.random.default_rng(3).uniform(-0.3, 0.3, (2, 2 * grid_size**2))
    out_hw = (7, 5)
    grid = warp.tps_grid(jnp.asarray(theta, jnp.float32), grid_size, out_hw)
    np.testing.assert_allclose(grid, reference_tps(theta, grid_size, out_hw), atol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_grid_sample_matches_numpy_reference(padding):
    image = random_image(4, (2, 6, 5, 3))
    grid = np.random.default_rng(5).uniform(-1.4, 1.4, (2, 4, 7, 2)).astype(np.float32)
    expected = reference_sample(image.astype(np.float64), grid.astype(np.float64), padding)
    np.testing.assert_allclose(warp.grid_sample(image, grid, padding), expected, atol=1e-5)


def test_bfloat16_follows_input_dtype():
    image = random_image(6, (1, 6, 5, 2))
    theta = np.random.default_rng(7).uniform(-0.1, 0.1, (1, 18)).astype(np.float32)
    grid32 = warp.tps_grid(jnp.asarray(theta), 3, (6, 5))
    grid16 = warp.tps_grid(jnp.asarray(theta, jnp.bfloat16), 3, (6, 5))
    sampled16 = warp.grid_sample(jnp.asarray(image, jnp.bfloat16), grid16)
    assert grid16.dtype == sampled16.dtype == jnp.bfloat16
    np.testing.assert_allclose(grid16.astype(np.float32), grid32, atol=1e-2)
    np.testing.assert_allclose(
        sampled16.astype(np.float32), warp.grid_sample(image, grid32), atol=3e-2
    )


# ---- affine ------------------------------------------------------------------------------

IDENTITY_AFFINE = np.array([[1, 0, 0, 0, 1, 0]], np.float32)


def test_affine_identity_params_give_identity_grid():
    np.testing.assert_allclose(
        warp.affine_grid(jnp.asarray(IDENTITY_AFFINE), (6, 4))[0], numpy_identity(6, 4),
        atol=1e-6,
    )


def test_affine_scale_and_translation():
    params = np.array([[0.5, 0, 0.1, 0, 2, -0.3]], np.float32)  # x' = x/2 + 0.1, y' = 2y - 0.3
    identity = numpy_identity(6, 4)
    grid = np.asarray(warp.affine_grid(jnp.asarray(params), (6, 4)))[0]
    np.testing.assert_allclose(grid[..., 0], 0.5 * identity[..., 0] + 0.1, atol=1e-6)
    np.testing.assert_allclose(grid[..., 1], 2 * identity[..., 1] - 0.3, atol=1e-6)


def test_affine_quarter_turn_rotates_square_image():
    """x' = -y, y' = x: output pixel (i, j) reads source (j, W-1-i), i.e. np.rot90."""
    image = random_image(8, (1, 5, 5, 2))
    params = jnp.asarray([[0, -1, 0, 1, 0, 0]], jnp.float32)
    rotated = warp.grid_sample(image, warp.affine_grid(params, (5, 5)))
    np.testing.assert_allclose(rotated, np.rot90(image, 1, axes=(1, 2)), atol=1e-5)


def test_compose_with_zero_theta_is_affine_alone():
    params = jnp.asarray([[0.8, 0.2, 0.1, -0.3, 1.1, 0.05]], jnp.float32)
    np.testing.assert_allclose(
        warp.compose_affine_tps(params, jnp.zeros((1, 18)), 3, (6, 5)),
        warp.affine_grid(params, (6, 5)),
        atol=1e-6,
    )


def test_compose_applies_tps_first_then_affine():
    delta = 0.2
    theta = jnp.concatenate([jnp.full((1, 9), delta), jnp.zeros((1, 9))], axis=1)
    params = jnp.asarray([[0.5, 0, 0.1, 0, 1, 0]], jnp.float32)
    grid = np.asarray(warp.compose_affine_tps(params, theta, 3, (6, 5)))[0]
    identity = numpy_identity(6, 5)
    np.testing.assert_allclose(grid[..., 0], 0.5 * (identity[..., 0] + delta) + 0.1, atol=1e-5)
    np.testing.assert_allclose(grid[..., 1], identity[..., 1], atol=1e-5)


# ---- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("padding", PADDINGS)
def test_grid_sample_gradients(padding):
    with jax.enable_x64(True):
        image = jnp.asarray(random_image(9, (2, 5, 4, 2)), jnp.float64)
        grid = jnp.asarray(off_pixel_grid(10, 2, (3, 4), (5, 4)), jnp.float64)
        check_grads(
            lambda img, g: warp.grid_sample(img, g, padding),
            (image, grid),
            order=1,
            modes=["rev"],
        )


def test_tps_gradients():
    with jax.enable_x64(True):
        theta = jnp.asarray(np.random.default_rng(11).uniform(-0.2, 0.2, (2, 18)), jnp.float64)
        check_grads(lambda t: warp.tps_grid(t, 3, (4, 5)), (theta,), order=1, modes=["rev"])


def test_x64_context_does_not_leak():
    assert warp.tps_grid(jnp.zeros((1, 18)), 3, (2, 2)).dtype == jnp.float32


# ---- sharding and errors -----------------------------------------------------------------


@pytest.mark.parametrize("padding", PADDINGS)
def test_sharded_batch_matches_unsharded(padding):
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("data"))
    image = random_image(12, (4, 6, 5, 3))
    grid = np.random.default_rng(13).uniform(-1.3, 1.3, (4, 3, 4, 2)).astype(np.float32)
    sample = jax.jit(warp.grid_sample, static_argnames="padding")
    sharded = sample(jax.device_put(image, sharding), jax.device_put(grid, sharding), padding)
    assert sharded.sharding.is_equivalent_to(sharding, sharded.ndim)
    np.testing.assert_allclose(sharded, warp.grid_sample(image, grid, padding), atol=1e-6)


def test_bad_padding_raises():
    image = jnp.zeros((1, 3, 3, 1))
    with pytest.raises(ValueError, match="padding"):
        warp.grid_sample(image, jnp.zeros((1, 2, 2, 2)), "bogus")


def test_wrong_theta_length_raises():
    with pytest.raises(ValueError, match="theta"):
        warp.tps_grid(jnp.zeros((1, 10)), 3, (4, 4))
