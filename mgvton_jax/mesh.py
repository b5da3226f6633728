"""The 1-D data mesh ("data") that training and inference place their arrays on.

Parameters and other state are replicated over it; batches are split over it along their
first axis. A multi-process run's mesh spans every process's devices for training and one
process's own devices for inference (each process walks its own examples).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def data_shardings(devices: Sequence[jax.Device]) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-split) shardings over a "data" mesh of `devices`."""
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,),
                         devices=devices)
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
