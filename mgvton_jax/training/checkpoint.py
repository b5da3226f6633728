"""Orbax checkpoints of one stage: train state, inference networks, input position, metadata.

On disk: STAGE_DIR/checkpoints/<step>/{state,inference,data,meta}. `state` is everything a
resumed run needs (networks and optimisers); `inference` holds only the parameters and
BatchNorm statistics of the stage's inference networks, which is all that later stages,
evaluation and try-on read. Orbax finalises a step atomically, so a crash (even kill -9)
mid-save leaves the previous complete step as the latest one.

Once a step is complete, the SHA-256 of each of its files goes to STAGE_DIR/checksums/<step>
.json; restoring checks them, so a checkpoint damaged in place is found before training on
it. `restore_latest` falls back to the newest step that verifies and restores, and moves
the damaged ones to STAGE_DIR/damaged_checkpoints/.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grain
import orbax.checkpoint as ocp

from mgvton_jax import distributed


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
            item_names=("state", "inference", "data", "meta"),
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

    def verify(self, step: int) -> str | None:
        """Why step's files differ from when it was saved, or None (also: never sealed)."""
        sums_file = self._checksums / f"{step}.json"
        if not sums_file.exists():
            return None
        try:
            expected = json.loads(sums_file.read_text())
        except ValueError:
            return None
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

    def restore_latest(self, restore: Callable[[int], Any], move_damaged: bool = False,
                       report: Callable[[str], None] = print) -> tuple[int, Any] | None:
        """(step, restore(step)) of the newest step that verifies and restores; None when
        there is no checkpoint.

        Each step skipped is reported with the reason; with move_damaged it is moved out of
        the way (to STAGE_DIR/damaged_checkpoints/) so training can write that step again.
        Raises:
          CheckpointError: there are checkpoints, and none restores.
        """
        reasons = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            reason = self.verify(step)
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
