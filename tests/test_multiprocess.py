"""Two processes on localhost (CPU, 2 devices each), started from the command line as a user
would, against one process with 4 devices: the same losses, pictures and metrics written once,
a checkpoint that resumes with another process and device count, the same evaluation, export
and try-on results."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_training import tiny_config

from mgvton_jax import eval as evaluation
from mgvton_jax import tryon
from mgvton_jax.training import loop

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int | None) -> dict:
    # The tests' optimisation level (conftest.py), so that the processes compile as fast and
    # share the compilation cache with the test session.
    flags = "--xla_backend_optimization_level=0"
    if devices:
        flags += f" --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


def _processes(command: list[str], count: int = 2, devices: int = 2,
               timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Runs `command` as `count` processes of one run on localhost; their results."""
    address = f"127.0.0.1:{_free_port()}"
    running = [subprocess.Popen(
        [*command, f"--coordinator-address={address}", f"--num-processes={count}",
         f"--process-id={index}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(devices), cwd=ROOT)
        for index in range(count)]
    results = []
    for process in running:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in running:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return results


def _train_command(workdir, data_dir, steps=STEPS):
    return [sys.executable, "-m", "mgvton_jax.train", f"--config={ROOT}/configs/parsing.py:tiny",
            f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
            f"--config.train.num_steps={steps}", "--config.train.log_every=1",
            "--config.train.checkpoint_every=1", "--config.train.sample_every=1"]


def _metrics(workdir):
    return [json.loads(line) for line in
            (Path(workdir) / "parsing" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(synthetic_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_processes")
    return workdir, _processes(_train_command(workdir, synthetic_data_dir))


def test_two_processes_train_as_one_process_with_four_devices(two_process_run,
                                                               synthetic_data_dir, tmp_path):
    workdir, results = two_process_run
    # One process, the 4 devices of the test session, the same global batch of 4.
    config = tiny_config("parsing", synthetic_data_dir, num_steps=STEPS, log_every=1,
                         checkpoint_every=1, sample_every=1)
    loop.train_stage(config, tmp_path, synthetic_data_dir)
    two, one = _metrics(workdir), _metrics(tmp_path)
    assert [line["step"] for line in two] == list(range(1, STEPS + 1))  # written once
    # Float sums in another order (cross-process all-reduces) stay within 2e-5 over 2 steps
    # (they drift past 1e-4 by step 4); a batch that differs by one flipped example is off by
    # 3e-4 and more in the D and adversarial terms.
    for a, b in zip(two, one, strict=True):
        for key in ("g_loss", "d_loss", "cross_entropy", "l1", "adversarial"):
            np.testing.assert_allclose(a[key], b[key], rtol=2e-5, err_msg=f"{key} {a['step']}")
    samples = sorted(p.name for p in (workdir / "parsing" / "samples").iterdir())
    assert samples == ["step_0000001.png", "step_0000002.png"]
    main, other = results
    assert main.stdout.count(f"[parsing] step 1/{STEPS}") == 1 and \
        "2 processes, 4 devices" in main.stdout
    assert "[parsing]" not in other.stdout  # only process 0 prints the log


def test_a_two_process_checkpoint_resumes_in_one_process(two_process_run, synthetic_data_dir,
                                                         tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(two_process_run[0], workdir)
    run = subprocess.run(_train_command(workdir, synthetic_data_dir, steps=STEPS + 2),
                         capture_output=True, text=True, env=_env(None), cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"resumed from step {STEPS}" in run.stdout
    assert "written by 2 processes, this run has 1" in run.stdout
    assert [line["step"] for line in _metrics(workdir)] == list(range(1, STEPS + 3))


def test_two_process_evaluation_gives_the_one_process_numbers(trained_pipeline,
                                                              synthetic_data_dir, tmp_path):
    workdir = trained_pipeline[0]
    one = evaluation.evaluate(workdir, tmp_path / "one", synthetic_data_dir, batch_size=4,
                              progress=False)
    out = tmp_path / "two"
    results = _processes([sys.executable, "-m", "mgvton_jax.eval", f"--workdir={workdir}",
                          f"--out={out}", f"--data-dir={synthetic_data_dir}",
                          "--batch-size=4", "--skip-inception"])
    two = json.loads((out / "results.json").read_text())
    assert two["examples"] == one["examples"] and two["settings"]["processes"] == 2
    for row, scores in one["rows"].items():
        for key, value in scores.items():
            assert two["rows"][row][key] == pytest.approx(value, rel=1e-5), (row, key)
    for stage, scores in one["stages"].items():
        for key, value in scores.items():
            assert two["stages"][stage][key] == pytest.approx(value, rel=1e-5), (stage, key)
    assert len(list((out / "images").glob("*.png"))) == one["examples"]
    assert "SSIM" in results[0].stdout and "SSIM" not in results[1].stdout


def test_two_process_export_and_tryon_pairs_give_the_one_process_results(
        trained_pipeline, synthetic_mpv, tmp_path, capsys):
    model = tmp_path / "model"
    exported = _processes([sys.executable, "-m", "mgvton_jax.export",
                           f"--workdir={trained_pipeline[0]}", f"--out={model}"])
    assert "wrote" in exported[0].stdout and "wrote" not in exported[1].stdout
    assert json.loads((model / "manifest.json").read_text())["stages"]

    lines = (synthetic_mpv / "all_poseA_poseB_clothes.txt").read_text().splitlines()
    pair_list = tmp_path / "pairs.txt"
    pair_list.write_text("\n".join([*lines[:5], "only two\tcolumns"]) + "\n")
    tryon.main(["--model", str(model), "--pairs", str(pair_list), "--data-root",
                str(synthetic_mpv), "--out-dir", str(tmp_path / "one")])
    assert "wrote 5 try-on results" in capsys.readouterr().out
    two = _processes([sys.executable, "-m", "mgvton_jax.tryon", f"--model={model}",
                      f"--pairs={pair_list}", f"--data-root={synthetic_mpv}",
                      f"--out-dir={tmp_path / 'two'}"])
    # Five lines over two processes (3 + 2), the bad line counted once, the summary printed once.
    assert "wrote 5 try-on results" in two[0].stdout and "skipped 1" in two[0].stdout
    assert "wrote" not in two[1].stdout
    one_files = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert one_files == sorted(p.name for p in (tmp_path / "two").glob("*.png"))
    assert len(one_files) == 5
    for name in one_files:
        a = np.asarray(Image.open(tmp_path / "one" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "two" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, name  # uint8 results; float order may move one level
