"""Stage checkpoints on disk: written by training, read by training, evaluation, export and
try-on's loaders. Nothing here imports the training loop or optax.

On disk: STAGE_DIR/checkpoints/<step>/{state,inference,data,meta}. `state` is everything a
resumed run needs (networks and optimisers); `inference` holds only the parameters and
BatchNorm statistics of the stage's inference networks, which is all that later stages,
evaluation and export read (`load_inference_networks`). Orbax finalises a step atomically, so a
crash (even kill -9) mid-save leaves the previous complete step as the latest one.

Once a step is complete, the SHA-256 of each of its files goes to STAGE_DIR/checksums/<step>
.json. A read verifies the files of the items it reads, and only those (the inference item of
a stage is about a quarter of its step), in one process of a multi-process run, which tells
the others: a checkpoint damaged in place is found before it is used, at the cost of one more
read of what is used. `restore_latest` falls back to the newest step that verifies and
restores, and moves the damaged ones to STAGE_DIR/damaged_checkpoints/ when training asks.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grain
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from mgvton_jax import distributed, stages

ITEMS = ("state", "inference", "data", "meta")


class CheckpointError(RuntimeError):
    """No checkpoint can be used or written; the message says which and what to do."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_disk_full(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        error = error.__cause__ or error.__context__
    return False


class StageCheckpoints:
    """Saves and restores the checkpoints in `directory`, keeping the last `keep`."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = os.fspath(directory)
        self._keep = keep
        self._checksums = Path(self.directory).parent / "checksums"
        self._open()

    def _open(self) -> None:
        self.manager = ocp.CheckpointManager(
            os.path.abspath(self.directory),
            item_names=ITEMS,
            options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True,
                                                 enable_async_checkpointing=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def _step_dir(self, step: int) -> Path:
        return Path(self.directory) / str(step)

    def _files(self, step: int) -> dict[str, Path]:
        root = self._step_dir(step)
        return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _seal(self) -> None:
        """Writes the checksums of every complete step that has none (saves are async)."""
        self.manager.wait_until_finished()
        if not distributed.is_main():  # one writer of the checksums in a multi-process run
            return
        self._checksums.mkdir(exist_ok=True)
        steps = set(self.manager.all_steps())
        for step in steps:
            target = self._checksums / f"{step}.json"
            if not target.exists():
                sums = {name: _sha256(path) for name, path in self._files(step).items()}
                partial = target.with_suffix(".partial")
                partial.write_text(json.dumps(sums))
                partial.replace(target)
        for stale in self._checksums.glob("*.json"):  # steps orbax has deleted
            if stale.stem.isdigit() and int(stale.stem) not in steps:
                stale.unlink()

    def verify(self, step: int, items: Sequence[str] = ITEMS) -> str | None:
        """Why the files of step's `items` differ from when it was saved, or None (also: never
        sealed). The files of other items are not read. A collective in a multi-process run:
        the main process reads, and every process gets its answer."""
        reason = self._verify_here(step, items) if distributed.is_main() else None
        if distributed.agree(reason is not None):
            return reason or "files changed since the save (found by process 0)"
        return None

    def _verify_here(self, step: int, items: Sequence[str]) -> str | None:
        sums_file = self._checksums / f"{step}.json"
        if not sums_file.exists():
            return None
        try:
            expected = json.loads(sums_file.read_text())
        except ValueError:
            return None
        expected = {name: digest for name, digest in expected.items()
                    if name.split("/", 1)[0] in items}
        files = self._files(step)
        missing = sorted(set(expected) - set(files))
        if missing:
            return f"files missing: {missing[:3]}"
        changed = [name for name, digest in expected.items() if _sha256(files[name]) != digest]
        return f"files changed since the save: {changed[:3]}" if changed else None

    def save(self, step: int, state: Any, inference: Any, data_iterator: Any, meta: dict
             ) -> None:
        """Starts an asynchronous save of (state pytree, inference networks pytree, grain
        iterator position, JSON meta), after sealing the saves before it.

        Raises:
          CheckpointError: the disk is full (the previous checkpoints are kept).
        """
        try:
            self._seal()
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                inference=ocp.args.StandardSave(inference),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as err:
            self._raise_if_disk_full(err, step)
            raise

    def _raise_if_disk_full(self, err: BaseException, step: int | None) -> None:
        if _is_disk_full(err):
            latest = max((s for s in self.manager.all_steps() if s != step), default=None)
            kept = f"the latest complete checkpoint is step {latest}" if latest is not None \
                else "no checkpoint was completed"
            raise CheckpointError(
                f"no space left on the device while saving the checkpoint of step {step} in "
                f"{self.directory}; {kept}. Free some space and rerun the same command to "
                "resume") from None

    def restore(self, step: int, target_state: Any, data_iterator: Any | None = None
                ) -> tuple[Any, dict]:
        """(state shaped and sharded like target_state, meta); advances data_iterator."""
        items = dict(state=ocp.args.StandardRestore(target_state), meta=ocp.args.JsonRestore())
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored.state, restored.meta

    def restore_inference(self, step: int, target: Any) -> Any:
        """The inference networks shaped like target: reads nothing else of the step."""
        return self.manager.restore(step, args=ocp.args.Composite(
            inference=ocp.args.StandardRestore(target))).inference

    def restore_meta(self, step: int) -> dict:
        """The step's JSON metadata."""
        meta = self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta
        if not isinstance(meta, dict) or "step" not in meta:
            raise ValueError("its meta item is empty or not a checkpoint's")
        return meta

    def restore_latest(self, restore: Callable[[int], Any], items: Sequence[str] = ITEMS,
                       move_damaged: bool = False, report: Callable[[str], None] = print
                       ) -> tuple[int, Any] | None:
        """(step, restore(step)) of the newest step whose `items` (those restore reads)
        verify and restore; None when there is no checkpoint.

        Each step skipped is reported with the reason; with move_damaged it is moved out of
        the way (to STAGE_DIR/damaged_checkpoints/) so training can write that step again.
        Raises:
          CheckpointError: there are checkpoints, and none restores.
        """
        reasons = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            reason = self.verify(step, items)
            if reason is None:
                try:
                    return step, restore(step)
                except Exception as err:  # orbax, grain and JSON errors of a damaged step
                    reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            reasons.append(f"step {step} ({reason})")
            report(f"checkpoint step {step} in {self.directory} cannot be used ({reason}); "
                   "trying an older one")
            if move_damaged:
                self._move_aside(step)
        if reasons:
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be restored: {'; '.join(reasons)}. "
                f"Move {self.directory} away to start this stage again")
        return None

    def _move_aside(self, step: int) -> None:
        self.manager.wait_until_finished()
        damaged = Path(self.directory).parent / "damaged_checkpoints"
        damaged.mkdir(exist_ok=True)
        shutil.move(str(self._step_dir(step)), damaged / f"{step}-{int(time.time())}")
        (self._checksums / f"{step}.json").unlink(missing_ok=True)
        self.manager.close()
        self._open()

    def wait(self) -> None:
        """Waits for the pending save and seals it.

        Raises:
          CheckpointError: the disk filled up during the save.
        """
        try:
            self._seal()
        except Exception as err:
            self._raise_if_disk_full(err, None)
            raise

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def stage_dir(workdir: str | Path, stage: str) -> Path:
    """Where a workdir keeps one stage's run: WORKDIR/STAGE."""
    return Path(workdir) / stage


def load_inference_networks(name: str, directory: str | Path, variant: str = "VARIANT"
                            ) -> tuple[dict[str, nnx.Module], dict]:
    """The inference networks of the stage run in `directory` (WORKDIR/NAME), at its latest
    checkpoint, rebuilt from its config.json; and that checkpoint's metadata.

    Only the checkpoint's inference and meta items are read and verified (no discriminator,
    no optimiser state).
    Raises:
      StageMissingError: the directory holds no checkpoint; the message names the command
        that trains the stage (`variant` fills its config suffix).
    """
    directory = Path(directory)
    config_file, checkpoint_dir = directory / "config.json", directory / "checkpoints"
    if not (config_file.exists() and checkpoint_dir.is_dir()):
        found = None
    else:
        config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
        checkpoints = StageCheckpoints(checkpoint_dir)

        def restore(step):
            networks = stages.restored_networks(
                name, config, stages.get(name).inference,
                lambda target: checkpoints.restore_inference(step, target))
            return networks, checkpoints.restore_meta(step)

        try:
            found = checkpoints.restore_latest(restore, ("inference", "meta"),
                                               report=logging.warning)
        finally:
            checkpoints.close()
    if found is None:
        raise stages.StageMissingError(
            f"{directory} has no checkpoint of the {name!r} stage. Train it first: "
            f"python -m mgvton_jax.train --config configs/{name}.py:{variant} "
            f"--workdir {directory.parent}")
    return found[1]
