"""Bad files in a data set: converted to what a person sees, or a counted skip with its reason.

One corrupted copy of the synthetic MPV tree holds every defect, each in another person's
files, and is built once; the tests read the report and the stored pixels.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from real_samples import APP, JDAI, needs_real_samples

from mgvton_jax.data import build, examples, pipeline, readers
from mgvton_jax.data.build import build_dataset

PAIR_LIST = "all_poseA_poseB_clothes.txt"


def _lines(root):
    return (root / PAIR_LIST).read_text().splitlines()


def _person_line(root, person):
    """The first pair-list line of synthetic person `person` (an index)."""
    return next(line for line in _lines(root) if line.startswith(f"SYN{person:06d}/"))


def _files(root, line):
    reference, target, clothes, _ = line.split()
    stem = lambda name: name.rsplit(".", 1)[0]  # noqa: E731
    return {"photo": root / "all" / reference, "target_photo": root / "all" / target,
            "clothes": root / "all" / clothes,
            "mask": next((root / "all").glob(f"{stem(clothes)}_mask.*")),
            "parsing": root / "all_parsing" / f"{stem(reference)}.png",
            "keypoints": root / "all_person_clothes_keypoints"
            / f"{stem(reference)}_keypoints.json"}


def _key(line):
    return "|".join(line.split()[:3])


@pytest.fixture(scope="module")
def corrupted(synthetic_mpv, tmp_path_factory):
    """(tree, data_dir, report, {defect: pair-list line}, {defect: original pixels})."""
    root = tmp_path_factory.mktemp("corrupted") / "mpv"
    shutil.copytree(synthetic_mpv, root)
    lines, originals = {}, {}
    for person, defect in enumerate(["cmyk", "palette", "grey16", "rgba_clothes",
                                     "parsing_size", "keypoints_frame", "keypoint_string",
                                     "null_person"]):
        lines[defect] = _person_line(root, person)
        files = _files(root, lines[defect])
        photo = Image.open(files["photo"]).convert("RGB")
        originals[defect] = np.asarray(photo)
        if defect == "cmyk":
            photo.convert("CMYK").save(files["photo"], format="JPEG", quality=95)
        elif defect == "palette":
            photo.quantize(64).save(files["photo"], format="PNG")  # a PNG under a .jpg name
            originals[defect] = np.asarray(Image.open(files["photo"]).convert("RGB"))
        elif defect == "grey16":
            grey = np.asarray(photo.convert("L")).astype(np.uint16) * 257
            Image.fromarray(grey).save(files["photo"], format="PNG")
            originals[defect] = np.repeat(np.asarray(photo.convert("L"))[..., None], 3, -1)
        elif defect == "rgba_clothes":
            clothes = np.asarray(Image.open(files["clothes"]).convert("RGB"))
            mask = readers.read_mask(files["mask"])
            rgba = np.dstack([clothes * mask[..., None], mask * 255]).astype(np.uint8)
            Image.fromarray(rgba, "RGBA").save(files["clothes"], format="PNG")
            originals[defect] = np.where(mask[..., None] > 0, clothes, 255)
        elif defect == "parsing_size":
            Image.open(files["parsing"]).resize((96, 128), Image.NEAREST).save(files["parsing"])
        elif defect == "keypoints_frame":  # measured on a photo twice the size
            data = json.loads(files["keypoints"].read_text())
            person_data = data["people"][0]
            key = next(k for k in person_data if k.startswith("pose_keypoints"))
            person_data[key] = [v * 2 if i % 3 != 2 else v
                                for i, v in enumerate(person_data[key])]
            files["keypoints"].write_text(json.dumps(data))
        elif defect == "keypoint_string":
            data = json.loads(files["keypoints"].read_text())
            person_data = data["people"][0]
            person_data[next(k for k in person_data if k.startswith("pose_keypoints"))][4] = \
                "12.5"
            files["keypoints"].write_text(json.dumps(data))
        elif defect == "null_person":
            files["keypoints"].write_text(json.dumps({"version": 1.3, "people": [None]}))
    text = (root / PAIR_LIST).read_bytes()
    test_line = [line for line in _lines(root) if line.endswith("test")][-1]  # unharmed
    lines["duplicate"] = test_line
    text += b"\n" + test_line.encode() + b"\n" + b"SYN\xff\xfe/x.jpg y.jpg z.jpg train\n"
    (root / PAIR_LIST).write_bytes(text)
    data_dir = tmp_path_factory.mktemp("corrupted_tfds")
    report = build_dataset(root, data_dir, progress=False)
    return root, data_dir, report, lines, originals


def _stored(data_dir, key):
    for split in ("train", "test"):
        source = pipeline.data_source(data_dir, split)
        for i in range(len(source)):
            record = source[i]
            if record["key"].decode() == key:
                return examples.decode_record(record)
    return None


def _skip_reason(report, line):
    reasons = [reason for _, key, reason in report["skipped"] if key == _key(line)]
    return reasons[0] if reasons else None


@pytest.mark.parametrize("defect,image_key,tolerance", [
    ("cmyk", "reference_image", 6), ("palette", "reference_image", 0),
    ("grey16", "reference_image", 0), ("rgba_clothes", "clothes", 0)])
def test_odd_image_modes_are_stored_as_the_rgb_a_person_sees(corrupted, defect, image_key,
                                                            tolerance):
    _, data_dir, report, lines, originals = corrupted
    assert _skip_reason(report, lines[defect]) is None
    stored = _stored(data_dir, _key(lines[defect]))[image_key]
    assert stored.shape == (256, 192, 3)
    assert np.abs(stored.astype(int) - originals[defect]).mean() <= tolerance
    if defect == "rgba_clothes":
        assert any("composited the transparency" in note for note in report["notes"])


@pytest.mark.parametrize("defect,reason", [
    ("parsing_size", "the parsing is 96x128 but"),
    ("keypoints_frame", "were the keypoints measured on a photo of another size"),
    ("keypoint_string", "pose value '12.5' is not a number"),
    ("null_person", "a person without a 'pose_keypoints_2d'")])
def test_mismatched_or_malformed_files_are_counted_skips(corrupted, defect, reason):
    _, data_dir, report, lines, _ = corrupted
    skipped = _skip_reason(report, lines[defect])
    assert skipped is not None and reason in skipped, skipped
    assert _stored(data_dir, _key(lines[defect])) is None


def test_bad_pair_list_lines_are_counted_and_the_rest_is_built(corrupted, synthetic_mpv):
    _, _, report, lines, _ = corrupted
    bad = {reason for split, _, reason in report["skipped"] if split == "pair list"}
    first = _lines(synthetic_mpv).index(lines["duplicate"]) + 1
    assert f"repeats line {first}" in bad and "not UTF-8 text" in bad
    source = pipeline.data_source(corrupted[1], "test")
    keys = [source[i]["key"].decode() for i in range(len(source))]
    assert keys.count(_key(lines["duplicate"])) == 1
    # Every listed triplet is either written or a skip with its reason.
    triplet_skips = [s for s in report["skipped"] if s[0] != "pair list"]
    assert sum(report["written"].values()) + len(triplet_skips) == \
        sum(report["listed"].values())


def _run_build(*args):
    return subprocess.run([sys.executable, "-m", "mgvton_jax.data.build", *map(str, args)],
                          capture_output=True, text=True, env={"JAX_PLATFORMS": "cpu",
                                                               "PATH": "/usr/bin:/bin"})


@needs_real_samples
def test_a_split_with_nothing_readable_stops_with_one_line(tmp_path):
    run = _run_build("--mpv-dir", JDAI, "--data-dir", tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no triplet of the train split could be read")
    assert f"{tmp_path}/build_report.txt" in last
    assert (tmp_path / "build_report.txt").read_text().startswith("# 12410 skipped")
    assert not build.is_built(tmp_path)


@needs_real_samples
def test_a_viton_tree_without_its_pair_list_names_the_flag(tmp_path):
    run = _run_build("--mpv-dir", APP.parent, "--data-dir", tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "name your pair list (2 columns: person.jpg clothes.jpg) with --pair-list" in \
        run.stderr


def test_an_empty_pair_list_stops_with_one_line(synthetic_mpv, tmp_path):
    root = tmp_path / "mpv"
    shutil.copytree(synthetic_mpv, root)
    (root / PAIR_LIST).write_text("\n\n")
    with pytest.raises(readers.DataError, match="no usable line .0 bad lines.; nothing was built"):
        build_dataset(root, tmp_path / "data", progress=False)


def test_rebuilding_from_another_source_is_refused(synthetic_data_dir, synthetic_mpv, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(synthetic_mpv, other)
    lines = _lines(other)
    (other / PAIR_LIST).write_text("\n".join(lines[:6] + [ln for ln in lines if "test" in ln]))
    with pytest.raises(readers.DataError, match="built from .* pass --overwrite"):
        build_dataset(other, synthetic_data_dir, progress=False)
    data_dir = tmp_path / "copy"
    shutil.copytree(synthetic_data_dir, data_dir)
    report = build_dataset(other, data_dir, progress=False, overwrite=True)
    assert report["source"]["mpv_dir"] == str(other.resolve())
    assert len(pipeline.data_source(data_dir, "train")) == report["written"]["train"] < \
        len(pipeline.data_source(synthetic_data_dir, "train"))


def test_an_interrupted_build_is_named_and_redone(synthetic_mpv, tmp_path):
    data_dir = tmp_path / "data"
    build_dataset(synthetic_mpv, data_dir, progress=False)
    (build.dataset_dir(data_dir) / "dataset_info.json").unlink()  # as a kill leaves it
    with pytest.raises(readers.DataError, match="an interrupted build; build it with"):
        build.built_dataset(data_dir)
    build_dataset(synthetic_mpv, data_dir, progress=False)
    assert build.built_dataset(data_dir) == data_dir


def test_a_killed_synthetic_write_is_redone(tmp_path):
    raw = tmp_path / "synthetic_mpv_2"
    (raw / "all").mkdir(parents=True)
    (raw / "all" / "half_written.jpg").write_bytes(b"\xff\xd8")  # no .complete marker
    data_dir = build.synthetic_dataset(tmp_path, 2)
    assert not (raw / "all" / "half_written.jpg").exists() and (raw / ".complete").exists()
    assert build.is_built(data_dir)


def test_pair_list_text_reader_keeps_the_good_lines(tmp_path):
    path = Path(tmp_path) / "pairs.txt"
    path.write_bytes(b"a/1.jpg a/2.jpg a/0.jpg train\r\n\xff bad\n"
                     b"a/1.jpg a/2.jpg a/0.jpg train\n")
    from mgvton_jax.data.pairs import read_mpv_pairs

    read = read_mpv_pairs(path)
    assert len(read.triplets) == 1
    assert [(b.line_number, b.reason) for b in read.bad_lines] == [
        (2, "not UTF-8 text"), (3, "repeats line 1")]
