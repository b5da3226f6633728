"""Trains MG-VTON stages.

    python -m mgvton_jax.train --config configs/STAGE.py[:tiny] --workdir W [--config.x=y]
    python -m mgvton_jax.train --config configs/pipeline.py:tiny --workdir W   # all four

STAGE is one of `mgvton_jax.stages.PIPELINE` (parsing, gmm, warp_gan, refine) or the person
analyzer (configs/analyzer.py, trained apart from the pipeline); W/STAGE
holds that stage's checkpoints, config.json, metrics.jsonl and samples/. Rerunning a command
resumes it. Multi-host: call every process with --coordinator-address/--num-processes/
--process-id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or with
--distributed on a TPU pod or under SLURM, where JAX finds the other processes itself (see
launch/ and `mgvton_jax.distributed`). Without --config.data.data_dir the synthetic data set
is written and built under W/data before training starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mgvton_jax import distributed, stages
from mgvton_jax.checkpoints import CheckpointError
from mgvton_jax.config_lib import file_variants
from mgvton_jax.data import build
from mgvton_jax.data.readers import DataError
from mgvton_jax.training import loop
from mgvton_jax.training.progress import NonFiniteLossError
from mgvton_jax.training.state import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file: configs/STAGE.py[:variant].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
# Spelt as the argparse commands spell them (`distributed.add_arguments`), the underscore forms
# kept as aliases.
_COORDINATOR = flags.DEFINE_string("coordinator-address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num-processes", None, "Processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process-id", None, "This process's index.")
flags.DEFINE_alias("coordinator_address", "coordinator-address")
flags.DEFINE_alias("num_processes", "num-processes")
flags.DEFINE_alias("process_id", "process-id")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run that JAX detects itself (TPU pods, "
    "SLURM, Open MPI). Implied under SLURM or Open MPI with more than one task.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of a user error too.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a missing config file or a misspelt override is one error line."""
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--config=") else \
            argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None
        if value is not None:
            path, _, variant = value.partition(":")
            if not os.path.isfile(path):
                raise SystemExit(f"error: --config {path}: no such file; the stage configs are "
                                 f"configs/{{{','.join(stages.STAGES)}}}.py and "
                                 "configs/pipeline.py")
            variants = file_variants(path)
            if variant and variant not in variants:
                raise SystemExit(f"error: --config {value}: no variant {variant!r}; the "
                                 f"variants are {', '.join(variants)} (none: full)")
    try:
        return flags.FLAGS(argv)
    except AttributeError as err:  # ml_collections names the field and its likely spelling
        message = str(err.args[0]).strip("'").replace("\\'", "'").replace("\\n", ". ")
        raise SystemExit(f"error: no such config field {message}") from None
    except flags.Error as err:
        raise SystemExit(f"error: {err} (--helpshort lists the flags)") from None


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # progress is printed; libraries' INFO is noise
        logging.set_verbosity(logging.WARNING)
    workdir = Path(_WORKDIR.value)
    if workdir.exists() and not workdir.is_dir():
        raise SystemExit(f"error: --workdir {workdir} is a file; name a directory (new or a "
                         "run's, to resume it)")
    try:
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                               _DISTRIBUTED.value)
    except distributed.DistributedError as err:
        raise SystemExit(f"error: {err}") from None
    config = _CONFIG.value
    configs = ([config.stages[name] for name in stages.PIPELINE if name in config.stages]
               if "stages" in config else [config])
    try:
        for stage_config in configs:
            loop.train_stage(stage_config, _WORKDIR.value,
                             build.dataset_for(stage_config.data, stage_config.seed, _WORKDIR.value,
                                               multi_process=jax.process_count() > 1))
    except (DataError, FileNotFoundError, stages.StageMissingError, NonFiniteLossError,
            ConfigError, CheckpointError) as err:  # the message says what to do
        if _DEBUG.value:
            raise
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
