"""Inference knows nothing of training: what importing the try-on path loads."""

import json
import subprocess
import sys

_PROBE = """
import json, sys
import flax.nnx  # flax's own import of optax (nnx.Optimizer) is the baseline
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded_by(module: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_tryon_loads_no_training_module_and_no_optax():
    loaded = _loaded_by("mgvton_jax.tryon")
    assert "mgvton_jax.inference" in loaded and "mgvton_jax.checkpoints" in loaded
    training = [m for m in loaded if m.startswith(("mgvton_jax.training", "optax"))
                or m in ("mgvton_jax.models.vgg", "mgvton_jax.eval", "mgvton_jax.train")]
    assert training == []


def test_the_probe_sees_training_imports():
    # The probe would catch it: the training loop loads its modules and optax's own.
    loaded = _loaded_by("mgvton_jax.training.loop")
    assert "mgvton_jax.training.frozen_cache" in loaded and "mgvton_jax.models.vgg" in loaded
