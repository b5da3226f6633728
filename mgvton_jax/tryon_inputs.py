"""One try-on's inputs, read from files or arrays, checked, and fitted into the model's frame.

Inputs of any size are fitted into the frame (resized, keeping the aspect, and padded: white
for photos, background for the parsing) with the keypoints mapped alike (`Fit`); the result is
cropped and resized back to the person photo's size.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from mgvton_jax import constants
from mgvton_jax.data import examples, readers, representation
from mgvton_jax.data.readers import DataError
from mgvton_jax.data.representation import WHITE_LEVEL, clothes_mask_from_white


@dataclasses.dataclass(frozen=True)
class Fit:
    """Where a (height, width) picture lands in the model's frame: resized to (rows, cols)
    and placed at (top, left); the rest is padding."""

    source_hw: tuple[int, int]
    frame_hw: tuple[int, int]
    rows: int
    cols: int
    top: int
    left: int

    @classmethod
    def of(cls, source_hw: tuple[int, int], frame_hw: tuple[int, int]) -> Fit:
        scale = min(frame_hw[0] / source_hw[0], frame_hw[1] / source_hw[1])
        rows = min(frame_hw[0], max(1, round(source_hw[0] * scale)))
        cols = min(frame_hw[1], max(1, round(source_hw[1] * scale)))
        return cls(tuple(source_hw), tuple(frame_hw), rows, cols, (frame_hw[0] - rows) // 2,
                   (frame_hw[1] - cols) // 2)

    def image(self, array: np.ndarray, fill: int, resample: int) -> np.ndarray:
        """(h, w[, 3]) uint8 -> (H, W[, 3]) uint8 in the frame."""
        resized = np.asarray(Image.fromarray(array).resize((self.cols, self.rows), resample))
        framed = np.full((*self.frame_hw, *array.shape[2:]), fill, array.dtype)
        framed[self.top:self.top + self.rows, self.left:self.left + self.cols] = resized
        return framed

    def keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        """(18, 3) keypoints of the source picture -> the frame's pixels (centre to centre)."""
        visible = keypoints[:, 2:] > 0
        scale = np.array([self.cols / self.source_hw[1], self.rows / self.source_hw[0]])
        moved = (keypoints[:, :2] + 0.5) * scale - 0.5 + np.array([self.left, self.top])
        return np.where(visible, np.concatenate([moved, keypoints[:, 2:]], axis=1),
                        0.0).astype(np.float32)

    def keypoints_back(self, keypoints: np.ndarray) -> np.ndarray:
        """(18, 3) keypoints in the frame's pixels -> the source picture's (the inverse of
        `keypoints`); missing joints stay 0, 0, 0."""
        visible = keypoints[:, 2:] > 0
        scale = np.array([self.cols / self.source_hw[1], self.rows / self.source_hw[0]])
        moved = (keypoints[:, :2] - np.array([self.left, self.top]) + 0.5) / scale - 0.5
        return np.where(visible, np.concatenate([moved, keypoints[:, 2:]], axis=1),
                        0.0).astype(np.float32)

    def back(self, framed: np.ndarray, resample: int) -> np.ndarray:
        """(H, W, 3) uint8 in the frame -> (h, w, 3) uint8 at the source size."""
        content = framed[self.top:self.top + self.rows, self.left:self.left + self.cols]
        return np.asarray(Image.fromarray(content).resize(self.source_hw[::-1], resample))


def source_name(source) -> str:
    """How messages name an input: its path, or "the given array"."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "the given array"


def read_photo(source) -> np.ndarray:
    """A photo file (as a viewer shows it) or (H, W, 3) uint8 array -> (H, W, 3) uint8."""
    if isinstance(source, (str, os.PathLike)):
        return readers.read_rgb(source)
    array = np.asarray(source)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(f"a photo array must be (H, W, 3) uint8, got {array.shape} "
                        f"{array.dtype}")
    return array


@dataclasses.dataclass
class TryOnInputs:
    """One try-on's inputs, read and checked: photo (h, w, 3) uint8, parsing (h, w) uint8
    label ids, clothes (h', w', 3) uint8, clothes_mask (h', w') uint8 {0, 1}, keypoints
    (18, 3) float32 measured on a (pose_size) photo; notes: choices made for the user."""

    photo: np.ndarray
    parsing: np.ndarray
    clothes: np.ndarray
    clothes_mask: np.ndarray
    keypoints: np.ndarray
    pose_size: tuple[int, int]
    notes: list[str]


def read_inputs(person, person_parsing, clothes, pose, clothes_mask=None,
                pose_size: tuple[int, int] | None = None) -> TryOnInputs:
    """Reads and checks one try-on's inputs (see `TryOn.__call__` for the arguments).

    Raises:
      DataError: an input that cannot be used; the message names it and says why.
    """
    notes = []
    photo = read_photo(person)
    parsing = readers.read_parsing(person_parsing) if isinstance(
        person_parsing, (str, os.PathLike)) else np.asarray(person_parsing)
    if parsing.shape != photo.shape[:2]:
        raise DataError(f"{source_name(person_parsing)}: parsing is {parsing.shape[1]}x"
                        f"{parsing.shape[0]} but the person photo {source_name(person)} is "
                        f"{photo.shape[1]}x{photo.shape[0]} (W x H); parse that photo")
    if parsing.min(initial=0) < 0 or parsing.max(initial=0) >= constants.NUM_LABELS:
        raise DataError(f"{source_name(person_parsing)}: label ids outside 0.."
                        f"{constants.NUM_LABELS - 1}")
    product = read_photo(clothes)
    if clothes_mask is None:
        mask = clothes_mask_from_white(product)
        notes.append(f"clothes mask computed from the near-white background of "
                     f"{source_name(clothes)} (channels >= {WHITE_LEVEL} are background); "
                     "pass a clothes mask to use your own")
    else:
        mask = readers.read_mask(clothes_mask) if isinstance(
            clothes_mask, (str, os.PathLike)) else (np.asarray(clothes_mask) > 0)
        if mask.shape != product.shape[:2]:
            raise DataError(f"{source_name(clothes_mask)}: mask is {mask.shape[1]}x"
                            f"{mask.shape[0]}, the clothes image {product.shape[1]}x"
                            f"{product.shape[0]}")
    if not mask.any():
        raise DataError(f"{source_name(clothes if clothes_mask is None else clothes_mask)}: "
                        "the clothes mask is empty (no clothes pixels)")
    if isinstance(pose, (str, os.PathLike)):
        read = readers.read_keypoints(pose)
        if read.people == 0:
            raise DataError(f"{pose}: no person in this keypoint file")
        keypoints = read.keypoints
    else:
        keypoints = np.asarray(pose, np.float32)
        if keypoints.shape != (constants.NUM_KEYPOINTS, 3):
            raise DataError(f"a pose array must be ({constants.NUM_KEYPOINTS}, 3), got "
                            f"{keypoints.shape}")
        keypoints = representation.clean_keypoints(keypoints)
    return TryOnInputs(photo, parsing.astype(np.uint8), product, mask.astype(np.uint8),
                       keypoints, tuple(pose_size) if pose_size else photo.shape[:2], notes)


def framed_example(inputs: TryOnInputs, frame_hw: tuple[int, int],
                   clothes_labels: tuple[int, ...]) -> tuple[dict, Fit]:
    """(compact example in the model's frame (`examples.COMPACT_INPUTS`), the person photo's
    Fit, to bring the result back to its size). The clothes labels are greyed out of the
    photo at its own size, before it is fitted (`examples.decode_record`)."""
    person_fit = Fit.of(inputs.photo.shape[:2], frame_hw)
    clothes_fit = Fit.of(inputs.clothes.shape[:2], frame_hw)
    without_clothes = representation.photo_without_clothes(inputs.photo, inputs.parsing,
                                                           clothes_labels)
    raw = {"reference_image": person_fit.image(inputs.photo, 255, Image.BILINEAR),
           "reference_without_clothes": person_fit.image(without_clothes, 255, Image.BILINEAR),
           "reference_parsing": person_fit.image(inputs.parsing, 0, Image.NEAREST),
           "clothes": clothes_fit.image(inputs.clothes, 255, Image.BILINEAR),
           "clothes_mask": clothes_fit.image(inputs.clothes_mask, 0, Image.NEAREST),
           "target_keypoints": Fit.of(inputs.pose_size, frame_hw).keypoints(inputs.keypoints)}
    # Inference never reads the ground-truth entries: placeholders fill them.
    compact = examples.compact_example({**raw, "target_image": raw["reference_image"],
                                        "target_parsing": raw["reference_parsing"]})
    return compact, person_fit
