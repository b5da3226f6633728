"""The 1-D data mesh ("data") that training and inference place their arrays on.

Parameters and other state are replicated over it; batches are split over it along their
first axis. A multi-process run's mesh spans every process's devices for training and one
process's own devices for inference (each process walks its own examples).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def data_shardings(devices: Sequence[jax.Device]) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-split) shardings over a "data" mesh of `devices`."""
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,),
                         devices=devices)
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def round_up(count: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= count (and >= multiple): a batch size
    the mesh splits evenly."""
    return max(1, -(-count // multiple)) * multiple


def pad_rows(batch: np.ndarray, rows: int) -> np.ndarray:
    """(B, ...) -> (rows, ...): the last example repeated, so every batch has one compiled
    shape (the padding rows' results are not read)."""
    return np.concatenate([batch, np.repeat(batch[-1:], rows - len(batch), axis=0)])
