"""All four stages in the paper's order, each in its own WORKDIR/STAGE directory.

    python -m mgvton_jax.train --config configs/pipeline.py:tiny --workdir W

Override one stage with e.g. --config.stages.gmm.train.num_steps=50.
"""

import os

import ml_collections

from mgvton_jax.config_lib import STAGES, load_config_file

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(variant: str = "full"):
    c = ml_collections.ConfigDict()
    c.stages = ml_collections.ConfigDict(
        {stage: load_config_file(os.path.join(_HERE, f"{stage}.py"), variant)
         for stage in STAGES})
    return c
