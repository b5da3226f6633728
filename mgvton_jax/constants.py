"""The facts every module shares: image size, LIP labels, COCO-18 keypoints.

Nothing else in the package repeats these numbers; import them from here.
"""

from __future__ import annotations

# Image size of MPV and VITON, (height, width).
IMAGE_HEIGHT = 256
IMAGE_WIDTH = 192
IMAGE_SIZE = (IMAGE_HEIGHT, IMAGE_WIDTH)

# Body-shape mask: parsing > 0 downsampled to this size (VITON's 16x12), then resized back.
BODY_SHAPE_SIZE = (16, 12)

# Radius in pixels of the filled disc drawn per keypoint in a pose heatmap (paper).
POSE_DISC_RADIUS = 4

# LIP human parsing, 20 labels (index -> name).
LIP_LABELS = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left_arm", "right_arm",
    "left_leg", "right_leg", "left_shoe", "right_shoe",
)
# CIHP parsings (the JDAI MPV release) use the same ids; only id 10 differs (torso skin, not
# jumpsuits), and no rule here treats id 10 specially, so both are read alike (docs/design.md).
NUM_LABELS = len(LIP_LABELS)

# LIP colour table (RGB per label), for pictures only: label PNGs are read as indices.
LIP_PALETTE = (
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0),
    (0, 0, 255), (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0),
    (255, 170, 0),
)

# Label groups.
HAIR_LABELS = (2,)
FACE_LABELS = (13,)
CLOTHES_LABELS = (5, 6, 7)  # upper clothes, dress, coat: what the try-on replaces
NECK_LABEL = 10  # CIHP torso skin: the neck in the JDAI MPV parsings (real-samples README)
LABEL_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))  # left/right arm, leg, shoe

# OpenPose COCO-18 keypoints, in file order.
KEYPOINTS = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear",
    "l_ear",
)
NUM_KEYPOINTS = len(KEYPOINTS)
KEYPOINT_FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))
# Limbs (keypoint index pairs) drawn in pose pictures.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)


def flip_permutation(num: int, pairs: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """Index permutation that swaps each (left, right) pair and keeps the rest."""
    perm = list(range(num))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


LABEL_FLIP_PERMUTATION = flip_permutation(NUM_LABELS, LABEL_FLIP_PAIRS)
KEYPOINT_FLIP_PERMUTATION = flip_permutation(NUM_KEYPOINTS, KEYPOINT_FLIP_PAIRS)
