"""Person representation: pose heatmaps, parsing masks, body shape, flips (pure NumPy).

All functions take and return NumPy arrays in NHWC-style layouts without the batch axis:
images (H, W, C), label maps (H, W) of LIP label ids, keypoints (18, 3) rows of (x, y, conf)
in pixel coordinates of the (H, W) image (x to the right, y down, pixel centres at integers).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mgvton_jax import constants


def joint_visible(keypoints: np.ndarray) -> np.ndarray:
    """(18,) bool: which joints count as present.

    OpenPose writes missing joints as (0, 0, 0); like CP-VTON we also drop joints at x <= 1 or
    y <= 1, which in practice are the same all-zero rows.
    """
    x, y, conf = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    return (conf > 0) & (x > 1) & (y > 1)


def clean_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """(18, 3) float32 copy with every missing joint set to exactly (0, 0, 0)."""
    keypoints = np.asarray(keypoints, np.float32)
    return np.where(joint_visible(keypoints)[:, None], keypoints, 0.0).astype(np.float32)


def scale_keypoints(
    keypoints: np.ndarray, source_hw: tuple[int, int], target_hw: tuple[int, int]
) -> np.ndarray:
    """Maps keypoints of a (source_hw) image onto the same picture resized to target_hw.

    Pixel centres map to pixel centres: x' = (x + 0.5) * W'/W - 0.5. Missing joints stay
    (0, 0, 0).

    Args:
      keypoints: (18, 3) float array of (x, y, conf).
      source_hw: (H, W) of the image the keypoints were measured on.
      target_hw: (H', W') of the resized image.
    Returns:
      (18, 3) float32.
    """
    keypoints = clean_keypoints(keypoints)
    scale = np.array([target_hw[1] / source_hw[1], target_hw[0] / source_hw[0]], np.float32)
    scaled = keypoints.copy()
    scaled[:, :2] = (keypoints[:, :2] + 0.5) * scale - 0.5
    return np.where(joint_visible(keypoints)[:, None], scaled, 0.0).astype(np.float32)


def pose_heatmaps(
    keypoints: np.ndarray,
    image_hw: tuple[int, int] = constants.IMAGE_SIZE,
    radius: int = constants.POSE_DISC_RADIUS,
) -> np.ndarray:
    """One channel per joint: a filled disc of `radius` pixels set to 1, 0 elsewhere.

    Pixel (i, j) is on iff (j - round(x))^2 + (i - round(y))^2 <= radius^2. A joint near the
    border lights only the part of its disc inside the image (no clamping of the centre), and
    a missing joint (see `joint_visible`) gives an empty channel.

    Args:
      keypoints: (18, 3) float array of (x, y, conf) in pixels of an image of size image_hw.
      image_hw: (H, W) of the heatmaps.
      radius: disc radius in pixels.
    Returns:
      (H, W, 18) float32 with values in {0, 1}.
    """
    height, width = image_hw
    keypoints = np.asarray(keypoints, np.float32)
    centres = np.floor(keypoints[:, :2] + 0.5)  # round half up, independent of NumPy's banker's
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    cols = np.arange(width, dtype=np.float32)[None, None, :]
    dist2 = (cols - centres[:, 0, None, None]) ** 2 + (rows - centres[:, 1, None, None]) ** 2
    on = (dist2 <= radius * radius) & joint_visible(keypoints)[:, None, None]
    return np.moveaxis(on, 0, -1).astype(np.float32)


def label_mask(parsing: np.ndarray, labels: Iterable[int]) -> np.ndarray:
    """(H, W) label ids -> (H, W, 1) float32 mask, 1 where the label is in `labels`."""
    return np.isin(parsing, tuple(labels)).astype(np.float32)[..., None]


def one_hot_parsing(parsing: np.ndarray) -> np.ndarray:
    """(H, W) label ids -> (H, W, NUM_LABELS) float32 one-hot."""
    return np.eye(constants.NUM_LABELS, dtype=np.float32)[parsing]


def antialiased_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix of PIL's BILINEAR resampling along one axis.

    Pillow (>= 2.7) resamples with a triangle filter whose support is stretched by the
    downscale factor (antialiasing) and whose weights are normalised per output pixel; output
    pixel i is centred at (i + 0.5) * in_size / out_size in input coordinates.
    """
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    taps = np.arange(in_size) + 0.5
    weights = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / stretch, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_bilinear(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of (H, W, C) float array to (out_h, out_w, C), PIL-style."""
    rows = antialiased_bilinear_matrix(image.shape[0], out_hw[0])
    cols = antialiased_bilinear_matrix(image.shape[1], out_hw[1])
    return np.einsum("ih,jw,hwc->ijc", rows, cols, image.astype(np.float64))


def body_shape_mask(
    parsing: np.ndarray, coarse_hw: tuple[int, int] = constants.BODY_SHAPE_SIZE
) -> np.ndarray:
    """Blurry silhouette that hides the shape of the old clothes (VITON, MG-VTON).

    (parsing > 0) is downsampled to coarse_hw (16x12) and resized back to the parsing's size,
    both with antialiased bilinear filtering (PIL BILINEAR).

    Args:
      parsing: (H, W) integer label ids.
      coarse_hw: intermediate (h, w).
    Returns:
      (H, W, 1) float32 in [0, 1].
    """
    person = (parsing > 0).astype(np.float64)[..., None]
    coarse = resize_bilinear(person, coarse_hw)
    return np.clip(resize_bilinear(coarse, parsing.shape[:2]), 0.0, 1.0).astype(np.float32)


def remove_clothes(
    image: np.ndarray,
    parsing: np.ndarray,
    labels: Iterable[int] = constants.CLOTHES_LABELS,
    fill: float = 0.0,
) -> np.ndarray:
    """The person image with the pixels of `labels` set to `fill` (grey 0 in [-1, 1] images).

    Args:
      image: (H, W, 3) float image.
      parsing: (H, W) label ids of the same image.
      labels: label ids to remove (default upper clothes, dress, coat).
      fill: value written into the removed pixels.
    Returns:
      (H, W, 3) array of image's dtype.
    """
    removed = label_mask(parsing, labels) > 0
    return np.where(removed, np.asarray(fill, image.dtype), image)


def flip_keypoints(keypoints: np.ndarray, width: int) -> np.ndarray:
    """Keypoints of the horizontally mirrored image: x -> W - 1 - x, left/right joints swapped.

    Args:
      keypoints: (18, 3) float (x, y, conf) in pixels of an image `width` pixels wide.
      width: image width W.
    Returns:
      (18, 3) float32; missing joints stay (0, 0, 0).
    """
    keypoints = clean_keypoints(keypoints)
    flipped = keypoints.copy()
    flipped[:, 0] = width - 1 - keypoints[:, 0]
    flipped = np.where(joint_visible(keypoints)[:, None], flipped, 0.0)
    return flipped[list(constants.KEYPOINT_FLIP_PERMUTATION)].astype(np.float32)


def flip_parsing(parsing: np.ndarray) -> np.ndarray:
    """(H, W) label ids of the mirrored image: columns reversed, left/right labels swapped."""
    lookup = np.asarray(constants.LABEL_FLIP_PERMUTATION, parsing.dtype)
    return lookup[parsing[:, ::-1]]


def flip_image(image: np.ndarray) -> np.ndarray:
    """(H, W, ...) array mirrored left-right."""
    return image[:, ::-1]
