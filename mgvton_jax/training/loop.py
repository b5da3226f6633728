"""Trains one stage (`train_stage`): the run directory, the inputs, resuming, then the loop of
jitted steps (`step.compile_stage`) with its metrics, checkpoints and sample pictures.

WORKDIR/STAGE holds config.json, checkpoints/ (`mgvton_jax.checkpoints`), metrics.jsonl
(`progress`), samples/step_N.png and, with train.cache_frozen, frozen_cache/ (`frozen_cache`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
from flax import nnx

from mgvton_jax import distributed, stages, visualize
from mgvton_jax.checkpoints import StageCheckpoints, stage_dir
from mgvton_jax.data import pipeline
from mgvton_jax.training import frozen_cache
from mgvton_jax.training.frozen_cache import FrozenCache
from mgvton_jax.training.inputs import TrainingInputs
from mgvton_jax.training.preemption import Preemption
from mgvton_jax.training.progress import Progress
from mgvton_jax.training.state import (
    check_batch,
    inference_item,
    load_frozen,
    total_steps,
)
from mgvton_jax.training.step import Batch, CompiledStage, compile_stage


def _prepare_run_dir(config: ml_collections.ConfigDict, workdir: str | Path, name: str
                     ) -> Path:
    """WORKDIR/STAGE, created, with the run's config.json (written by the main process)."""
    out_dir = stage_dir(workdir, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        (out_dir / "config.json").write_text(config.to_json_best_effort(indent=1))
    return out_dir


def _printer(name: str) -> Callable[[str], None]:
    """Prints "[STAGE] message" lines, in the main process only."""
    is_main = distributed.is_main()

    def say(message: str) -> None:
        if is_main:
            print(f"[{name}] {message}", flush=True)

    return say


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


def _resume(checkpoints: StageCheckpoints, state: nnx.State, inputs: TrainingInputs,
            batch_size: int, say: Callable[[str], None]) -> int:
    """Restores the newest checkpoint that verifies into `state` and the input stream; its
    step, or 0 without a checkpoint.

    Raises:
      CheckpointError: there are checkpoints, and none restores.
    """
    target = nnx.to_pure_dict(state)

    def restore(step):
        # The input position is per process: it is restored only for the same process count.
        writers = checkpoints.restore_meta(step).get("process_count", 1)
        same = writers == jax.process_count()
        return checkpoints.restore(step, target, inputs.stream if same else None)[0], writers

    found = checkpoints.restore_latest(restore, ("state", "data", "meta"), move_damaged=True,
                                       report=say)
    if found is None:
        return 0
    step, (restored, writers) = found
    nnx.replace_by_pure_dict(state, restored)
    say(f"resumed from step {step}")
    if writers != jax.process_count():
        inputs.restart_at(step * batch_size)
        say(f"the checkpoint was written by {writers} processes, this run has "
            f"{jax.process_count()}: the input stream goes on at example {step * batch_size}")
    return step


@dataclasses.dataclass(frozen=True)
class _Run:
    """What the steps of one run work with: `train_stage` builds it, `_train` steps it."""

    config: ml_collections.ConfigDict
    out_dir: Path
    steps: int
    compiled: CompiledStage
    inputs: TrainingInputs
    sample_batch: Batch  # on the devices
    checkpoints: StageCheckpoints
    cache: FrozenCache | None
    say: Callable[[str], None]

    def step(self, state: nnx.State, host_batch: dict, batch: Batch
             ) -> tuple[nnx.State, dict[str, jax.Array]]:
        """One step on a batch (host and device copies); with the cache, on the frozen
        stages' stored outputs."""
        if self.cache is None:
            return self.compiled.step(state, batch)
        values = self.cache.outputs(host_batch,
                                    functools.partial(self.compiled.frozen_outputs, batch))
        return self.compiled.given_step(state, batch, self.compiled.to_device(values))

    def save(self, step: int, state: nnx.State) -> None:
        """Starts the asynchronous checkpoint of `step`, after writing the cache's entries."""
        if self.cache is not None:
            self.cache.flush()
        stage = self.compiled.stage
        meta = {"step": step, "total_steps": self.steps, "stage": stage.name,
                "process_count": jax.process_count(),
                "config": json.loads(self.config.to_json_best_effort())}
        pure_state = nnx.to_pure_dict(state)
        self.checkpoints.save(step, pure_state, inference_item(stage, pure_state),
                              self.inputs.stream, meta)

    def write_samples(self, step: int, state: nnx.State) -> None:
        """samples/step_N.png: the sample batch's inputs and outputs (a collective)."""
        pictures = distributed.gather(self.compiled.samples(state, self.sample_batch))
        if distributed.is_main():
            path = self.out_dir / "samples" / f"step_{step:07d}.png"
            visualize.save_png(path, visualize.batch_grid(pictures,
                                                          self.compiled.stage.sample_columns))


def _train(run: _Run, progress: Progress, state: nnx.State, step: int) -> None:
    """Steps from `step` to run.steps; metrics are fetched and checked at log and save steps.

    Raises:
      NonFiniteLossError: a loss became NaN or infinite (nothing after it is saved).
      SystemExit: 143, stopped by SIGTERM/SIGINT after saving a checkpoint.
    """
    train = run.config.train
    with Preemption() as preemption:
        while step < run.steps:
            host_batch = next(run.inputs.stream)
            batch = run.compiled.to_device(host_batch)
            began = time.perf_counter()
            state, metrics = run.step(state, host_batch, batch)
            step += 1
            progress.record(step, metrics, began)
            last = step == run.steps
            log_due = step % train.log_every == 0 or last
            stop = preemption.stop(log_due)
            save_due = step % train.checkpoint_every == 0 or last or stop
            if log_due or save_due:
                progress.fetch()
            if log_due:
                progress.log(step)
            if save_due:
                run.save(step, state)
            if step % train.sample_every == 0 or last:
                run.write_samples(step, state)
            if stop:
                run.checkpoints.wait()
                run.say(f"stopped at step {step} by a signal; rerun the same command to resume")
                raise SystemExit(143)


def train_stage(config: ml_collections.ConfigDict, workdir: str | Path,
                data_dir: str | Path) -> dict:
    """Trains config.stage in workdir/STAGE on the built data set in data_dir, resuming from
    its latest checkpoint.

    Returns:
      The last logged metrics (floats) plus "step".
    """
    stage = stages.get(config.stage)
    out_dir = _prepare_run_dir(config, workdir, stage.name)
    say = _printer(stage.name)
    # What the run trains, on what: checked before the frozen stages are loaded.
    data_dir = Path(data_dir)
    num_examples = len(pipeline.data_source(data_dir, "train"))
    check_batch(config, jax.device_count(), num_examples)
    steps = total_steps(config, num_examples)
    compiled = compile_stage(config, load_frozen(config, workdir))
    inputs = TrainingInputs(config, data_dir)
    checkpoints = StageCheckpoints(out_dir / "checkpoints", config.train.keep_checkpoints)
    run = _Run(config, out_dir, steps, compiled, inputs, compiled.to_device(inputs.sample_batch),
               checkpoints, _frozen_cache(config, compiled, out_dir, num_examples, data_dir),
               say)
    state = compiled.state
    try:
        step = _resume(checkpoints, state, inputs, config.train.batch_size, say)
        metrics_path = out_dir / "metrics.jsonl" if distributed.is_main() else None
        with Progress(metrics_path, step, steps, config.train.batch_size, num_examples,
                      checkpoints, say) as progress:
            say(f"{steps} steps of {config.train.batch_size} images ({num_examples} training "
                f"triplets, {jax.device_count()} devices), from step {step}")
            _train(run, progress, state, step)
    finally:
        inputs.close()
        checkpoints.close()
    if run.cache is not None:
        say(run.cache.summary())
    say(f"done: {steps} steps; checkpoints in {out_dir / 'checkpoints'}, samples in "
        f"{out_dir / 'samples'}")
    return progress.logged
