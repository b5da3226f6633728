"""Stage II, Warp-GAN: a coarse try-on image from the warped clothes, the reference person
without clothes, the target pose and stage I's parsing.

Loss: adversarial 1, perceptual 10, D feature matching 10 (first three layers), L1 1, plus an
L1 between the parsing matcher's warped reference parsing and the target parsing (it trains
the feature warping; docs/design.md).
"""

from __future__ import annotations

import jax
import ml_collections

from mgvton_jax import losses
from mgvton_jax.models.discriminator import MultiscaleDiscriminator
from mgvton_jax.models.warp_gan import WarpGANGenerator, WarpGANOutput
from mgvton_jax.stages import base
from mgvton_jax.stages.base import Network, Stage, adversarial_step, concat

MAIN_INPUTS = ("warped_clothes", "reference_without_clothes", "target_pose", "parsing")
REFERENCE_INPUTS = ("reference_without_clothes", "reference_parsing")
CONDITION = ("target_pose", "parsing")  # what D sees besides the image


def _generate(generator, values) -> WarpGANOutput:
    return generator(concat(values, MAIN_INPUTS), concat(values, REFERENCE_INPUTS),
                     values["parsing"], values["reference_parsing"])


def infer(networks: base.Networks, values: base.Values, batch: base.Batch) -> dict[str, jax.Array]:
    """{"coarse": (B, H, W, 3) in [-1, 1]}."""
    return {"coarse": _generate(networks["generator"], {**batch, **values}).image}


def train_step(networks: base.Networks, optimizers: base.Optimizers, values: base.Values,
               batch: base.Batch, config: ml_collections.ConfigDict,
               perceptual: base.Perceptual | None) -> dict[str, jax.Array]:
    inputs, target = {**batch, **values}, batch["target_image"]
    kind = config.loss_options.gan

    def loss_fn(output, judge):
        fake_features = judge(output.image)
        terms = {
            "adversarial": lambda: losses.gan_g_loss(fake_features, kind),
            "perceptual": lambda: perceptual(output.image, target),
            "feature_matching": lambda: losses.feature_matching_loss(
                judge(target), fake_features, config.loss_options.feature_matching_layers),
            "l1": lambda: losses.l1_loss(output.image, target),
            "parsing_match": lambda: losses.l1_loss(output.match.warped_ref_parsing,
                                            batch["target_parsing"]),
        }
        return losses.weighted_sum(config.loss, terms)

    return adversarial_step(
        networks, optimizers, lambda g: _generate(g, inputs), concat(inputs, CONDITION), target,
        lambda output: output.image, loss_fn, kind)


STAGE = Stage(
    name="warp_gan",
    networks={
        "generator": Network(module=WarpGANGenerator, section="warp_gan",
                             inputs=(MAIN_INPUTS, REFERENCE_INPUTS, ("parsing",)), remat=True,
                             sized=True),
        "discriminator": Network(module=MultiscaleDiscriminator, section="discriminator",
                                 inputs=(CONDITION + ("target_image",),)),
    },
    inference=("generator",),
    consumes=("parsing", "warped_clothes"),
    produces={"coarse": 3},
    infer=infer,
    train_step=train_step,
    sample_columns=("reference_image", "clothes", "target_pose", "parsing", "warped_clothes",
                    "coarse", "target_image"),
    intermediates=("coarse",),
    uses_vgg=True,
    image="coarse",
)
