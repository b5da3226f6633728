"""TFDS build + grain pipeline on synthetic MPV: contents, determinism, shards, resume, skips."""

import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from mgvton_jax import constants
from mgvton_jax.data import examples, pipeline, readers
from mgvton_jax.data import representation as rep
from mgvton_jax.data.build import build_dataset


def _take(dataset, count, state=None):
    iterator = iter(dataset)
    try:
        if state is not None:
            iterator.set_state(state)
        batches = [next(iterator) for _ in range(count)]
        return batches, iterator.get_state()
    finally:
        iterator.close()


def _fingerprints(batch):
    """One hash per example (reference + target + clothes pixels) to identify it."""
    return [hash(np.concatenate([batch[k][i] for k in ("reference_image", "target_image",
                                                       "clothes")]).tobytes())
            for i in range(len(batch["reference_image"]))]


def test_batch_contents(synthetic_data_dir):
    (compact,), _ = _take(pipeline.make_dataset(synthetic_data_dir, "train", 4, seed=1), 1)
    assert set(compact) == set(examples.COMPACT_INPUTS) | set(pipeline.EXAMPLE_KEYS)
    assert compact["index"].dtype == np.int64 and set(compact["mirrored"]) <= {0, 1}
    for key, (dtype, _) in examples.COMPACT_INPUTS.items():
        assert compact[key].shape == (4, *examples.compact_shape(key, (256, 192))), key
        assert compact[key].dtype == dtype, key
    batch = {k: np.asarray(v) for k, v in examples.model_inputs(compact).items()}
    assert set(batch) == set(examples.MODEL_INPUT_CHANNELS)
    for key, channels in examples.MODEL_INPUT_CHANNELS.items():
        assert batch[key].shape == (4, 256, 192, channels), key
        assert batch[key].dtype == np.float32
    for key in ("reference_image", "target_image", "clothes"):
        assert -1 <= batch[key].min() and batch[key].max() <= 1
    for key in ("clothes_mask", "target_pose", "hair_mask", "face_mask"):
        assert set(np.unique(batch[key]).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(batch["target_parsing"].sum(-1), 1)
    # the hair mask is the hair channel of the reference parsing
    np.testing.assert_array_equal(batch["hair_mask"][..., 0],
                                  batch["reference_parsing"][..., constants.HAIR_LABELS[0]])
    clothes = batch["reference_parsing"][..., list(constants.CLOTHES_LABELS)].sum(-1) > 0
    assert clothes.any()
    assert np.all(batch["reference_without_clothes"][clothes] == 0)


def test_model_inputs_of_a_batch_in_a_jit_equal_those_of_each_example(synthetic_data_dir):
    """The step expands whole compact batches on the device; one example at a time, eagerly,
    gives the same arrays."""
    (compact,), _ = _take(pipeline.make_dataset(synthetic_data_dir, "train", 2, seed=2,
                                                image_size=(64, 48)), 1)
    batched = jax.jit(examples.model_inputs)(compact)
    for i in range(2):
        one = examples.model_inputs({key: value[i] for key, value in compact.items()})
        for key in examples.MODEL_INPUT_CHANNELS:
            np.testing.assert_allclose(batched[key][i], one[key], atol=1e-6, err_msg=key)


def test_record_round_trip_matches_the_files(synthetic_mpv, synthetic_data_dir):
    source = pipeline.data_source(synthetic_data_dir, "train")
    record = source[0]
    reference, target, clothes = record["key"].decode().split("|")
    raw = examples.decode_record(record)
    person = synthetic_mpv / "all" / reference
    np.testing.assert_array_equal(raw["reference_image"], np.asarray(Image.open(person)))
    parsing = synthetic_mpv / "all_parsing" / reference.replace(".jpg", ".png")
    np.testing.assert_array_equal(raw["reference_parsing"], np.asarray(Image.open(parsing)))
    keypoints = synthetic_mpv / "all_person_clothes_keypoints" / reference.replace(
        ".jpg", "_keypoints.json")
    np.testing.assert_allclose(raw["reference_keypoints"],
                               readers.read_keypoints(keypoints).keypoints)
    assert raw["clothes_mask"].shape == (256, 192)


def test_same_batches_whatever_the_worker_count(synthetic_data_dir):
    def batches(workers):
        dataset = pipeline.make_dataset(synthetic_data_dir, "train", 4, seed=3, workers=workers,
                                        flip_probability=0.5)
        return _take(dataset, 3)[0]

    for single, multi in zip(batches(0), batches(2), strict=True):
        for key in single:
            np.testing.assert_array_equal(single[key], multi[key])


def test_process_shards_are_disjoint_and_cover_an_epoch(synthetic_data_dir):
    size = len(pipeline.data_source(synthetic_data_dir, "train"))
    whole = _take(pipeline.make_dataset(synthetic_data_dir, "train", 2, seed=5, num_epochs=1),
                  size // 2)[0]
    everything = [f for b in whole for f in _fingerprints(b)]
    assert len(set(everything)) == size
    shards = []
    for index in range(2):
        dataset = pipeline.make_dataset(synthetic_data_dir, "train", 2, seed=5, num_epochs=1,
                                        process_index=index, process_count=2)
        shards.append({f for b in _take(dataset, size // 2)[0] for f in _fingerprints(b)})
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(everything)


def test_processes_share_each_global_batch_with_the_same_flips(synthetic_data_dir):
    """Process p of n gets global examples p, p + n, ... of every global batch, decoded and
    flipped as one process does; a stream started at a global example continues it."""
    def batches(process_index=0, process_count=1, start=0, count=3):
        dataset = pipeline.make_dataset(synthetic_data_dir, "train", 4, seed=9,
                                        flip_probability=0.5, process_index=process_index,
                                        process_count=process_count, start=start)
        return _take(dataset, count)[0]

    whole = batches()
    shares = [batches(p, 2) for p in range(2)]
    for k, batch in enumerate(whole):
        for p in range(2):
            for key in batch:
                np.testing.assert_array_equal(shares[p][k][key], batch[key][p::2], err_msg=key)
    for key, value in batches(start=8, count=1)[0].items():
        np.testing.assert_array_equal(value, whole[2][key], err_msg=key)


def test_uneven_process_batches_are_refused(synthetic_data_dir):
    with pytest.raises(ValueError, match="does not divide by the 3 processes"):
        pipeline.make_dataset(synthetic_data_dir, "train", 4, process_count=3)


def test_resume_reproduces_the_next_batch(synthetic_data_dir):
    dataset = pipeline.make_dataset(synthetic_data_dir, "train", 3, seed=7, flip_probability=0.5)
    straight, _ = _take(dataset, 5)
    _, state = _take(dataset, 3)
    resumed, _ = _take(dataset, 2, state=state)
    for expected, got in zip(straight[3:], resumed, strict=True):
        for key in expected:
            np.testing.assert_array_equal(expected[key], got[key])


def test_flip_mirrors_the_whole_triplet(synthetic_data_dir):
    source = pipeline.data_source(synthetic_data_dir, "train")
    raw = examples.decode_record(source[1])
    plain = examples.model_inputs(examples.compact_example(raw))
    flipped = examples.model_inputs(examples.compact_example(examples.flip_raw(raw)))
    for key in ("reference_image", "target_image", "clothes", "clothes_mask"):
        np.testing.assert_array_equal(flipped[key], plain[key][:, ::-1], err_msg=key)
    np.testing.assert_allclose(flipped["body_shape"], plain["body_shape"][:, ::-1], atol=1e-6)
    perm = list(constants.LABEL_FLIP_PERMUTATION)
    np.testing.assert_array_equal(flipped["target_parsing"],
                                  plain["target_parsing"][:, ::-1][..., perm])
    # Pose discs: the same pixels mirrored, left and right joints swapped (rounding aside).
    joints = list(constants.KEYPOINT_FLIP_PERMUTATION)
    mirrored = plain["target_pose"][:, ::-1][..., joints]
    assert np.mean(flipped["target_pose"] != mirrored) < 1e-3


def test_resize_for_tiny_configs(synthetic_data_dir):
    dataset = pipeline.make_dataset(synthetic_data_dir, "train", 2, image_size=(64, 48))
    (compact,), _ = _take(dataset, 1)
    assert compact["reference_image"].shape == (2, 64, 48, 3)
    assert compact["target_parsing"].shape == (2, 64, 48)
    batch = examples.model_inputs(compact)
    assert batch["target_pose"].shape == (2, 64, 48, 18)
    assert batch["target_parsing"].shape == (2, 64, 48, 20)
    raw = examples.decode_record(pipeline.data_source(synthetic_data_dir, "train")[0])
    small = examples.resize_raw(raw, (64, 48))
    visible = rep.joint_visible(raw["target_keypoints"])
    np.testing.assert_allclose(small["target_keypoints"][visible, :2],
                               (raw["target_keypoints"][visible, :2] + 0.5) / 4 - 0.5,
                               rtol=1e-5)


def test_bad_files_are_skipped_counted_and_named(synthetic_mpv, tmp_path):
    broken = tmp_path / "broken_mpv"
    shutil.copytree(synthetic_mpv, broken)
    lines = (broken / "all_poseA_poseB_clothes.txt").read_text().splitlines()
    by_person = {}
    for line in lines:  # one line of each of three different people
        by_person.setdefault(line.split("/")[0], line.split("\t"))
    first, second, third = list(by_person.values())[:3]
    # 1: truncated person JPEG
    person = broken / "all" / first[0]
    person.write_bytes(person.read_bytes()[:500])
    # 2: missing keypoint JSON of a target
    (broken / "all_person_clothes_keypoints" / second[1].replace(
        ".jpg", "_keypoints.json")).unlink()
    # 3: parsing with a label id outside 0..19
    parsing_path = broken / "all_parsing" / third[1].replace(".jpg", ".png")
    labels = np.asarray(Image.open(parsing_path)).copy()
    labels[0, 0] = 42
    Image.fromarray(labels).save(parsing_path)
    (broken / "all_poseA_poseB_clothes.txt").write_text(
        "\n".join(lines) + "\nP/a.jpg\tP/b.jpg\n")

    report = build_dataset(broken, tmp_path / "data", progress=False)
    reasons = [reason for _, _, reason in report["skipped"]]
    assert any("cannot decode image" in r and first[0].split("/")[-1] in r for r in reasons)
    assert any("not found" in r and "_keypoints.json" in r for r in reasons)
    assert any("label ids [42]" in r for r in reasons)
    assert any("2 columns" in r for r in reasons)
    good = pipeline.data_source(tmp_path / "data", "train")
    assert report["written"]["train"] == len(good) > 0
    text = (tmp_path / "data" / "mpv_triplets" / "1.0.0" / "build_report.txt").read_text()
    assert f"# {len(report['skipped'])} skipped" in text and "label ids [42]" in text


@pytest.mark.parametrize("make", [False, True])
def test_build_of_a_missing_or_empty_directory_names_it(tmp_path, make):
    mpv_dir = tmp_path / "mpv"
    if make:
        mpv_dir.mkdir()
    with pytest.raises(readers.DataError, match=f"{mpv_dir}: data set directory not found"):
        build_dataset(mpv_dir, tmp_path / "data", progress=False)
