"""The four training stages: their networks, one optimisation step each, and sample pictures.

A stage's `step` works on NNX modules in place (the training loop wraps it in a pure, jitted
`train_step(state, frozen, batch) -> (state, metrics)`); GAN stages update D first, then G.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mgvton_jax import losses, models, tryon
from mgvton_jax.constants import NUM_KEYPOINTS, NUM_LABELS
from mgvton_jax.models import vgg
from mgvton_jax.ops.warp import grid_sample, tps_grid

Modules = dict[str, nnx.Module]
Batch = Mapping[str, jax.Array]

PARSING_CONDITION_CHANNELS = 3 + 3 + NUM_KEYPOINTS  # hair, face, body shape, clothes, pose
WARP_GAN_CONDITION_CHANNELS = NUM_KEYPOINTS + NUM_LABELS


@dataclasses.dataclass(frozen=True)
class Stage:
    """name; earlier stages it runs frozen; its networks; one step; what its samples show."""

    name: str
    requires: Callable[[ml_collections.ConfigDict], tuple[str, ...]]
    build: Callable[[ml_collections.ConfigDict, nnx.Rngs], Modules]
    step: Callable[..., dict[str, jax.Array]]
    samples: Callable[..., dict[str, jax.Array]]
    inference_module: str  # the network later stages load
    sample_columns: tuple[str, ...]  # the keys of `samples`, in picture order
    uses_vgg: bool = False


def _discriminator_update(disc, optimizer, real, fake, kind: str) -> jax.Array:
    """One D step on real and (detached) fake inputs; returns the D loss."""
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d):
        return losses.gan_d_loss(d(real), d(fake), kind)

    loss, grads = nnx.value_and_grad(loss_fn)(disc)
    optimizer.update(disc, grads)
    return loss


def _generator_update(gen, optimizer, loss_fn) -> dict[str, jax.Array]:
    """One G step; loss_fn(gen) -> (total, parts). Returns parts plus g_loss."""
    (total, parts), grads = nnx.value_and_grad(loss_fn, has_aux=True)(gen)
    optimizer.update(gen, grads)
    return {**parts, "g_loss": total}


def _build_options(config) -> dict:
    """The compute dtype and trunk rematerialisation every model builder takes."""
    return {"dtype": jnp.dtype(config.train.compute_dtype), "remat": config.train.remat}


# Stage I: conditional parsing GAN ------------------------------------------------------------

def _build_parsing(config, rngs) -> Modules:
    options = _build_options(config)
    return {
        "generator": models.build_parsing_generator(config.model.parsing, rngs, **options),
        "discriminator": models.build_discriminator(
            config.model.discriminator, PARSING_CONDITION_CHANNELS + NUM_LABELS, rngs,
            **options),
    }


def _parsing_step(modules, optimizers, frozen, batch, config, vgg_params):
    del frozen, vgg_params
    gen, disc = modules["generator"], modules["discriminator"]
    condition = tryon.parsing_condition(batch)
    target = batch["target_parsing"]
    fake = tryon.synthesize_parsing(gen, batch)
    d_loss = _discriminator_update(
        disc, optimizers["discriminator"], jnp.concatenate([condition, target], -1),
        jnp.concatenate([condition, fake], -1), config.train.gan_loss)

    def loss_fn(g):
        logits = g(condition)
        probs = jax.nn.softmax(logits, axis=-1)
        parts = {
            "adversarial": losses.gan_g_loss(disc(jnp.concatenate([condition, probs], -1)),
                                             config.train.gan_loss),
            "l1": losses.l1_loss(probs, target),
            "cross_entropy": losses.parsing_cross_entropy(logits, target),
        }
        total = sum(getattr(config.loss, k) * v for k, v in parts.items())
        return total, parts

    return {"d_loss": d_loss, **_generator_update(gen, optimizers["generator"], loss_fn)}


def _parsing_samples(modules, frozen, batch, config):
    del frozen, config
    return {
        "reference_image": batch["reference_image"], "clothes": batch["clothes"],
        "target_pose": batch["target_pose"],
        "parsing": tryon.synthesize_parsing(tryon.eval_view(modules["generator"]), batch),
        "target_parsing": batch["target_parsing"], "target_image": batch["target_image"],
    }


# Geometric matching ----------------------------------------------------------------------------

def _gmm_requires(config) -> tuple[str, ...]:
    return ("parsing",) if config.loss.use_synthesized_parsing else ()


def _build_gmm(config, rngs) -> Modules:
    return {"gmm": models.build_gmm(config.model.gmm, tuple(config.image_size), rngs,
                                    **_build_options(config))}


def _gmm_inputs(frozen, batch, config):
    """(stream A, target clothes region) from the ground truth or stage I (design Q7)."""
    target = batch["target_parsing"]
    if config.loss.use_synthesized_parsing:
        parsing = tryon.run_frozen(frozen, batch)["parsing"]
        return tryon.gmm_streams(parsing), tryon.clothes_region(target)
    return tryon.gmm_streams(target, batch["target_body_shape"]), tryon.clothes_region(target)


def _gmm_step(modules, optimizers, frozen, batch, config, vgg_params):
    del vgg_params
    stream_a, region = _gmm_inputs(frozen, batch, config)

    def loss_fn(gmm):
        theta = gmm(stream_a, batch["clothes_mask"])
        grid = tps_grid(theta, gmm.grid_size, batch["clothes_mask"].shape[1:3])
        warped_mask = grid_sample(batch["clothes_mask"], grid, "zeros")
        parts = {
            "geometric": losses.geometric_matching_loss(warped_mask, region),
            "grid_tv": losses.grid_tv_loss(theta, gmm.grid_size),
            "grid_gic": losses.grid_gic_loss(grid),
        }
        return sum(getattr(config.loss, k) * v for k, v in parts.items()), parts

    return _generator_update(modules["gmm"], optimizers["gmm"], loss_fn)


def _gmm_samples(modules, frozen, batch, config):
    stream_a, region = _gmm_inputs(frozen, batch, config)
    warped, warped_mask, _ = tryon.warp_clothes(
        tryon.eval_view(modules["gmm"]), stream_a, batch["clothes"], batch["clothes_mask"])
    return {
        "clothes": batch["clothes"], "body_shape": stream_a[..., :1], "clothes_region": region,
        "warped_mask": warped_mask, "warped_clothes": warped,
        "target_image": batch["target_image"],
    }


# Warp-GAN --------------------------------------------------------------------------------------

def _build_warp_gan(config, rngs) -> Modules:
    options = _build_options(config)
    return {
        "generator": models.build_warp_gan_generator(config.model.warp_gan, rngs,
                                                     tuple(config.image_size), **options),
        "discriminator": models.build_discriminator(
            config.model.discriminator, 3 + WARP_GAN_CONDITION_CHANNELS, rngs, **options),
    }


def _perceptual(config, vgg_params, x, y):
    return vgg.perceptual_loss(vgg_params, x, y,
                               imagenet_normalize=config.perceptual.imagenet_normalize)


def _warp_gan_step(modules, optimizers, frozen, batch, config, vgg_params):
    gen, disc = modules["generator"], modules["discriminator"]
    earlier = tryon.run_frozen(frozen, batch)
    inputs = tryon.warp_gan_inputs(batch, earlier["warped_clothes"], earlier["parsing"])
    condition = tryon.warp_gan_condition(batch, earlier["parsing"])
    target = batch["target_image"]
    real_input = jnp.concatenate([condition, target], -1)
    d_loss = _discriminator_update(
        disc, optimizers["discriminator"], real_input,
        jnp.concatenate([condition, gen(*inputs)], -1), config.train.gan_loss)

    def loss_fn(g):
        out = g.forward(*inputs)
        fake_features = disc(jnp.concatenate([condition, out.image], -1))
        parts = {
            "adversarial": losses.gan_g_loss(fake_features, config.train.gan_loss),
            "perceptual": _perceptual(config, vgg_params, out.image, target),
            "feature_matching": losses.feature_matching_loss(
                disc(real_input), fake_features, config.loss.feature_matching_layers),
            "l1": losses.l1_loss(out.image, target),
            "parsing_match": losses.l1_loss(out.match.warped_ref_parsing,
                                            batch["target_parsing"]),
        }
        return sum(getattr(config.loss, k) * v for k, v in parts.items()), parts

    return {"d_loss": d_loss, **_generator_update(gen, optimizers["generator"], loss_fn)}


def _warp_gan_samples(modules, frozen, batch, config):
    del config
    earlier = tryon.run_frozen(frozen, batch)
    coarse = tryon.eval_view(modules["generator"])(
        *tryon.warp_gan_inputs(batch, earlier["warped_clothes"], earlier["parsing"]))
    return {
        "reference_image": batch["reference_image"], "clothes": batch["clothes"],
        "target_pose": batch["target_pose"], "parsing": earlier["parsing"],
        "warped_clothes": earlier["warped_clothes"], "coarse": coarse,
        "target_image": batch["target_image"],
    }


# Refinement render -----------------------------------------------------------------------------

def _build_refine(config, rngs) -> Modules:
    return {"render": models.build_refinement(config.model.refine, rngs,
                                              **_build_options(config))}


def _refine_step(modules, optimizers, frozen, batch, config, vgg_params):
    earlier = tryon.run_frozen(frozen, batch)

    def loss_fn(render):
        result, mask = render(earlier["warped_clothes"], earlier["coarse"],
                              batch["target_pose"])
        parts = {
            "perceptual": _perceptual(config, vgg_params, result, batch["target_image"]),
            "mask": losses.mask_regulariser(mask),
            "l1": losses.l1_loss(result, batch["target_image"]),
        }
        return sum(getattr(config.loss, k) * v for k, v in parts.items()), parts

    return _generator_update(modules["render"], optimizers["render"], loss_fn)


def _refine_samples(modules, frozen, batch, config):
    del config
    earlier = tryon.run_frozen(frozen, batch)
    refined, mask = tryon.eval_view(modules["render"])(
        earlier["warped_clothes"], earlier["coarse"], batch["target_pose"])
    return {
        "reference_image": batch["reference_image"], "clothes": batch["clothes"],
        "target_pose": batch["target_pose"], "parsing": earlier["parsing"],
        "warped_clothes": earlier["warped_clothes"], "coarse": earlier["coarse"],
        "mask": mask, "refined": refined, "target_image": batch["target_image"],
    }


STAGES: dict[str, Stage] = {
    "parsing": Stage(
        "parsing", lambda c: (), _build_parsing, _parsing_step, _parsing_samples, "generator",
        ("reference_image", "clothes", "target_pose", "parsing", "target_parsing",
         "target_image")),
    "gmm": Stage(
        "gmm", _gmm_requires, _build_gmm, _gmm_step, _gmm_samples, "gmm",
        ("clothes", "body_shape", "clothes_region", "warped_mask", "warped_clothes",
         "target_image")),
    "warp_gan": Stage(
        "warp_gan", lambda c: ("parsing", "gmm"), _build_warp_gan, _warp_gan_step,
        _warp_gan_samples, "generator",
        ("reference_image", "clothes", "target_pose", "parsing", "warped_clothes", "coarse",
         "target_image"), uses_vgg=True),
    "refine": Stage(
        "refine", lambda c: ("parsing", "gmm", "warp_gan"), _build_refine, _refine_step,
        _refine_samples, "render",
        ("reference_image", "clothes", "target_pose", "parsing", "warped_clothes", "coarse",
         "mask", "refined", "target_image"), uses_vgg=True),
}
