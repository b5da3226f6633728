"""Pictures of batches: images, parsing in the LIP palette, pose discs, masks, as PNG grids."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from mgvton_jax import constants

_PALETTE = np.asarray(constants.LIP_PALETTE, np.uint8)
_TITLE_HEIGHT = 14


def parsing_to_rgb(labels: np.ndarray) -> np.ndarray:
    """(H, W) label ids -> (H, W, 3) uint8 in the LIP palette."""
    return _PALETTE[np.asarray(labels, np.int64)]


def hue_colours(count: int) -> np.ndarray:
    """(count, 3) float RGB in [0, 1]: fully saturated colours of evenly spaced hues."""
    hues = np.linspace(0.0, 1.0, count, endpoint=False)
    colours = np.stack([np.abs(((hues * 6 + k) % 6) - 3) - 1 for k in (0, 4, 2)], -1)
    return np.clip(colours, 0, 1)


def pose_to_rgb(heatmaps: np.ndarray) -> np.ndarray:
    """(..., H, W, 18) pose discs -> (..., H, W, 3) uint8, one hue per joint on black
    (NumPy or, inside jit, jax arrays)."""
    xp = _array_module(heatmaps)
    colours = hue_colours(heatmaps.shape[-1]).astype(np.float32)
    rgb = xp.clip(heatmaps, 0, 1) @ colours
    return (xp.clip(rgb, 0, 1) * 255).astype(xp.uint8)


def _array_module(array):
    return jnp if isinstance(array, jax.Array) else np


def to_rgb(array: np.ndarray) -> np.ndarray:
    """Any model input or output (..., H, W, C) -> (..., H, W, 3) uint8, chosen by channel
    count. NumPy arrays give NumPy; jax arrays (e.g. inside the jitted walk) give jax.

    3: image in [-1, 1] (uint8: already a picture); 1: mask in [0, 1]; 18: pose heatmaps;
    20: parsing (one-hot, probabilities or logits: argmax).
    """
    xp = _array_module(array)
    if array.dtype == xp.uint8 and array.shape[-1] == 3:
        return array
    array = xp.asarray(array, xp.float32)
    channels = array.shape[-1]
    if channels == 3:
        return ((xp.clip(array, -1, 1) + 1) * 127.5).round().astype(xp.uint8)
    if channels == 1:
        return xp.repeat((xp.clip(array, 0, 1) * 255).round().astype(xp.uint8), 3, axis=-1)
    if channels == constants.NUM_KEYPOINTS:
        return pose_to_rgb(array)
    if channels == constants.NUM_LABELS:
        return xp.asarray(_PALETTE)[array.argmax(-1)]
    raise ValueError(f"cannot picture an array with {channels} channels")


def batch_grid(batch: Mapping[str, np.ndarray], keys: Sequence[str],
               max_rows: int = 8, min_tile_height: int = 192) -> np.ndarray:
    """One row per example, one titled column per key.

    Args:
      batch: dict of (B, H, W, C) arrays (any channel count `to_rgb` knows).
      keys: which entries to show, in column order.
      max_rows: show at most this many examples.
      min_tile_height: small images are enlarged (nearest neighbour, integer factor) so a
        person can see them.
    Returns:
      (rows * h + title, len(keys) * w, 3) uint8, (h, w) the enlarged tile size.
    """
    rows = min(max_rows, len(batch[keys[0]]))
    height, width = batch[keys[0]].shape[1:3]
    zoom = max(1, min_tile_height // height)
    height, width = height * zoom, width * zoom
    grid = np.full((_TITLE_HEIGHT + rows * height, len(keys) * width, 3), 255, np.uint8)
    for col, key in enumerate(keys):
        for row in range(rows):
            tile = to_rgb(batch[key][row]).repeat(zoom, axis=0).repeat(zoom, axis=1)
            grid[_TITLE_HEIGHT + row * height:_TITLE_HEIGHT + (row + 1) * height,
                 col * width:(col + 1) * width] = tile
    picture = Image.fromarray(grid)
    draw = ImageDraw.Draw(picture)
    for col, key in enumerate(keys):
        draw.text((col * width + 2, 1), key[: width // 6], fill=(0, 0, 0))
    return np.asarray(picture)


def save_png(path: str | os.PathLike, picture: np.ndarray) -> None:
    """Writes a (H, W, 3) uint8 picture, creating the directory if needed."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    Image.fromarray(picture).save(path)


def stick_figure(keypoints: np.ndarray, photo_hw: tuple[int, int],
                 background: np.ndarray | None = None) -> Image.Image:
    """The (18, 3) pose as limbs and joints at the photo's (height, width), on white or on
    the (H, W, 3) uint8 `background` (e.g. the photo itself)."""
    image = Image.new("RGB", (photo_hw[1], photo_hw[0]), "white") if background is None \
        else Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    width = max(2, photo_hw[0] // 64)
    visible = keypoints[:, 2] > 0
    colours = (hue_colours(len(constants.LIMBS)) * 255).astype(int)
    for (a, b), colour in zip(constants.LIMBS, colours, strict=True):
        if visible[a] and visible[b]:
            draw.line([tuple(keypoints[a, :2]), tuple(keypoints[b, :2])],
                      fill=tuple(colour.tolist()), width=width)
    for x, y, _ in keypoints[visible]:
        draw.ellipse([x - width, y - width, x + width, y + width], fill="black")
    return image
