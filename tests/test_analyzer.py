"""The person analyzer's pieces with known answers: the network's shapes, its losses, the
training examples, decoding joints, mapping back to the photo, the keypoint scores; and a
tiny analyzer trained, exported and run through `prep analyze` whose files the readers, `prep
check` and the builder take."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from mgvton_jax import analyze, constants, export, stages
from mgvton_jax.config_lib import load_config_file
from mgvton_jax.data import readers
from mgvton_jax.data.build import build_dataset
from mgvton_jax.data.representation import joint_visible
from mgvton_jax.metrics.keypoint_scores import keypoint_counts, keypoint_scores, torso_size
from mgvton_jax.models.analyzer import PersonAnalyzer
from mgvton_jax.prep import checks
from mgvton_jax.stages.analyzer import joint_losses, training_examples, zoomed_out
from mgvton_jax.training import loop
from mgvton_jax.tryon_inputs import Fit

ROOT = Path(__file__).resolve().parents[1]
J = constants.NUM_KEYPOINTS


def test_the_analyzer_maps_a_photo_to_parsing_joints_and_presence():
    net = PersonAnalyzer(3, num_labels=20, num_joints=J, width=4, max_width=8, levels=3,
                         rngs=nnx.Rngs(0))
    parsing, joints, presence = net(jnp.zeros((2, 32, 24, 3)))
    assert (parsing.shape, joints.shape, presence.shape) == ((2, 32, 24, 20), (2, 32, 24, J),
                                                             (2, J))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*n_downsample = 4"):
        net(jnp.zeros((1, 30, 24, 3)))


def test_the_analyzer_is_a_stage_apart_from_the_try_on_walk():
    assert "analyzer" in stages.STAGES and "analyzer" not in stages.PIPELINE
    assert stages.required_stages("analyzer") == ()


def test_joint_losses_known_answers():
    discs = np.zeros((1, 8, 6, J), np.float32)
    discs[0, 2:4, 1:3, 0] = 1  # joint 0: a 2x2 disc; the others missing
    # Logits whose spatial softmax is exactly the disc's distribution (-inf elsewhere, made
    # finite): the cross-entropy is then its entropy, log 4.
    logits = np.where(discs > 0, 0.0, -1e4).astype(np.float32)
    presence = np.full((1, J), -2.0, np.float32)
    presence[0, 0] = 3.0
    location, present = joint_losses(jnp.asarray(logits), jnp.asarray(presence),
                                      jnp.asarray(discs))
    assert float(location) == pytest.approx(np.log(4), abs=1e-5)
    target = np.zeros((1, J), np.float32)
    target[0, 0] = 1
    expected = np.mean(np.log1p(np.exp(-presence)) * target +
                       np.log1p(np.exp(presence)) * (1 - target))
    assert float(present) == pytest.approx(expected, rel=1e-5)
    # Uniform logits: log of the pixel count.
    location, _ = joint_losses(jnp.zeros_like(logits), jnp.asarray(presence), jnp.asarray(discs))
    assert float(location) == pytest.approx(np.log(48), abs=1e-5)


def _batch(rng, b=3, h=16, w=12):
    parsing = jax.nn.one_hot(rng.integers(0, 20, (b, h, w)), 20)
    discs = (rng.random((b, h, w, J)) > 0.9).astype(np.float32)
    return {"target_image": jnp.asarray(rng.uniform(-1, 1, (b, h, w, 3)), jnp.float32),
            "clothes": jnp.asarray(rng.uniform(-1, 1, (b, h, w, 3)), jnp.float32),
            "target_parsing": parsing, "target_pose": jnp.asarray(discs)}


def test_training_examples_add_product_images_as_photos_without_a_person():
    batch = _batch(np.random.default_rng(0))
    augment = dict(clothes_negatives=2, zoom_probability=0.0, min_zoom=0.5)
    from ml_collections import ConfigDict

    photos, parsing, discs = training_examples(batch, jax.random.key(0), ConfigDict(augment))
    assert photos.shape[0] == 5
    np.testing.assert_allclose(photos[:3], batch["target_image"], atol=1e-5)
    np.testing.assert_allclose(photos[3:], batch["clothes"][:2], atol=1e-5)
    np.testing.assert_allclose(parsing[:3], batch["target_parsing"], atol=1e-5)
    assert np.all(np.asarray(parsing[3:]).argmax(-1) == 0) and float(discs[3:].sum()) == 0


def test_zoomed_out_examples_shrink_into_a_white_border_and_move_labels_alike():
    rng = np.random.default_rng(1)
    batch = _batch(rng, b=4, h=32, w=24)
    photos, parsing, discs = zoomed_out(jax.random.key(3), batch["target_image"],
                                        batch["target_parsing"], batch["target_pose"],
                                        probability=1.0, min_scale=0.5)
    parsing, discs, photos = np.asarray(parsing), np.asarray(discs), np.asarray(photos)
    np.testing.assert_allclose(parsing.sum(-1), 1.0, atol=1e-5)  # still a distribution
    for i in range(4):
        # Every corner pixel outside the shrunk picture: white, background, no joint.
        white = np.all(np.isclose(photos[i], 1.0, atol=1e-5), axis=-1)
        assert white.mean() > 0.0
        assert np.allclose(parsing[i][white, 0], 1.0, atol=1e-5)
        assert np.allclose(discs[i][white], 0.0, atol=1e-5)
        # The disc mass shrinks with the area (scale^2 in [0.25, 1]).
        ratio = discs[i].sum() / np.asarray(batch["target_pose"][i]).sum()
        assert 0.2 < ratio < 1.0


def test_decode_joints_finds_the_centre_of_mass_and_drops_absent_joints():
    maps = np.zeros((32, 24, J), np.float32)
    rows, cols = np.mgrid[:32, :24]
    centre = (10.3, 7.6)  # (row, col)
    maps[..., 0] = 0.9 * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / 2)
    maps[..., 1] = 0.3 * (rows == 5) * (cols == 5)  # below the threshold
    keypoints = analyze.decode_joints(maps)
    assert keypoints[0, 0] == pytest.approx(centre[1], abs=0.05)
    assert keypoints[0, 1] == pytest.approx(centre[0], abs=0.05)
    assert keypoints[0, 2] == pytest.approx(maps[..., 0].max())
    assert np.all(keypoints[1:] == 0)


@pytest.mark.parametrize("photo_hw", [(256, 192), (300, 400), (1000, 180), (64, 48)])
def test_keypoints_back_undoes_the_fit(photo_hw):
    fit = Fit.of(photo_hw, (128, 96))
    rng = np.random.default_rng(0)
    keypoints = np.concatenate([rng.uniform(0.05, 0.95, (J, 2)) * np.array(photo_hw[::-1]),
                                rng.uniform(0.5, 1, (J, 1))], axis=1).astype(np.float32)
    keypoints[3] = 0
    np.testing.assert_allclose(fit.keypoints_back(fit.keypoints(keypoints)),
                               keypoints, atol=1e-3)


def test_parsing_at_the_photos_size_follows_the_frames_labels():
    fit = Fit.of((512, 384), (128, 96))  # x4, no border
    probabilities = np.zeros((128, 96, 20), np.float32)
    probabilities[..., 0] = 1
    probabilities[40:90, 30:70] = np.eye(20)[5]
    labels = analyze.parsing_at(probabilities, fit)
    assert labels.shape == (512, 384)
    truth = np.zeros((512, 384), bool)
    truth[160:360, 120:280] = True
    found = labels == 5
    assert (found & truth).sum() / (found | truth).sum() > 0.98
    same = analyze.parsing_at(probabilities, Fit.of((128, 96), (128, 96)))
    np.testing.assert_array_equal(same, probabilities.argmax(-1))


def _person(neck=(50, 40), hips=((45, 100), (55, 100))):
    keypoints = np.zeros((J, 3), np.float32)
    keypoints[1] = (*neck, 1)
    keypoints[8] = (*hips[0], 1)
    keypoints[11] = (*hips[1], 1)
    keypoints[2] = (30, 45, 1)
    return keypoints


def test_keypoint_scores_known_answers():
    truth = _person()
    assert torso_size(truth) == pytest.approx(60.0)
    estimate = truth.copy()
    estimate[1, 0] += 5.0  # neck 5 px off: within 0.1 * 60 = 6
    estimate[2, 0] += 10.0  # shoulder 10 px off: within 0.2 only
    estimate[8] = 0  # a hip missed
    estimate[14] = (48, 30, 0.8)  # an eye invented
    sums = keypoint_counts(estimate, truth)
    scores = keypoint_scores(sums)
    assert scores["pck@0.1"] == pytest.approx(2 / 4)  # neck, l_hip
    assert scores["pck@0.2"] == pytest.approx(3 / 4)
    assert scores["pck@0.1_per_joint"]["r_shoulder"] == 0.0
    assert scores["pck@0.2_per_joint"]["r_shoulder"] == 1.0
    assert scores["pck@0.1_per_joint"]["nose"] is None
    assert scores["missed"] == pytest.approx(1 / 4)
    assert scores["invented"] == pytest.approx(1 / 14)
    assert scores["missed_per_joint"]["r_hip"] == 1.0 and scores["missed_per_joint"]["neck"] == 0
    assert scores["invented_per_joint"]["r_eye"] == 1.0
    assert scores["missed_per_joint"]["nose"] is None
    assert scores["annotated_per_joint"]["neck"] == 1 and scores["annotated_per_joint"]["nose"] == 0
    no_torso = truth.copy()
    no_torso[11] = 0
    assert np.isnan(torso_size(no_torso))
    assert keypoint_counts(truth, no_torso)["with_torso"].sum() == 0


@pytest.fixture(scope="module")
def tiny_analyzer(synthetic_data_dir, tmp_path_factory):
    """A tiny analyzer trained for 3 steps on the synthetic set and exported."""
    workdir = tmp_path_factory.mktemp("analyzer_run")
    config = load_config_file(ROOT / "configs" / "analyzer.py", "tiny")
    config.data.data_dir = str(synthetic_data_dir)
    config.train.update(num_steps=3, log_every=1, checkpoint_every=3, sample_every=3)
    metrics = loop.train_stage(config, workdir, synthetic_data_dir)
    out = tmp_path_factory.mktemp("analyzer_model") / "analyzer"
    manifest = export.export_model(workdir, out, (export.ANALYZER,))
    return out, metrics, manifest, workdir


def test_a_tiny_analyzer_trains_and_exports(tiny_analyzer):
    out, metrics, manifest, workdir = tiny_analyzer
    assert {"cross_entropy", "joints", "presence"} <= set(metrics)
    assert all(np.isfinite(metrics[k]) for k in ("cross_entropy", "joints", "presence"))
    assert list(manifest["stages"]) == ["analyzer"] and manifest["image_size"] == [64, 48]
    assert (workdir / "analyzer" / "samples" / "step_0000003.png").is_file()
    analyzer = analyze.Analyzer.load(out)
    assert analyzer.image_size == (64, 48)
    with pytest.raises(export.ModelError, match="not the person analyzer"):
        analyze.Analyzer.load(ROOT / "pretrained" / "viton")


def test_prep_analyze_writes_files_that_the_readers_check_and_builder_take(
        tiny_analyzer, synthetic_mpv, tmp_path):
    """A zero threshold and no person check: the tiny analyzer's files are whatever it finds,
    and must still be files every reader takes."""
    group = sorted((synthetic_mpv / "all").iterdir())[0]
    # VITON's names: a person NNN_0.jpg wears the clothes NNN_1.jpg.
    photo, clothes = tmp_path / "000001_0.jpg", tmp_path / "000001_1.jpg"
    for path, kind in ((photo, "person"), (clothes, "cloth_front.jpg")):
        path.write_bytes(next(p for p in sorted(group.iterdir()) if kind in p.name).read_bytes())
    out = tmp_path / "mine"
    analyzer = analyze.Analyzer.load(tiny_analyzer[0], threshold=0.0)
    pixels = readers.read_rgb(photo)
    written = analyze.write_analysis(photo, pixels, analyzer.analyse([pixels])[0], out / "test")
    assert [p.relative_to(out / "test").parts[0] for p in written] == \
        ["image", "image-parse", "pose", "preview"]
    labels = readers.read_parsing(written[1])
    assert labels.shape == pixels.shape[:2]
    assert Image.open(written[1]).mode == "P"  # label ids, shown in the LIP colours
    read = readers.read_keypoints(written[2])
    assert read.people == 1 and read.keypoints.shape == (J, 3)
    assert json.loads(written[2].read_text())["people"][0]["pose_keypoints_2d"]
    assert not checks.unusable(checks.check_person(written[0], written[1], written[2]))
    # A data set of one's own photos: VITON's folders plus clothes and a pair list.
    for folder in ("cloth", "cloth-mask"):
        (out / "test" / folder).mkdir()
    (out / "test" / "cloth" / clothes.name).write_bytes(clothes.read_bytes())
    mask = next(p for p in sorted(group.iterdir()) if p.name.endswith("cloth_front_mask.jpg"))
    (out / "test" / "cloth-mask" / f"{clothes.stem}.jpg").write_bytes(mask.read_bytes())
    (out / "test_pairs.txt").write_text(f"{photo.name} {clothes.name}\n")
    report = build_dataset(out, tmp_path / "built", progress=False)
    assert report["layout"] == "viton" and report["written"] and not report["skipped"]


def test_prep_analyze_command_counts_a_photo_it_cannot_read(tiny_analyzer, tmp_path):
    missing, broken = tmp_path / "missing.jpg", tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    run = subprocess.run([sys.executable, "-m", "mgvton_jax.prep", "analyze", str(missing),
                          str(broken), "--out", str(tmp_path / "out"), "--analyzer",
                          str(tiny_analyzer[0])], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1, run.stderr
    assert f"skipped {missing}: file not found" in run.stderr
    assert f"skipped {broken}: cannot decode image" in run.stderr
    assert "analyzed 0 photos into" in run.stdout and "skipped 2" in run.stdout
    assert "Traceback" not in run.stderr


def test_eval_analyzer_scores_agree_with_a_direct_count(tiny_analyzer, synthetic_data_dir,
                                                        tmp_path):
    from mgvton_jax import eval_analyzer
    from mgvton_jax.data import examples
    from mgvton_jax.eval_examples import select

    out = tmp_path / "scores"
    eval_analyzer.main(["--data-dir", str(synthetic_data_dir), "--out", str(out),
                        "--analyzer", str(tiny_analyzer[0])])
    results = json.loads((out / "results.json").read_text())
    assert Image.open(out / "grid.png").size[0] > 0
    # The same people analysed here, counted pixel by pixel and joint by joint.
    selection = select(synthetic_data_dir, "paired")
    analyzer = analyze.Analyzer.load(tiny_analyzer[0])
    raws = [examples.decode_record(selection.source[i]) for i in selection.indices]
    analyses = analyzer.analyse([raw["target_image"] for raw in raws])
    pairs = list(zip(analyses, raws, strict=True))
    same = sum(int((a.parsing == r["target_parsing"]).sum()) for a, r in pairs)
    pixels = sum(r["target_parsing"].size for r in raws)
    assert results["people"] == len(raws)
    assert results["parsing"]["pixel_accuracy"] == pytest.approx(same / pixels)
    annotated = sum(int(joint_visible(r["target_keypoints"]).sum()) for r in raws)
    found = sum(int((joint_visible(a.keypoints) & joint_visible(r["target_keypoints"])).sum())
                for a, r in pairs)
    assert results["keypoints"]["missed"] == pytest.approx(1 - found / annotated)
    with pytest.raises(SystemExit, match="no built data set; build it with"):
        eval_analyzer.main(["--data-dir", str(tmp_path / "none"), "--out", str(out),
                            "--analyzer", str(tiny_analyzer[0])])
