"""Try-on from files: fitting into the model's frame and back, bad inputs, pair lists."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from real_samples import JDAI, needs_real_samples

import mgvton_jax
from mgvton_jax import export, photo_size, stages, tryon, tryon_inputs, visualize
from mgvton_jax.data import examples, pipeline, readers, representation

# What the four stages declare as try-on's intermediates (`Stage.intermediates`).
INTERMEDIATES = ("parsing", "warped_clothes", "coarse", "composition_mask")
PERSON = "1LJ21D005-G11@10=person_half_front"
CLOTHES = "7SI21D04N-G11@10=cloth_front"
POSE = "EV421EA51-A11@9=person_whole_front_keypoints.json"


@pytest.fixture(scope="module")
def model_dir(trained_pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("tryon") / "model"
    export.export_model(trained_pipeline[0], path)
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    return tryon.TryOn.load(model_dir)


def test_fit_letterboxes_and_maps_keypoints_alike():
    same_aspect = tryon_inputs.Fit.of((256, 192), (64, 48))
    assert (same_aspect.rows, same_aspect.cols, same_aspect.top, same_aspect.left) == \
        (64, 48, 0, 0)
    square = tryon_inputs.Fit.of((100, 100), (64, 48))
    assert (square.rows, square.cols, square.top, square.left) == (48, 48, 8, 0)
    centre = np.zeros((18, 3), np.float32)
    centre[0] = (49.5, 49.5, 0.9)  # the centre of the 100x100 picture
    mapped = square.keypoints(centre)
    np.testing.assert_allclose(mapped[0], (23.5, 31.5, 0.9))  # the centre of the 64x48 frame
    assert not mapped[1:].any()  # missing joints stay (0, 0, 0)
    # A bright dot lands where its keypoint is mapped.
    fit = tryon_inputs.Fit.of((210, 150), (64, 48))
    picture = np.zeros((210, 150), np.uint8)
    picture[139:142, 29:32] = 255
    dot = np.zeros((18, 3), np.float32)
    dot[0] = (30, 140, 1)
    framed = fit.image(picture, 0, Image.BILINEAR)
    y, x = np.unravel_index(framed.argmax(), framed.shape)
    assert abs(x - fit.keypoints(dot)[0, 0]) <= 1 and abs(y - fit.keypoints(dot)[0, 1]) <= 1


def test_fit_back_restores_the_photo_size():
    yy, xx = np.mgrid[:210, :150]
    photo = np.stack([yy, xx, yy + xx], -1).astype(np.float64)
    photo = (photo / photo.max() * 255).astype(np.uint8)
    fit = tryon_inputs.Fit.of(photo.shape[:2], (64, 48))
    back = fit.back(fit.image(photo, 255, Image.BILINEAR), Image.BICUBIC)
    assert back.shape == photo.shape
    assert np.abs(back.astype(int) - photo).mean() < 3  # a smooth picture survives the trip


@needs_real_samples
def test_computed_clothes_mask_agrees_with_the_datasets_masks():
    for clothes in sorted((JDAI / "cloth_image").glob("*.jpg")):
        truth = readers.read_mask(JDAI / "cloth_mask" / f"{clothes.stem}_mask.png") > 0
        mask = representation.clothes_mask_from_white(readers.read_rgb(clothes)) > 0
        assert (mask & truth).sum() / (mask | truth).sum() > 0.95, clothes.name


def test_tryon_at_the_model_size_is_the_pipeline_walk(model, model_dir, synthetic_data_dir):
    record = pipeline.data_source(synthetic_data_dir, "test")[0]
    raw = examples.resize_raw(examples.decode_record(record), (64, 48))
    result = model(person=raw["reference_image"], person_parsing=raw["reference_parsing"],
                   clothes=raw["clothes"], clothes_mask=raw["clothes_mask"],
                   pose=raw["target_keypoints"])
    networks, _ = export.load_model(model_dir)
    graphdef, state = nnx.split(networks)
    batch = examples.model_inputs(
        {k: v[None] for k, v in examples.compact_example(raw).items()})
    walk = jax.jit(lambda s, b: stages.run_stages(stages.PIPELINE, nnx.merge(graphdef, s), b))
    values = jax.device_get(walk(state, batch))
    walked = visualize.to_rgb(values["refined"][0])
    # The photo where the try-on keeps it (photo_size), the walk's picture elsewhere.
    keep = photo_size.keep_mask(raw["reference_parsing"],
                                values["parsing"][0].argmax(-1).astype(np.uint8))
    assert 0 < keep.mean() < 1
    expected = np.where(keep[..., None], raw["reference_image"], walked)
    assert result.image.shape == (64, 48, 3)
    assert np.abs(result.image.astype(int) - expected).max() <= 1
    assert set(result.intermediates) == set(INTERMEDIATES) and result.notes == []


@needs_real_samples
def test_tryon_of_an_odd_sized_photo_has_the_photos_size(model, tmp_path):
    photo = Image.open(JDAI / "images" / f"{PERSON}.jpg").resize((150, 210), Image.BILINEAR)
    parsing = Image.open(JDAI / "parse_cihp" / f"{PERSON}.png").resize((150, 210),
                                                                      Image.NEAREST)
    photo.save(tmp_path / "person.jpg")
    parsing.save(tmp_path / "parsing.png")
    result = model(person=tmp_path / "person.jpg", person_parsing=tmp_path / "parsing.png",
                   clothes=JDAI / "cloth_image" / f"{CLOTHES}.jpg", pose=JDAI / "pose_coco" / POSE,
                   pose_size=(256, 192))
    assert result.image.shape == (210, 150, 3) and result.image.dtype == np.uint8
    assert all(p.shape[:2] == (210, 150) for p in result.intermediates.values())
    assert "clothes mask computed" in result.notes[0]
    assert mgvton_jax.TryOn is tryon.TryOn


def _bad_inputs(tmp_path):
    """(name, extra files, CLI overrides, expected message) of inputs that must be refused."""
    no_person = tmp_path / "empty_keypoints.json"
    no_person.write_text(json.dumps({"version": 1.3, "people": []}))
    small = tmp_path / "small_parsing.png"
    Image.open(JDAI / "parse_cihp" / f"{PERSON}.png").resize((96, 128), Image.NEAREST).save(
        small)
    out_of_range = tmp_path / "labels_25.png"
    labels = np.asarray(Image.open(JDAI / "parse_cihp" / f"{PERSON}.png")).copy()
    labels[0, 0] = 25
    Image.fromarray(labels).save(out_of_range)
    return [("--pose", no_person, "no person"),
            ("--person-parsing", small, "parsing is 96x128 but the person photo"),
            ("--person-parsing", out_of_range, r"label ids \[25\] outside")]


def _args(tmp_path, model_dir, **overrides):
    args = {"--model": model_dir, "--person": JDAI / "images" / f"{PERSON}.jpg",
            "--person-parsing": JDAI / "parse_cihp" / f"{PERSON}.png",
            "--clothes": JDAI / "cloth_image" / f"{CLOTHES}.jpg",
            "--pose": JDAI / "pose_coco" / POSE, "--out": tmp_path / "out" / "result.png"}
    args.update(overrides)
    return [str(x) for pair in args.items() for x in pair]


@needs_real_samples
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path):
    for flag, path, message in _bad_inputs(tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            tryon.main(_args(tmp_path, tmp_path / "no_model_needed", **{flag: path}))
        assert str(exit_info.value).startswith(f"error: {path}")
        assert re.search(message, str(exit_info.value)), exit_info.value
        assert not (tmp_path / "out").exists()


@needs_real_samples
def test_truncated_photo_from_the_command_line(tmp_path, model_dir):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((JDAI / "images" / f"{PERSON}.jpg").read_bytes()[:2000])
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    run = subprocess.run([sys.executable, "-m", "mgvton_jax.tryon",
                          *_args(tmp_path, model_dir, **{"--person": truncated})],
                         capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"error: {truncated}: cannot decode image " \
        f"({run.stderr.split('(', 1)[1].strip()}"
    assert not (tmp_path / "out").exists()


@needs_real_samples
def test_cli_writes_the_result_and_intermediates(tmp_path, model_dir, capsys):
    tryon.main(_args(tmp_path, model_dir) + ["--intermediates"])
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(["result.png"] + [f"result_{k}.png" for k in INTERMEDIATES])
    assert Image.open(tmp_path / "out" / "result.png").size == (192, 256)
    assert "clothes mask computed" in capsys.readouterr().err


def test_pair_list_counts_bad_lines_and_missing_files(model_dir, synthetic_mpv, tmp_path,
                                                      capsys):
    lines = (synthetic_mpv / "all_poseA_poseB_clothes.txt").read_text().splitlines()
    pair_list = tmp_path / "pairs.txt"
    missing = lines[0].replace("@2=", "@9=")
    pair_list.write_text("\n".join([lines[0], lines[1], "only two\tcolumns", missing]) + "\n")
    tryon.main(["--model", str(model_dir), "--pairs", str(pair_list), "--data-root",
                str(synthetic_mpv), "--out-dir", str(tmp_path / "results")])
    outputs = sorted((tmp_path / "results").glob("*.png"))
    assert len(outputs) == 2
    assert Image.open(outputs[0]).size == Image.open(
        synthetic_mpv / "all" / lines[0].split()[0]).size
    captured = capsys.readouterr()
    assert "wrote 2 try-on results" in captured.out and "skipped 2" in captured.out
    assert captured.err.count("skipped ") == 2


def test_a_pair_list_is_walked_in_batches_over_the_devices(model_dir, synthetic_mpv, tmp_path,
                                                           capsys):
    lines = (synthetic_mpv / "all_poseA_poseB_clothes.txt").read_text().splitlines()[:9]
    pair_list = tmp_path / "pairs.txt"
    pair_list.write_text("\n".join(lines) + "\n")
    model = tryon.TryOn.load(model_dir, batch_size=6)  # 4 devices: 8 per walk
    walked = []
    walk = model.model._walk

    def counted(state, batch, *static):
        walked.append(len(batch["reference_image"]))
        return walk(state, batch, *static)

    model.model._walk = counted
    assert tryon._run_pairs(model, str(pair_list), str(synthetic_mpv), str(tmp_path / "out"),
                            intermediates=False) == 9
    assert walked == [8, 4]  # 9 examples: a full batch, then one padded to the 4 devices
    assert "wrote 9 try-on results" in capsys.readouterr().out
    # A line's result is the one a lone try-on of it gives (the padded walk's last row).
    source = tryon.layouts.open_source(synthetic_mpv, str(pair_list))
    last = source.pair_list.triplets[8]
    alone = model(inputs=tryon._pair_inputs(source.layout, last)).image
    written = np.asarray(Image.open(tmp_path / "out" / f"{tryon.file_stem(last.key)}.png"))
    assert walked[-1] == 4 and np.abs(alone.astype(int) - written).max() <= 1
