"""Person representation: pose heatmaps, parsing masks, body shape, flips.

Layouts are NHWC-style: images (..., H, W, C), label maps (..., H, W) of LIP label ids,
keypoints (..., 18, 3) rows of (x, y, conf) in pixel coordinates of the (H, W) image (x to the
right, y down, pixel centres at integers). The keypoint helpers and flips work on one raw
example on the host (NumPy). The model-input features (`pose_heatmaps`, `label_mask`,
`one_hot_parsing`, `body_shape_mask`, `remove_clothes`) are jax.numpy functions over any
leading axes, so that they run inside a jitted step on the device, batched, from the compact
uint8 / label / coordinate arrays the input pipeline sends (`examples.model_inputs`).
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

from mgvton_jax import constants


def joint_visible(keypoints: np.ndarray) -> np.ndarray:
    """(..., 18, 3) keypoints -> (..., 18) bool: which joints count as present.

    OpenPose writes missing joints as (0, 0, 0); like CP-VTON we also drop joints at x <= 1 or
    y <= 1, which in practice are the same all-zero rows. NumPy or jax arrays.
    """
    x, y, conf = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
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
    keypoints: jax.Array,
    image_hw: tuple[int, int] = constants.IMAGE_SIZE,
    radius: int = constants.POSE_DISC_RADIUS,
) -> jax.Array:
    """One channel per joint: a filled disc of `radius` pixels set to 1, 0 elsewhere.

    Pixel (i, j) is on iff (j - round(x))^2 + (i - round(y))^2 <= radius^2. A joint near the
    border lights only the part of its disc inside the image (no clamping of the centre), and
    a missing joint (see `joint_visible`) gives an empty channel.

    Args:
      keypoints: (..., 18, 3) float (x, y, conf) in pixels of an image of size image_hw.
      image_hw: (H, W) of the heatmaps.
      radius: disc radius in pixels.
    Returns:
      (..., H, W, 18) float32 with values in {0, 1}.
    """
    height, width = image_hw
    keypoints = jnp.asarray(keypoints, jnp.float32)
    centres = jnp.floor(keypoints[..., :2] + 0.5)  # round half up, not banker's rounding
    rows = jnp.arange(height, dtype=jnp.float32)[:, None]
    cols = jnp.arange(width, dtype=jnp.float32)[None, :]
    dist2 = (cols - centres[..., 0, None, None]) ** 2 + (rows - centres[..., 1, None, None]) ** 2
    on = (dist2 <= radius * radius) & joint_visible(keypoints)[..., None, None]
    return jnp.moveaxis(on, -3, -1).astype(jnp.float32)


def label_mask(parsing: jax.Array, labels: Iterable[int]) -> jax.Array:
    """(..., H, W) label ids -> (..., H, W, 1) float32 mask, 1 where the label is in `labels`."""
    return jnp.isin(jnp.asarray(parsing), jnp.asarray(tuple(labels))).astype(
        jnp.float32)[..., None]


def one_hot_parsing(parsing: jax.Array) -> jax.Array:
    """(..., H, W) label ids -> (..., H, W, NUM_LABELS) float32 one-hot."""
    return jax.nn.one_hot(jnp.asarray(parsing), constants.NUM_LABELS, dtype=jnp.float32)


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


def resize_bilinear(image: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """Antialiased bilinear resize, PIL-style: (..., H, W, C) float -> (..., out_h, out_w, C)."""
    rows = antialiased_bilinear_matrix(image.shape[-3], out_hw[0])
    cols = antialiased_bilinear_matrix(image.shape[-2], out_hw[1])
    # HIGHEST: no reduced-precision passes on accelerators; the masks match PIL to 2/255.
    return jnp.einsum("ih,jw,...hwc->...ijc", jnp.asarray(rows, image.dtype),
                      jnp.asarray(cols, image.dtype), image,
                      precision=jax.lax.Precision.HIGHEST)


def blurred_silhouette(person: jax.Array,
                       coarse_hw: tuple[int, int] = constants.BODY_SHAPE_SIZE) -> jax.Array:
    """A person mask (..., H, W, 1) in [0, 1] resized to coarse_hw and back, clipped to
    [0, 1]: the blur that hides the shape of the old clothes (VITON, MG-VTON)."""
    coarse = resize_bilinear(person, coarse_hw)
    return jnp.clip(resize_bilinear(coarse, person.shape[-3:-1]), 0.0, 1.0)


def body_shape_mask(
    parsing: jax.Array, coarse_hw: tuple[int, int] = constants.BODY_SHAPE_SIZE
) -> jax.Array:
    """Body shape: `blurred_silhouette` of (parsing > 0), both resizes PIL BILINEAR.

    Args:
      parsing: (..., H, W) integer label ids.
      coarse_hw: intermediate (h, w), 16x12.
    Returns:
      (..., H, W, 1) float32 in [0, 1].
    """
    person = (jnp.asarray(parsing) > 0).astype(jnp.float32)[..., None]
    return blurred_silhouette(person, coarse_hw)


def remove_clothes(
    image: jax.Array,
    parsing: jax.Array,
    labels: Iterable[int] = constants.CLOTHES_LABELS,
    fill: float = 0.0,
) -> jax.Array:
    """The person image with the pixels of `labels` set to `fill` (grey 0 in [-1, 1] images).

    Args:
      image: (..., H, W, 3) float image.
      parsing: (..., H, W) label ids of the same image.
      labels: label ids to remove (default upper clothes, dress, coat).
      fill: value written into the removed pixels.
    Returns:
      (..., H, W, 3) array of image's dtype.
    """
    image = jnp.asarray(image)
    removed = label_mask(parsing, labels) > 0
    return jnp.where(removed, jnp.asarray(fill, image.dtype), image)


# The uint8 of the grey that `remove_clothes` fills into [-1, 1] images (0 -> 127.5).
GREY = 128


def photo_without_clothes(photo: np.ndarray, parsing: np.ndarray,
                          labels: Iterable[int] = constants.CLOTHES_LABELS) -> np.ndarray:
    """(H, W, 3) uint8 photo -> the same with the pixels of `labels` (its (H, W) parsing) grey.

    NumPy, on the host, at the photo's own resolution: the clothes go before any resize, so
    that no pixel of a smaller picture mixes their colour into its neighbours (`remove_clothes`
    on a resized photo would leave such border pixels)."""
    removed = np.isin(parsing, np.asarray(tuple(labels)))[..., None]
    return np.where(removed, np.uint8(GREY), photo).astype(np.uint8)


# A clothes pixel is background when every channel is at least this (product photos are shot
# on white; JPEG noise keeps the background a few levels below 255).
WHITE_LEVEL = 240


def clothes_mask_from_white(clothes: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 product image -> (H, W) uint8 {0, 1}: pixels not near-white, with
    enclosed holes filled (white prints on the clothes). NumPy, on the host."""
    foreground = np.any(clothes < WHITE_LEVEL, axis=-1)
    return scipy.ndimage.binary_fill_holes(foreground).astype(np.uint8)


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
