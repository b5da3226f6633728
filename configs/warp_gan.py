"""Warp-GAN: coarse image from warped clothes, clothes-free reference, pose and parsing.

Loss (docs/design.md, "Loss weights"): adversarial 1, perceptual 10, feature matching 10 (first
three D layers), L1 1, plus L1 of the parsing matcher's warped reference parsing to the target
parsing.

    python -m mgvton_jax.train --config configs/warp_gan.py[:tiny] --workdir W
"""

from mgvton_jax.config_lib import base_config


def get_config(variant: str = "full"):
    c = base_config("warp_gan", variant)
    c.train.epochs = 15 if variant == "full" else 1
    c.train.num_steps = 0 if variant == "full" else 400
    c.loss.adversarial = 1.0
    c.loss.perceptual = 10.0
    c.loss.feature_matching = 10.0
    # Not in the paper: at 64x48 and a few hundred steps the pixel term fixes colours and
    # background (README, "Demo quality").
    c.loss.l1 = 1.0 if variant == "full" else 10.0
    c.loss.parsing_match = 1.0
    c.loss_options.feature_matching_layers = 3
    return c
