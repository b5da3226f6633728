"""Stage I: conditional parsing GAN (paper Eq. 2: adversarial + L1 + pixel cross-entropy).

G sees the reference person's hair, face and body shape, the clothes and the target pose,
and predicts the target parsing S'_t; a 2-scale PatchGAN judges (condition, parsing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mgvton_jax import losses
from mgvton_jax.constants import NUM_LABELS
from mgvton_jax.metrics.scores import segmentation_scores
from mgvton_jax.models.discriminator import MultiscaleDiscriminator
from mgvton_jax.models.generator import ResnetGenerator
from mgvton_jax.stages import base
from mgvton_jax.stages.base import Network, Scorer, Stage, adversarial_step, concat

CONDITION = ("hair_mask", "face_mask", "body_shape", "clothes", "target_pose")


def _logits(generator, batch) -> jax.Array:
    return generator(concat(batch, CONDITION))


def infer(networks: base.Networks, values: base.Values, batch: base.Batch) -> dict[str, jax.Array]:
    """{"parsing": S'_t as probabilities (B, H, W, 20)}."""
    del values
    return {"parsing": jax.nn.softmax(_logits(networks["generator"], batch), axis=-1)}


def confusion(values: base.Values) -> jax.Array:
    """(B, 20, 20) int32 pixel counts per example: rows the true label (target parsing),
    columns the synthesized parsing's argmax."""
    truth = jax.nn.one_hot(values["target_parsing"].argmax(-1), NUM_LABELS, dtype=jnp.int32)
    predicted = jax.nn.one_hot(values["parsing"].argmax(-1), NUM_LABELS, dtype=jnp.int32)
    return jnp.einsum("bhwi,bhwj->bij", truth, predicted)


def train_step(networks: base.Networks, optimizers: base.Optimizers, values: base.Values,
               batch: base.Batch, config: ml_collections.ConfigDict,
               perceptual: base.Perceptual | None) -> dict[str, jax.Array]:
    del values, perceptual
    target, kind = batch["target_parsing"], config.loss_options.gan

    def loss_fn(logits, judge):
        probs = jax.nn.softmax(logits, axis=-1)
        terms = {
            "adversarial": lambda: losses.gan_g_loss(judge(probs), kind),
            "l1": lambda: losses.l1_loss(probs, target),
            "cross_entropy": lambda: losses.parsing_cross_entropy(logits, target),
        }
        return losses.weighted_sum(config.loss, terms)

    return adversarial_step(
        networks, optimizers, lambda g: _logits(g, batch), concat(batch, CONDITION), target,
        lambda logits: jax.nn.softmax(logits, axis=-1), loss_fn, kind)


STAGE = Stage(
    name="parsing",
    networks={
        "generator": Network(
            module=ResnetGenerator, section="parsing", inputs=(CONDITION,),
            fixed={"out_channels": NUM_LABELS, "out_activation": "none"}, remat=True),
        "discriminator": Network(
            module=MultiscaleDiscriminator, section="discriminator",
            inputs=(CONDITION + ("target_parsing",),)),
    },
    inference=("generator",),
    consumes=(),
    produces={"parsing": NUM_LABELS},
    infer=infer,
    train_step=train_step,
    sample_columns=("reference_image", "clothes", "target_pose", "parsing", "target_parsing",
                    "target_image"),
    intermediates=("parsing",),
    scorer=Scorer(per_example=confusion, summary=segmentation_scores),
)
