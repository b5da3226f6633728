"""The frozen earlier stages' outputs, kept per training example (`config.train.cache_frozen`).

A later stage consumes outputs of frozen networks that do not change during its training: the
Warp-GAN takes stage I's parsing and the GMM's warped clothes, the refinement the warped
clothes and the Warp-GAN's coarse image. With the cache, the step runs the frozen stages only
the first time an example is drawn (each training record, mirrored or not); later epochs read
the stored outputs. They are stored as float16, and the step always takes the stored values
(also on a miss), so a run does not depend on which examples were cached when.

Files, under the stage's run directory: `frozen_cache/process_P/` with `meta.json` (what the
entries were computed from: a fingerprint of the frozen networks' parameters, the data set and
the image size; another fingerprint empties the cache), one `KEY.f16` memmap of
(records, 2, H, W, C) per consumed output, and `filled.u8` (records, 2). Entries are written to
the memmaps at once; `flush` writes the data before the flags, so a crash loses entries, never
leaves a flag on unwritten data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import jax
import numpy as np

from mgvton_jax import distributed

STORED_DTYPE = np.float16


def fingerprint(frozen_state, *facts: object) -> str:
    """SHA-256 over the frozen networks' arrays and `facts` (e.g. data set, image size)."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(frozen_state)):
        array = np.asarray(leaf)
        digest.update(str((array.shape, array.dtype)).encode())
        digest.update(array.tobytes())
    digest.update(json.dumps([str(fact) for fact in facts]).encode())
    return digest.hexdigest()


class FrozenCache:
    """Consumed outputs of the frozen stages per (record index, mirrored), float16 on disk.

    Args:
      directory: where the files go (created; emptied when its fingerprint differs).
      num_records: records in the training split (indices 0 .. num_records - 1).
      shapes: consumed output -> per-example shape (H, W, C).
      identity: `fingerprint` of what the entries are computed from.
    """

    def __init__(self, directory: str | Path, num_records: int,
                 shapes: Mapping[str, tuple[int, ...]], identity: str):
        self.directory = Path(directory)
        meta = {"fingerprint": identity, "records": num_records,
                "shapes": {key: list(shape) for key, shape in shapes.items()},
                "dtype": np.dtype(STORED_DTYPE).name}
        meta_file = self.directory / "meta.json"
        reuse = meta_file.exists() and json.loads(meta_file.read_text()) == meta
        if not reuse:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
        mode = "r+" if reuse else "w+"
        self.arrays = {key: np.memmap(self.directory / f"{key}.f16", STORED_DTYPE, mode,
                                      shape=(num_records, 2, *shape))
                       for key, shape in shapes.items()}
        self.filled = np.memmap(self.directory / "filled.u8", np.uint8, mode,
                                shape=(num_records, 2))
        if not reuse:
            self.flush()
            meta_file.write_text(json.dumps(meta))
        self.hits = self.misses = 0

    def get(self, indices: Iterable[int], mirrored: Iterable[int]
            ) -> dict[str, np.ndarray] | None:
        """The stored outputs of a batch, (B, H, W, C) float32 each; None unless all stored."""
        rows, sides = np.asarray(indices), np.asarray(mirrored, np.int64)
        if not self.filled[rows, sides].all():
            self.misses += len(rows)
            return None
        self.hits += len(rows)
        return {key: array[rows, sides].astype(np.float32) for key, array in self.arrays.items()}

    def put(self, indices: Iterable[int], mirrored: Iterable[int],
            values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stores a batch's outputs; returns them as stored (rounded to float16), float32."""
        rows, sides = np.asarray(indices), np.asarray(mirrored, np.int64)
        stored = {}
        for key, array in self.arrays.items():
            rounded = np.asarray(values[key]).astype(STORED_DTYPE)
            array[rows, sides] = rounded
            stored[key] = rounded.astype(np.float32)
        self.filled[rows, sides] = 1
        return stored

    def outputs(self, batch: Mapping[str, np.ndarray],
                compute: Callable[[], Mapping[str, jax.Array]]) -> dict[str, np.ndarray]:
        """The stored outputs of this process's examples of a batch (keyed "index" and
        "mirrored" as the input pipeline tags them); on a miss, compute() gives the batch's
        (global, batch-sharded) outputs, which are stored and returned as stored."""
        index, mirrored = batch["index"], batch["mirrored"]
        values = self.get(index, mirrored)
        if values is None:
            values = self.put(index, mirrored, {key: distributed.local_rows(value)
                                                for key, value in compute().items()})
        return values

    def flush(self) -> None:
        """Writes the entries to disk, the data before the flags."""
        for array in self.arrays.values():
            array.flush()
        self.filled.flush()

    def summary(self) -> str:
        drawn = self.hits + self.misses
        rate = f"{100 * self.hits / drawn:.0f}%" if drawn else "-"
        return (f"frozen-stage cache: {self.hits} of {drawn} examples read from the cache "
                f"({rate}), {int(self.filled.sum())} of {self.filled.size} entries stored")
