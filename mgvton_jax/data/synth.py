"""Procedural synthetic MPV: stylised people in patterned T-shirts, the built-in data set.

Writes the MPV competition layout (README, "Building the data set"), so that readers, pipelines and
tests run without a download:

  DIR/all/<PID>/<PID>-<COLOR>@<n>=person_whole_front.jpg   photo of pose n = 1, 2 (, 3)
  DIR/all/<PID>/<PID>-<COLOR>@0=cloth_front.jpg            the T-shirt alone, on white
  DIR/all/<PID>/<PID>-<COLOR>@0=cloth_front_mask.jpg       its mask ('L' JPEG, 255 = garment)
  DIR/all_parsing/<PID>/<photo stem>.png                   LIP label ids, mode 'P'
  DIR/all_person_clothes_keypoints/<PID>/<photo stem>_keypoints.json   OpenPose COCO-18
  DIR/all_poseA_poseB_clothes.txt                          poseA TAB poseB TAB cloth TAB split

One routine draws a person: every body part is painted into the photo and into the label map
through the same mask, so parsing, keypoints and pixels agree. The product image and the worn
garment are coloured by one pattern function of product-image coordinates, mapped onto the
torso and sleeves, so the clothes image predicts what the person wears.

Usage: python -m mgvton_jax.data.synth --out DIR --people N [--seed 0] [--test-fraction 0.2]
"""

from __future__ import annotations

import argparse
import colorsys
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tqdm import tqdm

from mgvton_jax.constants import IMAGE_SIZE, KEYPOINTS, LIP_LABELS, LIP_PALETTE, NECK_LABEL

_HEIGHT, _WIDTH = IMAGE_SIZE
_LABEL = {name: index for index, name in enumerate(LIP_LABELS)}
# Image x direction of each body side: a front view shows the person's left at the image right.
_SIDES = {"r": -1.0, "l": 1.0}
_SIDE_NAMES = {"r": "right", "l": "left"}
_PERSON_VIEW = "person_whole_front"
_CLOTH_VIEW = "cloth_front"
_PAIR_LIST = "all_poseA_poseB_clothes.txt"
_JPEG_QUALITY = 95
_MASK_FOREGROUND = 255
_WHITE = (255, 255, 255)
# Real OpenPose output keeps joints a pixel or two past the border (real-samples README).
_OFF_FRAME_MARGIN = 2.0
_KEYPOINT_NOISE_PX = 0.5
_EAR_MISS_RATE = 0.1
_CROPPED_POSE_RATE = 0.35
_MIN_ARM_SHIFT = 30.0  # body units; see _sample_poses
_SHORTS_RATE = 0.25
_LONG_SLEEVE_RATE = 0.4
# Outline darkening (alpha of black over the 1-px rim of every part): separates touching
# parts of one colour, e.g. the two trouser legs.
_RIM_ALPHA = 70
# Seed-sequence tag of the train/test split stream; people use the 2-word entropy [seed, i].
_SPLIT_STREAM = 0x5B117
# Length of a whole arm on the flat product image, in product pixels (sleeve scale).
_PRODUCT_ARM_LENGTH = 130.0

_SKIN_TONES = ((250, 220, 196), (238, 196, 162), (222, 172, 134), (196, 136, 98),
               (158, 104, 70), (110, 74, 52))
_HAIR_COLOURS = ((28, 24, 22), (64, 42, 30), (108, 70, 42), (196, 156, 92), (150, 62, 34),
                 (126, 124, 122))
_PANTS_COLOURS = ((38, 58, 104), (64, 94, 142), (30, 30, 36), (186, 166, 128), (86, 92, 58),
                  (108, 108, 114), (120, 40, 44))
_SHOE_COLOURS = ((28, 28, 30), (84, 54, 34), (196, 196, 200), (120, 30, 30))
_HAIR_STYLES = ("short", "long", "bun")
_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "dots")
# Arm poses: (upper-arm angle from hanging straight down, outward positive; elbow bend,
# positive = forearm turns further outward/up), ranges in degrees.
_ARM_POSES = {
    "down": ((5.0, 16.0), (0.0, 12.0)),
    "out": ((25.0, 40.0), (-15.0, 10.0)),
    "raised": ((95.0, 115.0), (35.0, 60.0)),
    "hip": ((35.0, 50.0), (-105.0, -85.0)),
    "front": ((8.0, 20.0), (-125.0, -100.0)),
}

Shape = Callable[[ImageDraw.ImageDraw], None]


@dataclass(frozen=True)
class _Paint:
    """What a part looks like: its label id and its colour (a solid RGB or a garment texture)."""

    label: int
    fill: tuple[int, int, int] | _Texture


class _PairCanvas:
    """An RGB picture and a label image drawn together: each part goes to both through one mask."""

    def __init__(self, rgb: Image.Image, labels: Image.Image) -> None:
        self.rgb = rgb
        self.labels = labels
        self.rgb_draw = ImageDraw.Draw(rgb)  # details inside a labelled part (eyes, mouth)

    def paint(self, shape: Shape, paint: _Paint) -> None:
        """Fills `shape` with `paint.fill` in the picture and `paint.label` in the label image."""
        mask = Image.new("L", self.rgb.size)
        shape(ImageDraw.Draw(mask))
        box = mask.getbbox()
        if box is None:  # entirely off the canvas
            return
        # Work in the part's bounding box (1 px wider, so the rim filter sees the outside).
        box = (max(box[0] - 1, 0), max(box[1] - 1, 0), min(box[2] + 1, mask.width),
               min(box[3] + 1, mask.height))
        mask = mask.crop(box)
        fill = paint.fill.render(box) if isinstance(paint.fill, _Texture) else paint.fill
        self.rgb.paste(fill, box, mask)
        self.labels.paste(paint.label, box, mask)
        rim = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(3)),
                                  scale=255.0 / _RIM_ALPHA)
        self.rgb.paste((0, 0, 0), box, rim)


@dataclass(frozen=True)
class _Garment:
    """A T-shirt: its pattern (in product-image pixels) and its flat outline on the product image.

    Points are (x, y) float arrays in product-image pixels. `sleeve_axes[side]` = (root centre,
    unit direction, length) of that sleeve; `corners` = the body's right/left shoulder corners and
    hem centre, the anchors of the torso texture map.
    """

    pattern: str
    colours: np.ndarray  # (2, 3) float: ground colour, figure colour
    period: float
    share: float  # stripe width or dot radius as a fraction of the period
    phase: np.ndarray  # (2,)
    sleeve_fraction: float  # share of the arm (shoulder to wrist) the sleeve covers
    hem_drop: float  # how far the hem hangs below the hip joints on a body, body units
    neckline: tuple[float, float]  # (half width, depth) on a body, body units
    body: np.ndarray  # (N, 2) polygon
    sleeves: dict[str, np.ndarray]  # side -> (4, 2) polygon
    sleeve_axes: dict[str, tuple[np.ndarray, np.ndarray, float]]
    corners: np.ndarray  # (3, 2): right shoulder, left shoulder, hem centre
    centre_x: float
    half_width: float


@dataclass(frozen=True)
class _Body:
    """A person's proportions (body units = pixels at pose scale 1) and colours."""

    shoulder_half: float
    shoulder_drop: float
    hip_half: float
    torso: float
    neck: float
    neck_half: float
    upper_arm: float
    forearm: float
    hand: float
    arm_width: float
    thigh: float
    shin: float
    leg_width: float
    pants_width: float
    head_rx: float
    head_ry: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    pants: tuple[int, int, int]
    shoes: tuple[int, int, int]
    hair_style: str
    shorts: bool

    @property
    def head_top(self) -> float:
        """Height of the crown above the neck joint (bun included), body units."""
        return self.neck + 1.85 * self.head_ry + (0.8 * self.head_rx if self.hair_style == "bun"
                                                  else 0.0)

    @property
    def feet(self) -> float:
        """Depth of the shoe soles below the neck joint, body units."""
        return self.torso + self.thigh + self.shin + 9.0


@dataclass(frozen=True)
class _Pose:
    """Where and how one photo shows the body: similarity to the image plus joint angles."""

    scale: float
    lean: float  # radians, about the neck joint
    neck_xy: np.ndarray  # (2,) image position of the neck joint
    arms: dict[str, tuple[float, float]]  # side -> (upper-arm angle, elbow bend), radians
    legs: dict[str, tuple[float, float]]  # side -> (thigh angle, knee bend), radians
    ears_missed: dict[str, bool]  # side -> keypoint not reported (detector miss)


def _rgb(colour: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(round(min(255.0, max(0.0, c)))) for c in colour)


def _jitter(rng: np.random.Generator, colour: Sequence[int], amount: float) -> tuple[int, int, int]:
    return _rgb(np.asarray(colour, float) + rng.uniform(-amount, amount, 3))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _direction(side: float, angle: float) -> np.ndarray:
    """Unit vector `angle` radians from straight down, turned outward on `side` (-1 or 1)."""
    return np.array([side * math.sin(angle), math.cos(angle)])


def _ellipse_points(centre: np.ndarray, rx: float, ry: float, start: float = 0.0,
                    stop: float = 2.0 * math.pi, count: int = 28) -> np.ndarray:
    """(count, 2) points on the axis-aligned ellipse arc from `start` to `stop` (radians)."""
    t = np.linspace(start, stop, count)
    return np.asarray(centre, float) + np.stack([rx * np.cos(t), ry * np.sin(t)], axis=-1)


def _polygon(points: np.ndarray) -> Shape:
    vertices = [tuple(p) for p in np.asarray(points, float).tolist()]
    return lambda draw: draw.polygon(vertices, fill=255)


def _limb(points: np.ndarray, width: float) -> Shape:
    """A thick polyline with round joints and round ends."""
    vertices = [tuple(p) for p in np.asarray(points, float).tolist()]
    radius = width / 2.0

    def draw_limb(draw: ImageDraw.ImageDraw) -> None:
        draw.line(vertices, fill=255, width=max(1, round(width)), joint="curve")
        for x, y in vertices:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)

    return draw_limb


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) affine map taking the 3 points `src` (3, 2) to `dst` (3, 2)."""
    homogeneous = np.concatenate([src, np.ones((3, 1))], axis=1)
    return np.linalg.solve(homogeneous, dst).T


def _similarity_from_segments(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray,
                              q1: np.ndarray) -> np.ndarray:
    """(2, 3) rotation + scale + shift taking segment p0->p1 onto q0->q1."""
    p, q = p1 - p0, q1 - q0
    scale = np.hypot(*q) / max(np.hypot(*p), 1e-6)
    angle = math.atan2(q[1], q[0]) - math.atan2(p[1], p[0])
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)],
                               [math.sin(angle), math.cos(angle)]])
    return np.concatenate([linear, (q0 - linear @ p0)[:, None]], axis=1)


def _pixel_centres(box: tuple[int, int, int, int]) -> np.ndarray:
    """(y1 - y0, x1 - x0, 2) float (x, y) canvas coordinates of the pixel centres in `box`
    = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    return np.stack([xs, ys], axis=-1)


def _pattern_rgb(garment: _Garment, uv: np.ndarray) -> np.ndarray:
    """Garment colour at product-image points `uv` (..., 2) -> (..., 3) float."""
    u = uv[..., 0] - garment.phase[0]
    v = uv[..., 1] - garment.phase[1]
    period = garment.period
    if garment.pattern == "hstripes":
        figure = np.mod(v, period) < garment.share * period
    elif garment.pattern == "vstripes":
        figure = np.mod(u, period) < garment.share * period
    elif garment.pattern == "checks":
        figure = (np.floor(u / period) + np.floor(v / period)) % 2 == 1
    elif garment.pattern == "dots":
        row = np.floor(v / period)
        du = np.mod(u + 0.5 * period * (row % 2), period) - 0.5 * period
        dv = np.mod(v, period) - 0.5 * period
        figure = du * du + dv * dv < (garment.share * period) ** 2
    else:
        figure = np.zeros(u.shape, bool)
    return np.where(figure[..., None], garment.colours[1], garment.colours[0])


@dataclass(frozen=True)
class _Texture:
    """The garment pattern seen through `to_product` (2, 3), an affine map from canvas pixel
    centres to product-image points. `shaded` darkens towards the garment's sides (torso)."""

    garment: _Garment
    to_product: np.ndarray
    shaded: bool

    def render(self, box: tuple[int, int, int, int]) -> Image.Image:
        """RGB image of the canvas region `box` = (x0, y0, x1, y1)."""
        uv = _pixel_centres(box) @ self.to_product[:, :2].T + self.to_product[:, 2]
        rgb = _pattern_rgb(self.garment, uv)
        if self.shaded:
            garment = self.garment
            side = np.clip((uv[..., 0] - garment.centre_x) / garment.half_width, -1.0, 1.0)
            rgb = rgb * (1.0 - 0.14 * side * side)[..., None]
        return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def _sample_garment(rng: np.random.Generator) -> _Garment:
    """A random T-shirt: pattern, colours, sleeve length, and its outline on the product image."""
    pattern = _PATTERNS[rng.integers(len(_PATTERNS))]
    hue = rng.uniform()
    ground = _hsv(hue, rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.85))
    figure = ground
    # Saturation >= 0.3 and value <= 0.88 keep every garment colour's luma <= 217, clearly off
    # the white product background (the mask is the non-white area).
    while pattern != "solid" and np.linalg.norm(figure - ground) < 90.0:
        figure = _hsv(hue + rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.9), rng.uniform(0.35, 0.88))
    long_sleeves = rng.uniform() < _LONG_SLEEVE_RATE

    centre_x = _WIDTH / 2 + rng.uniform(-3, 3)
    top = rng.uniform(26, 40)
    shoulder_half = rng.uniform(48, 56)
    armpit_half = rng.uniform(44, 50)
    armpit_y = top + rng.uniform(42, 52)
    hem_half = armpit_half + rng.uniform(-3, 4)
    hem_y = rng.uniform(208, 236)
    neck_half = rng.uniform(13, 18)
    neck_depth = rng.uniform(6, 22)
    if long_sleeves:
        sleeve_angle, sleeve_fraction, cuff = rng.uniform(9, 13), rng.uniform(0.9, 0.97), 10.0
    else:
        sleeve_angle, sleeve_fraction, cuff = rng.uniform(48, 62), rng.uniform(0.22, 0.34), 16.0
    sleeve_length = sleeve_fraction * _PRODUCT_ARM_LENGTH

    def corner(side: float, half: float, y: float) -> np.ndarray:
        return np.array([centre_x + side * half, y])

    sleeves, axes = {}, {}
    for name, side in _SIDES.items():
        shoulder, armpit = corner(side, shoulder_half, top), corner(side, armpit_half, armpit_y)
        root = (shoulder + armpit) / 2
        direction = _direction(side, math.radians(sleeve_angle))
        normal = np.array([-direction[1], direction[0]])
        normal *= np.sign(np.dot(shoulder - root, normal))
        end = root + sleeve_length * direction
        sleeves[name] = np.stack([shoulder, end + cuff * normal, end - cuff * normal, armpit])
        axes[name] = (root, direction, sleeve_length)

    neckline = _ellipse_points(np.array([centre_x, top - 3]), neck_half, neck_depth + 3,
                               0.0, math.pi, 12)
    right_side = [corner(-1, neck_half, top - 3), corner(-1, shoulder_half, top),
                  corner(-1, armpit_half, armpit_y), corner(-1, hem_half, hem_y)]
    left_side = [corner(1, x, y) for x, y in ((hem_half, hem_y), (armpit_half, armpit_y),
                                              (shoulder_half, top))]
    body = np.concatenate([np.stack(right_side + left_side), neckline])
    return _Garment(
        pattern=pattern,
        colours=np.stack([ground, figure]),
        # At least 28 product pixels: the pattern stays visible at the tiny configs' 64x48.
        period=rng.uniform(28, 44),
        share=rng.uniform(0.3, 0.5) if pattern != "dots" else rng.uniform(0.18, 0.3),
        phase=rng.uniform(0, 30, 2),
        sleeve_fraction=sleeve_fraction,
        hem_drop=2.0 + 0.5 * (hem_y - 208),
        neckline=(0.4 * neck_half, 0.4 * neck_depth + 2.0),
        body=body,
        sleeves=sleeves,
        sleeve_axes=axes,
        corners=np.stack([corner(-1, shoulder_half, top), corner(1, shoulder_half, top),
                          np.array([centre_x, hem_y])]),
        centre_x=centre_x,
        half_width=hem_half,
    )


def _sample_body(rng: np.random.Generator) -> _Body:
    """A random person: proportions in body units, skin/hair/pants/shoe colours, hair style."""
    head_rx = rng.uniform(13, 16)
    arm_width = rng.uniform(10, 12)
    leg_width = rng.uniform(14, 17)
    return _Body(
        shoulder_half=rng.uniform(24, 30),
        shoulder_drop=rng.uniform(2, 5),
        hip_half=rng.uniform(14, 19),
        torso=rng.uniform(78, 88),
        neck=rng.uniform(6, 10),
        neck_half=0.55 * head_rx,
        upper_arm=rng.uniform(40, 46),
        forearm=rng.uniform(36, 42),
        hand=rng.uniform(8, 10),
        arm_width=arm_width,
        thigh=rng.uniform(48, 54),
        shin=rng.uniform(46, 52),
        leg_width=leg_width,
        pants_width=leg_width + rng.uniform(3, 7),
        head_rx=head_rx,
        head_ry=head_rx * rng.uniform(1.2, 1.35),
        skin=_jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 8),
        hair=_jitter(rng, _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 10),
        pants=_jitter(rng, _PANTS_COLOURS[rng.integers(len(_PANTS_COLOURS))], 12),
        shoes=_jitter(rng, _SHOE_COLOURS[rng.integers(len(_SHOE_COLOURS))], 8),
        hair_style=_HAIR_STYLES[rng.integers(len(_HAIR_STYLES))],
        shorts=bool(rng.uniform() < _SHORTS_RATE),
    )


def _sample_poses(rng: np.random.Generator, body: _Body, count: int) -> list[_Pose]:
    """`count` poses whose arms clearly differ (some elbow or wrist moves at least
    `_MIN_ARM_SHIFT` body units between any two); some are framed closer, cropping the legs at
    the bottom edge."""
    names = tuple(_ARM_POSES)
    poses: list[_Pose] = []
    while len(poses) < count:
        arms = {}
        for side in _SIDES:
            (upper_lo, upper_hi), (bend_lo, bend_hi) = _ARM_POSES[names[rng.integers(len(names))]]
            arms[side] = (math.radians(rng.uniform(upper_lo, upper_hi)),
                          math.radians(rng.uniform(bend_lo, bend_hi)))
        legs = {side: (math.radians(rng.uniform(1, 12)), math.radians(rng.uniform(-4, 4)))
                for side in _SIDES}
        top_margin = rng.uniform(3, 10)
        fit_scale = (_HEIGHT - top_margin - 4.0) / (body.head_top + body.feet)
        cropped = rng.uniform() < _CROPPED_POSE_RATE
        scale = fit_scale * (rng.uniform(1.2, 1.5) if cropped else rng.uniform(0.9, 1.0))
        neck_xy = np.array([_WIDTH / 2 + rng.uniform(-8, 8),
                            top_margin + scale * body.head_top])
        candidate = _Pose(
            scale=scale,
            lean=math.radians(rng.uniform(-4, 4)),
            neck_xy=neck_xy,
            arms=arms,
            legs=legs,
            ears_missed={side: bool(rng.uniform() < _EAR_MISS_RATE) for side in _SIDES},
        )
        arm_joints = _arm_joints(body, candidate)
        if all(np.hypot(*(arm_joints - _arm_joints(body, pose)).T).max() >= _MIN_ARM_SHIFT
               for pose in poses):
            poses.append(candidate)
    return poses


def _arm_joints(body: _Body, pose: _Pose) -> np.ndarray:
    """(4, 2) elbows and wrists of `pose` in body units."""
    points = _skeleton(body, pose)
    return np.stack([points[f"{side}_{joint}"] for side in _SIDES for joint in ("elbow", "wrist")])


def _skeleton(body: _Body, pose: _Pose) -> dict[str, np.ndarray]:
    """Named points in body units, origin at the neck joint, x right, y down (before the pose's
    similarity): the 18 COCO joints plus the extra points the drawing needs."""
    points = {
        "neck": np.zeros(2),
        "head": np.array([0.0, -(body.neck + 0.85 * body.head_ry)]),
    }
    head = points["head"]
    points["nose"] = head + [0.0, 0.28 * body.head_ry]
    for side, sign in _SIDES.items():
        upper_angle, bend = pose.arms[side]
        thigh_angle, knee_bend = pose.legs[side]
        shoulder = np.array([sign * body.shoulder_half, body.shoulder_drop])
        elbow = shoulder + body.upper_arm * _direction(sign, upper_angle)
        wrist = elbow + body.forearm * _direction(sign, upper_angle + bend)
        hip = np.array([sign * body.hip_half, body.torso])
        knee = hip + body.thigh * _direction(sign, thigh_angle)
        points.update({
            f"{side}_shoulder": shoulder,
            f"{side}_elbow": elbow,
            f"{side}_wrist": wrist,
            f"{side}_hand": wrist + body.hand * _direction(sign, upper_angle + bend),
            f"{side}_hip": hip,
            f"{side}_knee": knee,
            f"{side}_ankle": knee + body.shin * _direction(sign, thigh_angle + knee_bend),
            f"{side}_eye": head + [sign * 0.36 * body.head_rx, -0.02 * body.head_ry],
            f"{side}_ear": head + [sign * 0.98 * body.head_rx, 0.05 * body.head_ry],
        })
    return points


def _to_image(pose: _Pose) -> Callable[[np.ndarray], np.ndarray]:
    """Maps body-unit points (..., 2) to image pixels: scale, lean about the neck, shift."""
    cos, sin = math.cos(pose.lean), math.sin(pose.lean)
    linear = pose.scale * np.array([[cos, -sin], [sin, cos]])
    return lambda points: np.asarray(points, float) @ linear.T + pose.neck_xy


def _polyline_prefix(points: np.ndarray, length: float) -> np.ndarray:
    """The first `length` (arc length) of the polyline `points` (N, 2)."""
    kept = [points[0]]
    for start, end in itertools.pairwise(points):
        step = float(np.hypot(*(end - start)))
        if length <= step:
            kept.append(start + (end - start) * (length / max(step, 1e-6)))
            break
        kept.append(end)
        length -= step
    return np.stack(kept)


def _draw_person(canvas: _PairCanvas, body: _Body, garment: _Garment, pose: _Pose) -> None:
    """Paints one photo of `body` wearing `garment` in `pose`, back to front, photo and labels
    together. Body geometry is built in body units and mapped to the image by the pose."""
    local = _skeleton(body, pose)
    to_image = _to_image(pose)
    s = pose.scale
    skin = body.skin
    face = _Paint(_LABEL["face"], skin)
    hair = _Paint(_LABEL["hair"], body.hair)
    head = local["head"]
    rx, ry = body.head_rx, body.head_ry

    if body.hair_style == "long":
        shoulder_y = body.shoulder_drop + 14.0
        crown = _ellipse_points(head, 1.22 * rx, 1.1 * ry, math.pi, 2 * math.pi, 16)
        panel = np.concatenate([crown, [[1.3 * rx, shoulder_y], [-1.3 * rx, shoulder_y]]])
        canvas.paint(_polygon(to_image(panel)), hair)

    # Legs start a little below the hip joints, inside the trousers' seat, so that their round
    # ends do not bulge beside the shirt; the seat widens from waist to crotch.
    thigh_tops = {side: local[f"{side}_hip"] + 0.3 * (local[f"{side}_knee"] - local[f"{side}_hip"])
                  for side in _SIDES}
    for side in _SIDES:
        leg = np.stack([thigh_tops[side], local[f"{side}_knee"], local[f"{side}_ankle"]])
        canvas.paint(_limb(to_image(leg), s * body.leg_width),
                     _Paint(_LABEL[f"{_SIDE_NAMES[side]}_leg"], skin))
    pants = _Paint(_LABEL["pants"], body.pants)
    hips = body.hip_half
    seat = hips + 0.5 * body.pants_width
    pelvis = np.array([[-hips - 2, body.torso - 10], [hips + 2, body.torso - 10],
                       [seat, body.torso + 18], [-seat, body.torso + 18]])
    canvas.paint(_polygon(to_image(pelvis)), pants)
    for side in _SIDES:
        hip, knee, ankle = local[f"{side}_hip"], local[f"{side}_knee"], local[f"{side}_ankle"]
        trouser = [thigh_tops[side]] + ([hip + 0.7 * (knee - hip)] if body.shorts
                                        else [knee, ankle])
        canvas.paint(_limb(to_image(np.stack(trouser)), s * body.pants_width), pants)
    for side, sign in _SIDES.items():
        shoe = _ellipse_points(local[f"{side}_ankle"] + [sign * 2.0, 4.0], 9.0, 5.5)
        canvas.paint(_polygon(to_image(shoe)),
                     _Paint(_LABEL[f"{_SIDE_NAMES[side]}_shoe"], body.shoes))

    neckline_half, neckline_depth = garment.neckline
    chin_y, neck_half = -body.neck - 0.3 * ry, body.neck_half
    neck = np.array([[-neck_half, chin_y], [neck_half, chin_y],
                     [neck_half, neckline_depth + 2], [-neck_half, neckline_depth + 2]])
    canvas.paint(_polygon(to_image(neck)), _Paint(NECK_LABEL, skin))

    sh, drop, torso = body.shoulder_half, body.shoulder_drop, body.torso
    hem_y = torso + garment.hem_drop
    right_side = [[-neckline_half - body.neck_half, -1], [-(sh + 2), drop - 3],
                  [-(sh - 3), drop + 22], [-(hips + 1), 0.62 * torso], [-(hips + 5), hem_y]]
    left_side = [[-x, y] for x, y in reversed(right_side[1:])]
    neckline = _ellipse_points(np.array([0.0, -1.0]), neckline_half + body.neck_half,
                               neckline_depth + 1, 0.0, math.pi, 10)
    shirt = np.concatenate([np.array(right_side + left_side), neckline])
    body_corners = to_image(np.array([[-(sh + 2), drop - 3], [sh + 2, drop - 3], [0, hem_y]]))
    torso_map = _affine_from_points(body_corners, garment.corners)
    upper_clothes = _LABEL["upper_clothes"]
    canvas.paint(_polygon(to_image(shirt)),
                 _Paint(upper_clothes, _Texture(garment, torso_map, shaded=True)))

    for side in _SIDES:
        arm_paint = _Paint(_LABEL[f"{_SIDE_NAMES[side]}_arm"], skin)
        arm = to_image(np.stack([local[f"{side}_shoulder"], local[f"{side}_elbow"],
                                 local[f"{side}_wrist"]]))
        canvas.paint(_limb(arm, s * body.arm_width), arm_paint)
        wrist, hand_tip = to_image(local[f"{side}_wrist"]), to_image(local[f"{side}_hand"])
        canvas.paint(_limb(np.stack([wrist, hand_tip]), s * body.arm_width * 1.1), arm_paint)
        arm_length = s * (body.upper_arm + body.forearm)
        sleeve = _polyline_prefix(arm, garment.sleeve_fraction * arm_length)
        root, direction, length = garment.sleeve_axes[side]
        scale_to_product = length / (garment.sleeve_fraction * arm_length)
        walked = 0.0
        for start, end in itertools.pairwise(sleeve):
            step = float(np.hypot(*(end - start)))
            sleeve_map = _similarity_from_segments(
                start, end, root + scale_to_product * walked * direction,
                root + scale_to_product * (walked + step) * direction)
            walked += step
            canvas.paint(_limb(np.stack([start, end]), s * (body.arm_width + 5)),
                         _Paint(upper_clothes, _Texture(garment, sleeve_map, shaded=False)))

    if body.hair_style != "long":
        for side in _SIDES:
            ear = _ellipse_points(local[f"{side}_ear"], 0.22 * rx, 0.3 * ry)
            canvas.paint(_polygon(to_image(ear)), face)
    canvas.paint(_polygon(to_image(_ellipse_points(head, rx, ry))), face)
    fringe = math.asin(-0.3)  # the cap ends 0.3 ry above the head centre, above the eyebrows
    cap = _ellipse_points(head + [0.0, -0.04 * ry], 1.1 * rx, 1.08 * ry,
                          math.pi - fringe, 2 * math.pi + fringe, 20)
    canvas.paint(_polygon(to_image(cap)), hair)
    if body.hair_style == "bun":
        bun = _ellipse_points(head + [0.0, -1.05 * ry], 0.45 * rx, 0.42 * rx)
        canvas.paint(_polygon(to_image(bun)), hair)

    # Facial features only change colours inside the face label.
    draw = canvas.rgb_draw
    for side in _SIDES:
        eye = to_image(local[f"{side}_eye"])
        r = 1.3 * s
        draw.ellipse((eye[0] - r, eye[1] - r, eye[0] + r, eye[1] + r), fill=(40, 30, 28))
        brow = to_image(local[f"{side}_eye"] + np.array([[-0.2 * rx, -0.16 * ry],
                                                         [0.2 * rx, -0.16 * ry]]))
        draw.line([tuple(p) for p in brow.tolist()], fill=body.hair, width=max(1, round(s)))
    mouth = to_image(head + np.array([[-0.28 * rx, 0.58 * ry], [0.28 * rx, 0.58 * ry]]))
    draw.line([tuple(p) for p in mouth.tolist()], fill=(150, 70, 70), width=max(1, round(s)))


def _keypoints(rng: np.random.Generator, body: _Body, pose: _Pose) -> list[float]:
    """OpenPose `pose_keypoints`: 18 x (x, y, confidence) in image pixels; joints off the frame
    (beyond a 2-px margin) or missed ears are (0, 0, 0)."""
    local = _skeleton(body, pose)
    to_image = _to_image(pose)
    values = []
    for name in KEYPOINTS:
        x, y = to_image(local[name]) + rng.normal(0.0, _KEYPOINT_NOISE_PX, 2)
        side, _, part = name.partition("_")
        missed = part == "ear" and (body.hair_style == "long" or pose.ears_missed[side])
        inside = (-_OFF_FRAME_MARGIN <= x < _WIDTH + _OFF_FRAME_MARGIN
                  and -_OFF_FRAME_MARGIN <= y < _HEIGHT + _OFF_FRAME_MARGIN)
        if missed or not inside:
            values += [0, 0, 0]
            continue
        on_frame = 0.0 <= x < _WIDTH and 0.0 <= y < _HEIGHT
        confidence = rng.uniform(0.35, 0.98) if on_frame else rng.uniform(0.31, 0.6)
        values += [round(float(x), 3), round(float(y), 3), round(float(confidence), 3)]
    return values


def _background(rng: np.random.Generator) -> Image.Image:
    """Light grey studio backdrop with a gentle gradient and sensor noise: (256, 192) RGB."""
    grid = _pixel_centres((0, 0, _WIDTH, _HEIGHT))
    slope = rng.uniform(-8, 8, 2)
    grey = (rng.uniform(212, 236) + slope[0] * (grid[..., 0] / _WIDTH - 0.5)
            + slope[1] * (grid[..., 1] / _HEIGHT - 0.5))
    rgb = grey[..., None] + rng.uniform(-3, 3, 3) + rng.normal(0.0, 2.0, (_HEIGHT, _WIDTH, 3))
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def _render_product(garment: _Garment) -> tuple[Image.Image, Image.Image]:
    """The garment laid flat on white: (RGB image, 'L' mask with 255 on the garment)."""
    canvas = _PairCanvas(Image.new("RGB", (_WIDTH, _HEIGHT), _WHITE),
                         Image.new("L", (_WIDTH, _HEIGHT), 0))
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    paint = _Paint(_MASK_FOREGROUND, _Texture(garment, identity, shaded=False))
    for outline in (*garment.sleeves.values(), garment.body):
        canvas.paint(_polygon(outline), paint)
    return canvas.rgb, canvas.labels


def _write_person(out_dir: Path, seed: int, index: int) -> tuple[list[str], str]:
    """Draws and writes person `index` (all poses, parsing, keypoints, clothes and mask).

    Returns:
      (pair-list paths of the person photos, pair-list path of the clothes image).
    """
    rng = np.random.default_rng([seed, index])
    pid = f"SYN{index:06d}"
    stem = f"{pid}-{'ACGKNOQ'[rng.integers(7)]}{rng.integers(1, 10)}1"
    garment = _sample_garment(rng)
    body = _sample_body(rng)
    poses = _sample_poses(rng, body, int(rng.integers(2, 4)))

    images = out_dir / "all" / pid
    parsing = out_dir / "all_parsing" / pid
    keypoints = out_dir / "all_person_clothes_keypoints" / pid
    for folder in (images, parsing, keypoints):
        folder.mkdir(parents=True, exist_ok=True)

    cloth = f"{stem}@0={_CLOTH_VIEW}"
    product, mask = _render_product(garment)
    product.save(images / f"{cloth}.jpg", "JPEG", quality=_JPEG_QUALITY)
    mask.save(images / f"{cloth}_mask.jpg", "JPEG", quality=_JPEG_QUALITY)

    palette = [channel for colour in LIP_PALETTE for channel in colour]
    photos = []
    for number, pose in enumerate(poses, start=1):
        name = f"{stem}@{number}={_PERSON_VIEW}"
        canvas = _PairCanvas(_background(rng), Image.new("P", (_WIDTH, _HEIGHT), 0))
        _draw_person(canvas, body, garment, pose)
        canvas.labels.putpalette(palette)
        canvas.rgb.save(images / f"{name}.jpg", "JPEG", quality=_JPEG_QUALITY)
        canvas.labels.save(parsing / f"{name}.png")
        person = {"pose_keypoints": _keypoints(rng, body, pose), "face_keypoints": [],
                  "hand_left_keypoints": [], "hand_right_keypoints": []}
        (keypoints / f"{name}_keypoints.json").write_text(
            json.dumps({"version": 1.0, "people": [person]}))
        photos.append(f"{pid}/{name}.jpg")
    return photos, f"{pid}/{cloth}.jpg"


def write_synthetic_mpv(out_dir: Path, num_people: int, seed: int = 0,
                        test_fraction: float = 0.2, progress: bool = False) -> dict[str, float]:
    """Writes a synthetic MPV data set (competition layout, see the module docstring).

    Person i is drawn from `np.random.default_rng([seed, i])` only, so its files do not depend on
    `num_people` or on other people; the same arguments give byte-identical files.

    Args:
      out_dir: root directory (created if missing).
      num_people: number of people (one garment each; 2 or 3 poses each).
      seed: non-negative integer seed.
      test_fraction: share of people (rounded) whose pairs are marked `test`.
      progress: show a tqdm progress bar.
    Returns:
      {"people", "images" (person photos), "pairs_train", "pairs_test", "seconds"}.
    """
    if num_people < 1:
        raise ValueError(f"num_people must be >= 1, got {num_people}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_rng = np.random.default_rng([seed, num_people, _SPLIT_STREAM])
    num_test = int(round(test_fraction * num_people))
    test_people = set(split_rng.choice(num_people, size=num_test, replace=False).tolist())

    lines, num_images, num_pairs = [], 0, {"train": 0, "test": 0}
    for index in tqdm(range(num_people), desc="synthetic MPV", unit="person",
                      disable=not progress):
        photos, cloth = _write_person(out_dir, seed, index)
        split = "test" if index in test_people else "train"
        for pose_a, pose_b in itertools.combinations(photos, 2):
            lines.append(f"{pose_a}\t{pose_b}\t{cloth}\t{split}\n")
            num_pairs[split] += 1
        num_images += len(photos)
    (out_dir / _PAIR_LIST).write_text("".join(lines))
    return {"people": num_people, "images": num_images, "pairs_train": num_pairs["train"],
            "pairs_test": num_pairs["test"], "seconds": time.perf_counter() - start}


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: writes the data set and prints a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--people", type=int, required=True, help="number of people")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    args = parser.parse_args(argv)
    summary = write_synthetic_mpv(args.out, args.people, args.seed, args.test_fraction,
                                  progress=True)
    rate = 60.0 * summary["people"] / max(summary["seconds"], 1e-9)
    print(f"people {summary['people']}  images {summary['images']}  pairs train/test "
          f"{summary['pairs_train']}/{summary['pairs_test']}  seconds {summary['seconds']:.1f}  "
          f"({rate:.0f} people/minute) -> {args.out}")


if __name__ == "__main__":
    main()
