"""Converters that turn a fixable input into one the model reads. Each writes a new file and
refuses to write over its input; each raises `DataError` naming the file when it cannot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.ndimage
from PIL import Image

from mgvton_jax import constants
from mgvton_jax.data import readers, representation
from mgvton_jax.data.readers import DataError
from mgvton_jax.data.representation import WHITE_LEVEL, clothes_mask_from_white

# Parsing renderings. "lip": the LIP / CIHP human colour map (CIHP_PGN and the LIP tools use
# the same 20 colours; CP-VTON's VITON files carry it scaled by MATLAB, 254 for 255 and so
# on, within the tolerance). "pascal": the PASCAL VOC colour map that SCHP's label PNGs carry
# in their palette, as it comes out once such a PNG is converted to RGB.
PALETTES = {
    "lip": constants.LIP_PALETTE,
    "pascal": tuple(
        tuple(sum(((i >> (3 * k + c)) & 1) << (7 - k) for k in range(3)) for c in range(3))
        for i in range(constants.NUM_LABELS)),
}
COLOUR_TOLERANCE = 2  # per channel: 254 vs 255, 169 vs 170, 220 vs 221
# Clothes pixels of a non-white background: border-connected pixels within this distance
# (per channel) of the border's median colour are background.
BACKGROUND_TOLERANCE = 24

# OpenPose BODY_25 joints, in file order, named as `constants.KEYPOINTS`.
BODY25_KEYPOINTS = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "mid_hip", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye",
    "r_ear", "l_ear", "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe",
    "r_heel",
)


def _new_file(source: str | os.PathLike, out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.exists() and out.resolve() == Path(source).resolve():
        raise DataError(f"{out}: the output would overwrite the input; name another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def palette_matches(rgb: np.ndarray, palette: str) -> np.ndarray:
    """(H, W) label ids of the palette colour each pixel matches, -1 where none does."""
    colours = np.asarray(PALETTES[palette], np.int16)
    distance = np.abs(rgb[..., None, :].astype(np.int16) - colours).max(axis=-1)
    matched = distance <= COLOUR_TOLERANCE
    return np.where(matched.any(axis=-1), matched.argmax(axis=-1), -1)


def best_palette(rgb: np.ndarray) -> tuple[str, float]:
    """(palette name, share of pixels it matches) of the palette matching the most pixels."""
    shares = {name: float((palette_matches(rgb, name) >= 0).mean()) for name in PALETTES}
    name = max(shares, key=shares.get)
    return name, shares[name]


def labels_from_colours(path: str | os.PathLike, palette: str | None = None
                        ) -> tuple[np.ndarray, str]:
    """A colour rendering of a parsing -> ((H, W) uint8 label ids, the palette used).

    palette None: the one that matches the most pixels. Every pixel must match a colour of
    it (within COLOUR_TOLERANCE): a resized or blended rendering is refused, naming how many
    pixels match nothing.
    """
    rgb = readers.read_rgb(path)
    palette = palette or best_palette(rgb)[0]
    labels = palette_matches(rgb, palette)
    unmatched = labels < 0
    if unmatched.any():
        example = tuple(int(v) for v in rgb[unmatched][0])
        raise DataError(
            f"{path}: {int(unmatched.sum())} pixels ({100 * unmatched.mean():.1f}%) have "
            f"colours of no {palette} palette entry, e.g. {example}: the rendering was resized "
            "or blended; save the parser's label-id PNG instead")
    return labels.astype(np.uint8), palette


def write_parsing_ids(path: str | os.PathLike, out: str | os.PathLike,
                      palette: str | None = None) -> str:
    """Writes the label-id PNG (mode L) of a colour rendering; returns the palette used."""
    labels, palette = labels_from_colours(path, palette)
    Image.fromarray(labels, mode="L").save(_new_file(path, out), format="PNG")
    return palette


def _keypoint_file(path: str | os.PathLike) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot parse JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise DataError(f"{path}: no 'people' list; not an OpenPose keypoint file")
    return data


def _pose_key(person: dict) -> str:
    return "pose_keypoints_2d" if "pose_keypoints_2d" in person else "pose_keypoints"


def _write_keypoints(source: str | os.PathLike, out: str | os.PathLike, data: dict) -> None:
    _new_file(source, out).write_text(json.dumps(data))


def write_coco18(path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Writes a COCO-18 keypoint file from an OpenPose BODY_25 one, joint by joint name (the
    extra joints, mid-hip and the feet, are dropped); every other field is kept."""
    data = _keypoint_file(path)
    order = [BODY25_KEYPOINTS.index(name) for name in constants.KEYPOINTS]
    for person in data["people"]:
        key = _pose_key(person)
        values = person.get(key)
        if not isinstance(values, list) or len(values) != 3 * len(BODY25_KEYPOINTS):
            found = len(values) // 3 if isinstance(values, list) else "no"
            raise DataError(f"{path}: a person with {found} joints, not BODY_25's "
                            f"{len(BODY25_KEYPOINTS)}")
        joints = np.asarray(values, np.float64).reshape(-1, 3)
        person[key] = joints[order].ravel().tolist()
    _write_keypoints(path, out, data)


def write_rescaled_keypoints(path: str | os.PathLike, out: str | os.PathLike,
                             source_hw: tuple[int, int], target_hw: tuple[int, int]) -> None:
    """Writes the keypoints of a (source_hw) photo mapped onto the same photo resized to
    target_hw (pixel centres to pixel centres; missing joints stay 0)."""
    data = _keypoint_file(path)
    for person in data["people"]:
        key = _pose_key(person)
        values = np.asarray(person.get(key, []), np.float32)
        if values.size != 3 * constants.NUM_KEYPOINTS:
            raise DataError(f"{path}: {values.size // 3} joints, expected COCO-18 (convert "
                            "BODY_25 first: python -m mgvton_jax.prep body25 IN OUT)")
        scaled = representation.scale_keypoints(values.reshape(-1, 3), source_hw, target_hw)
        person[key] = [round(float(v), 3) for v in scaled.ravel()]
    _write_keypoints(path, out, data)


def border_colour(rgb: np.ndarray) -> np.ndarray:
    """The median colour of the image's outermost pixels, (3,) uint8."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0).astype(np.uint8)


def clothes_mask(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 {0, 1} clothes mask of a product image on a plain background.

    A near-white background gets try-on's own rule (`clothes_mask_from_white`); another plain
    colour is the region connected to the border within BACKGROUND_TOLERANCE of the border's
    median colour. Holes inside the clothes are filled.
    """
    background = border_colour(rgb)
    if np.all(background >= WHITE_LEVEL):
        return clothes_mask_from_white(rgb)
    similar = np.abs(rgb.astype(np.int16) - background).max(axis=-1) <= BACKGROUND_TOLERANCE
    regions, _ = scipy.ndimage.label(similar)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0],
                                     regions[:, -1]]))
    outside = np.isin(regions, edge[edge > 0])
    return scipy.ndimage.binary_fill_holes(~outside).astype(np.uint8)


def write_clothes_mask(path: str | os.PathLike, out: str | os.PathLike) -> float:
    """Writes the clothes mask (PNG, mode L, 0 / 255) of a product image; returns the share of
    the image it covers. Raises DataError when it is empty or covers everything."""
    mask = clothes_mask(readers.read_rgb(path))
    share = float(mask.mean())
    if share == 0 or share == 1:
        raise DataError(f"{path}: no clothes could be told from the background (the mask "
                        f"would be {'empty' if share == 0 else 'the whole image'})")
    Image.fromarray(mask * np.uint8(255), mode="L").save(_new_file(path, out), format="PNG")
    return share
