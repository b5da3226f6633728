"""Training: one generator forward per step, losses fall, 4 devices = 1 device, frozen
stages loaded as inference weights, exact resume, crashes, errors (tiny configs)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from mgvton_jax import checkpoints, stages
from mgvton_jax.config_lib import load_config_file
from mgvton_jax.data import examples, pipeline
from mgvton_jax.models import vgg
from mgvton_jax.training import loop
from mgvton_jax.training.progress import NonFiniteLossError
from mgvton_jax.training.state import (
    ConfigError,
    build_train_state,
    check_batch,
    perceptual_network,
)
from mgvton_jax.training.step import compile_stage

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(stage, data_dir, **train):
    config = load_config_file(ROOT / "configs" / f"{stage}.py", "tiny")
    config.data.data_dir = str(data_dir)
    config.perceptual.random = True  # a narrow VGG: these tests check training, not the loss
    config.train.update(train)
    return config


def untrained_frozen(config):
    return {name: stages.build_networks(name, config, nnx.Rngs(1),
                                        only=stages.get(name).inference)
            for name in stages.required_stages(config.stage, config)}


def fixed_batch(data_dir, config):
    dataset = pipeline.make_dataset(data_dir, "train", config.train.batch_size, seed=0,
                                    image_size=tuple(config.image_size))
    iterator = iter(dataset)
    try:
        return next(iterator)  # a compact batch, as the step takes it
    finally:
        iterator.close()


# The supervised term that must fall when a stage fits one fixed batch.
FALLING_TERM = {"parsing": "cross_entropy", "gmm": "geometric", "warp_gan": "l1",
                "refine": "perceptual"}


def _batch_norm_inputs(monkeypatch, forward):
    """Runs forward() eagerly: [(BatchNorm module, float64 batch mean of its input)], in call
    order (a siamese extractor is called several times per forward)."""
    calls, original = [], nnx.BatchNorm.__call__

    def recording(self, x, *args, **kwargs):
        calls.append((self, np.asarray(x, np.float64).mean(axis=(0, 1, 2))))
        return original(self, x, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(nnx.BatchNorm, "__call__", recording)
        forward()
    return calls


def _at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _expected_running_means(monkeypatch, config, compiled, batch, frozen):
    """Sets every BatchNorm running mean of the compiled state to a known random value and
    returns (that state, {path: 0.9^k old + ... for the k calls of one generator forward})."""
    networks, _ = build_train_state(config)  # the same initial parameters
    stage = stages.get(config.stage)
    known = {key: batch[source] for key, source in stage.ground_truth(config).items()}
    values = stages.run_stages(stages.required_stages(stage.name, config), frozen, batch, known)
    trained = {name: networks[name] for name in stage.inference}
    calls = _batch_norm_inputs(monkeypatch, lambda: stage.infer(trained, values, batch))
    paths = {id(node): ("networks", name, *path) for name in stage.inference
             for path, node in nnx.iter_graph(networks[name]) if isinstance(node, nnx.BatchNorm)}
    assert calls and {id(module) for module, _ in calls} == set(paths)
    pure = jax.device_get(nnx.to_pure_dict(compiled.state))
    rng = np.random.default_rng(0)
    expected = {}
    for path in paths.values():
        running = _at(pure, path)
        running["mean"] = rng.normal(size=running["mean"].shape).astype(np.float32)
        expected[path] = running["mean"].astype(np.float64)
    for module, mean in calls:  # PyTorch momentum 0.1, once per call
        expected[paths[id(module)]] = 0.9 * expected[paths[id(module)]] + 0.1 * mean
    state = compiled.state
    nnx.replace_by_pure_dict(state, pure)
    return state, expected


@pytest.mark.parametrize("stage", stages.PIPELINE)
def test_one_generator_forward_per_step_and_loss_falls(stage, synthetic_data_dir,
                                                         monkeypatch):
    config = tiny_config(stage, synthetic_data_dir, lr=1e-3)
    frozen = untrained_frozen(config)
    compiled = compile_stage(config, frozen)
    host_batch = fixed_batch(synthetic_data_dir, config)
    state, expected = _expected_running_means(
        monkeypatch, config, compiled, examples.model_inputs(host_batch), frozen)
    batch = compiled.to_device(host_batch)
    # One step from the known state: BatchNorm statistics moved by exactly one forward.
    state, metrics = compiled.step(state, batch)
    history = [float(metrics[FALLING_TERM[stage]])]
    pure = jax.device_get(nnx.to_pure_dict(state))
    for path, mean in expected.items():
        np.testing.assert_allclose(_at(pure, path)["mean"], mean, rtol=1e-4, atol=1e-5,
                                   err_msg=str(path))
    for _ in range(11):
        state, metrics = compiled.step(state, batch)
        history.append(float(metrics[FALLING_TERM[stage]]))
    assert np.all(np.isfinite(history))
    assert np.mean(history[-3:]) < 0.9 * np.mean(history[:3]), history


def test_bfloat16_and_remat_step(synthetic_data_dir):
    config = tiny_config("parsing", synthetic_data_dir, compute_dtype="bfloat16", remat=True)
    compiled = compile_stage(config, {})
    batch = compiled.to_device(fixed_batch(synthetic_data_dir, config))
    state, metrics = compiled.step(compiled.state, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # parameters, BatchNorm statistics and Adam moments stay float32 (counters are integers)
    dtypes = {p.dtype for p in jax.tree.leaves(nnx.to_pure_dict(state))}
    assert {d for d in dtypes if not np.issubdtype(d, np.integer)} == {np.dtype(np.float32)}


def _leaves(state):
    return jax.tree.leaves(jax.device_get(nnx.to_pure_dict(state)))


@pytest.mark.parametrize("stage", stages.PIPELINE)
def test_four_devices_match_one_device(stage, synthetic_data_dir):
    assert jax.device_count() == 4
    # A large Adam epsilon makes the update proportional to the gradient: with the default
    # one, gradients that are zero up to rounding become +-lr updates of random sign.
    config = tiny_config(stage, synthetic_data_dir, adam_eps=1.0)
    batch = fixed_batch(synthetic_data_dir, config)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        compiled = compile_stage(config, untrained_frozen(config), devices=devices)
        state = compiled.state
        initial = _leaves(state)
        # One step: a second one would start from the first update and amplify its
        # reordering differences (measured up to 6% of the largest update with the Warp-GAN).
        state, metrics = compiled.step(state, compiled.to_device(batch))
        updates = [after - before for after, before in zip(_leaves(state), initial, strict=True)]
        results.append((jax.device_get(metrics), updates))
    (metrics_1, updates_1), (metrics_4, updates_4) = results
    for key in metrics_1:
        np.testing.assert_allclose(metrics_4[key], metrics_1[key], rtol=2e-5, atol=1e-6,
                                   err_msg=key)
    # float32 sums in another order: updates agree to 1% of the largest update. (Biases that
    # feed a BatchNorm have a zero true gradient; their tiny updates are rounding noise.)
    scale = max(np.abs(u).max() for u in updates_1)
    for one, four in zip(updates_1, updates_4, strict=True):
        np.testing.assert_allclose(four, one, atol=1e-2 * scale)


def test_batch_must_divide_by_devices(synthetic_data_dir):
    config = tiny_config("gmm", synthetic_data_dir, batch_size=6)
    with pytest.raises(ConfigError, match="batch_size 6: it must be a positive multiple "
                       "of the 4 devices"):
        compile_stage(config, {})
    for batch, message in ((0, "positive multiple"), (8, "larger than the 6 training")):
        config.train.batch_size = batch
        with pytest.raises(ConfigError, match=message):
            check_batch(config, 4, num_examples=6)


def _metrics(workdir, stage="gmm"):
    lines = (Path(workdir) / stage / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _final_state(workdir, config):
    store = checkpoints.StageCheckpoints(Path(workdir) / config.stage / "checkpoints")
    step = store.latest_step()
    networks, optimizers = build_train_state(config)
    target = nnx.to_pure_dict(nnx.state({"networks": networks, "optimizers": optimizers}))
    state, meta = store.restore(step, target)
    store.close()
    return step, state


@pytest.mark.parametrize("stage", ["gmm", "analyzer"])
def test_resume_is_exact(synthetic_data_dir, tmp_path, stage):
    # The analyzer: its step draws its augmentation from the step number. A constant rate:
    # a cosine schedule over num_steps changes with num_steps, which this test changes.
    common = dict(log_every=1, checkpoint_every=2, sample_every=100, lr_schedule="constant")
    straight = tiny_config(stage, synthetic_data_dir, num_steps=4, **common)
    loop.train_stage(straight, tmp_path / "straight", synthetic_data_dir)
    for steps in (2, 4):
        loop.train_stage(tiny_config(stage, synthetic_data_dir, num_steps=steps, **common),
                         tmp_path / "resumed", synthetic_data_dir)
    assert [m["step"] for m in _metrics(tmp_path / "resumed", stage)] == [1, 2, 3, 4]
    # The first step of a run compiles and is not timed: its line carries no rate.
    assert ["images_per_s" in m for m in _metrics(tmp_path / "resumed", stage)] == [
        False, True, False, True]
    for a, b in zip(_metrics(tmp_path / "straight", stage), _metrics(tmp_path / "resumed", stage),
                    strict=True):
        assert a["g_loss"] == b["g_loss"], (a, b)
    step_a, state_a = _final_state(tmp_path / "straight", straight)
    step_b, state_b = _final_state(tmp_path / "resumed", straight)
    assert step_a == step_b == 4
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)


def test_later_stage_without_earlier_names_it(synthetic_data_dir, tmp_path):
    config = tiny_config("warp_gan", synthetic_data_dir)
    with pytest.raises(stages.StageMissingError,
                       match=r"needs a trained 'parsing' stage.*configs/parsing.py:tiny"):
        loop.train_stage(config, tmp_path, synthetic_data_dir)


def test_later_stages_train_on_the_inference_weights_of_earlier_ones(trained_pipeline):
    workdir, configs, results = trained_pipeline
    for name in ("warp_gan", "refine"):  # each ran on the loaded earlier stages
        assert results[name]["step"] == 2 and np.isfinite(results[name]["g_loss"])
        assert (workdir / name / "samples" / "step_0000002.png").is_file()
    # The checkpoint's inference item is the generator alone (no D, no Adam moments) ...
    store = checkpoints.StageCheckpoints(workdir / "parsing" / "checkpoints")
    on_disk = store.manager.restore(2, args=ocp.args.Composite(
        inference=ocp.args.StandardRestore())).inference
    store.close()
    assert set(on_disk) == {"generator"}
    assert set(on_disk["generator"]) == {"encoder", "trunk", "decoder"}
    # ... and what a later stage loads equals what was trained.
    networks, meta = checkpoints.load_inference_networks("parsing", workdir / "parsing")
    assert set(networks) == {"generator"} and meta["step"] == 2
    _, trained = _final_state(workdir, configs["parsing"])
    loaded = nnx.to_pure_dict(nnx.state(networks["generator"]))
    flat_trained = jax.tree.leaves_with_path(trained["networks"]["generator"])
    flat_loaded = jax.tree.leaves_with_path(loaded)
    assert [p for p, _ in flat_loaded] == [p for p, _ in flat_trained]
    for (path, a), (_, b) in zip(flat_loaded, flat_trained, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=str(path))


@pytest.mark.parametrize("log_every, checkpoint_every, steps", [(10, 1, 5), (100, 4, 8)])
def test_non_finite_loss_stops_before_saving_and_keeps_the_last_good_checkpoint(
        synthetic_data_dir, tmp_path, log_every, checkpoint_every, steps):
    """A NaN from step 3 on stops the run naming step 3, with no checkpoint after step 2:
    with a save due every step, and with metrics fetched only at the step-4 save."""
    common = dict(log_every=log_every, checkpoint_every=checkpoint_every, sample_every=100)
    loop.train_stage(tiny_config("gmm", synthetic_data_dir, num_steps=2, **common), tmp_path,
                     synthetic_data_dir)
    poisoned = tiny_config("gmm", synthetic_data_dir, num_steps=steps, **common)
    poisoned.loss.geometric = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 3: \{'g_loss': nan"):
        loop.train_stage(poisoned, tmp_path, synthetic_data_dir)
    step, state = _final_state(tmp_path, poisoned)
    assert step == 2 and all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state))


def test_metrics_leave_the_device_only_at_log_and_save_steps(synthetic_data_dir, tmp_path,
                                                             monkeypatch):
    """No host round trip per step: one transfer of the buffered metrics per log or save."""
    transfers, device_get = [], jax.device_get

    def counting(tree):
        if isinstance(tree, list) and tree and isinstance(tree[0], dict):
            transfers.append(len(tree))
        return device_get(tree)

    monkeypatch.setattr(jax, "device_get", counting)
    config = tiny_config("gmm", synthetic_data_dir, num_steps=7, log_every=3,
                         checkpoint_every=5, sample_every=100)
    logged = loop.train_stage(config, tmp_path, synthetic_data_dir)
    assert transfers == [3, 2, 1, 1]  # steps 1-3 (log), 4-5 (save), 6 (log), 7 (last)
    lines = [json.loads(line) for line in
             (tmp_path / "gmm" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [3, 6, 7] and logged["step"] == 7


def test_a_run_and_its_resumption_compile_the_step_once(synthetic_data_dir, tmp_path, caplog):
    """Later steps reuse the first step's program, and so does a run resumed from a
    checkpoint (the restored state has the step's own shardings and types)."""
    def compilations(num_steps):
        caplog.clear()
        config = tiny_config("gmm", synthetic_data_dir, num_steps=num_steps, log_every=2,
                             checkpoint_every=2, sample_every=100)
        loop.train_stage(config, tmp_path, synthetic_data_dir)
        return sum("Finished XLA compilation of jit(train_step)" in record.getMessage()
                   for record in caplog.records)

    previous = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level("WARNING"):
            assert compilations(4) == 1
            assert compilations(8) == 1  # resumed at step 4
    finally:
        jax.config.update("jax_log_compiles", previous)


def _train_command(workdir, data_dir, steps, stage="gmm", extra=()):
    return [sys.executable, "-m", "mgvton_jax.train", f"--config={ROOT}/configs/{stage}.py:tiny",
            f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
            f"--config.train.num_steps={steps}", "--config.train.checkpoint_every=1",
            "--config.train.log_every=1", "--config.train.sample_every=1000", *extra]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_config_typo_fails_with_the_ml_collections_message(tmp_path, synthetic_data_dir):
    result = subprocess.run(
        _train_command(tmp_path, synthetic_data_dir, 1, extra=["--config.train.batchsize=8"]),
        capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode != 0
    assert 'Did you mean "batch_size" instead of "batchsize"?' in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_one_line(tmp_path):
    command = [sys.executable, "-m", "mgvton_jax.train", "--config", "configs/nope.py:tiny",
               f"--workdir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=120,
                            cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --config configs/nope.py: no such file")


def _start_and_wait_for_progress(command, logged_steps=1):
    """Starts a training subprocess and returns once it has logged `logged_steps` steps."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=_env())
    lines = []
    for line in process.stdout:
        lines.append(line)
        logged_steps -= "] step " in line
        if not logged_steps:
            return process, lines
    raise AssertionError("training never logged a step:\n" + "".join(lines))


def test_kill_and_sigterm_leave_a_resumable_workdir(synthetic_data_dir, tmp_path):
    rng = np.random.default_rng(0)
    steps = 30  # the killed runs make about 15 steps of progress
    command = _train_command(tmp_path, synthetic_data_dir, steps)
    for _ in range(2):  # kill -9 at random moments while training and saving every step
        # Saves are asynchronous and each waits for the one before: once a run has logged
        # three steps, its first is on disk whatever the moment of the kill.
        process, _ = _start_and_wait_for_progress(command, logged_steps=3)
        time.sleep(rng.uniform(0.0, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    process, lines = _start_and_wait_for_progress(command)
    process.send_signal(signal.SIGTERM)
    output = "".join(lines) + process.stdout.read()
    process.wait(timeout=120)
    process.stdout.close()
    assert "resumed from step" in output
    if process.returncode == 0:  # finished before the signal arrived
        assert f"done: {steps} steps" in output
    else:
        assert process.returncode == 143 and "stopped at step" in output, output
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resumed from step" in result.stdout and f"done: {steps} steps" in result.stdout
    assert _metrics(tmp_path)[-1]["step"] == steps


def test_cli_reports_a_missing_stage_without_a_traceback(tmp_path, synthetic_data_dir):
    result = subprocess.run(_train_command(tmp_path, synthetic_data_dir, 1, stage="refine"),
                            capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 1
    assert "error: stage 'refine' needs a trained 'parsing' stage" in result.stderr
    assert "Traceback" not in result.stderr


def test_perceptual_network_is_the_packaged_vgg16_unless_told(tmp_path):
    config = load_config_file(ROOT / "configs" / "refine.py", "full")
    params = perceptual_network(config)
    assert vgg.network_name(params) == "vgg16"
    assert params["conv5_1"]["kernel"].shape == (3, 3, 512, 512)
    config.perceptual.random = True
    params = perceptual_network(config)
    assert vgg.network_name(params) == "vgg19"
    width = 64 // config.perceptual.random_width_divisor
    assert params["conv1_1"]["kernel"].shape == (3, 3, 3, width)
    config.perceptual.weights_path = str(tmp_path / "vgg19.npz")  # the paper's, when given
    with pytest.raises(FileNotFoundError, match="convert_vgg19"):
        perceptual_network(config)
