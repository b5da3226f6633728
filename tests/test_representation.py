"""Pose heatmaps, masks, body shape and flips against hand-derived answers and PIL."""


import numpy as np
import pytest
from PIL import Image
from real_samples import JDAI, needs_real_samples

from mgvton_jax import constants
from mgvton_jax.data import readers
from mgvton_jax.data import representation as rep

JDAI_PARSINGS = ("1LJ21D005-G11@10=person_half_front.png", "1VJ21D02K-Q11@8=person_half_front.png",
                 "4HI21D003-C11@10=person_half_front.png", "A0F21D012-K11@8=person_half_front.png",
                 "FIE21D00C-A11@9=person_whole_back.png")


def _keypoints(*joints):
    """(18, 3) with the given (index, x, y) joints present (confidence 0.9)."""
    kp = np.zeros((constants.NUM_KEYPOINTS, 3), np.float32)
    for index, x, y in joints:
        kp[index] = (x, y, 0.9)
    return kp


def test_heatmap_is_the_hand_derived_disc():
    maps = rep.pose_heatmaps(_keypoints((3, 50.3, 60.7)))
    assert maps.shape == (256, 192, 18) and maps.dtype == np.float32
    expected = np.zeros((256, 192), np.float32)
    # Rounded centre (x 50, y 61); rows 57..65 hold 1, 5, 7, 7, 9, 7, 7, 5, 1 pixels.
    for dy, half in zip(range(-4, 5), (0, 2, 3, 3, 4, 3, 3, 2, 0), strict=True):
        expected[61 + dy, 50 - half:50 + half + 1] = 1
    np.testing.assert_array_equal(maps[..., 3], expected)
    assert maps[..., 3].sum() == 49
    assert maps[..., np.arange(18) != 3].sum() == 0


@pytest.mark.parametrize("x, y, conf", [(0, 0, 0), (50, 60, 0.0), (1.0, 60, 0.8), (50, 0.9, 0.8)])
def test_missing_joint_gives_empty_channel(x, y, conf):
    kp = np.zeros((18, 3), np.float32)
    kp[0] = (x, y, conf)
    assert rep.pose_heatmaps(kp).sum() == 0


@needs_real_samples
def test_disc_outside_the_image_is_cut_not_clamped():
    # Real JDAI file: joint 12 (LKnee) at y = 257.617, below the 256-row image.
    path = JDAI / "pose_coco" / "4BE21D0A2-C11@8=person_half_front_keypoints.json"
    kp = readers.read_keypoints(path).keypoints
    assert kp[12, 1] > 256
    channel = rep.pose_heatmaps(kp)[..., 12]
    rows = np.nonzero(channel)[0]
    assert channel.sum() == 6 and set(rows.tolist()) == {254, 255}


def test_heatmaps_follow_image_size():
    maps = rep.pose_heatmaps(_keypoints((0, 10.2, 20.4)), image_hw=(64, 48), radius=2)
    assert maps.shape == (64, 48, 18)
    assert maps[20, 10, 0] == 1 and maps[20, 13, 0] == 0 and maps[..., 0].sum() == 13


def test_scale_keypoints_maps_pixel_centres():
    kp = _keypoints((1, 10.0, 20.0))
    scaled = rep.scale_keypoints(kp, source_hw=(512, 384), target_hw=(256, 192))
    np.testing.assert_allclose(scaled[1, :2], [(10.5) / 2 - 0.5, 20.5 / 2 - 0.5])
    assert scaled[1, 2] == pytest.approx(0.9)
    np.testing.assert_array_equal(scaled[0], 0)


def _pil_body_shape(parsing):
    person = Image.fromarray(((parsing > 0) * 255).astype(np.uint8))
    small = person.resize((12, 16), Image.BILINEAR)
    return np.asarray(small.resize((192, 256), Image.BILINEAR), np.float32) / 255


@needs_real_samples
@pytest.mark.parametrize("name", JDAI_PARSINGS)
def test_body_shape_matches_pil_on_real_parsing(name):
    parsing = readers.read_parsing(JDAI / "parse_cihp" / name)
    ours = rep.body_shape_mask(parsing)
    assert ours.shape == (256, 192, 1) and ours.min() >= 0 and ours.max() <= 1
    # PIL rounds to uint8 after each of its two resizes: about 1/255 each.
    np.testing.assert_allclose(ours[..., 0], _pil_body_shape(parsing), atol=2.0 / 255)


def test_body_shape_matches_pil_on_random_blobs():
    rng = np.random.default_rng(0)
    parsing = (rng.random((256, 192)) < 0.3).astype(np.uint8) * 5
    parsing[40:200, 50:140] = 13
    np.testing.assert_allclose(rep.body_shape_mask(parsing)[..., 0], _pil_body_shape(parsing),
                               atol=2.0 / 255)


def test_label_masks_and_one_hot():
    parsing = np.array([[0, 2, 13], [5, 6, 7]], np.uint8)
    np.testing.assert_array_equal(rep.label_mask(parsing, constants.HAIR_LABELS)[..., 0],
                                  [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(rep.label_mask(parsing, constants.CLOTHES_LABELS)[..., 0],
                                  [[0, 0, 0], [1, 1, 1]])
    one_hot = rep.one_hot_parsing(parsing)
    assert one_hot.shape == (2, 3, 20)
    np.testing.assert_array_equal(one_hot.argmax(-1), parsing)
    np.testing.assert_array_equal(one_hot.sum(-1), 1)


def test_remove_clothes_only_touches_clothes_labels():
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (4, 5, 3)).astype(np.float32)
    parsing = rng.integers(0, 20, (4, 5)).astype(np.uint8)
    removed = rep.remove_clothes(image, parsing)
    clothes = np.isin(parsing, (5, 6, 7))
    np.testing.assert_array_equal(removed[clothes], 0)
    np.testing.assert_array_equal(removed[~clothes], image[~clothes])
    only_coat = rep.remove_clothes(image, parsing, labels=(7,), fill=-1.0)
    np.testing.assert_array_equal(only_coat[parsing == 7], -1)
    np.testing.assert_array_equal(only_coat[parsing == 5], image[parsing == 5])


def test_flip_twice_is_identity():
    rng = np.random.default_rng(2)
    parsing = rng.integers(0, 20, (256, 192)).astype(np.uint8)
    kp = _keypoints(*[(j, rng.uniform(20, 170), rng.uniform(20, 230)) for j in range(18)])
    kp[9] = 0
    np.testing.assert_array_equal(rep.flip_parsing(rep.flip_parsing(parsing)), parsing)
    np.testing.assert_allclose(rep.flip_keypoints(rep.flip_keypoints(kp, 192), 192), kp,
                               atol=1e-4)


def test_flipped_parsing_swaps_left_and_right():
    parsing = np.zeros((2, 4), np.uint8)
    parsing[0, 0], parsing[1, 3], parsing[0, 2] = 14, 19, 5  # left arm, right shoe, clothes
    flipped = rep.flip_parsing(parsing)
    assert flipped[0, 3] == 15 and flipped[1, 0] == 18 and flipped[0, 1] == 5


def test_flipped_keypoints_land_on_flipped_pixels():
    rng = np.random.default_rng(3)
    kp = _keypoints(*[(j, rng.uniform(10, 180), rng.uniform(10, 245)) for j in range(18)])
    kp[16] = 0  # a missing joint stays missing
    maps = rep.pose_heatmaps(kp)
    flipped_maps = rep.pose_heatmaps(rep.flip_keypoints(kp, 192))
    expected = maps[:, ::-1][..., list(constants.KEYPOINT_FLIP_PERMUTATION)]
    np.testing.assert_array_equal(flipped_maps, expected)
    # r_shoulder (2) becomes l_shoulder (5) at the mirrored column
    np.testing.assert_allclose(rep.flip_keypoints(kp, 192)[5, :2], [191 - kp[2, 0], kp[2, 1]])
    assert flipped_maps[..., 17].sum() == 0


@needs_real_samples
@pytest.mark.parametrize("name", JDAI_PARSINGS)
def test_cihp_parsings_read_as_lip_ids(name):
    # JDAI's CIHP label 10 is torso skin (LIP: jumpsuits). No rule uses id 10: the skin stays
    # in the clothes-free reference and counts as person in the body shape; the clothes go.
    parsing = readers.read_parsing(JDAI / "parse_cihp" / name)
    image = np.asarray(Image.open(JDAI / "images" / name.replace(".png", ".jpg")), np.float32)
    image = image / 127.5 - 1.0
    skin, clothes = parsing == 10, np.isin(parsing, constants.CLOTHES_LABELS)
    assert skin.sum() > 100 and clothes.sum() > 1000
    removed = rep.remove_clothes(image, parsing)
    np.testing.assert_array_equal(removed[skin], image[skin])
    assert np.all(removed[clothes] == 0)
    assert rep.body_shape_mask(parsing)[skin].mean() > 0.5
