"""mgvton_jax.prep: one fixture per problem, made from valid synthetic files; the exact
message; each converter gives back the valid file."""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from real_samples import APP, JDAI, needs_real_samples

from mgvton_jax import constants
from mgvton_jax.data import readers
from mgvton_jax.data.build import build_dataset
from mgvton_jax.prep import __main__ as prep_cli
from mgvton_jax.prep import checks, converters, make_pairs
from mgvton_jax.prep.checks import PREP, Problem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def valid(synthetic_mpv, tmp_path):
    """A copy of one synthetic person's valid files: photo, parsing, keypoints, clothes, mask."""
    group = sorted((synthetic_mpv / "all").iterdir())[0]
    person = next(p for p in sorted(group.iterdir()) if "person" in p.name)
    clothes = next(p for p in sorted(group.iterdir()) if p.name.endswith("cloth_front.jpg"))
    files = {
        "photo": person,
        "parsing": synthetic_mpv / "all_parsing" / group.name / f"{person.stem}.png",
        "keypoints": synthetic_mpv / "all_person_clothes_keypoints" / group.name /
        f"{person.stem}_keypoints.json",
        "clothes": clothes,
        "mask": clothes.with_name(f"{clothes.stem}_mask.jpg"),
    }
    copies = {}
    for kind, path in files.items():
        copies[kind] = tmp_path / path.name
        shutil.copy(path, copies[kind])
    # The MPV layout's files use the older key; the valid file has today's.
    data = json.loads(copies["keypoints"].read_text())
    for person in data["people"]:
        person["pose_keypoints_2d"] = person.pop("pose_keypoints")
    copies["keypoints"].write_text(json.dumps(data))
    return copies


def _keypoint_values(path):
    return json.loads(Path(path).read_text())["people"][0]["pose_keypoints_2d"]


def _with_values(source, out, values, key="pose_keypoints_2d"):
    data = json.loads(Path(source).read_text())
    person = data["people"][0]
    del person["pose_keypoints_2d"]
    person[key] = values
    out.write_text(json.dumps(data))
    return out


def test_valid_files_have_no_problem(valid):
    assert checks.check_person(valid["photo"], valid["parsing"], valid["keypoints"]) == []
    assert checks.check_clothes(valid["clothes"], valid["mask"]) == []
    assert checks.check_clothes(valid["clothes"]) == []  # white background: no mask needed


@pytest.mark.parametrize("mode, message", [
    ("RGBA", "the photo has transparency (mode RGBA): it is composited on white"),
    ("L", "the photo is greyscale (mode L): it is read as grey RGB; the model was trained on "
          "colour photos"),
    ("CMYK", "the photo is CMYK: it is converted to the RGB a person sees"),
])
def test_photo_modes_are_notes(valid, tmp_path, mode, message):
    path = tmp_path / f"photo_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.open(valid["photo"]).convert(mode).save(path)
    problems, hw = checks.check_photo(path)
    assert problems == [Problem(str(path), message, usable=True)] and hw == (256, 192)


def test_a_photo_of_another_size_is_a_note(valid, tmp_path):
    path = tmp_path / "big.jpg"
    Image.open(valid["photo"]).resize((300, 400)).save(path)
    assert checks.check_photo(path)[0] == [Problem(
        str(path), "the photo is 300x400 (W x H); the model works at 192x256: it is resized, "
        "and the result resized back", usable=True)]


@pytest.mark.parametrize("palette", sorted(converters.PALETTES))
def test_a_colour_rendering_is_named_and_converted_back(valid, tmp_path, palette):
    labels = readers.read_parsing(valid["parsing"])
    rendering = tmp_path / "rendering.png"
    colours = np.asarray(converters.PALETTES[palette], np.uint8)
    Image.fromarray(colours[labels]).save(rendering)
    out = tmp_path / "rendering_ids.png"
    assert checks.check_parsing(rendering) == [Problem(
        str(rendering), f"the parsing holds colours (mode RGB), not label ids: a rendering in "
        f"the {palette} palette", f"{PREP} parsing-colours {rendering} {out} --palette "
        f"{palette}")]
    assert converters.write_parsing_ids(rendering, out) == palette
    np.testing.assert_array_equal(readers.read_parsing(out), labels)
    with pytest.raises(readers.DataError, match="overwrite the input"):
        converters.write_parsing_ids(rendering, rendering)


def test_a_rendering_quantised_to_a_palette_png_is_named_and_converted_back(valid, tmp_path):
    """A palette PNG whose indices are not label ids (a colour rendering saved through a
    palette of its own) is caught from its palette's colours."""
    labels = readers.read_parsing(valid["parsing"])
    rendering = Image.fromarray(np.asarray(constants.LIP_PALETTE, np.uint8)[labels])
    quantised = tmp_path / "quantised.png"
    rendering.quantize(colors=len(np.unique(labels)), method=Image.Quantize.MEDIANCUT,
                       dither=Image.Dither.NONE).save(quantised)
    problems = checks.check_parsing(quantised)
    assert len(problems) == 1 and not problems[0].usable
    assert problems[0].message.startswith("the palette indices are not label ids: index ")
    out = tmp_path / "quantised_ids.png"
    assert problems[0].fix == f"{PREP} parsing-colours {quantised} {out} --palette lip"
    converters.write_parsing_ids(quantised, out, "lip")
    np.testing.assert_array_equal(readers.read_parsing(out), labels)
    # A VITON-style palette PNG (index = label, colours of the LIP map) has no such problem.
    viton = tmp_path / "viton.png"
    indexed = Image.fromarray(labels, mode="P")
    indexed.putpalette(np.asarray(constants.LIP_PALETTE, np.uint8).ravel().tolist())
    indexed.save(viton)
    assert checks.check_parsing(viton) == []


def test_a_blended_rendering_is_refused(valid, tmp_path):
    labels = readers.read_parsing(valid["parsing"])
    rendering = np.asarray(constants.LIP_PALETTE, np.uint8)[labels]
    blended = tmp_path / "blended.png"
    Image.fromarray(rendering).resize((96, 128), Image.BILINEAR).save(blended)
    with pytest.raises(readers.DataError, match="colours of no lip palette entry"):
        converters.write_parsing_ids(blended, tmp_path / "out.png", "lip")


def test_parsing_labels_and_size(valid, tmp_path):
    labels = readers.read_parsing(valid["parsing"])
    bad = tmp_path / "bad.png"
    Image.fromarray(np.where(labels == 5, 23, labels).astype(np.uint8)).save(bad)
    assert checks.check_parsing(bad) == [Problem(
        str(bad), "label ids [23] outside 0..19; expected the 20 LIP / CIHP labels")]
    small = tmp_path / "small.png"
    Image.fromarray(labels).resize((96, 128), Image.NEAREST).save(small)
    assert checks.check_parsing(small, valid["photo"], (256, 192)) == [Problem(
        str(small), f"the parsing is 96x128 but the photo {valid['photo']} is 192x256 (W x H); "
        "parse that photo")]


def test_older_keypoint_key_is_a_note(valid, tmp_path):
    old = _with_values(valid["keypoints"], tmp_path / "old.json",
                       _keypoint_values(valid["keypoints"]), key="pose_keypoints")
    assert checks.check_keypoints(old) == [Problem(
        str(old), "the pose is under the older key 'pose_keypoints' (read like "
        "'pose_keypoints_2d')", usable=True)]


def test_body25_is_named_and_converted_by_joint_name(valid, tmp_path):
    coco = np.asarray(_keypoint_values(valid["keypoints"])).reshape(18, 3)
    body25 = np.zeros((25, 3))
    for index, name in enumerate(constants.KEYPOINTS):
        body25[converters.BODY25_KEYPOINTS.index(name)] = coco[index]
    body25[converters.BODY25_KEYPOINTS.index("mid_hip")] = (90.0, 140.0, 0.8)
    path = _with_values(valid["keypoints"], tmp_path / "body25.json", body25.ravel().tolist())
    out = tmp_path / "body25_coco18.json"
    assert checks.check_keypoints(path) == [Problem(
        str(path), "25 joints (OpenPose BODY_25); the model takes COCO-18 (18 joints)",
        f"{PREP} body25 {path} {out}")]
    converters.write_coco18(path, out)
    np.testing.assert_array_equal(readers.read_keypoints(out).keypoints,
                                  readers.read_keypoints(valid["keypoints"]).keypoints)


def test_keypoints_of_another_image_size_are_named_and_rescaled(valid, tmp_path):
    coco = np.asarray(_keypoint_values(valid["keypoints"])).reshape(18, 3)
    doubled = coco.copy()
    doubled[:, :2] = np.where(coco[:, 2:] > 0, (coco[:, :2] + 0.5) * 2 - 0.5, 0)
    path = _with_values(valid["keypoints"], tmp_path / "doubled.json", doubled.ravel().tolist())
    problems = checks.check_keypoints(path, valid["photo"], (256, 192))
    assert len(problems) == 1 and not problems[0].usable
    assert "lies outside the photo" in problems[0].message and "measured on a photo of " \
        "another size?" in problems[0].message
    assert problems[0].fix.startswith(f"{PREP} rescale-keypoints {path} ")
    out = tmp_path / "rescaled.json"
    converters.write_rescaled_keypoints(path, out, (512, 384), (256, 192))
    np.testing.assert_allclose(readers.read_keypoints(out).keypoints,
                               readers.read_keypoints(valid["keypoints"]).keypoints, atol=1e-3)
    halved = coco.copy()
    halved[:, :2] = np.where(coco[:, 2:] > 0, (coco[:, :2] + 0.5) / 2 - 0.5, 0)
    small = _with_values(valid["keypoints"], tmp_path / "halved.json", halved.ravel().tolist())
    note = checks.check_keypoints(small, valid["photo"], (256, 192))
    assert [p.usable for p in note] == [True] and "top-left quarter" in note[0].message


def test_no_person_and_several_people(valid, tmp_path):
    data = json.loads(valid["keypoints"].read_text())
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**data, "people": []}))
    assert checks.check_keypoints(empty) == [Problem(
        str(empty), "no person in this file: run OpenPose on a photo with one person in view")]
    crowd = tmp_path / "crowd.json"
    crowd.write_text(json.dumps({**data, "people": data["people"] * 2}))
    assert checks.check_keypoints(crowd) == [Problem(
        str(crowd), "2 people in this file: the most confident one is used; crop the photo to "
        "one person to choose", usable=True)]


def test_clothes_on_a_coloured_background_need_a_mask_and_get_one(valid, tmp_path):
    clothes = readers.read_rgb(valid["clothes"])
    mask = readers.read_mask(valid["mask"])
    green = np.where(mask[..., None] > 0, clothes, np.uint8([90, 160, 110]))
    path = tmp_path / "on_green.png"
    Image.fromarray(green.astype(np.uint8)).save(path)
    out = tmp_path / "on_green_mask.png"
    assert checks.check_clothes(path) == [Problem(
        str(path), "no clothes mask, and the background is not near-white (only 0% of the "
        "border has every channel >= 240): a mask computed from white would take the "
        "background for clothes", f"{PREP} clothes-mask {path} {out}   (then pass it as the "
        "clothes mask)")]
    converters.write_clothes_mask(path, out)
    computed = readers.read_mask(out) > 0
    assert (computed & (mask > 0)).sum() / (computed | (mask > 0)).sum() > 0.97
    assert checks.check_clothes(path, out) == []


def test_clothes_mask_of_another_size_or_empty(valid, tmp_path):
    small = tmp_path / "small_mask.png"
    Image.open(valid["mask"]).resize((96, 128)).save(small)
    assert checks.check_clothes(valid["clothes"], small) == [Problem(
        str(small), f"the mask is 96x128 but the clothes image {valid['clothes']} is 192x256 "
        "(W x H)")]
    empty = tmp_path / "empty_mask.png"
    Image.new("L", (192, 256)).save(empty)
    assert checks.check_clothes(valid["clothes"], empty) == [Problem(
        str(empty), "the mask is empty (no pixel at or above 128)")]


def test_make_pairs_writes_a_list_the_builder_reads(synthetic_mpv, tmp_path):
    """One's own triplets in the JDAI layout -> a pair list -> a built data set."""
    own = tmp_path / "own"
    for folder in ("images", "parse_cihp", "pose_coco", "cloth_image", "cloth_mask"):
        (own / folder).mkdir(parents=True)
    groups = sorted((synthetic_mpv / "all").iterdir())[:2]
    for group in groups:
        for path in sorted(group.iterdir()):
            if "person" in path.name:
                shutil.copy(path, own / "images" / path.name)
                shutil.copy(synthetic_mpv / "all_parsing" / group.name / f"{path.stem}.png",
                            own / "parse_cihp" / f"{path.stem}.png")
                shutil.copy(synthetic_mpv / "all_person_clothes_keypoints" / group.name /
                            f"{path.stem}_keypoints.json", own / "pose_coco")
            elif path.name.endswith("_mask.jpg"):
                Image.open(path).save(own / "cloth_mask" / f"{path.stem}.png")
            else:
                shutil.copy(path, own / "cloth_image" / path.name)
    out, count, notes = make_pairs.write_pairs(own)
    assert out == own / "data_pair.txt" and not notes
    per_group = Counter(make_pairs.group_of(p.stem) for p in (own / "images").iterdir())
    assert len(per_group) == 2 and count == sum(n * (n - 1) for n in per_group.values())
    first = out.read_text().splitlines()[0].split("\t")
    assert first[3] == "test" and all(c.startswith(make_pairs.group_of(Path(c).name) + "/")
                                      for c in first[:3])
    report = build_dataset(own, tmp_path / "data", progress=False)
    assert report["written"]["test"] == count and not report["skipped"]
    assert not checks.unusable(checks.check_directory(own))  # notes: the older key
    with pytest.raises(readers.DataError, match="already exists"):
        make_pairs.write_pairs(own)


@needs_real_samples
@pytest.mark.parametrize("name", ["1LJ21D005-G11@10=person_half_front",
                                  "FIE21D00C-A11@9=person_whole_back"])
def test_jdai_renderings_convert_to_their_cihp_label_maps(name, tmp_path):
    rendering = JDAI / "parse_cihp" / f"{name}_vis.png"
    assert checks.check_parsing(rendering)[0].fix.endswith("--palette lip")
    assert converters.write_parsing_ids(rendering, tmp_path / "ids.png") == "lip"
    np.testing.assert_array_equal(readers.read_parsing(tmp_path / "ids.png"),
                                  readers.read_parsing(JDAI / "parse_cihp" / f"{name}.png"))


@needs_real_samples
def test_the_real_colour_rendering_converts_to_the_apps_label_map(tmp_path):
    """The app-processed VITON sample saved an RGB rendering under the parsing's name; its
    own re-run label map (image-parse-new) is what the converter gives back."""
    rendering = APP / "image-parse" / "000010_0.png"
    assert not checks.check_parsing(rendering)[0].usable
    converters.write_parsing_ids(rendering, tmp_path / "ids.png")
    np.testing.assert_array_equal(readers.read_parsing(tmp_path / "ids.png"),
                                  readers.read_parsing(APP / "image-parse-new" /
                                                       "000010_0.png"))


def test_check_names_the_person_parsing_as_tryon_does(valid, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prep_cli.main(["check", "--person", str(valid["photo"])])
    assert exit_info.value.code == 2
    assert "--person and --person-parsing go together" in capsys.readouterr().err


def test_the_command_line_exits_1_on_an_unusable_input(valid, tmp_path):
    def prep(*args):
        return subprocess.run([sys.executable, "-m", "mgvton_jax.prep", *map(str, args)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    ok = prep("check", "--person", valid["photo"], "--person-parsing", valid["parsing"],
              "--keypoints", valid["keypoints"], "--clothes", valid["clothes"])
    assert ok.returncode == 0 and ok.stdout.strip() == "no problems found"
    rendering = tmp_path / "r.png"
    Image.fromarray(np.asarray(constants.LIP_PALETTE, np.uint8)[
        readers.read_parsing(valid["parsing"])]).save(rendering)
    bad = prep("check", "--person", valid["photo"], "--parsing", rendering)  # the old alias
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == "1 unusable, 0 notes"
    assert f"fix: {PREP} parsing-colours {rendering}" in bad.stdout
    fixed = prep("parsing-colours", rendering, tmp_path / "fixed.png")
    assert fixed.returncode == 0 and "from the lip palette" in fixed.stdout
    missing = prep("body25", tmp_path / "none.json", tmp_path / "out.json")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"error: {tmp_path / 'none.json'}: file not found"
