"""Grain input pipeline: built data set -> shuffled, per-process batches of compact examples.

Batches are dicts of NumPy arrays keyed as `examples.COMPACT_INPUTS` (uint8 pictures and label
ids, float32 keypoints), (B, ...) with B = global batch / process count; the jitted step
expands them into model inputs on the device (`examples.model_inputs`). Shuffling and the flip
augmentation are seeded per record index, so the stream is the same for any worker count and
resumes exactly from `iterator.get_state()`.
"""

from __future__ import annotations

import os

import grain
import numpy as np
import tensorflow_datasets as tfds

from mgvton_jax import constants
from mgvton_jax.data import examples, tfds_builder

# What each example carries besides its compact inputs (`RecordToCompact`).
EXAMPLE_KEYS = ("index", "mirrored")


class WithIndex(grain.transforms.MapWithIndex):
    """Adds the record's position in its split. (Grain hands a map over a repeated or
    shuffled dataset indices past the end, position + epoch * size.)"""

    def __init__(self, size: int):
        self.size = size

    def map_with_index(self, index: int, record: dict) -> dict:
        return {**record, "index": index % self.size}


class RecordToCompact(grain.transforms.RandomMap):
    """Decodes a stored record, resizes it, flips it with some probability, compacts it.

    Besides the compact inputs, each example carries "index" (its record's position in the
    split) and "mirrored" (1 if flipped): what identifies it for the frozen-stage cache.
    """

    def __init__(self, flip_probability: float, image_size: tuple[int, int],
                 clothes_labels: tuple[int, ...]):
        self.flip_probability = flip_probability
        self.image_size = tuple(image_size)
        self.clothes_labels = tuple(clothes_labels)

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        raw = examples.resize_raw(examples.decode_record(record, self.clothes_labels),
                                  self.image_size)
        mirrored = rng.random() < self.flip_probability
        if mirrored:
            raw = examples.flip_raw(raw)
        return {**examples.compact_example(raw), "index": np.int64(record["index"]),
                "mirrored": np.uint8(mirrored)}


def data_source(data_dir: str | os.PathLike, split: str):
    """Random-access source of the stored records of `split` (train or test)."""
    return tfds.data_source(tfds_builder.NAME, split=split, data_dir=str(data_dir))


def make_dataset(
    data_dir: str | os.PathLike,
    split: str,
    global_batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    flip_probability: float = 0.0,
    image_size: tuple[int, int] = constants.IMAGE_SIZE,
    clothes_labels: tuple[int, ...] = constants.CLOTHES_LABELS,
    process_index: int = 0,
    process_count: int = 1,
    workers: int = 0,
    drop_remainder: bool = True,
    start: int = 0,
) -> grain.IterDataset:
    """The batched input stream of this process.

    Args:
      data_dir: where `python -m mgvton_jax.data.build` wrote the data set.
      split: "train" or "test".
      global_batch_size: batch over all processes; must divide by process_count.
      seed: shuffle and augmentation seed.
      shuffle: reshuffle every epoch (train) or keep the stored order (evaluation).
      num_epochs: None repeats forever.
      flip_probability: chance of mirroring a triplet left-right.
      image_size: (H, W) of the model inputs; the stored 256x192 examples are resized.
      clothes_labels: the reference's labels removed before resizing (`decode_record`).
      process_index, process_count: this process's shard of every global batch
        (`jax.process_index()`, `jax.process_count()`).
      workers: grain worker processes (0 = decode in this process).
      drop_remainder: drop a last, smaller batch (keep True for training: one compiled shape).
      start: the global example the stream starts at (a multiple of global_batch_size: a
        resumed run whose input position cannot be restored).
    Returns:
      A grain IterDataset of compact batches: dicts keyed as `examples.COMPACT_INPUTS`, plus
      "index" and "mirrored" (`RecordToCompact`), of (global_batch_size / process_count, ...)
      arrays.
    """
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} does not divide by the {process_count} "
            "processes")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    source = data_source(data_dir, split)
    dataset = grain.MapDataset.source(source).map_with_index(WithIndex(len(source))).seed(seed)
    if shuffle:
        dataset = dataset.shuffle()
    # Augmentation is seeded by the position in the global stream, before the stream is
    # resumed at `start` or split between processes: the same examples, flipped alike, for
    # any process count.
    dataset = dataset.repeat(num_epochs).random_map(
        RecordToCompact(flip_probability, image_size, clothes_labels))
    dataset = dataset[start:][process_index::process_count]
    dataset = dataset.batch(global_batch_size // process_count, drop_remainder=drop_remainder)
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    if workers > 0:
        iterable = iterable.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
    return iterable
