"""Tests of the synthetic MPV generator: layout, determinism, and that pixels, parsing, keypoints
and the product image agree (checked with PIL, NumPy and SciPy, not with the generator)."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mgvton_jax.constants import (
    IMAGE_SIZE,
    KEYPOINTS,
    LIP_LABELS,
    LIP_PALETTE,
    NECK_LABEL,
    NUM_LABELS,
)
from mgvton_jax.data import synth

NUM_PEOPLE = 6
SEED = 0
HEIGHT, WIDTH = IMAGE_SIZE
PAIR_LIST = "all_poseA_poseB_clothes.txt"
PERSON_NAME = re.compile(r"^(SYN\d{6})-[A-Z]\d{2}@([123])=person_whole_front\.jpg$")
CLOTH_NAME = re.compile(r"^(SYN\d{6})-[A-Z]\d{2}@0=cloth_front\.jpg$")
LABEL = {name: index for index, name in enumerate(LIP_LABELS)}


def _labels(*names: str) -> set[int]:
    return {LABEL[name] for name in names}


# Where each joint must land, by the parsing label under it. Arms may cross (a wrist can be
# covered by the other forearm); long sleeves can reach over wrists; the neck joint is on neck
# skin, label 10 as in the JDAI MPV parsings (CIHP torso skin).
ALLOWED_LABELS = {
    "nose": _labels("face"), "neck": {NECK_LABEL}, "r_eye": _labels("face"),
    "l_eye": _labels("face"), "r_ear": _labels("face"), "l_ear": _labels("face"),
    "r_shoulder": _labels("upper_clothes"), "l_shoulder": _labels("upper_clothes"),
    "r_hip": _labels("upper_clothes"), "l_hip": _labels("upper_clothes"),
    "r_elbow": _labels("right_arm", "upper_clothes"),
    "l_elbow": _labels("left_arm", "upper_clothes"),
    "r_wrist": _labels("right_arm", "left_arm", "upper_clothes"),
    "l_wrist": _labels("right_arm", "left_arm", "upper_clothes"),
    "r_knee": _labels("right_leg", "pants"), "l_knee": _labels("left_leg", "pants"),
    "r_ankle": _labels("right_shoe", "right_leg", "pants"),
    "l_ankle": _labels("left_shoe", "left_leg", "pants"),
}
ALWAYS_VISIBLE = ("nose", "neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip", "r_eye", "l_eye")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "mpv"
    summary = synth.write_synthetic_mpv(root, NUM_PEOPLE, seed=SEED)
    return root, summary


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _people(root: Path) -> dict[str, list[Path]]:
    """PID -> its person photos (sorted)."""
    return {d.name: sorted(d.glob("*=person_whole_front.jpg")) for d in sorted(root.glob("all/*"))}


def _cloth(root: Path, pid: str) -> Path:
    (path,) = (root / "all" / pid).glob("*=cloth_front.jpg")
    return path


def _parsing(root: Path, photo: Path) -> np.ndarray:
    return np.asarray(Image.open(root / "all_parsing" / photo.parent.name / f"{photo.stem}.png"))


def _keypoint_file(root: Path, photo: Path) -> Path:
    folder = root / "all_person_clothes_keypoints" / photo.parent.name
    return folder / f"{photo.stem}_keypoints.json"


def _keypoints(root: Path, photo: Path) -> np.ndarray:
    person = json.loads(_keypoint_file(root, photo).read_text())["people"][0]
    return np.asarray(person["pose_keypoints"], np.float64).reshape(-1, 3)


def test_layout_and_pair_list(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    people = _people(root)
    assert len(people) == NUM_PEOPLE
    for pid, photos in people.items():
        assert len(photos) in (2, 3)
        assert [int(PERSON_NAME.match(p.name)[2]) for p in photos] == list(
            range(1, len(photos) + 1))
        assert all(PERSON_NAME.match(p.name)[1] == pid for p in photos)
        assert CLOTH_NAME.match(_cloth(root, pid).name)[1] == pid
        assert (root / "all" / pid / f"{_cloth(root, pid).stem}_mask.jpg").is_file()

    text = (root / PAIR_LIST).read_text()
    assert text.endswith("\n") and "\r" not in text
    lines = [line.split("\t") for line in text.splitlines()]
    assert all(len(columns) == 4 for columns in lines)
    splits, pair_count = defaultdict(set), defaultdict(int)
    for pose_a, pose_b, cloth, split in lines:
        pid = pose_a.split("/")[0]
        assert {pose_b.split("/")[0], cloth.split("/")[0]} == {pid}
        assert pose_a != pose_b and cloth == f"{pid}/{_cloth(root, pid).name}"
        for photo in (root / "all" / pose_a, root / "all" / pose_b):
            assert photo.is_file()
            assert (root / "all_parsing" / pid / f"{photo.stem}.png").is_file()
            assert _keypoints(root, photo).shape == (18, 3)
        splits[pid].add(split)
        pair_count[pid] += 1
    # Every unordered pair of a person's poses, once; one split per person.
    assert {pid: math.comb(len(p), 2) for pid, p in people.items()} == dict(pair_count)
    assert all(len(s) == 1 for s in splits.values())
    test_people = [pid for pid, s in splits.items() if s == {"test"}]
    assert len(test_people) == round(0.2 * NUM_PEOPLE)
    assert summary["people"] == NUM_PEOPLE
    assert summary["images"] == sum(len(p) for p in people.values())
    assert summary["pairs_test"] == sum(pair_count[pid] for pid in test_people)
    assert summary["pairs_train"] + summary["pairs_test"] == len(lines)


def test_same_seed_same_bytes_other_seed_differs(dataset: tuple[Path, dict],
                                                 tmp_path: Path) -> None:
    root, _ = dataset
    synth.write_synthetic_mpv(tmp_path / "again", NUM_PEOPLE, seed=SEED)
    assert _files(tmp_path / "again") == _files(root)
    # Person i depends on (seed, i) only: a smaller data set repeats the first people's files.
    synth.write_synthetic_mpv(tmp_path / "fewer", 2, seed=SEED)
    fewer = {k: v for k, v in _files(tmp_path / "fewer").items() if k != PAIR_LIST}
    assert fewer and all(_files(root)[k] == v for k, v in fewer.items())
    synth.write_synthetic_mpv(tmp_path / "other", NUM_PEOPLE, seed=SEED + 1)
    other = _files(tmp_path / "other")
    common = set(other) & set(_files(root))
    assert all(other[k] != _files(root)[k] for k in common if k.endswith(".jpg"))


def test_image_modes_sizes_and_labels(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    palette = [channel for colour in LIP_PALETTE for channel in colour]
    for pid, photos in _people(root).items():
        cloth = Image.open(_cloth(root, pid))
        mask = Image.open(root / "all" / pid / f"{_cloth(root, pid).stem}_mask.jpg")
        assert (cloth.format, cloth.mode, cloth.size) == ("JPEG", "RGB", (WIDTH, HEIGHT))
        assert (mask.format, mask.mode, mask.size) == ("JPEG", "L", (WIDTH, HEIGHT))
        for photo in photos:
            image = Image.open(photo)
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (WIDTH, HEIGHT))
            assert not image.info.get("progressive")
            parsing_file = Image.open(root / "all_parsing" / pid / f"{photo.stem}.png")
            assert parsing_file.mode == "P" and parsing_file.size == (WIDTH, HEIGHT)
            assert parsing_file.getpalette()[: len(palette)] == palette
            labels = np.asarray(parsing_file)
            assert labels.max() < NUM_LABELS
            present = set(np.unique(labels).tolist())
            assert _labels("background", "hair", "face", "upper_clothes", "pants") <= present
            assert NECK_LABEL in present
            assert present & _labels("left_arm", "right_arm")


def test_keypoints_format_and_agreement_with_parsing(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for photos in _people(root).values():
        for photo in photos:
            document = json.loads(_keypoint_file(root, photo).read_text())
            assert document["version"] == 1.0 and len(document["people"]) == 1
            person = document["people"][0]
            assert len(person["pose_keypoints"]) == 3 * len(KEYPOINTS)
            for key in ("face_keypoints", "hand_left_keypoints", "hand_right_keypoints"):
                assert person[key] == []
            keypoints, labels = _keypoints(root, photo), _parsing(root, photo)
            for index, name in enumerate(KEYPOINTS):
                x, y, confidence = keypoints[index]
                if confidence == 0:
                    assert x == 0 and y == 0 and name not in ALWAYS_VISIBLE
                    continue
                assert 0.3 < confidence <= 1.0
                assert -2 <= x < WIDTH + 2 and -2 <= y < HEIGHT + 2  # OpenPose-like margin
                column, row = math.floor(x), math.floor(y)
                if 0 <= column < WIDTH and 0 <= row < HEIGHT:
                    assert labels[row, column] in ALLOWED_LABELS[name], (photo.name, name)
            # Front view: the person's left side is on the image right.
            joint = {name: keypoints[i] for i, name in enumerate(KEYPOINTS)}
            assert joint["l_shoulder"][0] > joint["r_shoulder"][0]
            assert joint["l_hip"][0] > joint["r_hip"][0]
            assert joint["l_eye"][0] > joint["r_eye"][0]


def test_some_poses_crop_the_legs(tmp_path: Path) -> None:
    # 0.35 of poses are framed close: among 30 people some ankles must be missing, some not.
    synth.write_synthetic_mpv(tmp_path, 30, seed=SEED)
    ankles = [KEYPOINTS.index("r_ankle"), KEYPOINTS.index("l_ankle")]
    visible = [(_keypoints(tmp_path, photo)[ankles, 2] > 0).all()
               for photos in _people(tmp_path).values() for photo in photos]
    assert 0 < sum(visible) < len(visible)


def test_poses_of_a_person_clearly_differ(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for photos in _people(root).values():
        for first, second in itertools.combinations(photos, 2):
            a, b = _keypoints(root, first), _keypoints(root, second)
            both = (a[:, 2] > 0) & (b[:, 2] > 0)
            # Detector-like jitter is 0.5 px; an arm pose change moves a joint by tens.
            assert np.hypot(*(a[both, :2] - b[both, :2]).T).max() > 10.0


def _eroded_mean(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # 2 px erosion drops the darkened part rims and JPEG chroma bleeding at the edges.
    return image[ndimage.binary_erosion(mask, iterations=2)].astype(np.float64).mean(axis=0)


def test_worn_garment_has_product_colours(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    people = _people(root)
    product_means, worn_means = [], []
    for pid, photos in people.items():
        product = np.asarray(Image.open(_cloth(root, pid)))
        mask = np.asarray(Image.open(root / "all" / pid / f"{_cloth(root, pid).stem}_mask.jpg"))
        product_means.append(_eroded_mean(product, mask >= 128))
        worn = [np.asarray(Image.open(p))[ndimage.binary_erosion(
            _parsing(root, p) == LABEL["upper_clothes"], iterations=2)] for p in photos]
        worn_means.append(np.concatenate(worn).astype(np.float64).mean(axis=0))
    distances = np.abs(np.array(worn_means)[:, None] - np.array(product_means)[None]).max(-1)
    # Tolerance 20 grey levels per channel: the torso is shaded by up to 14 % towards its sides
    # (about 5 % on average: <= 12 levels) and the worn garment shows a different crop of the
    # pattern than the flat one (stripe/dot shares differ by a few %).
    assert np.diag(distances).max() < 20.0, np.diag(distances)
    # The clothes image predicts the garment: each person's nearest product is their own.
    assert (distances.argmin(axis=1) == np.arange(len(people))).all(), distances


def test_patterns_keep_their_contrast_at_the_tiny_size(tmp_path: Path) -> None:
    # The tiny configs see 64x48: a stripe period of a few product pixels would average away.
    synth.write_synthetic_mpv(tmp_path, 24, seed=1)
    kept = []
    for cloth in sorted(tmp_path.glob("all/*/*=cloth_front.jpg")):
        grey = Image.open(cloth).convert("L")
        mask = Image.open(cloth.with_name(cloth.stem + "_mask.jpg"))
        full_std = np.asarray(grey, float)[np.asarray(mask) > 128].std()
        if full_std < 10:  # a solid garment
            continue
        small = np.asarray(grey.resize((48, 64), Image.BOX), float)
        inside = np.asarray(mask.resize((48, 64), Image.BOX)) > 250
        kept.append(small[inside].std() / full_std)
    assert len(kept) >= 10 and np.median(kept) > 0.85, np.round(sorted(kept), 2)


def test_cloth_mask_covers_the_non_white_product(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for pid in _people(root):
        product = Image.open(_cloth(root, pid))
        mask = np.asarray(Image.open(root / "all" / pid / f"{_cloth(root, pid).stem}_mask.jpg"))
        # Luma, because JPEG keeps it at full resolution (chroma is subsampled and bleeds).
        garment = np.asarray(product.convert("L")) < 240
        foreground = mask >= 128
        iou = (garment & foreground).sum() / (garment | foreground).sum()
        assert iou > 0.95, (pid, iou)
        assert ((mask < 30) | (mask > 225)).mean() > 0.97  # binary up to JPEG noise
        corners = np.asarray(product)[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners >= 250).all()  # pure white background
        # T-shirt outline: the sleeves stick out. The body alone is at most 1.37x wider at the
        # shoulders than at the hem; short or long sleeves make some row >= 1.5x the hem.
        rows = np.flatnonzero(foreground.any(axis=1))
        spans = [np.ptp(np.flatnonzero(foreground[row])) + 1 for row in rows]
        assert max(spans) > 1.45 * spans[-4]


def test_person_background_is_light_grey(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for photos in _people(root).values():
        for photo in photos:
            background = _parsing(root, photo) == LABEL["background"]
            mean = _eroded_mean(np.asarray(Image.open(photo)), background)
            assert (200 < mean).all() and (mean < 250).all() and np.ptp(mean) < 10


def test_cli_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth.main(["--out", str(tmp_path), "--people", "2", "--seed", "3", "--test-fraction", "0.5"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("people 2  images ")
    assert re.search(r"pairs train/test \d+/\d+  seconds ", line)
    splits = [row.split("\t")[3] for row in (tmp_path / PAIR_LIST).read_text().splitlines()]
    assert set(splits) == {"train", "test"}


@pytest.mark.parametrize("kwargs", [{"num_people": 0}, {"num_people": 2, "seed": -1},
                                    {"num_people": 2, "test_fraction": 1.5}])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        synth.write_synthetic_mpv(tmp_path, **kwargs)
