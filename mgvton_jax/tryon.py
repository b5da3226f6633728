"""Try-on from files: a person photo, its parsing, a clothes image and a target pose.

    python -m mgvton_jax.tryon --model M --person P.jpg --person-parsing P.png \
        --clothes C.jpg --pose T_keypoints.json --out OUT.png
    python -m mgvton_jax.tryon --model M --pairs LIST.txt --data-root D --out-dir O

M is a model directory (`python -m mgvton_jax.export`). Inputs of any size are fitted into the
model's frame (resized, keeping the aspect, and padded: white for photos, background for the
parsing) with the keypoints mapped alike; the result is cropped and resized back, so OUT has
the person photo's size. The parsing is LIP/CIHP label ids of the person photo, the pose an
OpenPose COCO-18 JSON measured on a photo of the person photo's size (else --pose-size).

In Python:

    from mgvton_jax import TryOn
    result = TryOn.load("M")(person="P.jpg", person_parsing="P.png", clothes="C.jpg",
                             pose="T_keypoints.json")
    result.image  # (H, W, 3) uint8, the person photo's size
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from mgvton_jax import constants, distributed, inference, visualize
from mgvton_jax.data import examples, layouts, readers, representation
from mgvton_jax.data.pairs import file_stem
from mgvton_jax.data.readers import DataError
from mgvton_jax.data.representation import WHITE_LEVEL, clothes_mask_from_white
from mgvton_jax.export import ModelError

INTERMEDIATES = ("parsing", "warped_clothes", "coarse", "composition_mask")


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

    def back(self, framed: np.ndarray, resample: int) -> np.ndarray:
        """(H, W, 3) uint8 in the frame -> (h, w, 3) uint8 at the source size."""
        content = framed[self.top:self.top + self.rows, self.left:self.left + self.cols]
        return np.asarray(Image.fromarray(content).resize(self.source_hw[::-1], resample))


def _name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "the given array"


def _photo(source) -> np.ndarray:
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
    photo = _photo(person)
    parsing = readers.read_parsing(person_parsing) if isinstance(
        person_parsing, (str, os.PathLike)) else np.asarray(person_parsing)
    if parsing.shape != photo.shape[:2]:
        raise DataError(f"{_name(person_parsing)}: parsing is {parsing.shape[1]}x"
                        f"{parsing.shape[0]} but the person photo {_name(person)} is "
                        f"{photo.shape[1]}x{photo.shape[0]} (W x H); parse that photo")
    if parsing.min(initial=0) < 0 or parsing.max(initial=0) >= constants.NUM_LABELS:
        raise DataError(f"{_name(person_parsing)}: label ids outside 0.."
                        f"{constants.NUM_LABELS - 1}")
    product = _photo(clothes)
    if clothes_mask is None:
        mask = clothes_mask_from_white(product)
        notes.append(f"clothes mask computed from the near-white background of "
                     f"{_name(clothes)} (channels >= {WHITE_LEVEL} are background); "
                     "pass a clothes mask to use your own")
    else:
        mask = readers.read_mask(clothes_mask) if isinstance(
            clothes_mask, (str, os.PathLike)) else (np.asarray(clothes_mask) > 0)
        if mask.shape != product.shape[:2]:
            raise DataError(f"{_name(clothes_mask)}: mask is {mask.shape[1]}x"
                            f"{mask.shape[0]}, the clothes image {product.shape[1]}x"
                            f"{product.shape[0]}")
    if not mask.any():
        raise DataError(f"{_name(clothes if clothes_mask is None else clothes_mask)}: "
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


@dataclasses.dataclass
class TryOnResult:
    """image: (h, w, 3) uint8 at the person photo's size; intermediates: the synthesized
    parsing, warped clothes, coarse result and composition mask, pictured at that size;
    notes: choices made for the user (e.g. a computed clothes mask)."""

    image: np.ndarray
    intermediates: dict[str, np.ndarray]
    notes: list[str]


class TryOn:
    """A trained pipeline that dresses people: `TryOn.load(model_dir)(person=..., ...)`."""

    def __init__(self, model: inference.Pipeline):
        self.model = model

    @classmethod
    def load(cls, path: str | os.PathLike) -> TryOn:
        """Raises ModelError when path is not a model directory (the message says why)."""
        return cls(inference.load_model_dir(path))

    def __call__(self, person=None, person_parsing=None, clothes=None, pose=None,
                 clothes_mask=None, pose_size: tuple[int, int] | None = None, *,
                 inputs: TryOnInputs | None = None) -> TryOnResult:
        """Dresses `person` in `clothes`, in `pose`.

        Args:
          person: photo file or (h, w, 3) uint8.
          person_parsing: label-id PNG of that photo, or (h, w) uint8 ids in 0..19.
          clothes: product image file or (h', w', 3) uint8.
          pose: OpenPose COCO-18 JSON file, or (18, 3) float (x, y, confidence).
          clothes_mask: file or (h', w') {0, 1}; None computes it from the white background.
          pose_size: (height, width) of the photo the pose was measured on (default: the
            person photo's).
          inputs: instead of the above, what `read_inputs` returned.
        Raises:
          DataError: an input that cannot be used; the message names it and says why.
        """
        if inputs is None:
            inputs = read_inputs(person, person_parsing, clothes, pose, clothes_mask, pose_size)
        frame = self.model.image_size
        person_fit = Fit.of(inputs.photo.shape[:2], frame)
        clothes_fit = Fit.of(inputs.clothes.shape[:2], frame)
        raw = {"reference_image": person_fit.image(inputs.photo, 255, Image.BILINEAR),
               "reference_parsing": person_fit.image(inputs.parsing, 0, Image.NEAREST),
               "clothes": clothes_fit.image(inputs.clothes, 255, Image.BILINEAR),
               "clothes_mask": clothes_fit.image(inputs.clothes_mask, 0, Image.NEAREST),
               "target_keypoints": Fit.of(inputs.pose_size, frame).keypoints(inputs.keypoints)}
        # Inference never reads the ground-truth entries: placeholders fill them.
        compact = examples.compact_example({**raw, "target_image": raw["reference_image"],
                                            "target_parsing": raw["reference_parsing"]})
        batch = {key: np.repeat(value[None], self.model.batch_multiple, axis=0)
                 for key, value in compact.items()}
        values = self.model(batch)
        image = person_fit.back(visualize.to_rgb(values[self.model.image_key][0]),
                                Image.BICUBIC)
        intermediates = {key: person_fit.back(visualize.to_rgb(values[key][0]),
                                              Image.NEAREST if key == "parsing"
                                              else Image.BILINEAR)
                         for key in INTERMEDIATES if key in values}
        return TryOnResult(image, intermediates, inputs.notes)


def write_image(path: str | os.PathLike, picture: np.ndarray) -> None:
    """Writes `picture` whole or not at all: to a temporary name, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise DataError(f"{path}: unknown image type {path.suffix!r}; use .png or .jpg")
    partial = path.with_name(f".{path.name}.partial")
    try:
        Image.fromarray(picture).save(partial, format=image_format)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_result(result: TryOnResult, out: str | os.PathLike, intermediates: bool) -> list[Path]:
    """OUT (and OUT_<name>.png per intermediate when asked); returns the files written."""
    out = Path(out)
    written = [out]
    write_image(out, result.image)
    if intermediates:
        for key, picture in result.intermediates.items():
            path = out.with_name(f"{out.stem}_{key}.png")
            write_image(path, picture)
            written.append(path)
    return written


def _run_pairs(tryon: TryOn, pair_file: str, data_root: str, out_dir: str,
               intermediates: bool) -> int:
    """Every triplet of an MPV pair list under data_root; bad ones are counted skips. In a
    multi-process run each process tries on its share of the lines; returns the total."""
    source = layouts.open_source(data_root, pair_file)
    main = distributed.is_main()
    for bad in source.pair_list.bad_lines if main else ():
        print(f"skipped {bad}", file=sys.stderr)
    done, failed = 0, 0
    for triplet in source.pair_list.triplets[jax.process_index()::jax.process_count()]:
        layout, split = source.layout, triplet.split
        try:
            target_photo = layout.find(layouts.PERSON, triplet.target, split)
            with Image.open(target_photo) as image:
                pose_size = (image.height, image.width)
            result = tryon(
                person=layout.find(layouts.PERSON, triplet.reference, split),
                person_parsing=layout.find(layouts.PARSING, triplet.reference, split),
                clothes=layout.find(layouts.CLOTHES, triplet.clothes, split),
                clothes_mask=layout.find(layouts.CLOTHES_MASK, triplet.clothes, split),
                pose=layout.find(layouts.KEYPOINTS, triplet.target, split),
                pose_size=pose_size)
            write_result(result, Path(out_dir) / f"{file_stem(triplet.key)}.png",
                         intermediates)
            done += 1
        except (DataError, OSError) as err:
            failed += 1
            print(f"skipped {triplet.key}: {err}", file=sys.stderr)
    done, failed = distributed.gather_rows(np.array([[done, failed]])).sum(axis=0)
    failed += len(source.pair_list.bad_lines)
    if main:
        print(f"wrote {done} try-on results to {out_dir}; skipped {failed}")
    return int(done)


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 256x192")
    return int(height), int(width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mgvton_jax.tryon",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory (mgvton_jax.export)")
    parser.add_argument("--person", help="person photo (any size)")
    parser.add_argument("--person-parsing", help="LIP/CIHP label-id PNG of the person photo")
    parser.add_argument("--clothes", help="clothes (product) image")
    parser.add_argument("--clothes-mask", help="clothes mask (default: from the white "
                        "background)")
    parser.add_argument("--pose", help="OpenPose COCO-18 keypoint JSON of the target pose")
    parser.add_argument("--pose-size", type=_size, help="HEIGHTxWIDTH of the photo the pose "
                        "was measured on (default: the person photo's)")
    parser.add_argument("--out", help="result image (.png or .jpg)")
    parser.add_argument("--pairs", help="an MPV pair list: one result per line")
    parser.add_argument("--data-root", help="with --pairs: the data set directory")
    parser.add_argument("--out-dir", help="with --pairs: where the results go")
    parser.add_argument("--intermediates", action="store_true",
                        help="also write OUT_parsing, _warped_clothes, _coarse, "
                        "_composition_mask")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    single = ("person", "person_parsing", "clothes", "pose", "out")
    if args.pairs:
        if not (args.data_root and args.out_dir):
            parser.error("--pairs needs --data-root and --out-dir")
    elif missing := [f"--{name.replace('_', '-')}" for name in single
                     if getattr(args, name) is None]:
        parser.error(f"missing {' '.join(missing)} (or use --pairs)")
    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               args.distributed)
        if args.pairs:
            if not _run_pairs(TryOn.load(args.model), args.pairs, args.data_root,
                              args.out_dir, args.intermediates):
                raise SystemExit("error: no pair could be tried on")
            return
        # The inputs first: a bad file is reported before the model loads.
        inputs = read_inputs(args.person, args.person_parsing, args.clothes, args.pose,
                             args.clothes_mask, args.pose_size)
        if Path(args.out).suffix.lower() not in Image.registered_extensions():
            raise DataError(f"{args.out}: unknown image type; use .png or .jpg")
        for note in inputs.notes:
            print(f"note: {note}", file=sys.stderr)
        result = TryOn.load(args.model)(inputs=inputs)
        written = write_result(result, args.out, args.intermediates)
    except (DataError, ModelError, distributed.DistributedError) as err:
        raise SystemExit(f"error: {err}") from None
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()

