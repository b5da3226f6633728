"""Pair lists and layouts on the real MPV/VITON files and on bad lines."""

from pathlib import Path

import pytest
from real_samples import JDAI, ROOT, VITON, needs_real_samples

from mgvton_jax.data import layouts, pairs, readers
from mgvton_jax.data.build import build_dataset, read_report


@needs_real_samples
def test_jdai_pair_list_counts():
    # data_pair.txt: tab-separated, no final newline; counts from the real-samples README.
    result = pairs.read_mpv_pairs(JDAI / "data_pair.txt")
    assert not result.bad_lines
    assert len(result.triplets) == 14754
    splits = [t.split for t in result.triplets]
    assert splits.count("train") == 12410 and splits.count("test") == 2344
    first = result.triplets[0]
    assert first.reference.split("/")[0] == first.clothes.split("/")[0]  # one PID per line


@needs_real_samples
def test_demo_list_is_not_a_pair_list():
    result = pairs.read_mpv_pairs(ROOT / "mpv_jdai" / "demo" / "demo.txt")
    assert not result.triplets and result.bad_lines
    assert all("image files" in b.reason for b in result.bad_lines)


def test_bad_lines_are_recorded_with_their_numbers(tmp_path):
    path = tmp_path / "all_poseA_poseB_clothes.txt"
    path.write_text(
        "P/a.jpg P/b.jpg P/c.jpg train\r\n"
        "P/a.jpg P/b.jpg P/c.jpg\n"
        "\n"
        "P/a.jpg\tP/b.jpg\tP/c.jpg\tval\n"
        "P/d.jpg\tP/e.jpg\tP/c.jpg\ttest")
    result = pairs.read_mpv_pairs(path)
    assert [(t.reference, t.target, t.split) for t in result.triplets] == [
        ("P/a.jpg", "P/b.jpg", "train"), ("P/d.jpg", "P/e.jpg", "test")]
    assert [b.line_number for b in result.bad_lines] == [2, 4]
    assert "3 columns" in result.bad_lines[0].reason and "'val'" in result.bad_lines[1].reason
    assert str(path) in str(result.bad_lines[0])


def test_both_directions_without_repeats():
    a = pairs.Triplet("P/a.jpg", "P/b.jpg", "P/c.jpg", "train")
    b = pairs.Triplet("P/b.jpg", "P/a.jpg", "P/c.jpg", "train")
    same = pairs.Triplet("P/x.jpg", "P/x.jpg", "P/c.jpg", "train")
    out = pairs.with_both_directions([a, b, same])
    assert [t.key for t in out] == [a.key, b.key, same.key]
    assert pairs.with_both_directions([a]) == [a, b]


@needs_real_samples
def test_viton_pairs_are_pose_fixed():
    result = pairs.read_viton_pairs(VITON / "test_pairs.txt", "test")
    assert len(result.triplets) == 2032 and not result.bad_lines
    assert all(t.reference == t.target for t in result.triplets)
    assert sum(not t.paired for t in result.triplets) == 2028
    train = pairs.read_viton_pairs(VITON / "train_pairs.txt", "train")
    assert len(train.triplets) == 14221 and all(t.paired for t in train.triplets)


def test_viton_test_split_adds_each_person_in_their_own_clothes():
    listed = [pairs.Triplet("000001_0.jpg", "000001_0.jpg", "001744_1.jpg", "test", False),
              pairs.Triplet("000003_0.jpg", "000003_0.jpg", "000003_1.jpg", "test", True),
              pairs.Triplet("000001_0.jpg", "000001_0.jpg", "000010_1.jpg", "test", False)]
    result = pairs.with_own_clothes(listed)
    assert [t.key for t in result] == [
        "000001_0.jpg|000001_0.jpg|001744_1.jpg", "000003_0.jpg|000003_0.jpg|000003_1.jpg",
        "000001_0.jpg|000001_0.jpg|000010_1.jpg", "000001_0.jpg|000001_0.jpg|000001_1.jpg"]
    assert result[-1].paired and result[-1].split == "test"


@needs_real_samples
def test_jdai_layout_finds_flat_files_from_pid_paths():
    source = layouts.open_source(JDAI)
    assert source.layout.name == "mpv_jdai"
    entry = "1LJ21D005/1LJ21D005-G11@10=person_half_front.jpg"
    layout = source.layout
    assert layout.find(layouts.PERSON, entry, "train").parent == JDAI / "images"
    assert layout.find(layouts.PARSING, entry, "train").name == (
        "1LJ21D005-G11@10=person_half_front.png")
    assert layout.find(layouts.KEYPOINTS, entry, "train").parent == JDAI / "pose_coco"
    cloth = "AD121D0HY/AD121D0HY-Q11@18=cloth_front.jpg"
    assert layout.find(layouts.CLOTHES_MASK, cloth, "test").name == (
        "AD121D0HY-Q11@18=cloth_front_mask.png")
    with pytest.raises(readers.DataError, match="person file for 'X/none.jpg' not found"):
        layout.find(layouts.PERSON, "X/none.jpg", "train")


def test_unknown_layout_explains_what_is_expected(tmp_path):
    with pytest.raises(readers.DataError, match="unknown data set layout.*all_parsing"):
        layouts.open_source(tmp_path)


@needs_real_samples
def test_viton_build_writes_complete_triplets_and_reports_the_rest(tmp_path):
    # The sample holds 4 complete train people and the 8 first test pairs, whose 8 people
    # also wear their own clothes there (the paired protocol: 2032 + 2032 - 4 already paired).
    report = build_dataset(VITON.parent, tmp_path, progress=False)
    assert report["layout"] == "viton"
    assert report["written"] == {"train": 4, "test": 16}
    assert len(report["skipped"]) == 14221 - 4 + 2032 + 2032 - 4 - 16
    split, key, reason = report["skipped"][0]
    assert split == "train" and "not found" in reason and key.split("|")[0] in reason
    assert read_report(tmp_path)["written"] == report["written"]
    text = (Path(report["dataset_dir"]) / "build_report.txt").read_text()
    assert text.startswith(f"# {len(report['skipped'])} skipped")
