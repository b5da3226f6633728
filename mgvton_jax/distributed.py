"""Joining a multi-process run (JAX's distributed runtime), for every entry point.

A run of N processes (a TPU pod slice, SLURM tasks, one process per GPU node) is joined either
explicitly, with the coordinator's address, the process count and this process's index (flags
or the JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID variables), or by letting
JAX find the others (`--distributed`; implied under SLURM or Open MPI with more than one task).
Without any of these a command runs as one process, as always. `initialize` must run before
anything touches a device.

Rules the rest of the package follows: every process runs the same program and feeds its own
share of each batch; arrays that span processes are gathered with `gather` (a collective:
every process calls it); only the main process (`is_main`) prints progress and writes logs,
pictures and results; checkpoints are written by every process (orbax).
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

ENVIRONMENT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class DistributedError(ValueError):
    """An incomplete multi-process setting; the message says what is missing."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-process flags of an argparse command (eval, export, try-on, benchmarks),
    spelt as train spells them: --coordinator-address etc., the underscore forms aliases."""
    group = parser.add_argument_group(
        "multi-process", "join a run of several processes (default: one process)")
    group.add_argument("--coordinator-address", "--coordinator_address",
                       help="host:port of process 0")
    group.add_argument("--num-processes", "--num_processes", type=int,
                       help="processes in the run")
    group.add_argument("--process-id", "--process_id", type=int,
                       help="this process's index, 0 .. N-1")
    group.add_argument("--distributed", action="store_true",
                       help="let JAX find the other processes (TPU pods, SLURM, Open MPI)")


def _cluster_detected() -> bool:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or \
        int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, distributed: bool = False) -> None:
    """Joins the multi-process run configured by the arguments or the environment (module
    docstring); nothing when none is.

    Raises:
      DistributedError: an address without a process count and index, or the reverse.
    """
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    explicit = (address, num_processes, process_id)
    if any(value is not None for value in explicit) and not distributed:
        if any(value is None for value in explicit):
            raise DistributedError(
                "a multi-process run needs the coordinator address, the number of processes "
                "and this process's index together (--coordinator-address, --num-processes, "
                "--process-id, or " + ", ".join(ENVIRONMENT) + "); or --distributed on a TPU "
                "pod, under SLURM or Open MPI")
        jax.distributed.initialize(address, num_processes, process_id)
    elif distributed or _cluster_detected():
        jax.distributed.initialize()
    if jax.process_count() > 1 and is_main():
        print(f"{jax.process_count()} processes, {jax.device_count()} devices "
              f"({jax.local_device_count()} per process)", flush=True)


def is_main() -> bool:
    """True in the process that prints and writes logs, pictures and results."""
    return jax.process_index() == 0


def gather(tree):
    """A pytree of arrays on every process's devices -> the global NumPy arrays, on every
    process. Batch-sharded arrays come back whole (all processes' rows, in order); replicated
    ones as they are. A collective: every process must call it."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in order, as NumPy (the share of
    the global batch that this process fed in). No communication."""
    rows = {}
    for shard in array.addressable_shards:  # a row block on several local devices: once
        rows.setdefault(shard.index[0].start or 0, shard.data)
    return np.concatenate([np.asarray(rows[start]) for start in sorted(rows)])


def gather_rows(rows: np.ndarray) -> np.ndarray:
    """Host arrays (n_p, ...) of each process, of any n_p -> their concatenation in process
    order, on every process. A collective."""
    if jax.process_count() == 1:
        return rows
    counts = multihost_utils.process_allgather(np.asarray(len(rows)))
    padded = np.zeros((int(counts.max()), *rows.shape[1:]), rows.dtype)
    padded[:len(rows)] = rows
    stacked = multihost_utils.process_allgather(padded)
    return np.concatenate([stacked[p, :int(n)] for p, n in enumerate(counts)])


def agree(flag: bool) -> bool:
    """True on every process when any process says True (e.g. a stop signal). A collective."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.process_allgather(np.asarray(flag)).any())
