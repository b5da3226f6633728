"""Faults a long run meets: damaged checkpoints, a full disk, a kill after logging, user errors."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_training import tiny_config

from mgvton_jax import checkpoints as checkpoint
from mgvton_jax.training import loop, progress

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(log_every=1, checkpoint_every=2, sample_every=100)


@pytest.fixture(scope="module")
def trained_gmm(synthetic_data_dir, tmp_path_factory):
    """A gmm workdir with checkpoints at steps 2 and 4 (checksums written)."""
    workdir = tmp_path_factory.mktemp("faults")
    loop.train_stage(tiny_config("gmm", synthetic_data_dir, num_steps=4, **COMMON), workdir,
                     synthetic_data_dir)
    return workdir


def _copy(workdir, tmp_path):
    copy = tmp_path / "workdir"
    shutil.copytree(workdir, copy)
    return copy


def _largest_array_file(step_dir):
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)


def _overwrite_in_place(step_dir):
    path = _largest_array_file(step_dir)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 3)
        f.write(os.urandom(min(100_000, path.stat().st_size // 3)))


def _truncate(step_dir):
    path = _largest_array_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty_meta(step_dir):
    (step_dir / "meta" / "metadata").write_text("")


def _no_data_item(step_dir):
    shutil.rmtree(step_dir / "data")


DAMAGE = {"overwritten": (_overwrite_in_place, "files changed since the save"),
          "truncated": (_truncate, "files changed since the save"),
          "empty meta": (_empty_meta, "files changed since the save"),
          "no data item": (_no_data_item, "files missing")}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_latest_checkpoint_is_found_and_the_older_one_used(trained_gmm, tmp_path,
                                                                  damage):
    workdir = _copy(trained_gmm, tmp_path)
    harm, reason = DAMAGE[damage]
    harm(workdir / "gmm" / "checkpoints" / "4")
    warnings = []
    checkpoints = checkpoint.StageCheckpoints(workdir / "gmm" / "checkpoints")
    try:
        step, meta = checkpoints.restore_latest(checkpoints.restore_meta,
                                                report=warnings.append)
    finally:
        checkpoints.close()
    assert step == 2 and meta["step"] == 2
    assert len(warnings) == 1 and "step 4" in warnings[0] and reason in warnings[0]


def test_damage_without_checksums_is_still_caught_by_the_restore(trained_gmm, tmp_path):
    workdir = _copy(trained_gmm, tmp_path)
    shutil.rmtree(workdir / "gmm" / "checksums")  # e.g. a run killed before sealing
    _empty_meta(workdir / "gmm" / "checkpoints" / "4")
    networks, meta = checkpoint.load_inference_networks("gmm", workdir / "gmm")
    assert meta["step"] == 2 and set(networks) == {"gmm"}


def test_resume_after_damage_in_place_trains_from_the_good_checkpoint(
        trained_gmm, synthetic_data_dir, tmp_path, capsys):
    workdir = _copy(trained_gmm, tmp_path)
    _overwrite_in_place(workdir / "gmm" / "checkpoints" / "4")
    result = loop.train_stage(tiny_config("gmm", synthetic_data_dir, num_steps=4, **COMMON),
                              workdir, synthetic_data_dir)
    out = capsys.readouterr().out
    assert "checkpoint step 4" in out and "files changed since the save" in out
    assert "resumed from step 2" in out and result["step"] == 4
    assert [json.loads(line)["step"] for line in
            (workdir / "gmm" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert len(list((workdir / "gmm" / "damaged_checkpoints").iterdir())) == 1
    checkpoints = checkpoint.StageCheckpoints(workdir / "gmm" / "checkpoints")
    assert checkpoints.verify(4) is None and checkpoints.latest_step() == 4
    checkpoints.close()


def test_an_inference_read_verifies_the_items_it_reads_and_only_those(trained_gmm, tmp_path,
                                                                     monkeypatch):
    workdir = _copy(trained_gmm, tmp_path)
    step_dir = workdir / "gmm" / "checkpoints" / "4"
    hashed = []
    real_sha256 = checkpoint._sha256
    monkeypatch.setattr(checkpoint, "_sha256", lambda path: hashed.append(path) or
                        real_sha256(path))
    _overwrite_in_place(step_dir)  # the train state: eval, export and later stages don't read it
    networks, meta = checkpoint.load_inference_networks("gmm", workdir / "gmm")
    assert meta["step"] == 4 and set(networks) == {"gmm"}
    read = {path.relative_to(step_dir).parts[0] for path in hashed}
    assert read == {"inference", "meta"}
    # Damage to what it reads is found, and the older step used.
    inference_file = max((p for p in (step_dir / "inference").rglob("*") if p.is_file()),
                         key=lambda p: p.stat().st_size)
    inference_file.write_bytes(inference_file.read_bytes()[:-1000])
    assert checkpoint.load_inference_networks("gmm", workdir / "gmm")[1]["step"] == 2


def test_no_restorable_checkpoint_is_one_error(trained_gmm, tmp_path):
    workdir = _copy(trained_gmm, tmp_path)
    for step in (2, 4):
        _empty_meta(workdir / "gmm" / "checkpoints" / str(step))
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"no checkpoint in .* can be restored: step 4 .*; step 2 .*Move"):
        checkpoint.load_inference_networks("gmm", workdir / "gmm")


def test_a_full_disk_is_one_line_naming_the_good_checkpoint(trained_gmm, tmp_path,
                                                            monkeypatch):
    workdir = _copy(trained_gmm, tmp_path)
    checkpoints = checkpoint.StageCheckpoints(workdir / "gmm" / "checkpoints")

    def full(*args, **kwargs):
        raise RuntimeError("save failed") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.manager, "save", full)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"no space left .* step 6 .* latest complete checkpoint is step 4\. "
                             r"Free some space and rerun"):
        checkpoints.save(6, {}, {}, None, {})
    checkpoints.manager.close()


def test_metrics_keep_one_line_per_step_after_a_resume(trained_gmm, synthetic_data_dir,
                                                       tmp_path):
    workdir = _copy(trained_gmm, tmp_path)
    metrics = workdir / "gmm" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    # As a kill after logging step 5 but before its checkpoint leaves it, plus a cut line.
    metrics.write_text("\n".join(lines + [lines[-1].replace('"step": 4', '"step": 5'),
                                          '{"step": 6, "g_l']) + "\n")
    loop.train_stage(tiny_config("gmm", synthetic_data_dir, num_steps=6, **COMMON), workdir,
                     synthetic_data_dir)
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path):
    checkpoints = checkpoint.StageCheckpoints(tmp_path / "checkpoints")
    with pytest.raises(progress.NonFiniteLossError, match="there is no checkpoint yet"):
        progress.check_finite({"g_loss": float("nan")}, 1, checkpoints)
    checkpoints.close()


def _train(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "mgvton_jax.train", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=env)


def test_user_errors_of_the_train_command_are_one_line(synthetic_data_dir, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    data = f"--config.data.data_dir={synthetic_data_dir}"
    cases = [
        (["--config", "configs/gmm.py:tiyn", "--workdir", tmp_path / "w"],
         "no variant 'tiyn'; the variants are full, tiny"),
        (["--config", "configs/viton.py:tiny", "--workdir", tmp_path / "w"],
         "no variant 'tiny'; the variants are full, cpu"),
        (["--config", "configs/gmm.py:tiny", "--workdir", a_file, data],
         f"--workdir {a_file} is a file"),
        (["--config", "configs/parsing.py:tiny", "--workdir", tmp_path / "w", data,
          "--config.train.batch_size=0"], "train.batch_size 0: it must be a positive multiple"),
        (["--config", "configs/parsing.py:tiny", "--workdir", tmp_path / "w", data,
          "--config.train.batch_size=1000"], "larger than the"),
        (["--config", "configs/parsing.py:tiny", "--workdir", tmp_path / "w", data,
          "--config.model.parsing.upsample=bogus"],
         "config.model: upsample must be one of ('transpose', 'resize'), got 'bogus'"),
    ]
    for args, message in cases:
        run = _train(*args)
        assert run.returncode != 0, args
        assert "Traceback" not in run.stderr, run.stderr[-2000:]
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (args, last)
