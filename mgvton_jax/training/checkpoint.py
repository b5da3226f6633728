"""Orbax checkpoints of one stage: train state, inference networks, input position, metadata.

On disk: STAGE_DIR/checkpoints/<step>/{state,inference,data,meta}. `state` is everything a
resumed run needs (networks and optimisers); `inference` holds only the parameters and
BatchNorm statistics of the stage's inference networks, which is all that later stages,
evaluation and try-on read. Orbax finalises a step atomically, so a crash (even kill -9)
mid-save leaves the previous complete step as the latest one.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp


class StageCheckpoints:
    """Saves and restores the checkpoints in `directory`, keeping the last `keep`."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = os.fspath(directory)
        self.manager = ocp.CheckpointManager(
            os.path.abspath(self.directory),
            item_names=("state", "inference", "data", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, inference: Any, data_iterator: Any, meta: dict
             ) -> None:
        """Starts an asynchronous save of (state pytree, inference networks pytree, grain
        iterator position, JSON meta)."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            inference=ocp.args.StandardSave(inference),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            meta=ocp.args.JsonSave(meta)), force=True)

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
        return self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
