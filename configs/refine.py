"""Refinement render: composition mask M; result = M * warped clothes + (1 - M) * coarse.

Loss (paper Eq. 7): perceptual(result, target) * 10 + |1 - M| * 1 (tiny: + 10 * L1).

    python -m mgvton_jax.train --config configs/refine.py[:tiny] --workdir W
"""

from mgvton_jax.config_lib import base_config


def get_config(variant: str = "full"):
    c = base_config("refine", variant)
    c.train.epochs = 5 if variant == "full" else 1
    c.train.num_steps = 0 if variant == "full" else 150
    c.loss.perceptual = 10.0
    c.loss.mask = 1.0
    # Not in the paper: at 64x48 and a few hundred steps the pixel term fixes colours
    # (README, "Demo quality").
    c.loss.l1 = 0.0 if variant == "full" else 10.0
    return c
