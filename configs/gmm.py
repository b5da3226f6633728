"""Mask-based geometric matching: TPS offsets from (body shape, clothes region) vs clothes mask.

L_geo = |T(clothes mask) - clothes region| (paper); grid regularisers are options (weight 0).

    python -m mgvton_jax.train --config configs/gmm.py[:tiny] --workdir W
"""

from mgvton_jax.config_lib import base_config


def get_config(variant: str = "full"):
    c = base_config("gmm", variant)
    c.train.epochs = 35 if variant == "full" else 1
    c.train.num_steps = 0 if variant == "full" else 600
    c.loss.geometric = 1.0
    c.loss.grid_tv = 0.0
    c.loss.grid_gic = 0.0
    # Stream A from the ground-truth target parsing (cleaner; docs/design.md) or stage I's.
    c.train.use_synthesized_parsing = False
    return c
