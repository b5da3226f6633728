"""The process flags have one spelling everywhere (--coordinator-address, --num-processes,
--process-id), the underscore spelling an alias: in train (absl) and the argparse commands."""

import argparse
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from mgvton_jax import distributed, export, train

ROOT = Path(__file__).resolve().parents[1]
SPELLINGS = {
    "hyphen": ["--coordinator-address", "host0:1234", "--num-processes=2", "--process-id", "1"],
    "underscore": ["--coordinator_address=host0:1234", "--num_processes", "2", "--process_id=1"],
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_train_parses_both_spellings(spelling, tmp_path):
    with flagsaver.flagsaver():  # parse_flags sets the process-wide absl flags
        train.parse_flags(["train", f"--config={ROOT}/configs/parsing.py:tiny",
                           f"--workdir={tmp_path}", *SPELLINGS[spelling]])
        values = [flags.FLAGS[name].value
                  for name in ("coordinator-address", "num-processes", "process-id")]
    assert values == ["host0:1234", 2, 1]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_argparse_commands_parse_both_spellings(spelling):
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    args = parser.parse_args(SPELLINGS[spelling])
    assert (args.coordinator_address, args.num_processes, args.process_id) == \
        ("host0:1234", 2, 1)


def test_an_argparse_command_reads_the_underscore_alias(tmp_path):
    """export with a process count and index but no address: the flags were read (no usage
    error), and the message names the hyphen spelling."""
    with pytest.raises(SystemExit, match="needs the coordinator address.*--coordinator-address"):
        export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "model"),
                     "--num_processes=2", "--process-id=0"])
