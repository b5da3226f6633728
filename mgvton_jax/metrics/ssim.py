"""SSIM of Wang et al. 2004 on uint8 images, in float64 NumPy.

The window is an 11x11 Gaussian (sigma 1.5, normalised to sum 1), statistics are population
moments, the map is taken where the window fits ("valid") and averaged; colour SSIM is the
mean over the RGB channels. This is what
`skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)` computes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DATA_RANGE = 255.0
K1, K2 = 0.01, 0.03
SIGMA = 1.5
RADIUS = 5  # int(3.5 * sigma + 0.5): scipy's truncate=3.5, as skimage uses


def _gaussian_taps() -> np.ndarray:
    x = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / SIGMA) ** 2)
    return taps / taps.sum()


def _valid_filter(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation of (N, H, W, C) with taps along H and W, no padding."""
    k = len(taps)
    h, w = x.shape[1:3]
    x = sum(t * x[:, i:h - k + 1 + i] for i, t in enumerate(taps))
    return sum(t * x[:, :, i:w - k + 1 + i] for i, t in enumerate(taps))


def ssim(images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-image SSIM of (N, H, W, C) or (N, H, W) uint8 images against their targets.

    H and W must be at least 11. Returns (N,) float64: the mean of the valid SSIM map,
    averaged over channels.
    """
    images, targets = np.asarray(images), np.asarray(targets)
    if images.shape != targets.shape:
        raise ValueError(f"shapes differ: {images.shape} vs {targets.shape}")
    if images.dtype != np.uint8 or targets.dtype != np.uint8:
        raise ValueError("SSIM here is defined on uint8 images (data range 255); convert "
                         "[-1, 1] model outputs with visualize.to_rgb first")
    if images.ndim == 3:
        images, targets = images[..., None], targets[..., None]
    if min(images.shape[1:3]) < 2 * RADIUS + 1:
        raise ValueError(f"images of {images.shape[1:3]} are smaller than the 11x11 window")
    x, y = images.astype(np.float64), targets.astype(np.float64)
    taps = _gaussian_taps()
    mu_x, mu_y = _valid_filter(x, taps), _valid_filter(y, taps)
    var_x = _valid_filter(x * x, taps) - mu_x * mu_x
    var_y = _valid_filter(y * y, taps) - mu_y * mu_y
    cov = _valid_filter(x * y, taps) - mu_x * mu_y
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return ssim_map.mean(axis=(1, 2)).mean(axis=-1)


def to_gray(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) uint8 luma, as PIL's convert("L") (HR-VITON's input)."""
    return np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in images])


def grayscale_ssim(images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) SSIM of the PIL "L" luma images: the variant HR-VITON / VITON-HD report."""
    return ssim(to_gray(images), to_gray(targets))
