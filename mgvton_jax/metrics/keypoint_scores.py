"""Keypoint scores of a pose estimator against annotations: PCK, missed and invented joints.

PCK@a (percentage of correct keypoints): an annotated joint counts as correct when the
estimate has it present within a * torso size of the annotation, where the torso size is the
annotation's distance from the neck to the midpoint of the hips (a person without an
annotated neck or both hips has none, and is left out of PCK). A joint annotated but not
estimated is missed (and not correct); one estimated but not annotated is invented.

Per-person counts (`keypoint_counts`) add up over a test set; `keypoint_scores` turns the sums
into shares. NumPy, keypoints (18, 3) float x, y, confidence with missing joints 0, 0, 0.
"""

from __future__ import annotations

import numpy as np

from mgvton_jax import constants
from mgvton_jax.data.representation import joint_visible

PCK_THRESHOLDS = (0.1, 0.2)
NECK = constants.KEYPOINTS.index("neck")
HIPS = (constants.KEYPOINTS.index("r_hip"), constants.KEYPOINTS.index("l_hip"))
COUNTS = ("annotated", "not_annotated", "missed", "invented", "with_torso",
          *(f"correct@{a}" for a in PCK_THRESHOLDS))


def torso_size(keypoints: np.ndarray) -> float:
    """Distance from the neck to the midpoint of the hips; NaN without all three."""
    present = joint_visible(keypoints)
    if not (present[NECK] and present[list(HIPS)].all()):
        return float("nan")
    hips = keypoints[list(HIPS), :2].mean(axis=0)
    return float(np.linalg.norm(keypoints[NECK, :2] - hips))


def keypoint_counts(estimated: np.ndarray, annotated: np.ndarray) -> dict[str, np.ndarray]:
    """{count: (18,) int64} of one person: see `COUNTS`; "with_torso" and "correct@a" count
    annotated joints of a person with a torso size only."""
    truth, found = joint_visible(annotated), joint_visible(estimated)
    size = torso_size(annotated)
    distance = np.linalg.norm(estimated[:, :2] - annotated[:, :2], axis=1)
    scored = truth & bool(np.isfinite(size))
    counts = {"annotated": truth, "not_annotated": ~truth, "missed": truth & ~found,
              "invented": found & ~truth, "with_torso": scored}
    for a in PCK_THRESHOLDS:
        counts[f"correct@{a}"] = scored & found & (distance <= a * size)
    return {key: value.astype(np.int64) for key, value in counts.items()}


def _share(part: np.ndarray, whole: np.ndarray) -> float | None:
    return float(part.sum() / whole.sum()) if whole.sum() else None


def keypoint_scores(sums: dict[str, np.ndarray]) -> dict:
    """Scores of `keypoint_counts` summed over people: pck@a, missed (share of annotated
    joints), invented (share of joints not annotated), each over all joints and per joint
    name (None where nothing was counted, e.g. a joint never annotated), and how often each
    joint is annotated."""
    scores: dict = {}
    for a in PCK_THRESHOLDS:
        correct, total = sums[f"correct@{a}"], sums["with_torso"]
        scores[f"pck@{a}"] = _share(correct, total)
        scores[f"pck@{a}_per_joint"] = {
            name: _share(correct[j], total[j]) for j, name in enumerate(constants.KEYPOINTS)}
    for kind, whole in (("missed", "annotated"), ("invented", "not_annotated")):
        scores[kind] = _share(sums[kind], sums[whole])
        scores[f"{kind}_per_joint"] = {
            name: _share(sums[kind][j], sums[whole][j])
            for j, name in enumerate(constants.KEYPOINTS)}
    scores["annotated_per_joint"] = {name: int(sums["annotated"][j])
                                     for j, name in enumerate(constants.KEYPOINTS)}
    return scores
