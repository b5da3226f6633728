"""The frozen-stage cache: the step on given outputs, the store, training that reads it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from test_training import fixed_batch, tiny_config, untrained_frozen

from mgvton_jax.data import pipeline
from mgvton_jax.training import loop
from mgvton_jax.training.frozen_cache import FrozenCache
from mgvton_jax.training.step import compile_stage


def test_the_step_on_given_outputs_is_the_step_that_computes_them(synthetic_data_dir):
    config = tiny_config("refine", synthetic_data_dir)
    compiled = compile_stage(config, untrained_frozen(config))
    batch = compiled.to_device(fixed_batch(synthetic_data_dir, config))
    values = compiled.frozen_outputs(batch)
    assert set(values) == {"warped_clothes", "coarse"} == set(compiled.consumed)
    copy = jax.tree.map(jnp.copy, compiled.state)  # each step donates its state
    state_a, metrics_a = compiled.step(compiled.state, batch)
    state_b, metrics_b = compiled.given_step(copy, batch, values)
    for key in metrics_a:
        np.testing.assert_allclose(metrics_b[key], metrics_a[key], rtol=1e-6, err_msg=key)
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_entries_round_trip_as_float16_and_a_new_fingerprint_empties_the_cache(tmp_path):
    shapes = {"coarse": (4, 3, 3)}
    cache = FrozenCache(tmp_path, 5, shapes, "a")
    assert cache.get([0, 3], [0, 1]) is None
    values = {"coarse": np.random.default_rng(0).uniform(-1, 1, (2, 4, 3, 3))}
    stored = cache.put([0, 3], [0, 1], values)
    np.testing.assert_array_equal(stored["coarse"], values["coarse"].astype(np.float16))
    np.testing.assert_array_equal(cache.get([3, 0], [1, 0])["coarse"], stored["coarse"][::-1])
    assert cache.get([0, 3], [1, 1]) is None  # the other side of record 0 is not stored
    cache.flush()
    again = FrozenCache(tmp_path, 5, shapes, "a")
    np.testing.assert_array_equal(again.get([0, 3], [0, 1])["coarse"], stored["coarse"])
    other = FrozenCache(tmp_path, 5, shapes, "b")
    assert other.get([0], [0]) is None and not other.filled.any()


def test_training_with_the_cache_runs_the_frozen_stages_once_per_example(
        synthetic_data_dir, trained_pipeline, tmp_path, capsys):
    records = len(pipeline.data_source(synthetic_data_dir, "train"))
    epoch = records // 4
    config = tiny_config("refine", synthetic_data_dir, num_steps=2 * epoch, cache_frozen=True,
                         log_every=100, checkpoint_every=100, sample_every=1000)
    config.data.flip_probability = 0.0
    config.frozen.workdir = str(trained_pipeline[0])
    loop.train_stage(config, tmp_path, synthetic_data_dir)
    out = capsys.readouterr().out
    drawn = 2 * epoch * 4
    assert f"{drawn - epoch * 4} of {drawn} examples read from the cache" in out
    directory = tmp_path / "refine" / "frozen_cache" / "process_0"
    filled = np.fromfile(directory / "filled.u8", np.uint8).reshape(records, 2)
    assert filled[:, 0].sum() == epoch * 4 and not filled[:, 1].any()  # never mirrored
    assert json.loads((directory / "meta.json").read_text())["shapes"] == {
        "warped_clothes": [64, 48, 3], "coarse": [64, 48, 3]}
