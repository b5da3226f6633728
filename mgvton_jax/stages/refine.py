"""Stage III, refinement render: a composition mask M from the warped clothes, the coarse
Warp-GAN image and the target pose; result = M * warped clothes + (1 - M) * coarse (Eq. 6).

Loss (paper Eq. 7): perceptual(result, target) * 10 + |1 - M| * 1 (tiny configs: + 10 * L1).
"""

from __future__ import annotations

import jax
import ml_collections

from mgvton_jax import losses
from mgvton_jax.models.generator import ResnetGenerator
from mgvton_jax.models.refine import compose
from mgvton_jax.stages import base
from mgvton_jax.stages.base import Network, Stage, concat, forward_with_pullback, generator_update

INPUTS = ("warped_clothes", "coarse", "target_pose")


def _render(render, values) -> dict[str, jax.Array]:
    mask = render(concat(values, INPUTS))
    return {"refined": compose(mask, values["warped_clothes"], values["coarse"]),
            "composition_mask": mask}


def infer(networks: base.Networks, values: base.Values, batch: base.Batch) -> dict[str, jax.Array]:
    """{"refined": (B, H, W, 3) in [-1, 1], "composition_mask": (B, H, W, 1) in [0, 1]}."""
    return _render(networks["render"], {**batch, **values})


def train_step(networks: base.Networks, optimizers: base.Optimizers, values: base.Values,
               batch: base.Batch, config: ml_collections.ConfigDict,
               perceptual: base.Perceptual | None) -> dict[str, jax.Array]:
    inputs, target = {**batch, **values}, batch["target_image"]
    output, pullback = forward_with_pullback(networks["render"], lambda r: _render(r, inputs))

    def loss_fn(output):
        terms = {
            "perceptual": lambda: perceptual(output["refined"], target),
            "mask": lambda: losses.mask_regulariser(output["composition_mask"]),
            "l1": lambda: losses.l1_loss(output["refined"], target),
        }
        return losses.weighted_sum(config.loss, terms)

    return generator_update(networks["render"], optimizers["render"], output, pullback, loss_fn)


STAGE = Stage(
    name="refine",
    networks={"render": Network(module=ResnetGenerator, section="refine", inputs=(INPUTS,),
                                fixed={"out_channels": 1, "out_activation": "sigmoid"},
                                remat=True)},
    inference=("render",),
    consumes=("warped_clothes", "coarse"),
    produces={"refined": 3, "composition_mask": 1},
    infer=infer,
    train_step=train_step,
    sample_columns=("reference_image", "clothes", "target_pose", "parsing", "warped_clothes",
                    "coarse", "composition_mask", "refined", "target_image"),
    intermediates=("composition_mask",),
    uses_vgg=True,
    image="refined",
)
