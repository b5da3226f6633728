"""Test set-up: 4 fake CPU devices (sharding tests) and parsed absl flags (grain workers)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
flags.FLAGS.mark_as_parsed()
