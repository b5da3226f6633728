"""Stage II, Warp-GAN: a coarse try-on image from the warped clothes, the reference person
without clothes, the target pose and stage I's parsing.

Loss: adversarial 1, perceptual 10, D feature matching 10 (first three layers), L1 1, plus an
L1 between the parsing matcher's warped reference parsing and the target parsing (it trains
the feature warping; docs/design.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mgvton_jax import losses
from mgvton_jax.models.discriminator import MultiscaleDiscriminator
from mgvton_jax.models.warp_gan import WarpGANGenerator, WarpGANOutput
from mgvton_jax.stages.base import (
    Network,
    Stage,
    concat,
    discriminator_update,
    forward_with_pullback,
    generator_update,
)

MAIN_INPUTS = ("warped_clothes", "reference_without_clothes", "target_pose", "parsing")
REFERENCE_INPUTS = ("reference_without_clothes", "reference_parsing")
CONDITION = ("target_pose", "parsing")  # what D sees besides the image


def _generate(generator, values) -> WarpGANOutput:
    return generator(concat(values, MAIN_INPUTS), concat(values, REFERENCE_INPUTS),
                     values["parsing"], values["reference_parsing"])


def infer(networks, values, batch) -> dict[str, jax.Array]:
    """{"coarse": (B, H, W, 3) in [-1, 1]}."""
    return {"coarse": _generate(networks["generator"], {**batch, **values}).image}


def train_step(networks, optimizers, values, batch, config, perceptual):
    gen, disc = networks["generator"], networks["discriminator"]
    inputs = {**batch, **values}
    condition, target = concat(inputs, CONDITION), batch["target_image"]
    kind = config.loss_options.gan
    output, pullback = forward_with_pullback(gen, lambda g: _generate(g, inputs))

    def judged(image):
        return jnp.concatenate([condition, image], axis=-1)

    d_loss = discriminator_update(disc, optimizers["discriminator"], judged(target),
                                  judged(output.image), kind)

    def loss_fn(output, disc):
        fake_features = disc(judged(output.image))
        terms = {
            "adversarial": losses.gan_g_loss(fake_features, kind),
            "perceptual": perceptual(output.image, target),
            "feature_matching": losses.feature_matching_loss(
                disc(judged(target)), fake_features, config.loss_options.feature_matching_layers),
            "l1": losses.l1_loss(output.image, target),
            "parsing_match": losses.l1_loss(output.match.warped_ref_parsing,
                                            batch["target_parsing"]),
        }
        return losses.weighted_sum(config.loss, terms), terms

    metrics = generator_update(gen, optimizers["generator"], output, pullback, loss_fn, disc)
    return {"d_loss": d_loss, **metrics}


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
    uses_vgg=True,
)
