"""The launch scripts in dry-run mode: the exact commands they would run, and their checks."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch"


def _dry_run(script, *args, env=None):
    run = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True,
                         text=True, env={**os.environ, **(env or {})}, timeout=30)
    commands = [shlex.split(line[2:]) for line in run.stdout.splitlines()
                if line.startswith("+ ")]
    return run, commands


def test_tpu_pod_trains_on_every_worker_from_the_mounted_bucket():
    run, commands = _dry_run("tpu_pod.sh", "--dry-run", "train", "my-tpu", "us-central2-b",
                             "my-bucket", "configs/warp_gan.py", "run1",
                             "--config.train.batch_size=64")
    assert run.returncode == 0 and len(commands) == 1
    assert commands[0][:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu",
                               "--zone=us-central2-b", "--worker=all"]
    remote = shlex.split(commands[0][8].removeprefix("--command="))
    assert remote == ["cd", "mgvton-jax", "&&", "python3", "-m", "mgvton_jax.train",
                      "--distributed", "--config", "configs/warp_gan.py", "--workdir",
                      "/mnt/my-bucket/run1", "--config.data.data_dir=/mnt/my-bucket/data",
                      "--config.train.batch_size=64"]


def test_tpu_pod_create_setup_and_delete():
    _, create = _dry_run("tpu_pod.sh", "--dry-run", "create", "t", "z", "v4-32")
    assert create == [["gcloud", "compute", "tpus", "tpu-vm", "create", "t", "--zone=z",
                       "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base"]]
    _, setup = _dry_run("tpu_pod.sh", "--dry-run", "setup", "t", "z",
                        "https://example.org/mgvton-jax.git", "b")
    remote = setup[0][-1]
    assert setup[0][:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "t", "--zone=z",
                            "--worker=all"]
    for part in ("git clone https://example.org/mgvton-jax.git mgvton-jax",
                 "pip install -e ./mgvton-jax 'jax[tpu]==0.10.2'",
                 "gcsfuse --implicit-dirs b /mnt/b"):
        assert part in remote
    _, delete = _dry_run("tpu_pod.sh", "--dry-run", "delete", "t", "z")
    assert delete == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "t", "--zone=z",
                       "--quiet"]]


def test_slurm_job_runs_one_task_per_gpu_with_the_distributed_flag():
    run, commands = _dry_run("slurm_gpu.sbatch", "configs/gmm.py", "/shared/run1",
                             "/shared/data", env={"DRY_RUN": "1"})
    assert run.returncode == 0
    assert commands == [["srun", "python", "-m", "mgvton_jax.train", "--distributed",
                         "--config", "configs/gmm.py", "--workdir", "/shared/run1",
                         "--config.data.data_dir=/shared/data"]]
    header = (LAUNCH / "slurm_gpu.sbatch").read_text()
    assert "#SBATCH --gpus-per-node=8" in header and "#SBATCH --gpus-per-task" not in header


def test_multinode_gpu_passes_the_coordinator_and_rank():
    run, commands = _dry_run("multinode_gpu.sh", "--dry-run", "node0:12355", "2", "1",
                             "configs/gmm.py", "/shared/run1", "/shared/data")
    assert run.returncode == 0
    assert commands == [["python", "-m", "mgvton_jax.train", "--config", "configs/gmm.py",
                         "--workdir", "/shared/run1", "--config.data.data_dir=/shared/data",
                         "--coordinator-address", "node0:12355", "--num-processes", "2",
                         "--process-id", "1"]]


@pytest.mark.parametrize("script, args, message", [
    ("tpu_pod.sh", ("--dry-run", "train", "t", "z"), "usage:"),
    ("tpu_pod.sh", ("--dry-run", "resize", "t", "z"), "usage:"),
    ("slurm_gpu.sbatch", ("configs/gmm.py",), "usage:"),
    ("multinode_gpu.sh", ("--dry-run", "node0", "2", "0", "c", "w", "d"), "host:port"),
    ("multinode_gpu.sh", ("--dry-run", "node0:1", "2", "2", "c", "w", "d"), "NODE_RANK"),
])
def test_bad_arguments_are_refused_before_anything_runs(script, args, message):
    run, commands = _dry_run(script, *args, env={"DRY_RUN": "1"})
    assert run.returncode == 2 and not commands and message in run.stderr
