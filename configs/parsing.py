"""Stage I: conditional parsing GAN (paper Eq. 2: adversarial + L1 + parsing cross-entropy).

    python -m mgvton_jax.train --config configs/parsing.py[:tiny] --workdir W
"""

from mgvton_jax.config_lib import base_config


def get_config(variant: str = "full"):
    c = base_config("parsing", variant)
    c.train.epochs = 200 if variant == "full" else 1
    c.train.num_steps = 0 if variant == "full" else 400
    c.loss.adversarial = 1.0
    c.loss.l1 = 1.0
    c.loss.cross_entropy = 1.0
    return c
