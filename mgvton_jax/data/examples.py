"""Triplet records: read from disk, stored encoded, decoded, flipped, turned into model inputs.

A *record* is what the data set stores per triplet (encoded images, keypoints); a *raw*
example is the decoded record (uint8 arrays at 256x192); a *compact* example is what the input
pipeline sends to the device (`COMPACT_INPUTS`: uint8 pictures, label ids, keypoint
coordinates, 25x smaller than the model inputs); *model inputs* are the float32 arrays the
networks take, expanded from compact examples inside the jitted step (`model_inputs`). Data
code knows nothing of models: `MODEL_INPUT_CHANNELS` is the contract between the two sides.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from mgvton_jax import constants
from mgvton_jax.data import layouts, readers
from mgvton_jax.data import representation as rep
from mgvton_jax.data.pairs import Triplet

IMAGE_KEYS = ("reference_image", "target_image", "clothes")
# The photos of a raw example: the stored ones and the reference without its clothes.
RAW_PHOTOS = IMAGE_KEYS + ("reference_without_clothes",)
PARSING_KEYS = ("reference_parsing", "target_parsing")
KEYPOINT_KEYS = ("reference_keypoints", "target_keypoints")

# Model inputs: name -> channels; every array is (H, W, C) float32 (batched: (B, H, W, C)).
MODEL_INPUT_CHANNELS = {
    "reference_image": 3,  # [-1, 1]
    "target_image": 3,  # [-1, 1], the ground truth
    "clothes": 3,  # [-1, 1], product image
    "clothes_mask": 1,  # {0, 1}
    "target_pose": constants.NUM_KEYPOINTS,  # {0, 1} discs
    "hair_mask": 1,  # {0, 1}, from the reference parsing
    "face_mask": 1,  # {0, 1}, from the reference parsing
    "body_shape": 1,  # [0, 1], blurred reference silhouette
    "reference_parsing": constants.NUM_LABELS,  # one-hot
    "target_parsing": constants.NUM_LABELS,  # one-hot, the stage-I ground truth
    "reference_without_clothes": 3,  # [-1, 1], clothes pixels set to 0
}

GROUND_TRUTH = ("target_image", "target_parsing")  # model inputs that inference never reads


# Compact examples: name -> (dtype, trailing shape; "H", "W" stand for the image size).
COMPACT_INPUTS = {
    "reference_image": (np.uint8, ("H", "W", 3)),
    "reference_without_clothes": (np.uint8, ("H", "W", 3)),  # see `decode_record`
    "target_image": (np.uint8, ("H", "W", 3)),  # the ground truth
    "clothes": (np.uint8, ("H", "W", 3)),
    "clothes_mask": (np.uint8, ("H", "W")),  # {0, 1}
    "reference_parsing": (np.uint8, ("H", "W")),  # LIP label ids
    "target_parsing": (np.uint8, ("H", "W")),
    "target_keypoints": (np.float32, (constants.NUM_KEYPOINTS, 3)),  # missing joints 0
}


def compact_shape(key: str, image_hw: tuple[int, int]) -> tuple[int, ...]:
    """The per-example shape of compact input `key` at image size (H, W)."""
    sizes = {"H": image_hw[0], "W": image_hw[1]}
    return tuple(sizes.get(axis, axis) for axis in COMPACT_INPUTS[key][1])


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _encode_photo(path: Path, notes: list[str]) -> tuple[bytes, tuple[int, int]]:
    """(stored bytes, (H, W) of the photo as shown): the file's own bytes when it is an
    upright RGB JPEG/PNG of 256x192, else a PNG of the RGB a person sees (EXIF rotation
    applied), resized to 256x192."""
    pixels = readers.read_rgb(path, notes)  # first: it names an unreadable file
    with Image.open(path) as image:
        as_is = image.mode == "RGB" and image.format in ("JPEG", "PNG") and \
            readers.upright(image)
    source_hw = pixels.shape[:2]
    if as_is and source_hw == constants.IMAGE_SIZE:
        return path.read_bytes(), source_hw
    if source_hw != constants.IMAGE_SIZE:
        notes.append(f"resized {path} from {source_hw[1]}x{source_hw[0]}")
        size = (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT)
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))
    return _png(pixels), source_hw


def _resize_labels(labels: np.ndarray) -> np.ndarray:
    if labels.shape == constants.IMAGE_SIZE:
        return labels
    size = (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT)
    return np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST))


def _same_size(path: Path, labels: np.ndarray, photo: Path, photo_hw: tuple[int, int],
               what: str) -> None:
    if labels.shape != tuple(photo_hw):
        raise readers.DataError(
            f"{path}: {what} is {labels.shape[1]}x{labels.shape[0]} but {photo} is "
            f"{photo_hw[1]}x{photo_hw[0]} (W x H); they must be of the same picture")


# Keypoints may lie a little outside their photo (OpenPose extrapolates cut-off joints, e.g.
# a knee at y = 257.6 in a 256-row JDAI photo); farther out they belong to another size.
KEYPOINT_MARGIN = 0.1


def _keypoints(path: Path, photo: Path, photo_hw: tuple[int, int], notes: list[str]
               ) -> np.ndarray:
    read = readers.read_keypoints(path)
    if read.people == 0:
        notes.append(f"no person in {path}")
    visible = rep.joint_visible(read.keypoints)
    if visible.any():
        xy = read.keypoints[visible, :2]
        height, width = photo_hw
        low = -KEYPOINT_MARGIN * np.array([width, height])
        high = (1 + KEYPOINT_MARGIN) * np.array([width, height])
        outside = np.any((xy < low) | (xy > high), axis=1)
        if outside.any():
            x, y = xy[outside][0]
            raise readers.DataError(
                f"{path}: a joint at ({x:.1f}, {y:.1f}) lies outside {photo} ({width}x{height}); "
                "were the keypoints measured on a photo of another size?")
    if tuple(photo_hw) != constants.IMAGE_SIZE:
        return rep.scale_keypoints(read.keypoints, photo_hw, constants.IMAGE_SIZE)
    return read.keypoints


def load_triplet(layout: layouts.Layout, triplet: Triplet) -> tuple[dict, list[str]]:
    """Reads and validates every file of a triplet into an encoded record.

    A photo, its parsing and its keypoints must describe one picture: the parsing of the
    photo's size, the keypoints within it (all three are then resized to 256x192 together);
    likewise a clothes image and its mask.
    Returns:
      (record, notes): the record (see `decode_record`), and notes for the build report
      (resized or converted files, keypoint files without a person).
    Raises:
      DataError: a missing, unreadable or mismatched file; the message names it.
    """
    notes: list[str] = []

    def find(kind: str, entry: str) -> Path:
        return layout.find(kind, entry, triplet.split)

    record: dict = {"key": triplet.key, "paired": triplet.paired}
    sizes = {}
    for key, entry in zip(IMAGE_KEYS, (triplet.reference, triplet.target, triplet.clothes),
                          strict=True):
        kind = layouts.CLOTHES if key == "clothes" else layouts.PERSON
        record[key], sizes[key] = _encode_photo(find(kind, entry), notes)
    clothes_path, mask_path = find(layouts.CLOTHES, triplet.clothes), \
        find(layouts.CLOTHES_MASK, triplet.clothes)
    mask = readers.read_mask(mask_path)
    _same_size(mask_path, mask, clothes_path, sizes["clothes"], "the clothes mask")
    record["clothes_mask"] = _png(_resize_labels(mask) * np.uint8(255))
    for prefix, entry in (("reference", triplet.reference), ("target", triplet.target)):
        photo, hw = find(layouts.PERSON, entry), sizes[f"{prefix}_image"]
        parsing_path = find(layouts.PARSING, entry)
        parsing = readers.read_parsing(parsing_path)
        _same_size(parsing_path, parsing, photo, hw, "the parsing")
        record[f"{prefix}_parsing"] = _png(_resize_labels(parsing))
        record[f"{prefix}_keypoints"] = _keypoints(find(layouts.KEYPOINTS, entry), photo, hw,
                                                   notes)
    return record, notes


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def decode_photo(data: bytes) -> np.ndarray:
    """An encoded photo of a record -> (H, W, 3) uint8 RGB."""
    photo = _decode(data)
    if photo.ndim == 2 or photo.shape[-1] != 3:
        photo = np.asarray(Image.fromarray(photo).convert("RGB"))
    return photo


def resize_photo(photo: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3), bilinear (antialiased); unchanged at its own size."""
    if tuple(image_hw) == photo.shape[:2]:
        return photo
    return np.asarray(Image.fromarray(photo).resize((image_hw[1], image_hw[0]),
                                                    Image.BILINEAR))


def decode_record(record: dict, clothes_labels: Iterable[int] = constants.CLOTHES_LABELS
                  ) -> dict:
    """Encoded record -> raw example.

    Args:
      record: as `load_triplet` writes it.
      clothes_labels: the reference's labels greyed out in reference_without_clothes, here at
        the stored resolution: no later resize can mix their colour into the pixels around
        them (the reference photo itself reaches no network at inference).
    Returns:
      dict with reference_image, reference_without_clothes, target_image, clothes:
      (256, 192, 3) uint8;
      clothes_mask: (256, 192) uint8 {0, 1}; reference_parsing, target_parsing: (256, 192)
      uint8 label ids; reference_keypoints, target_keypoints: (18, 3) float32; paired: bool.
    """
    raw = {key: decode_photo(record[key]) for key in IMAGE_KEYS}
    raw.update({key: _decode(record[key]) for key in PARSING_KEYS})
    raw["clothes_mask"] = (_decode(record["clothes_mask"]) >= readers.MASK_THRESHOLD).astype(
        np.uint8)
    for key in KEYPOINT_KEYS:
        raw[key] = np.asarray(record[key], np.float32)
    raw["paired"] = bool(record["paired"])
    raw["reference_without_clothes"] = rep.photo_without_clothes(
        raw["reference_image"], raw["reference_parsing"], clothes_labels)
    return raw


def flip_raw(raw: dict) -> dict:
    """Mirrors a whole raw example left-right (images, masks, parsing labels, keypoints)."""
    flipped = dict(raw)
    for key in RAW_PHOTOS + ("clothes_mask",):
        flipped[key] = rep.flip_image(raw[key])
    for key in PARSING_KEYS:
        flipped[key] = rep.flip_parsing(raw[key])
    for key in KEYPOINT_KEYS:
        flipped[key] = rep.flip_keypoints(raw[key], raw["reference_image"].shape[1])
    return flipped


def resize_raw(raw: dict, image_hw: tuple[int, int]) -> dict:
    """A raw example at another size (e.g. 64x48 for tiny configs).

    Photos are resized bilinearly (antialiased), labels and masks by nearest neighbour,
    keypoints mapped centre to centre.
    """
    source_hw = raw["reference_image"].shape[:2]
    if tuple(image_hw) == tuple(source_hw):
        return raw
    size = (image_hw[1], image_hw[0])
    resized = dict(raw)
    for key in RAW_PHOTOS:
        resized[key] = resize_photo(raw[key], image_hw)
    for key in PARSING_KEYS + ("clothes_mask",):
        resized[key] = np.asarray(Image.fromarray(raw[key]).resize(size, Image.NEAREST))
    for key in KEYPOINT_KEYS:
        resized[key] = rep.scale_keypoints(raw[key], source_hw, image_hw)
    return resized


def compact_example(raw: dict) -> dict[str, np.ndarray]:
    """Raw example -> compact example (`COMPACT_INPUTS`): its pictures, masks and parsings as
    they are, the target keypoints with missing joints zeroed."""
    compact = {key: np.asarray(raw[key], dtype) for key, (dtype, _) in COMPACT_INPUTS.items()
               if key != "target_keypoints"}
    compact["target_keypoints"] = rep.clean_keypoints(raw["target_keypoints"])
    return compact


def _to_signed(image: jax.Array) -> jax.Array:
    return jnp.asarray(image).astype(jnp.float32) / 127.5 - 1.0


def model_inputs(compact: dict, clothes_labels: Iterable[int] = constants.CLOTHES_LABELS
                 ) -> dict[str, jax.Array]:
    """Compact example(s) -> model inputs (see `MODEL_INPUT_CHANNELS`), float32 jax arrays.

    Runs inside a jitted step (or eagerly) on one example (H, W, C) or a batch (B, H, W, C):
    every array of `compact` has the same leading axes.

    Args:
      compact: arrays keyed as `COMPACT_INPUTS` (other keys are ignored).
      clothes_labels: labels removed from the reference (docs/design.md); the compact
        reference_without_clothes has them grey already, removed again here so that the
        region of the resized parsing holds exactly 0.
    """
    reference = _to_signed(compact["reference_image"])
    ref_parsing = compact["reference_parsing"]
    return {
        "reference_image": reference,
        "target_image": _to_signed(compact["target_image"]),
        "clothes": _to_signed(compact["clothes"]),
        "clothes_mask": jnp.asarray(compact["clothes_mask"]).astype(jnp.float32)[..., None],
        "target_pose": rep.pose_heatmaps(compact["target_keypoints"], reference.shape[-3:-1]),
        "hair_mask": rep.label_mask(ref_parsing, constants.HAIR_LABELS),
        "face_mask": rep.label_mask(ref_parsing, constants.FACE_LABELS),
        "body_shape": rep.body_shape_mask(ref_parsing),
        "reference_parsing": rep.one_hot_parsing(ref_parsing),
        "target_parsing": rep.one_hot_parsing(compact["target_parsing"]),
        "reference_without_clothes": rep.remove_clothes(
            _to_signed(compact["reference_without_clothes"]), ref_parsing,
            tuple(clothes_labels)),
    }
