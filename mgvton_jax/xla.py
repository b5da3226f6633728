"""`jit`: jax.jit with the XLA options this package compiles with on each platform.

On XLA:CPU (jax 0.10), the YNNPACK library fusions that XLA uses by default for convolutions
and elementwise ops make our steps 2-4x slower than XLA's own kernels: a 7x7 convolution
on a reflect-padded 70x54x24 batch of 4 took 37 ms instead of 4 ms, and the tiny Warp-GAN step
0.25 s instead of 0.11 s (benchmarks/README.md). The training step, the sample pictures, the
inference walk and the Inception features are compiled through `jit`, so the choice is made
once, here, per compilation (not through the process-wide XLA_FLAGS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

# Platform -> compiler options. An empty list of YNNPACK fusion types leaves every
# convolution, matrix product and elementwise op to XLA:CPU's own kernels.
COMPILER_OPTIONS: dict[str, dict[str, str]] = {
    "cpu": {"xla_cpu_experimental_ynn_fusion_type": ""},
}


def jit(fun: Callable, *, platform: str | None = None, **kwargs: Any) -> Callable:
    """jax.jit(fun, **kwargs) with COMPILER_OPTIONS[platform] (default: jax's default
    backend, the platform the compiled function runs on unless kwargs place it elsewhere)."""
    options = COMPILER_OPTIONS.get(platform or jax.default_backend())
    if options:
        kwargs["compiler_options"] = {**options, **kwargs.get("compiler_options", {})}
    return jax.jit(fun, **kwargs)
