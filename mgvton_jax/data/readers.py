"""Readers for the files of try-on data sets: photos, clothes masks, parsing PNGs, OpenPose JSON.

Every reader either returns a canonical array or raises `DataError` with a message that names
the file and says what is wrong with it. Canonical forms: RGB uint8 (H, W, 3); label ids
uint8 (H, W); binary masks uint8 (H, W) in {0, 1}; keypoints float32 (18, 3).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from absl import logging
from PIL import Image, ImageOps

from mgvton_jax import constants
from mgvton_jax.data import representation

# The EXIF tag that says how a camera held the photo (1: upright).
EXIF_ORIENTATION = 0x0112

# A clothes mask pixel is foreground at or above this grey level (JPEG masks are not binary).
MASK_THRESHOLD = 128


class DataError(ValueError):
    """A data file that cannot be used; the message names the file."""


def _open_image(path: str | os.PathLike) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()  # decode now so a truncated file fails here, not later
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot decode image ({err})") from None
    # As a viewer shows it: a phone's portrait photo is stored sideways with an EXIF note.
    return image if upright(image) else ImageOps.exif_transpose(image)


def upright(image: Image.Image) -> bool:
    """Whether the image's pixels are stored as they are shown (no EXIF rotation or mirror)."""
    return image.getexif().get(EXIF_ORIENTATION, 1) == 1


def _rgb_as_seen(image: Image.Image, path: str | os.PathLike,
                 notes: list[str] | None) -> Image.Image:
    """The RGB picture a viewer sees: transparency composited on white, 16-bit grey scaled to
    8 bits (not clipped), palette and CMYK colours converted."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, np.float64)
        if values.max(initial=0) > 255:  # 16-bit data: scale, do not clip
            values = values * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        if np.asarray(rgba)[..., 3].min() < 255:
            if notes is not None:
                notes.append(f"composited the transparency of {path} on white")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        image = image.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def read_rgb(path: str | os.PathLike, notes: list[str] | None = None) -> np.ndarray:
    """Reads a photo or product image as the RGB a person sees.

    Grey, palette and CMYK files are converted; 16-bit grey is scaled to 8 bits; transparent
    pixels are composited on white (try-on product images are shot on white), noted in
    `notes` when given.
    Returns:
      (H, W, 3) uint8.
    """
    return np.asarray(_rgb_as_seen(_open_image(path), path, notes))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Reads a clothes mask (PNG or JPEG, any grey levels) and binarises it at 128.

    Returns:
      (H, W) uint8 in {0, 1}.
    """
    image = _open_image(path)
    if image.mode != "L":
        image = image.convert("L")
    return (np.asarray(image) >= MASK_THRESHOLD).astype(np.uint8)


def read_parsing(path: str | os.PathLike) -> np.ndarray:
    """Reads a human-parsing PNG whose pixel values are label ids (mode 'P' or 'L').

    Palette PNGs are read by index, never by colour: real files carry palettes that differ
    from the LIP table, and converting them would turn labels into luminance.

    Returns:
      (H, W) uint8 label ids in [0, NUM_LABELS).
    Raises:
      DataError: JPEG files, colour renderings (RGB), other modes, or label ids outside
        0..19.
    """
    image = _open_image(path)
    if image.format == "JPEG":
        raise DataError(f"{path}: parsing saved as JPEG; lossy compression corrupts label ids, "
                        "use the PNG parsing")
    if image.mode not in ("P", "L"):
        raise DataError(
            f"{path}: parsing must hold label ids (PNG mode 'P' or 'L'), found mode "
            f"{image.mode!r}; is this a colour rendering (e.g. a *_vis.png)?"
        )
    labels = np.asarray(image)
    bad = np.unique(labels[labels >= constants.NUM_LABELS])
    if bad.size:
        raise DataError(
            f"{path}: label ids {bad.tolist()} outside 0..{constants.NUM_LABELS - 1}; expected "
            "LIP/CIHP 20-label parsing"
        )
    return labels.astype(np.uint8)


@dataclass(frozen=True)
class Keypoints:
    """OpenPose keypoints of one person. `people` = persons in the file (0 = none found)."""

    keypoints: np.ndarray  # (18, 3) float32 rows (x, y, conf); missing joints (0, 0, 0)
    people: int


def read_keypoints(path: str | os.PathLike) -> Keypoints:
    """Reads an OpenPose COCO-18 JSON (`pose_keypoints_2d`, or the older `pose_keypoints`).

    No person -> every joint missing (`people == 0`, for the caller to count). Several people
    -> the one with the highest summed confidence, logged.

    Raises:
      DataError: unreadable JSON, no pose key, or a length other than 18 joints x 3.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot parse JSON ({err})") from None
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise DataError(f"{path}: no 'people' list; not an OpenPose keypoint file")
    expected = constants.NUM_KEYPOINTS * 3
    poses = []
    for person in people:
        values = person.get("pose_keypoints_2d", person.get("pose_keypoints")) \
            if isinstance(person, dict) else None
        if values is None or not isinstance(values, list):
            raise DataError(f"{path}: a person without a 'pose_keypoints_2d' (or "
                            "'pose_keypoints') list")
        if len(values) != expected:
            raise DataError(
                f"{path}: {len(values)} pose values ({len(values) / 3:g} joints); expected "
                f"{expected} (OpenPose COCO-18). BODY_25 or other models are not supported"
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            bad = next(v for v in values if not isinstance(v, (int, float)) or
                       isinstance(v, bool))
            raise DataError(f"{path}: pose value {bad!r} is not a number")
        pose = np.asarray(values, np.float32).reshape(constants.NUM_KEYPOINTS, 3)
        if not np.isfinite(pose).all():
            raise DataError(f"{path}: pose values that are not finite (NaN or infinity)")
        poses.append(pose)
    if not poses:
        return Keypoints(np.zeros((constants.NUM_KEYPOINTS, 3), np.float32), 0)
    best = int(np.argmax([pose[:, 2].sum() for pose in poses]))
    if len(poses) > 1:
        logging.info("%s: %d people, using person %d (most confident)", path, len(poses), best)
    return Keypoints(representation.clean_keypoints(poses[best]), len(poses))
