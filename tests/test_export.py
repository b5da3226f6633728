"""Export: a trained workdir -> a model directory that loads back to the same pipeline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from mgvton_jax import checkpoints, export, stages
from mgvton_jax.data import examples, pipeline

ROOT = Path(__file__).resolve().parents[1]


def _walk(networks, batch):
    graphdef, state = nnx.split(networks)
    run = jax.jit(lambda state, batch: stages.run_stages(
        stages.PIPELINE, nnx.merge(graphdef, state), batch))
    return jax.device_get(run(state, batch))


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_exported_model_runs_the_trained_pipeline_bit_for_bit(trained_pipeline,
                                                             synthetic_data_dir, tmp_path):
    workdir, _, _ = trained_pipeline
    manifest = export.export_model(workdir, tmp_path / "model")
    assert list(manifest["stages"]) == list(stages.PIPELINE)
    assert all(entry["step"] == 2 for entry in manifest["stages"].values())
    assert manifest["image_size"] == [64, 48]
    assert not [p for p in tmp_path.iterdir() if p.name != "model"]  # no partial directory
    model, read_manifest = export.load_model(tmp_path / "model")
    assert read_manifest == manifest
    trained = {name: checkpoints.load_inference_networks(name, workdir / name)[0]
               for name in stages.PIPELINE}
    for name in stages.PIPELINE:  # the same networks, the same numbers
        exported = jax.tree.leaves_with_path(nnx.to_pure_dict(nnx.state(model[name])))
        original = jax.tree.leaves_with_path(nnx.to_pure_dict(nnx.state(trained[name])))
        assert [p for p, _ in exported] == [p for p, _ in original]
        for (path, a), (_, b) in zip(exported, original, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {path}")
    iterator = iter(pipeline.make_dataset(synthetic_data_dir, "test", 2, shuffle=False,
                                          image_size=(64, 48)))
    batch = examples.model_inputs(next(iterator))
    iterator.close()
    from_export, from_checkpoints = _walk(model, batch), _walk(trained, batch)
    assert set(from_export) == set(from_checkpoints)
    for key in from_export:
        np.testing.assert_array_equal(from_export[key], from_checkpoints[key], err_msg=key)


def test_load_model_names_a_bad_directory(tmp_path):
    with pytest.raises(export.ModelError, match="not a model directory"):
        export.load_model(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(export.ModelError, match="format 'other'"):
        export.load_model(tmp_path)


def test_export_command_and_its_errors(trained_pipeline, tmp_path):
    workdir, _, _ = trained_pipeline
    command = [sys.executable, "-m", "mgvton_jax.export", f"--workdir={workdir}",
               f"--out={tmp_path / 'model'}"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "parsing step 2, gmm step 2, warp_gan step 2, refine step 2" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "exists; choose another --out" in again.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = subprocess.run(
        [sys.executable, "-m", "mgvton_jax.export", f"--workdir={empty}",
         f"--out={tmp_path / 'other'}"], capture_output=True, text=True, env=_env(), timeout=300)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "has no checkpoint of the 'parsing' stage" in missing.stderr
    assert not (tmp_path / "other").exists()
