"""The person analyzer at work: a plain photo -> its parsing and its OpenPose keypoints.

    from mgvton_jax.analyze import Analyzer
    analysis = Analyzer.load()(photo)     # the shipped analyzer (pretrained/analyzer/)
    analysis.parsing                      # (h, w) uint8 LIP label ids, the photo's size
    analysis.keypoints                    # (18, 3) float32 x, y, confidence; missing 0, 0, 0

The photo is fitted into the analyzer's frame as try-on fits it (`tryon_inputs.Fit`); the
parsing probabilities of the photo's part of the frame are resized (bilinear) to the photo's
size before the argmax, and each joint is the centre of mass of its map around the map's peak,
mapped back to the photo's pixels. A joint whose presence is below `threshold` is missing. A
photo where the analyzer finds no person, or a person too small to try on, raises
`NoPersonError`. The network (`mgvton_jax.stages.analyzer`) knows studio photos like VITON's:
one person standing, facing the camera, filling most of the frame.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from mgvton_jax import constants, visualize
from mgvton_jax.data.readers import DataError
from mgvton_jax.export import ANALYZER, ModelError, load_model, shipped_analyzer
from mgvton_jax.stages import base, get
from mgvton_jax.tryon_inputs import Fit

# A joint is written when its presence probability reaches this: more likely there than not.
PRESENCE_THRESHOLD = 0.5
# A joint's position: the centre of mass of its map within this many frame pixels of the peak
# (the training discs' radius: the map of a well-found joint is about one disc).
PEAK_RADIUS = constants.POSE_DISC_RADIUS
# Below these the photo is refused (`NoPersonError`): the share of the photo the person
# covers, the joints found, and the person's height as a share of the photo's. VITON's 6,824
# training people cover 18-72% of their photo (median 44%) and 78-100% of its height (median
# 100%); training shrinks some to half that height (configs/analyzer.py, augment).
MIN_PERSON_SHARE = 0.03
MIN_JOINTS = 4
MIN_HEIGHT_SHARE = 0.35


class NoPersonError(DataError):
    """The analyzer found no person in a photo, or one too small to try on."""


@dataclasses.dataclass(frozen=True)
class Analysis:
    """parsing: (h, w) uint8 label ids at the photo's size; keypoints: (18, 3) float32 x, y in
    the photo's pixels and the presence probability, missing joints 0, 0, 0."""

    parsing: np.ndarray
    keypoints: np.ndarray


def decode_joints(joints: np.ndarray, threshold: float = PRESENCE_THRESHOLD,
                  radius: int = PEAK_RADIUS) -> np.ndarray:
    """The analyzer's joint maps of one photo -> keypoints in the frame's pixels.

    Args:
      joints: (H, W, J) float maps, each peaking at its joint's presence probability
        (`stages.analyzer.infer`'s analyzed_joints).
      threshold: presence below which a joint is missing.
      radius: the centre of mass is taken over pixels within this distance of the peak.
    Returns:
      (J, 3) float32 x, y (pixel centres at integers) and presence; missing joints 0, 0, 0.
    """
    height, width, count = joints.shape
    rows, cols = np.mgrid[:height, :width]
    keypoints = np.zeros((count, 3), np.float32)
    for j in range(count):
        heat = joints[..., j].astype(np.float64)
        peak_row, peak_col = np.unravel_index(heat.argmax(), heat.shape)
        presence = heat[peak_row, peak_col]
        if presence < threshold:
            continue
        near = (rows - peak_row) ** 2 + (cols - peak_col) ** 2 <= radius * radius
        weight = np.where(near, heat, 0.0)
        keypoints[j] = ((weight * cols).sum() / weight.sum(), (weight * rows).sum() /
                        weight.sum(), presence)
    return keypoints


def parsing_at(probabilities: np.ndarray, fit: Fit) -> np.ndarray:
    """(H, W, 20) parsing probabilities of the frame -> (h, w) uint8 label ids of the source
    photo: the photo's part of the frame resized (bilinear) label by label, then the argmax
    (one label map in memory at a time, whatever the photo's size)."""
    height, width = fit.source_hw
    content = probabilities[fit.top:fit.top + fit.rows, fit.left:fit.left + fit.cols]
    best = np.full((height, width), -1.0, np.float32)
    labels = np.zeros((height, width), np.uint8)
    for label in range(content.shape[-1]):
        channel = Image.fromarray(np.ascontiguousarray(content[..., label], np.float32), "F")
        resized = np.asarray(channel.resize((width, height), Image.BILINEAR))
        better = resized > best
        best = np.where(better, resized, best)
        labels[better] = label
    return labels


class Analyzer:
    """A trained person analyzer: `Analyzer.load(model_dir)(photo)` -> `Analysis`.

    network: the analyzer network; image_size: its frame (H, W); threshold: the joints'
    presence threshold; path: the model directory it came from (None: built in memory).
    """

    def __init__(self, network: nnx.Module, image_size: tuple[int, int],
                 threshold: float = PRESENCE_THRESHOLD, path: str | os.PathLike | None = None):
        self.image_size, self.threshold, self.path = tuple(image_size), threshold, path
        graphdef, state = nnx.split(base.eval_view(network))
        infer = get(ANALYZER).infer

        def maps(state, photos):
            outputs = infer({ANALYZER: nnx.merge(graphdef, state)}, {},
                            {"target_image": photos.astype(jnp.float32) / 127.5 - 1.0})
            return outputs["analyzed_parsing"], outputs["analyzed_joints"]

        self._state, self._maps = state, jax.jit(maps)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None,
             threshold: float = PRESENCE_THRESHOLD) -> Analyzer:
        """The analyzer of a model directory (`python -m mgvton_jax.export --analyzer`);
        without one, the shipped analyzer. Raises ModelError when it is not one."""
        path = shipped_analyzer() if path is None else path
        networks, manifest = load_model(path)
        if ANALYZER not in networks:
            raise ModelError(f"{path}: holds the stages {list(networks)}, not the person "
                             "analyzer; export one with python -m mgvton_jax.export --analyzer")
        return cls(networks[ANALYZER]["analyzer"], manifest["image_size"], threshold, path)

    def maps(self, framed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) uint8 photos in the frame -> (parsing probabilities (B, H, W, 20),
        joint maps (B, H, W, 18)), float32 NumPy."""
        parsing, joints = self._maps(self._state, jnp.asarray(framed))
        return np.asarray(parsing), np.asarray(joints)

    def analyse(self, photos: list[np.ndarray]) -> list[Analysis]:
        """The analyses of (h, w, 3) uint8 RGB photos of any sizes, in one batch, unchecked
        (`__call__` checks that a person was found)."""
        fits = [Fit.of(photo.shape[:2], self.image_size) for photo in photos]
        parsing, joints = self.maps(np.stack([fit.image(photo, 255, Image.BILINEAR)
                                              for fit, photo in zip(fits, photos, strict=True)]))
        return [Analysis(parsing_at(parsing[i], fit),
                         fit.keypoints_back(decode_joints(joints[i], self.threshold)))
                for i, fit in enumerate(fits)]

    def __call__(self, photo: np.ndarray, name: str = "the photo") -> Analysis:
        """Analyses one (h, w, 3) uint8 RGB photo of any size.

        Raises:
          NoPersonError: no person found, or one too small; the message names `name`.
        """
        analysis = self.analyse([photo])[0]
        check_person(analysis, name)
        return analysis


def check_person(analysis: Analysis, name: str) -> None:
    """Raises NoPersonError unless the analysis looks like one person the try-on can dress
    (`MIN_PERSON_SHARE`, `MIN_JOINTS`, `MIN_HEIGHT_SHARE`); the message names `name`."""
    person = analysis.parsing > 0
    share, joints = float(person.mean()), int((analysis.keypoints[:, 2] > 0).sum())
    hint = ("the analyzer knows photos like VITON's: one person standing, facing the camera, "
            "filling most of the frame")
    if share < MIN_PERSON_SHARE or joints < MIN_JOINTS:
        raise NoPersonError(f"{name}: no person found (person pixels {100 * share:.1f}% of the "
                            f"photo, {joints} of {constants.NUM_KEYPOINTS} joints); {hint}")
    rows = np.flatnonzero(person.any(axis=1))
    height = (rows[-1] - rows[0] + 1) / person.shape[0]
    if height < MIN_HEIGHT_SHARE:
        raise NoPersonError(f"{name}: the person is {100 * height:.0f}% of the photo's height, "
                            f"too small to try on; crop the photo around them ({hint})")


# Where `write_analysis` puts each file under its output directory: VITON's folders (the
# builder, `prep check` and try-on read them), and pictures for a person to look at.
PHOTO_DIR, PARSING_DIR, POSE_DIR, PREVIEW_DIR = "image", "image-parse", "pose", "preview"


def write_parsing(path: str | os.PathLike, labels: np.ndarray) -> None:
    """(h, w) uint8 label ids -> a palette PNG whose pixel values are the ids (LIP colours)."""
    image = Image.fromarray(np.asarray(labels, np.uint8), mode="L").convert("P")
    image.putpalette([v for colour in constants.LIP_PALETTE for v in colour])
    image.save(path, format="PNG")


def write_keypoints(path: str | os.PathLike, keypoints: np.ndarray) -> None:
    """(18, 3) keypoints -> an OpenPose (1.3+) JSON file of one person."""
    values = [round(float(v), 3) for v in np.asarray(keypoints, np.float64).ravel()]
    Path(path).write_text(json.dumps({"version": 1.3,
                                      "people": [{"pose_keypoints_2d": values}]}))


def preview(photo: np.ndarray, analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """(the parsing in LIP colours, the pose drawn on the photo), (h, w, 3) uint8 each."""
    return (visualize.parsing_to_rgb(analysis.parsing),
            np.asarray(visualize.stick_figure(analysis.keypoints, photo.shape[:2], photo)))


def write_analysis(photo_path: str | os.PathLike, photo: np.ndarray, analysis: Analysis,
                   out_dir: str | os.PathLike) -> list[Path]:
    """Writes OUT/image/NAME (the photo file, copied), OUT/image-parse/STEM.png (label ids),
    OUT/pose/STEM_keypoints.json (OpenPose) and OUT/preview/STEM.png (photo, parsing, pose
    side by side); returns the paths."""
    source, out = Path(photo_path), Path(out_dir)
    paths = [out / PHOTO_DIR / source.name, out / PARSING_DIR / f"{source.stem}.png",
             out / POSE_DIR / f"{source.stem}_keypoints.json",
             out / PREVIEW_DIR / f"{source.stem}.png"]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    if paths[0].resolve() != source.resolve():
        shutil.copyfile(source, paths[0])
    write_parsing(paths[1], analysis.parsing)
    write_keypoints(paths[2], analysis.keypoints)
    Image.fromarray(np.concatenate([photo, *preview(photo, analysis)], axis=1)).save(
        paths[3], format="PNG")
    return paths
