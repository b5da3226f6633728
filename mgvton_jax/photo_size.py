"""Try-on results at the person photo's own resolution.

The networks run at the config's size (128x96 for the CPU model); upsampling their whole
picture to the photo's size blurs the face, the hair, the trousers and the background, which
the try-on does not change. So the result at the photo's size is composed: the photo's own
pixels where the try-on keeps them (`keep_mask`), the upsampled result elsewhere (`compose`).

A pixel is kept when its label in the photo's parsing is one the try-on keeps (not clothes,
not arms) and the generated parsing (stage I, upsampled) gives it the same label. In
pose-fixed try-on (VITON: the target pose is the photo's own) that keeps nearly everything
but the old clothes and the arms; in another pose the two parsings agree on little but the
background, so the composition pays mainly for pose-fixed pairs (docs/viton.md). The worn
clothes' pixels are never kept: no colour of them reaches the output.

NumPy and PIL, on the host; arrays are (H, W[, 3]) uint8 images or label ids.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from mgvton_jax import constants

PARSING = "parsing"  # stage I's output, whose label map `keep_mask` reads
ARM_LABELS = (14, 15)  # LIP left-arm, right-arm: redrawn with the new sleeves


def upsample(image: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8, PIL bicubic (unchanged at its own size)."""
    if image.shape[:2] == tuple(image_hw):
        return image
    return np.asarray(Image.fromarray(image).resize((image_hw[1], image_hw[0]),
                                                    Image.BICUBIC))


def upsample_labels(labels: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) label ids (or a {0, 1} mask) -> (H, W), nearest neighbour."""
    if labels.shape == tuple(image_hw):
        return labels
    return np.asarray(Image.fromarray(labels).resize((image_hw[1], image_hw[0]),
                                                     Image.NEAREST))


def keep_mask(photo_parsing: np.ndarray, generated_parsing: np.ndarray,
              clothes_labels: Iterable[int] = constants.CLOTHES_LABELS) -> np.ndarray:
    """Where the photo's own pixels stay in the result.

    Args:
      photo_parsing: (H, W) label ids of the person photo at its size.
      generated_parsing: (h, w) label ids of the try-on's parsing at the model's size.
      clothes_labels: the labels the try-on replaces (the config's data.clothes_labels).
    Returns:
      (H, W) bool: the photo's label is neither clothes nor arm, and the generated parsing,
      upsampled (nearest), has the same label there.
    """
    generated = upsample_labels(np.asarray(generated_parsing, np.uint8), photo_parsing.shape)
    redrawn = np.isin(photo_parsing, (*tuple(clothes_labels), *ARM_LABELS))
    return ~redrawn & (generated == photo_parsing)


def compose(photo: np.ndarray, result: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The photo (H, W, 3) where `keep` (H, W), the result (h, w, 3) upsampled elsewhere;
    (H, W, 3) uint8."""
    return np.where(keep[..., None], photo, upsample(result, photo.shape[:2])).astype(np.uint8)


def pasted(background: np.ndarray, clothes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (h, w, 3) warped clothes and their (h, w) {0, 1} mask, upsampled (bicubic,
    nearest) onto the (H, W, 3) background: the "paste" baseline. (H, W, 3) uint8."""
    hw = background.shape[:2]
    on = upsample_labels(np.asarray(mask, np.uint8), hw) > 0
    return np.where(on[..., None], upsample(clothes, hw), background).astype(np.uint8)
