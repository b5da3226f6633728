"""The person analyzer: a photo -> its LIP parsing and COCO-18 keypoints (try-on from a plain
photo; mgvton_jax/stages/analyzer.py). Trained on a built data set's target photos and their
own annotations; not a step of the try-on pipeline.

Variants: "cpu" (VITON at 128x96, the model in pretrained/analyzer/: about an hour on 2 CPU
cores), "full" (VITON at 256x192, wider, for accelerators), "tiny" (64x48, the synthetic set
when no data_dir is given: tests).

    python -m mgvton_jax.train --config configs/analyzer.py:cpu --workdir runs/analyzer
"""

import ml_collections

from mgvton_jax.config_lib import base_config

VARIANTS = ("full", "cpu", "tiny")


def get_config(variant: str = "full"):
    c = base_config("analyzer", "tiny" if variant == "tiny" else "full")
    c.variant = variant
    c.train.b1 = 0.9  # no adversary here: Adam's usual momentum
    c.train.lr_schedule = "cosine"
    c.loss.cross_entropy = 1.0
    c.loss.joints = 1.0
    c.loss.presence = 1.0
    # Product images shown as photos without a person (per step), and the share of examples
    # shrunk within the frame, to at least min_zoom (stages/analyzer.py, training_examples).
    c.augment = ml_collections.ConfigDict(dict(clothes_negatives=2, zoom_probability=0.5,
                                               min_zoom=0.5))
    if variant == "tiny":
        c.train.num_steps = 300
        return c
    c.data.data_dir = "runs/viton_data"
    c.train.lr = 2e-3
    if variant == "full":
        c.train.batch_size = 32
        c.train.num_steps = 20_000
        return c
    c.image_size = (128, 96)
    c.model.analyzer.update(width=16, max_width=128, levels=5)
    c.train.batch_size = 8
    c.train.num_steps = CPU_STEPS
    c.train.log_every = 50
    c.train.sample_every = 500
    c.train.checkpoint_every = 250
    return c


# cpu: steps at batch 8 (+ 2 product images), from the measured throughput (docs/analyzer.md).
CPU_STEPS = 4000
