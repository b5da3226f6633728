"""Every stage in pipeline order, each in its own WORKDIR/STAGE directory.

    python -m mgvton_jax.train --config configs/pipeline.py:tiny --workdir W

The stages are `mgvton_jax.stages.PIPELINE`, each configured by configs/STAGE.py. Override
one stage with e.g. --config.stages.gmm.train.num_steps=50.
"""

import os

import ml_collections

from mgvton_jax.config_lib import load_config_file
from mgvton_jax.stages import PIPELINE

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(variant: str = "full"):
    c = ml_collections.ConfigDict()
    c.stages = ml_collections.ConfigDict(
        {stage: load_config_file(os.path.join(_HERE, f"{stage}.py"), variant)
         for stage in PIPELINE})
    return c
