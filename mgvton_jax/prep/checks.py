"""Checks of try-on inputs: every problem of a file, what was expected, and the fixing command.

Each check returns `Problem`s; one that is not `usable` stops the try-on or skips the triplet
in a data set build, a usable one is a note (the input is read, as the message says). The
checks read the files themselves rather than through `readers`, so that they can say more
than the readers' first error: a colour rendering's palette, BODY_25 instead of COCO-18, keypoints
of another image size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mgvton_jax import constants
from mgvton_jax.data import layouts, readers, representation
from mgvton_jax.data.examples import KEYPOINT_MARGIN
from mgvton_jax.data.readers import DataError
from mgvton_jax.prep import converters

PREP = "python -m mgvton_jax.prep"
# A clothes image needs no mask when at least this share of its border is near-white.
WHITE_BORDER_SHARE = 0.9
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


@dataclass(frozen=True)
class Problem:
    """What is wrong with `file`; `fix` is the command that fixes it (None: no converter)."""

    file: str
    message: str
    fix: str | None = None
    usable: bool = False

    def __str__(self) -> str:
        kind = "note" if self.usable else "error"
        return f"{kind}: {self.file}: {self.message}" + (f"\n  fix: {self.fix}" if self.fix
                                                          else "")


def _derived(path: str | os.PathLike, suffix: str) -> str:
    path = Path(path)
    return str(path.with_name(f"{path.stem}{suffix}"))


def _size(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def _open(path: str | os.PathLike) -> tuple[Image.Image | None, list[Problem]]:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        return None, [Problem(str(path), "file not found")]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return None, [Problem(str(path), f"cannot decode the image ({err})")]
    return image, []


def check_photo(path: str | os.PathLike, what: str = "photo"
                ) -> tuple[list[Problem], tuple[int, int] | None]:
    """(problems, (H, W) or None when unreadable) of a person photo or a clothes image."""
    image, problems = _open(path)
    if image is None:
        return problems, None
    name, hw = str(path), (image.height, image.width)
    if image.mode in _TRANSPARENT_MODES or (image.mode == "P" and "transparency" in image.info):
        problems.append(Problem(name, f"the {what} has transparency (mode {image.mode}): it is "
                                "composited on white", usable=True))
    elif image.mode in ("L", "1"):
        problems.append(Problem(name, f"the {what} is greyscale (mode {image.mode}): it is read "
                                "as grey RGB; the model was trained on colour photos",
                                usable=True))
    elif image.mode == "CMYK":
        problems.append(Problem(name, f"the {what} is CMYK: it is converted to the RGB a "
                                "person sees", usable=True))
    elif image.mode in _SIXTEEN_BIT_MODES:
        problems.append(Problem(name, f"the {what} has 16-bit grey values (mode "
                                f"{image.mode}): they are scaled to 8 bits", usable=True))
    if hw != constants.IMAGE_SIZE:
        frame = constants.IMAGE_SIZE
        same_aspect = hw[0] * frame[1] == hw[1] * frame[0]
        problems.append(Problem(
            name, f"the {what} is {_size(hw)} (W x H); the model works at {_size(frame)}: it "
            "is resized" + ("" if same_aspect else ", keeping its aspect, and padded") +
            ", and the result resized back", usable=True))
    return problems, hw


def check_parsing(path: str | os.PathLike, photo: str | os.PathLike | None = None,
                  photo_hw: tuple[int, int] | None = None) -> list[Problem]:
    """Problems of a human-parsing PNG of label ids (of `photo`, sized photo_hw, if given)."""
    image, problems = _open(path)
    if image is None:
        return problems
    name = str(path)
    if image.format == "JPEG":
        return [Problem(name, "the parsing is a JPEG: lossy compression changes label ids; "
                              "save the parser's label map as PNG")]
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB"))
        palette, share = converters.best_palette(rgb)
        if share == 1.0:
            return [Problem(name, f"the parsing holds colours (mode {image.mode}), not label "
                            f"ids: a rendering in the {palette} palette",
                            f"{PREP} parsing-colours {name} {_derived(name, '_ids.png')} "
                            f"--palette {palette}")]
        return [Problem(name, f"the parsing holds colours (mode {image.mode}) that match no "
                        f"known parsing palette ({100 * share:.0f}% of pixels match the "
                        f"{palette} palette); save the parser's label-id PNG (mode P or L)")]
    if image.mode not in ("P", "L"):
        return [Problem(name, f"the parsing has mode {image.mode!r}; expected label ids in a "
                              "PNG of mode P or L")]
    labels = np.asarray(image)
    if image.mode == "P" and (moved := _indices_of_other_colours(image, labels)):
        return [Problem(name, f"the palette indices are not label ids: index {moved[0]} is "
                        f"drawn in the {moved[2]} colour of label {moved[1]} (a rendering "
                        "saved with its own palette)",
                        f"{PREP} parsing-colours {name} {_derived(name, '_ids.png')} "
                        f"--palette {moved[2]}")]
    bad = np.unique(labels[labels >= constants.NUM_LABELS])
    if bad.size:
        problems.append(Problem(name, f"label ids {bad.tolist()[:8]} outside 0.."
                                f"{constants.NUM_LABELS - 1}; expected the 20 LIP / CIHP "
                                "labels"))
    if photo_hw is not None and labels.shape != tuple(photo_hw):
        problems.append(Problem(name, f"the parsing is {_size(labels.shape)} but the photo "
                                f"{photo} is {_size(photo_hw)} (W x H); parse that photo"))
    return problems


def _indices_of_other_colours(image: Image.Image, labels: np.ndarray
                              ) -> tuple[int, int, str] | None:
    """(index, label, palette) where a palette PNG draws an index it uses in a known palette's
    colour of another label, e.g. a colour rendering quantised to a palette PNG; None when
    every used index has its own label's colour, or colours of no known palette."""
    colours = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)
    used = [int(i) for i in np.unique(labels) if i < len(colours)]
    worst = None
    for palette in converters.PALETTES:
        matches = converters.palette_matches(colours[used][None], palette)[0]
        moved = [(i, int(m)) for i, m in zip(used, matches, strict=True) if m >= 0 and m != i]
        if not moved and (matches >= 0).any():
            return None  # this palette draws every index in its own label's colour
        if moved and (worst is None or len(moved) > len(worst[1])):
            worst = (palette, moved)
    if worst is None or len(worst[1]) < len(used) / 2:
        return None
    return (*worst[1][0], worst[0])


def check_keypoints(path: str | os.PathLike, photo: str | os.PathLike | None = None,
                    photo_hw: tuple[int, int] | None = None) -> list[Problem]:
    """Problems of an OpenPose keypoint JSON (measured on `photo`, sized photo_hw, if given)."""
    name = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [Problem(name, "file not found")]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [Problem(name, f"cannot parse JSON ({err})")]
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        return [Problem(name, "no 'people' list: not an OpenPose keypoint file")]
    if not people:
        return [Problem(name, "no person in this file: run OpenPose on a photo with one "
                              "person in view")]
    problems = []
    if len(people) > 1:
        problems.append(Problem(name, f"{len(people)} people in this file: the most confident "
                                "one is used; crop the photo to one person to choose",
                                usable=True))
    person = people[0] if isinstance(people[0], dict) else {}
    if "pose_keypoints_2d" not in person and "pose_keypoints" in person:
        problems.append(Problem(name, "the pose is under the older key 'pose_keypoints' (read "
                                "like 'pose_keypoints_2d')", usable=True))
    values = person.get("pose_keypoints_2d", person.get("pose_keypoints"))
    if not isinstance(values, list):
        return problems + [Problem(name, "a person without a 'pose_keypoints_2d' list")]
    joints = len(values) / 3
    if len(values) == 3 * len(converters.BODY25_KEYPOINTS):
        return problems + [Problem(
            name, "25 joints (OpenPose BODY_25); the model takes COCO-18 (18 joints)",
            f"{PREP} body25 {name} {_derived(name, '_coco18.json')}")]
    if len(values) != 3 * constants.NUM_KEYPOINTS:
        return problems + [Problem(name, f"{joints:g} joints; the model takes COCO-18 (18 "
                                         "joints; run OpenPose with --model_pose COCO)")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return problems + [Problem(name, "pose values that are not numbers")]
    keypoints = np.asarray(values, np.float64).reshape(-1, 3)
    visible = representation.joint_visible(keypoints)
    if photo_hw is None or not visible.any():
        return problems
    height, width = photo_hw
    rescale = (f"{PREP} rescale-keypoints {name} {_derived(name, '_rescaled.json')} --from "
               f"SOURCE_WxH --to {width}x{height}   (SOURCE_WxH: the photo OpenPose ran on)")
    xy = keypoints[visible, :2]
    margin = KEYPOINT_MARGIN  # the data builder's rule
    outside = np.any((xy < -margin * np.array([width, height])) |
                     (xy > (1 + margin) * np.array([width, height])), axis=1)
    if outside.any():
        joint = constants.KEYPOINTS[int(np.flatnonzero(visible)[np.argmax(outside)])]
        x, y = xy[outside][0]
        problems.append(Problem(name, f"joint {joint} at ({x:.1f}, {y:.1f}) lies outside the "
                                f"photo {photo} ({_size(photo_hw)}): measured on a photo of "
                                "another size?", rescale))
    elif len(xy) > 1 and xy[:, 0].max() < width / 2 and xy[:, 1].max() < height / 2:
        problems.append(Problem(name, f"every joint lies in the top-left quarter of the photo "
                                f"{photo} ({_size(photo_hw)}): measured on a smaller copy of "
                                "it?", rescale, usable=True))
    return problems


def check_clothes(path: str | os.PathLike, mask: str | os.PathLike | None = None
                  ) -> list[Problem]:
    """Problems of a product image and its mask (None: the mask is computed from a white
    background, so the background must be near-white)."""
    problems, hw = check_photo(path, "clothes image")
    if hw is None:
        return problems
    name = str(path)
    if mask is None:
        rgb = readers.read_rgb(path)
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        white = float(np.all(border >= representation.WHITE_LEVEL, axis=-1).mean())
        if white < WHITE_BORDER_SHARE:
            problems.append(Problem(
                name, f"no clothes mask, and the background is not near-white (only "
                f"{100 * white:.0f}% of the border has every channel >= "
                f"{representation.WHITE_LEVEL}): a mask computed from white would take the "
                "background for clothes",
                f"{PREP} clothes-mask {name} {_derived(name, '_mask.png')}   (then pass it "
                "as the clothes mask)"))
        return problems
    mask_image, mask_problems = _open(mask)
    if mask_image is None:
        return problems + mask_problems
    values = readers.read_mask(mask)
    if values.shape != hw:
        problems.append(Problem(str(mask), f"the mask is {_size(values.shape)} but the clothes "
                                f"image {name} is {_size(hw)} (W x H)"))
    elif not values.any():
        problems.append(Problem(str(mask), "the mask is empty (no pixel at or above "
                                f"{readers.MASK_THRESHOLD})"))
    return problems


def check_person(photo: str | os.PathLike, parsing: str | os.PathLike,
                 keypoints: str | os.PathLike | None = None) -> list[Problem]:
    """Problems of a person photo, its parsing and (optionally) its keypoints."""
    problems, hw = check_photo(photo)
    problems += check_parsing(parsing, photo, hw)
    if keypoints is not None:
        problems += check_keypoints(keypoints, photo, hw)
    return problems


def check_directory(root: str | os.PathLike, pair_list: str | os.PathLike | None = None
                    ) -> list[Problem]:
    """Problems of every file that a data set's pair list names (each file once), and of the
    pair list's lines. Lines whose files are missing are errors of those lines."""
    try:
        source = layouts.open_source(root, pair_list)
    except DataError as err:
        return [Problem(str(root), str(err).split(": ", 1)[-1])]
    problems = [Problem(bad.path, f"line {bad.line_number}: {bad.reason}; the line is "
                        "skipped", usable=True) for bad in source.pair_list.bad_lines]
    seen: set[tuple[str, ...]] = set()

    def once(key: tuple[str, ...]) -> bool:
        fresh = key not in seen
        seen.add(key)
        return fresh

    layout = source.layout
    for triplet in source.pair_list.triplets:
        try:
            for entry in (triplet.reference, triplet.target):
                files = [layout.find(kind, entry, triplet.split) for kind in
                         (layouts.PERSON, layouts.PARSING, layouts.KEYPOINTS)]
                if once(tuple(map(str, files))):
                    problems += check_person(*files)
            clothes = layout.find(layouts.CLOTHES, triplet.clothes, triplet.split)
            mask = layout.find(layouts.CLOTHES_MASK, triplet.clothes, triplet.split)
            if once((str(clothes), str(mask))):
                problems += check_clothes(clothes, mask)
        except DataError as err:
            problems.append(Problem(str(err).split(": ", 1)[0],
                                    f"{str(err).split(': ', 1)[-1]} (triplet {triplet.key})"))
    return problems


def unusable(problems: Iterable[Problem]) -> bool:
    return any(not problem.usable for problem in problems)
