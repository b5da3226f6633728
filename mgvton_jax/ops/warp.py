"""Sampling grids (identity, thin-plate spline, affine) and bilinear grid sampling.

Grid convention (docs/design.md, "Grids and sampling"): a grid is a (B, H, W, 2) float array
whose last axis is (x, y) in normalised coordinates, x along the width and y along the height;
-1 and +1 are the centres of the corner pixels (PyTorch's align_corners=True). A grid says, for
each output pixel, where in the source image to sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

_PADDINGS = ("border", "zeros")


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """At least float32: bfloat16 cannot even hold pixel coordinates like 200.5."""
    return jnp.promote_types(dtype, jnp.float32)


def identity_grid(height: int, width: int, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """(height, width, 2) grid of `dtype` that samples every pixel at its own place.

    grid[i, j] = (linspace(-1, 1, width)[j], linspace(-1, 1, height)[i]).
    """
    xs = jnp.linspace(-1.0, 1.0, width, dtype=dtype)
    ys = jnp.linspace(-1.0, 1.0, height, dtype=dtype)
    x, y = jnp.meshgrid(xs, ys)
    return jnp.stack([x, y], axis=-1)


def _control_points(grid_size: int) -> np.ndarray:
    """(G*G, 2) float64 (x, y) of the TPS control points; point i*G + j is (a[i], a[j])."""
    a = np.linspace(-1.0, 1.0, grid_size)
    return np.stack([np.repeat(a, grid_size), np.tile(a, grid_size)], axis=-1)


def _tps_system_inverse(grid_size: int) -> np.ndarray:
    """(N+3, N+3) float64 inverse of L = [[K, P], [P^T, 0]], N = G*G (CP-VTON TpsGridGen).

    K[k, l] = U(|P_k - P_l|^2) with U(r2) = r2 log r2, U(0) = 0; rows of P are (1, x_k, y_k).
    """
    points = _control_points(grid_size)
    n = len(points)
    sq_dist = np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    affine_part = np.concatenate([np.ones((n, 1)), points], axis=1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = scipy.special.xlogy(sq_dist, sq_dist)
    system[:n, n:] = affine_part
    system[n:, :n] = affine_part.T
    return np.linalg.inv(system)


def tps_grid(theta: jax.Array, grid_size: int, out_hw: tuple[int, int]) -> jax.Array:
    """Thin-plate-spline sampling grid from control-point offsets (CP-VTON TpsGridGen).

    The G x G control points P_k lie on a regular lattice over [-1, 1]^2 (k = i*G + j has
    x = a[i], y = a[j], a = linspace(-1, 1, G)); the spline maps each P_k exactly onto
    Q_k = P_k + offset_k and is smooth in between. theta = 0 gives the identity grid.

    Args:
      theta: (B, 2*G*G) float32/bfloat16/float64; theta[:, :G*G] are x-offsets and
        theta[:, G*G:] y-offsets, in normalised units.
      grid_size: G, static.
      out_hw: (H, W) of the grid, static (image or feature-map size: same normalised space).
    Returns:
      (B, H, W, 2) grid of theta's dtype.
    """
    n = grid_size * grid_size
    if theta.shape[-1] != 2 * n:
        raise ValueError(f"theta has {theta.shape[-1]} values per example, expected {2 * n}")
    dtype = _compute_dtype(theta.dtype)
    height, width = out_hw
    points = identity_grid(height, width, dtype).reshape(-1, 2)
    control = jnp.asarray(_control_points(grid_size), dtype)
    sq_dist = jnp.sum((points[:, None, :] - control[None, :, :]) ** 2, axis=-1)
    # Row p of `features` times L^-1[:, :N] times Q_c is the spline's c-coordinate at p.
    features = jnp.concatenate(
        [jax.scipy.special.xlogy(sq_dist, sq_dist), jnp.ones_like(points[:, :1]), points],
        axis=-1,
    )
    to_coefficients = jnp.asarray(_tps_system_inverse(grid_size)[:, :n], dtype)
    offsets = theta.astype(dtype).reshape(-1, 2, n)
    # A TPS reproduces affine maps, so the control points alone give the identity; only the
    # offsets go through the spline, which keeps theta = 0 exact.
    coefficients = jnp.einsum("bcn,mn->bcm", offsets, to_coefficients)
    displacement = jnp.einsum("bcm,pm->bpc", coefficients, features)
    grid = points + displacement
    return grid.reshape(-1, height, width, 2).astype(theta.dtype)


def apply_affine(params: jax.Array, grid: jax.Array) -> jax.Array:
    """Maps every (x, y) of a grid to (a x + b y + c, d x + e y + f).

    Args:
      params: (B, 6) row-major 2x3 matrix [[a, b, c], [d, e, f]]; identity = [1, 0, 0, 0, 1, 0].
      grid: (B, H, W, 2) or (1, H, W, 2) (broadcast over the batch).
    Returns:
      (B, H, W, 2) grid of the promoted dtype of params and grid.
    """
    matrix = params.reshape(-1, 1, 1, 2, 3)
    x, y = grid[..., 0:1], grid[..., 1:2]
    return matrix[..., 0] * x + matrix[..., 1] * y + matrix[..., 2]


def affine_grid(params: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """(B, H, W, 2) grid of params' dtype: output point (x, y) samples the source at A (x, y, 1).

    params: (B, 6) as in `apply_affine`; out_hw: (H, W), static.
    """
    return apply_affine(params, identity_grid(*out_hw, dtype=params.dtype)[None])


def compose_affine_tps(
    affine_params: jax.Array, theta: jax.Array, grid_size: int, out_hw: tuple[int, int]
) -> jax.Array:
    """Grid that first applies the TPS, then the affine: sample(p) = Affine(TPS(p)).

    So the source image is first aligned by the affine and the TPS then refines that aligned
    image (GEO-style matcher, docs/design.md).

    Args:
      affine_params: (B, 6) as in `apply_affine`.
      theta: (B, 2*G*G) TPS offsets as in `tps_grid`.
      grid_size: G, static.
      out_hw: (H, W), static.
    Returns:
      (B, H, W, 2) grid.
    """
    return apply_affine(affine_params, tps_grid(theta, grid_size, out_hw))


def grid_sample(image: jax.Array, grid: jax.Array, padding: str = "border") -> jax.Array:
    """Bilinear sampling of `image` at the points of `grid` (PyTorch align_corners=True).

    The grid point (x, y) is the pixel position u = (x + 1) / 2 * (Win - 1) (column),
    v = (y + 1) / 2 * (Hin - 1) (row). With padding "border" (u, v) is first clamped into the
    image; with "zeros" every one of the four bilinear taps that falls outside the image reads 0.
    Differentiable in image and grid; gathers over the flattened pixel axis of each example, so
    it jits and runs with the batch axis sharded.

    Args:
      image: (B, Hin, Win, C) float32 or bfloat16.
      grid: (B, H, W, 2) (x, y) normalised coordinates.
      padding: "border" or "zeros".
    Returns:
      (B, H, W, C) of image's dtype.
    """
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    batch, in_height, in_width, channels = image.shape
    out_height, out_width = grid.shape[1:3]
    coords = grid.astype(_compute_dtype(grid.dtype))
    u = (coords[..., 0] + 1) / 2 * (in_width - 1)
    v = (coords[..., 1] + 1) / 2 * (in_height - 1)
    if padding == "border":
        u = jnp.clip(u, 0, in_width - 1)
        v = jnp.clip(v, 0, in_height - 1)
    u0 = jnp.floor(u)
    v0 = jnp.floor(v)
    u_frac = u - u0
    v_frac = v - v0
    pixels = image.reshape(batch, in_height * in_width, channels)

    def tap(row: jax.Array, col: jax.Array) -> jax.Array:
        """(B, H, W, C) image values at integer-valued (row, col); 0 outside the image."""
        inside = (row >= 0) & (row <= in_height - 1) & (col >= 0) & (col <= in_width - 1)
        row = jnp.clip(row, 0, in_height - 1).astype(jnp.int32)
        col = jnp.clip(col, 0, in_width - 1).astype(jnp.int32)
        index = (row * in_width + col).reshape(batch, -1, 1)
        values = jnp.take_along_axis(pixels, index, axis=1)
        values = values.reshape(batch, out_height, out_width, channels)
        return jnp.where(inside[..., None], values, 0)

    # With "border" the only taps outside are at u0 + 1 = Win or v0 + 1 = Hin, of weight 0.
    sampled = (
        tap(v0, u0) * ((1 - u_frac) * (1 - v_frac))[..., None]
        + tap(v0, u0 + 1) * (u_frac * (1 - v_frac))[..., None]
        + tap(v0 + 1, u0) * ((1 - u_frac) * v_frac)[..., None]
        + tap(v0 + 1, u0 + 1) * (u_frac * v_frac)[..., None]
    )
    return sampled.astype(image.dtype)
