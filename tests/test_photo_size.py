"""The composition at the photo's size: known answers on small label maps, PIL as reference."""

import numpy as np
from PIL import Image

from mgvton_jax import photo_size


def test_keep_mask_keeps_agreeing_labels_other_than_clothes_and_arms():
    photo = np.array([[0, 0, 2, 2],
                      [13, 5, 5, 14],
                      [9, 9, 6, 15],
                      [18, 0, 7, 0]], np.uint8)
    generated = np.array([[0, 2],
                          [9, 0]], np.uint8)  # each label covers a 2x2 block once upsampled
    keep = photo_size.keep_mask(photo, generated, (5, 6, 7))
    expected = np.array([[1, 1, 1, 1],
                         [0, 0, 0, 0],
                         [1, 1, 0, 0],
                         [0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(keep, expected)


def test_compose_takes_the_photo_where_kept_and_the_bicubic_result_elsewhere():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    result = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    keep = rng.random((8, 6)) < 0.5
    composed = photo_size.compose(photo, result, keep)
    upsampled = np.asarray(Image.fromarray(result).resize((6, 8), Image.BICUBIC))
    np.testing.assert_array_equal(composed[keep], photo[keep])
    np.testing.assert_array_equal(composed[~keep], upsampled[~keep])


def test_pasted_puts_the_upsampled_clothes_where_the_nearest_mask_is_on():
    background = np.full((4, 4, 3), 128, np.uint8)
    clothes = np.zeros((2, 2, 3), np.uint8)
    clothes[..., 0] = 200
    mask = np.array([[1, 0], [0, 0]], np.uint8)
    out = photo_size.pasted(background, clothes, mask)
    assert (out[:2, :2, 0] == 200).all() and (out[:2, :2, 1:] == 0).all()
    assert (out[2:] == 128).all() and (out[:2, 2:] == 128).all()
