"""VITON photos, all four stages: pose-fixed try-on (each person's target pose is their own).

Variants: "cpu" (128x96, narrow networks: the four stages train in about 70 minutes on 2 CPU
cores; the model in pretrained/viton/) and "full" (the paper's 256x192 and widths, for
accelerators). One field names the data set for every stage: --config.data_dir.

    python -m mgvton_jax.data.build --mpv-dir ../shared/datasets/viton --data-dir runs/viton_data
    python -m mgvton_jax.train --config configs/viton.py:cpu --workdir runs/viton

The sizes and steps of "cpu" were chosen by measured throughput (docs/viton.md).
"""

import os

import ml_collections

from mgvton_jax.config_lib import load_config_file
from mgvton_jax.stages import PIPELINE

VARIANTS = ("full", "cpu")
_HERE = os.path.dirname(os.path.abspath(__file__))

# cpu: training steps per stage at batch 4, from the measured throughput (docs/viton.md):
# 15.6, 2.3, 32.8 and 17.1 minutes on 2 CPU cores (2026-12-07).
CPU_STEPS = {"parsing": 3000, "gmm": 4000, "warp_gan": 4000, "refine": 1200}


def _cpu(c: ml_collections.ConfigDict, stage: str) -> None:
    """The tiny stage config at 128x96: generators downsample three times (16x12 bottleneck,
    as tiny's twice at 64x48), and the GMM / matcher feature maps end at 16x12 too."""
    c.image_size = (128, 96)
    c.train.num_steps = CPU_STEPS[stage]
    c.train.log_every = 50
    c.train.sample_every = 500
    c.train.checkpoint_every = 250
    for section in ("parsing", "refine", "warp_gan"):
        c.model[section].n_downsample = 3
    c.model.gmm.n_layers = 3
    c.model.warp_gan.matcher_n_layers = 3
    c.model.discriminator.n_layers = 3
    if stage == "parsing":
        # At weight 1 the discriminator wins after ~800 steps here and the cross-entropy
        # climbs back (0.48 -> 0.80 by step 1,100, measured): a light adversarial term.
        c.loss.adversarial = 0.1
    if stage == "warp_gan":
        # The VGG loss is half of the Warp-GAN step here: twice the steps with the L1 and
        # feature-matching terms pay more. The refinement, which gives the result, keeps it.
        c.loss.perceptual = 0.0


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.data_dir = ml_collections.FieldReference("runs/viton_data")
    c.stages = ml_collections.ConfigDict()
    for stage in PIPELINE:
        stage_config = load_config_file(os.path.join(_HERE, f"{stage}.py"),
                                        "full" if variant == "full" else "tiny")
        stage_config.variant = variant
        stage_config.data.data_dir = c.get_ref("data_dir")
        if variant == "cpu":
            _cpu(stage_config, stage)
        c.stages[stage] = stage_config
    return c
