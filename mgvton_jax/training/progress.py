"""A run's metrics: kept on the device between log and save steps, fetched in one transfer and
checked for NaN, printed with the rate and ETA, and written to metrics.jsonl (one line per log
step, also across resumptions)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from mgvton_jax.checkpoints import StageCheckpoints


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite."""


def check_finite(metrics: dict[str, float], step: int, checkpoints: StageCheckpoints) -> None:
    """Raises NonFiniteLossError, naming the step and the last good checkpoint, where a
    metric of `step` is NaN or infinite."""
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


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """The metrics of a run that starts (or resumes) at `step` of `steps`.

    Args:
      path: metrics.jsonl, cut back to `step` and appended to; None: write nothing (the
        processes other than the main one).
      step, steps: the run's first step and its total.
      batch_size, num_examples: the global batch and the training split, for epochs and rates.
      checkpoints: the run's checkpoints, named by the error of a non-finite loss.
      say: prints a progress line.
    """

    def __init__(self, path: Path | None, step: int, steps: int, batch_size: int,
                 num_examples: int, checkpoints: StageCheckpoints, say: Callable[[str], None]):
        if path is not None:
            _truncate_metrics(path, step)
        self._steps, self._batch_size, self._num_examples = steps, batch_size, num_examples
        self._checkpoints, self._say = checkpoints, say
        self.logged: dict = {"step": step}  # the last log line's values
        self._window: list[dict[str, float]] = []  # host metrics since the last log line
        self._unchecked: list[tuple[int, dict]] = []  # (step, device metrics) not fetched
        self._timing_start, self._started = time.perf_counter(), step
        self._file = path.open("a") if path is not None else None

    def record(self, step: int, metrics: dict[str, jax.Array], began: float) -> None:
        """Keeps the device metrics of `step`, which began at perf_counter `began`; the run's
        first step compiles: it is waited for, reported, and not timed."""
        if step == self._started + 1:
            jax.block_until_ready(metrics)
            self._say(f"first step (compile + run) {time.perf_counter() - began:.1f} s")
            self._timing_start = time.perf_counter()
        self._unchecked.append((step, metrics))

    def fetch(self) -> None:
        """Transfers the kept metrics to the host and checks them: the only transfer of
        metrics, before anything is logged or saved.

        Raises:
          NonFiniteLossError: a metric is NaN or infinite.
        """
        fetched = jax.device_get([device_metrics for _, device_metrics in self._unchecked])
        for (done, _), values in zip(self._unchecked, fetched, strict=True):
            values = {k: float(v) for k, v in values.items()}
            check_finite(values, done, self._checkpoints)
            self._window.append(values)
        self._unchecked = []

    def log(self, step: int) -> None:
        """Prints and writes the means of the fetched metrics since the last log line, with the
        rate and the ETA once a step after the compiling one has run."""
        means = {k: float(np.mean([w[k] for w in self._window])) for k in self._window[-1]}
        epoch = step * self._batch_size / self._num_examples
        self.logged = {"step": step, "epoch": epoch, **means}
        speed = ""
        timed_steps = step - self._started - 1
        if timed_steps > 0:
            elapsed = time.perf_counter() - self._timing_start
            self.logged["images_per_s"] = timed_steps * self._batch_size / elapsed
            eta = (self._steps - step) * elapsed / timed_steps
            speed = f" | {self.logged['images_per_s']:.1f} img/s | ETA {_format_seconds(eta)}"
        self._say(f"step {step}/{self._steps} epoch {epoch:.2f} "
                  + " ".join(f"{k} {v:.4f}" for k, v in means.items()) + speed)
        if self._file:
            self._file.write(json.dumps(self.logged) + "\n")
            self._file.flush()
        self._window = []

    def close(self) -> None:
        if self._file:
            self._file.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
