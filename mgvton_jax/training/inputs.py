"""The batches a stage trains on: one fixed batch for the sample pictures and the endless,
shuffled training stream, each this process's share of every global batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jax
import ml_collections
import numpy as np

from mgvton_jax.data import pipeline


def _sample_split(data_dir: Path, batch_size: int) -> str:
    """Sample pictures show test examples when the data set has a batch of them."""
    try:
        return "test" if len(pipeline.data_source(data_dir, "test")) >= batch_size else "train"
    except (KeyError, ValueError, FileNotFoundError):
        return "train"


class TrainingInputs:
    """A stage's input batches from the built data set in `data_dir`.

    Attributes:
      sample_batch: {compact input: (B / processes, ...)}, the first batch of the test split
        (of the training split where the test split has less than a batch), unshuffled and
        never mirrored.
      stream: the training batches, reshuffled each epoch (grain: a checkpoint saves its
        position); `close` ends it.
    """

    def __init__(self, config: ml_collections.ConfigDict, data_dir: Path):
        self._config, self._data_dir = config, data_dir
        samples = iter(self._batches(shuffle=False, flip=0.0, epochs=1,
                                     split=_sample_split(data_dir, config.train.batch_size)))
        self.sample_batch: dict[str, np.ndarray] = next(samples)
        samples.close()
        self.stream: Iterator[dict[str, np.ndarray]] = iter(self._training())

    def _training(self, start: int = 0):
        return self._batches(shuffle=True, flip=self._config.data.flip_probability,
                             epochs=None, start=start)

    def _batches(self, shuffle: bool, flip: float, epochs: int | None, split: str = "train",
                 start: int = 0):
        config = self._config
        return pipeline.make_dataset(
            self._data_dir, split, config.train.batch_size, seed=config.seed, shuffle=shuffle,
            num_epochs=epochs, flip_probability=flip, image_size=tuple(config.image_size),
            clothes_labels=tuple(config.data.clothes_labels),
            process_index=jax.process_index(), process_count=jax.process_count(),
            workers=config.data.workers, start=start)

    def restart_at(self, example: int) -> None:
        """Restarts the stream at global example `example`. Every process's k-th batch holds
        its share of the k-th global batch, whatever the process count, so a run resumed
        with another process count goes on at the same example."""
        self.stream.close()
        self.stream = iter(self._training(start=example))

    def close(self) -> None:
        self.stream.close()
