"""Test set-up: 4 fake CPU devices (sharding tests) and parsed absl flags (grain workers)."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# 4 fake devices for the sharding tests. No LLVM optimisation: for the tiny test programs it
# costs more compile time than it saves in run time.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests compile the same tiny programs many times (each compile_stage is a new jit, and the
# CLI tests start new processes): a compilation cache shared by the session and its
# subprocesses compiles each once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="mgvton_test_compilations_")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
flags.FLAGS.mark_as_parsed()


import pytest  # noqa: E402

from mgvton_jax.data.build import build_dataset  # noqa: E402
from mgvton_jax.data.synth import write_synthetic_mpv  # noqa: E402

SYNTHETIC_PEOPLE = 10


@pytest.fixture(scope="session")
def synthetic_mpv(tmp_path_factory):
    """A small synthetic MPV directory (written once per test session)."""
    root = tmp_path_factory.mktemp("synthetic_mpv")
    write_synthetic_mpv(root, SYNTHETIC_PEOPLE, seed=0)
    return root


@pytest.fixture(scope="session")
def synthetic_data_dir(synthetic_mpv, tmp_path_factory):
    """The synthetic MPV set built into a TFDS data directory."""
    data_dir = tmp_path_factory.mktemp("synthetic_tfds")
    build_dataset(synthetic_mpv, data_dir, progress=False)
    return data_dir


@pytest.fixture(scope="session")
def trained_pipeline(synthetic_data_dir, tmp_path_factory):
    """(workdir, {stage: config}, {stage: last metrics}): the four tiny stages trained for 2
    steps each, in order, on the synthetic set; the GMM on stage I's parsing."""
    from mgvton_jax import stages
    from mgvton_jax.config_lib import load_config_file
    from mgvton_jax.training import loop

    root = Path(__file__).resolve().parents[1]
    workdir = tmp_path_factory.mktemp("trained_pipeline")
    configs, results = {}, {}
    for name in stages.PIPELINE:
        config = load_config_file(root / "configs" / f"{name}.py", "tiny")
        config.data.data_dir = str(synthetic_data_dir)
        config.perceptual.random = True  # full-width VGG16 is slow under the tests' XLA flags
        config.train.update(num_steps=2, log_every=1, checkpoint_every=2, sample_every=2)
        if name == "gmm":
            config.train.use_synthesized_parsing = True  # the GMM runs the trained stage I too
        configs[name] = config
        results[name] = loop.train_stage(config, workdir, synthetic_data_dir)
    return workdir, configs, results


@pytest.fixture(scope="session")
def fake_inception_weights(tmp_path_factory):
    """An .npz of `fake_inception_arrays` as the converter writes it."""
    from fake_weights import fake_inception_arrays

    from mgvton_jax.tools import convert_inception

    path = tmp_path_factory.mktemp("inception") / "inception.npz"
    convert_inception.write_npz(convert_inception.convert_arrays(fake_inception_arrays()), path)
    return path
