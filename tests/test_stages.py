"""The stage registry and its inference walk: order, needs, channels, outputs, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from real_samples import JDAI, needs_real_samples

from mgvton_jax import checkpoints, inference, stages, tryon
from mgvton_jax import eval as evaluation
from mgvton_jax.config_lib import base_config
from mgvton_jax.data import examples, pipeline, readers
from mgvton_jax.data import representation as rep
from mgvton_jax.models.refine import compose
from mgvton_jax.stages import base, gmm, parsing, refine, warp_gan


def test_pipeline_order_and_what_each_stage_needs():
    assert stages.PIPELINE == ("parsing", "gmm", "warp_gan", "refine")
    assert stages.required_stages("refine") == ("parsing", "gmm", "warp_gan")
    assert stages.required_stages("gmm") == ("parsing",)  # inference: stage I's parsing
    config = base_config("gmm", "tiny")
    config.train.use_synthesized_parsing = False
    assert stages.required_stages("gmm", config) == ()  # training: the ground truth
    config.train.use_synthesized_parsing = True
    assert stages.required_stages("gmm", config) == ("parsing",)
    with pytest.raises(ValueError, match="unknown stage 'tps'.*'parsing', 'gmm'"):
        stages.get("tps")


def _upscale_stage() -> stages.Stage:
    """A fifth stage as the README's recipe adds one: after the refinement, with no networks;
    it declares its picture columns, an intermediate and a scorer."""

    def infer(networks, values, batch):
        del networks, batch
        upscaled = values["refined"][:, ::-1]  # upside down: easy to tell apart
        return {"upscaled": upscaled,
                "upscale_mask": (upscaled[..., :1] > 0).astype(jnp.float32)}

    def l1(values):  # (B, 2): the per-example |upscaled - target| sum and pixel count
        error = jnp.abs(values["upscaled"] - values["target_image"]).sum((1, 2, 3))
        return jnp.stack([error, jnp.full_like(error, values["upscaled"][0].size)], -1)

    return dataclasses.replace(
        stages.get("refine"), name="upscale", networks={}, inference=(),
        consumes=("refined",), produces={"upscaled": 3, "upscale_mask": 1}, infer=infer,
        sample_columns=("refined", "upscaled", "target_image"),
        intermediates=("upscaled", "upscale_mask"), image="upscaled",
        scorer=base.Scorer(per_example=l1,
                           summary=lambda sums: {"l1": float(sums[0] / sums[1])}))


def test_a_fifth_stage_runs_after_what_it_consumes():
    fifth = _upscale_stage()
    registry = {**stages.STAGES, "upscale": fifth}
    assert stages._pipeline_order(registry) == (*stages.PIPELINE, "upscale")
    orphan = dataclasses.replace(fifth, consumes=("depth",))
    with pytest.raises(ValueError, match="depth"):
        stages._pipeline_order({**stages.STAGES, "upscale": orphan})


@pytest.fixture
def five_stages(trained_pipeline, monkeypatch):
    """The trained tiny pipeline with the fifth stage registered after it, as a Pipeline."""
    fifth = _upscale_stage()
    registry = {**stages.STAGES, "upscale": fifth}
    monkeypatch.setattr(stages, "STAGES", registry)
    monkeypatch.setattr(stages, "PIPELINE", stages._pipeline_order(registry))
    monkeypatch.setattr(stages, "_PRODUCER", {**stages._PRODUCER, "upscaled": "upscale",
                                              "upscale_mask": "upscale"})
    workdir, configs, _ = trained_pipeline
    networks = {name: checkpoints.load_inference_networks(name, workdir / name)[0]
                for name in stages.PIPELINE[:-1]}
    return inference.Pipeline(stages.PIPELINE, {**networks, "upscale": {}},
                              {name: 2 for name in stages.PIPELINE},
                              {**configs, "upscale": configs["refine"]})


def test_a_fifth_stage_appears_in_evaluation_and_try_on(five_stages, synthetic_data_dir,
                                                       tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "load_workdir", lambda workdir, stop_after: five_stages)
    results = evaluation.evaluate("unused", tmp_path, synthetic_data_dir, batch_size=4,
                                  grid_examples=2, progress=False)
    assert results["walk"][-1] == "upscale" and results["result"] == "upscaled"
    assert set(results["stages"]) == {"parsing", "gmm", "upscale"}
    assert 0 < results["stages"]["upscale"]["l1"] < 2
    columns = evaluation.grid_columns(five_stages, paired=True)
    assert columns == ("reference_image", "clothes", "target_pose", "parsing", "warped_mask",
                       "warped_clothes", "coarse", "composition_mask", "refined", "upscaled",
                       "target_parsing", "target_image")
    grid = np.asarray(Image.open(tmp_path / "grids" / "grid_0000.png"))
    tile = 48 * (192 // 64)  # the grid enlarges 64x48 tiles 3 times
    assert grid.shape[1] == len(columns) * tile
    record = pipeline.data_source(synthetic_data_dir, "test")[0]
    raw = examples.resize_raw(examples.decode_record(record), (64, 48))
    result = tryon.TryOn(five_stages, compose=False)(  # the network's picture alone
        person=raw["reference_image"], person_parsing=raw["reference_parsing"],
        clothes=raw["clothes"], clothes_mask=raw["clothes_mask"], pose=raw["target_keypoints"])
    assert list(result.intermediates) == ["parsing", "warped_clothes", "coarse",
                                          "composition_mask", "upscale_mask"]
    refined = tryon.TryOn(inference.Pipeline(
        stages.PIPELINE[:-1], five_stages.networks, five_stages.steps, five_stages.configs),
        compose=False)(
        person=raw["reference_image"], person_parsing=raw["reference_parsing"],
        clothes=raw["clothes"], clothes_mask=raw["clothes_mask"], pose=raw["target_keypoints"])
    np.testing.assert_array_equal(result.image, refined.image[::-1])  # the fifth stage's


def test_input_channels_come_from_the_one_table():
    # The paper's and our design's counts (README "Model" table).
    assert stages.channels(parsing.CONDITION) == 24
    assert stages.channels(parsing.CONDITION + ("target_parsing",)) == 44
    assert stages.channels(gmm.PERSON_STREAM) == 2 and stages.channels(gmm.CLOTHES_STREAM) == 1
    assert stages.channels(warp_gan.MAIN_INPUTS) == 44
    assert stages.channels(warp_gan.REFERENCE_INPUTS) == 23
    assert stages.channels(warp_gan.CONDITION + ("target_image",)) == 41
    assert stages.channels(refine.INPUTS) == 24
    assert set(examples.MODEL_INPUT_CHANNELS) <= set(stages.CHANNELS)


def _tiny_networks():
    config = base_config("parsing", "tiny")
    return {name: stages.build_networks(name, config, nnx.Rngs(name == "gmm"),
                                        only=stages.get(name).inference)
            for name in stages.PIPELINE}


@pytest.fixture(scope="module")
def walked(synthetic_data_dir):
    """(batch, every stage's outputs) of the untrained tiny pipeline on 2 synthetic triplets."""
    dataset = pipeline.make_dataset(synthetic_data_dir, "test", 2, shuffle=False,
                                    image_size=(64, 48))
    iterator = iter(dataset)
    batch = examples.model_inputs(next(iterator))
    iterator.close()
    graphdef, state = nnx.split(_tiny_networks())
    run = jax.jit(lambda state, batch: stages.run_stages(
        stages.PIPELINE, nnx.merge(graphdef, state), batch))
    return batch, jax.device_get(run(state, batch))


def test_walk_outputs_keys_and_shapes_per_stage(walked):
    batch, values = walked
    produced = {key: c for name in stages.PIPELINE for key, c in
                stages.get(name).produces.items()}
    assert set(values) == set(produced)
    for key, channels in produced.items():
        assert values[key].shape == (2, 64, 48, channels), key
        assert np.all(np.isfinite(values[key])), key
    np.testing.assert_allclose(values["parsing"].sum(-1), 1.0, rtol=1e-5)
    eps = 1e-5  # bilinear sampling rounds
    for key in ("warped_mask", "composition_mask"):
        assert -eps <= values[key].min() and values[key].max() <= 1.0 + eps
    for key in ("warped_clothes", "coarse", "refined"):
        assert -1.0 - eps <= values[key].min() and values[key].max() <= 1.0 + eps
    np.testing.assert_allclose(
        values["refined"], compose(values["composition_mask"], values["warped_clothes"],
                                   values["coarse"]), atol=1e-6)
    # An untrained GMM regresses small offsets: the warped clothes stay near the clothes.
    assert np.abs(values["warped_clothes"] - np.asarray(batch["clothes"])).mean() < 0.5


def test_walk_raises_when_a_stage_or_an_input_is_missing(walked):
    batch, _ = walked
    networks = _tiny_networks()
    without_gmm = {name: nets for name, nets in networks.items() if name != "gmm"}
    with pytest.raises(stages.StageMissingError, match="'gmm' stage is needed"):
        stages.run_stages(stages.PIPELINE, without_gmm, batch)
    with pytest.raises(stages.StageMissingError,
                       match=r"'warp_gan' stage needs \['parsing', 'warped_clothes'\]"):
        stages.run_stages(["warp_gan"], networks, batch)


def test_gmm_sees_the_same_body_shape_from_a_parsing_as_the_data_pipeline(synthetic_data_dir):
    raw = examples.decode_record(pipeline.data_source(synthetic_data_dir, "train")[0])
    for labels in (raw["target_parsing"], examples.resize_raw(raw, (64, 48))["target_parsing"]):
        one_hot = jnp.asarray(rep.one_hot_parsing(labels))[None]
        np.testing.assert_allclose(gmm.blurred_body_shape(one_hot)[0],
                                   rep.body_shape_mask(labels), atol=1e-5)


@needs_real_samples
def test_gmm_body_shape_matches_the_data_pipeline_on_a_real_parsing():
    labels = readers.read_parsing(JDAI / "parse_cihp" / "1LJ21D005-G11@10=person_half_front.png")
    one_hot = jnp.asarray(rep.one_hot_parsing(labels))[None]
    np.testing.assert_allclose(gmm.blurred_body_shape(one_hot)[0], rep.body_shape_mask(labels),
                               atol=1e-5)
