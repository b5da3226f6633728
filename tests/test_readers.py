"""Readers on the real MPV/VITON sample files and on broken files."""

import json

import numpy as np
import pytest
from PIL import Image
from real_samples import APP, JDAI, VITON, needs_real_samples

from mgvton_jax.data import readers


def _missing(path):
    kp = readers.read_keypoints(path).keypoints
    return set(np.nonzero(kp[:, 2] == 0)[0].tolist())


@needs_real_samples
def test_jdai_keypoints_pose_keypoints_2d():
    files = sorted((JDAI / "pose_coco").glob("*_keypoints.json"))
    assert len(files) == 10
    for path in files:
        read = readers.read_keypoints(path)
        assert read.people == 1 and read.keypoints.shape == (18, 3)
        assert read.keypoints.dtype == np.float32
    # Missing-joint sets measured on these files (real-samples README).
    assert _missing(JDAI / "pose_coco" / "EV421EA51-A11@9=person_whole_front_keypoints.json") \
        == set()
    assert _missing(JDAI / "pose_coco" / "FIE21D00C-A11@9=person_whole_back_keypoints.json") \
        == {15, 17}
    half = [_missing(p) for p in files if "half" in p.name]
    assert sum(m == {9, 10, 12, 13} for m in half) == 6


@needs_real_samples
def test_viton_keypoints_older_key_and_trailing_space():
    path = VITON / "test" / "pose" / "000001_0_keypoints.json"
    assert path.read_text().endswith(" ")
    raw = json.loads(path.read_text())["people"][0]["pose_keypoints"]
    read = readers.read_keypoints(path)
    visible = np.asarray(raw, np.float32).reshape(18, 3)
    visible = visible[visible[:, 2] > 0]
    np.testing.assert_allclose(read.keypoints[read.keypoints[:, 2] > 0], visible)
    assert read.keypoints[:, 1].max() == pytest.approx(255.30, abs=0.01)


@needs_real_samples
def test_nineteen_joints_are_rejected_by_name():
    path = APP / "pose" / "000020_0_keypoints.json"
    with pytest.raises(readers.DataError, match=r"000020_0_keypoints\.json.*57 pose values"):
        readers.read_keypoints(path)


@needs_real_samples
def test_integer_keypoints_of_app_variant():
    read = readers.read_keypoints(APP / "pose" / "000010_0_keypoints.json")
    assert read.people == 1 and np.all(read.keypoints[:, :2] == np.round(read.keypoints[:, :2]))


def _write_json(path, people):
    path.write_text(json.dumps({"version": 1.3, "people": people}))
    return path


def test_no_person_gives_all_missing(tmp_path):
    read = readers.read_keypoints(_write_json(tmp_path / "k.json", []))
    assert read.people == 0 and not read.keypoints.any()


def test_several_people_keep_the_most_confident(tmp_path):
    weak = np.tile([10.0, 20.0, 0.2], 18).tolist()
    strong = np.tile([30.0, 40.0, 0.9], 18).tolist()
    read = readers.read_keypoints(_write_json(
        tmp_path / "k.json", [{"pose_keypoints_2d": weak}, {"pose_keypoints_2d": strong}]))
    assert read.people == 2
    np.testing.assert_allclose(read.keypoints[0], [30, 40, 0.9])


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot parse JSON"),
    ('{"people": [{"face_keypoints": []}]}', "pose_keypoints"),
    ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', "3 pose values"),
    ('[1, 2]', "no 'people' list"),
])
def test_bad_keypoint_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad_keypoints.json"
    path.write_text(content)
    with pytest.raises(readers.DataError, match=message) as err:
        readers.read_keypoints(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(readers.DataError, match="absent.json: file not found"):
        readers.read_keypoints(tmp_path / "absent.json")


@needs_real_samples
def test_parsing_labels_of_real_files():
    jdai = set()
    for path in (JDAI / "parse_cihp").glob("*.png"):
        if not path.name.endswith("_vis.png"):
            assert Image.open(path).mode == "L"
            jdai |= set(np.unique(readers.read_parsing(path)).tolist())
    assert jdai == {0, 2, 5, 9, 10, 12, 13, 14, 15, 18, 19}  # CIHP: 10 = torso skin
    viton = set()
    for path in VITON.glob("*/image-parse/*.png"):
        assert Image.open(path).mode == "P"
        labels = readers.read_parsing(path)
        assert labels.shape == (256, 192)
        viton |= set(np.unique(labels).tolist())
    assert viton == {0, 2, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17}


@needs_real_samples
def test_palette_parsing_is_read_by_index_not_colour():
    path = VITON / "test" / "image-parse" / "000001_0.png"
    image = Image.open(path)
    labels = readers.read_parsing(path)
    # The palette is MATLAB's colormap (label 2 = (254, 0, 0)), not LIP's: colours would lie.
    assert tuple(image.getpalette()[6:9]) == (254, 0, 0)
    rgb = np.asarray(image.convert("RGB"))
    assert np.all(rgb[labels == 2] == (254, 0, 0))


@needs_real_samples
@pytest.mark.parametrize("path", [
    JDAI / "parse_cihp" / "1LJ21D005-G11@10=person_half_front_vis.png",
    APP / "image-parse" / "000010_0.png",
    APP / "image-parse" / "000010_0.jpg",
])
def test_colour_renderings_and_jpeg_parsing_are_rejected(path):
    with pytest.raises(readers.DataError) as err:
        readers.read_parsing(path)
    assert str(path) in str(err.value)


def test_label_ids_out_of_range_are_rejected(tmp_path):
    labels = np.zeros((8, 6), np.uint8)
    labels[2, 3] = 20
    labels[4, 4] = 37
    Image.fromarray(labels).save(tmp_path / "bad.png")
    with pytest.raises(readers.DataError, match=r"bad\.png: label ids \[20, 37\]"):
        readers.read_parsing(tmp_path / "bad.png")


@needs_real_samples
def test_jpeg_clothes_masks_are_thresholded():
    path = VITON / "test" / "cloth-mask" / "000001_1.jpg"
    grey = np.asarray(Image.open(path))
    assert len(np.unique(grey)) > 30  # JPEG noise, not binary
    mask = readers.read_mask(path)
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1}
    np.testing.assert_array_equal(mask, grey >= 128)


@needs_real_samples
def test_png_masks_and_app_variant_masks():
    for path in (JDAI / "cloth_mask").glob("*.png"):
        grey = np.asarray(Image.open(path))
        np.testing.assert_array_equal(readers.read_mask(path), grey == 255)
    mask = readers.read_mask(APP / "image-mask" / "000010_0.png")  # values {0, 1, 254, 255}
    assert set(np.unique(mask).tolist()) == {0, 1}


@needs_real_samples
def test_photos_read_as_rgb():
    image = readers.read_rgb(JDAI / "images" / "1LJ21D005-G11@10=person_half_front.jpg")
    assert image.shape == (256, 192, 3) and image.dtype == np.uint8
    clothes = readers.read_rgb(VITON / "test" / "cloth" / "000001_1.jpg")
    assert tuple(clothes[0, 0]) == (255, 255, 255)


@needs_real_samples
def test_truncated_jpeg_is_named(tmp_path):
    data = (VITON / "test" / "image" / "000001_0.jpg").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(readers.DataError, match="truncated.jpg: cannot decode image"):
        readers.read_rgb(path)


def test_a_photo_stored_sideways_is_read_and_stored_upright(tmp_path):
    """A phone's portrait photo: pixels stored a quarter turn off, with the EXIF orientation
    (6) that turns them back. Readers and the builder's stored copy show it upright."""
    from mgvton_jax.data import examples

    upright = np.random.default_rng(0).integers(0, 256, (256, 192, 3), dtype=np.uint8)
    path = tmp_path / "sideways.png"
    exif = Image.Exif()
    exif[readers.EXIF_ORIENTATION] = 6
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    assert Image.open(path).size == (256, 192)  # stored sideways
    np.testing.assert_array_equal(readers.read_rgb(path), upright)
    stored, hw = examples._encode_photo(path, [])
    assert hw == (256, 192)
    np.testing.assert_array_equal(examples.decode_photo(stored), upright)
