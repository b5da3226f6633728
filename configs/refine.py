"""Refinement render: composition mask M; result = M * warped clothes + (1 - M) * coarse.

Loss (paper Eq. 7): perceptual(result, target) * 10 + |1 - M| * 1 (tiny: + 10 * L1).

    python -m mgvton_jax.train --config configs/refine.py[:tiny] --workdir W
"""

from mgvton_jax.config_lib import base_config


def get_config(variant: str = "full"):
    c = base_config("refine", variant)
    c.train.epochs = 5 if variant == "full" else 1
    c.train.num_steps = 0 if variant == "full" else 200
    c.loss.perceptual = 10.0
    c.loss.mask = 1.0
    # Not in the paper. Tiny configs train with random VGG weights (no pretrained file is
    # assumed), a weak perceptual signal, so they add an L1 to the target.
    c.loss.l1 = 0.0 if variant == "full" else 10.0
    return c
