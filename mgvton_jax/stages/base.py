"""What a stage is, and the pieces its training steps share.

A `Stage` is declared once, with keyword fields, in its own module of this package; training,
sample pictures, the inference walk, evaluation (grids and per-stage scores) and try-on (its
intermediates) all read that one declaration (`mgvton_jax.stages`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mgvton_jax import losses

Batch = Mapping[str, jax.Array]
Values = Mapping[str, jax.Array]  # outputs of earlier stages, keyed as their `produces`
Networks = Mapping[str, nnx.Module]
Optimizers = Mapping[str, nnx.Optimizer]
Perceptual = Callable[[jax.Array, jax.Array], jax.Array]  # (image, target) -> VGG19 loss


@dataclasses.dataclass(frozen=True, kw_only=True)
class Network:
    """How a stage builds one network from its config.

    The constructor is called as `module(*input_channels, **fixed, **config.model[section],
    dtype=compute dtype, [remat=config.train.remat], [image_size=config.image_size], rngs=)`,
    where input_channels[i] is the channel count of the keys in `inputs[i]`, looked up in the
    one table of model inputs and stage outputs (`mgvton_jax.stages.channels`).
    """

    module: type[nnx.Module]
    section: str  # the config.model section of its sizes
    inputs: tuple[tuple[str, ...], ...]  # one key tuple per input-channel argument
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # structural arguments
    remat: bool = False  # takes config.train.remat (generators with a residual trunk)
    sized: bool = False  # takes config.image_size (a Linear layer fixes the input size)

    def build(self, config: ml_collections.ConfigDict, channels: Callable[[Sequence[str]], int],
              rngs: nnx.Rngs) -> nnx.Module:
        kwargs = dict(self.fixed, **config.model[self.section])
        kwargs["dtype"] = jnp.dtype(config.train.compute_dtype)
        if self.remat:
            kwargs["remat"] = config.train.remat
        if self.sized:
            kwargs["image_size"] = tuple(config.image_size)
        return self.module(*(channels(keys) for keys in self.inputs), **kwargs, rngs=rngs)


def no_ground_truth(config: ml_collections.ConfigDict) -> dict[str, str]:
    del config
    return {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scorer:
    """A stage's paired scores against the ground truth, named in the stage and run by
    evaluation (results.json's "stages" section), as big_vision's evaluators are named in the
    config.

    per_example(values) -> (B, ...) numbers of each example that add up over a test set, e.g.
      a confusion matrix; values holds the walk's model inputs (the ground truth included) and
      outputs, (B, H, W, C) each. It runs inside the jitted walk (jax.numpy): only these
      numbers leave the device.
    summary(sums) -> {score: value}: the scores of the per-example numbers summed over the
      test set (NumPy, float64).
    """

    per_example: Callable[[Values], jax.Array]
    summary: Callable[[np.ndarray], dict[str, float]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage:
    """One stage of the pipeline.

    name: also the config file (configs/NAME.py) and the run directory (WORKDIR/NAME).
    networks: what it trains, by name.
    inference: the networks `infer` runs; saved as the checkpoint's inference item, the only
      part later stages, evaluation and try-on load.
    consumes: earlier stages' outputs that `infer` reads; the pipeline order and the stages a
      stage needs follow from these and `produces`.
    produces: infer's outputs -> channels.
    features: channels of arrays the stage derives for its own networks (not outputs).
    infer(networks, values, batch) -> outputs: inference mode, (B, H, W, C) arrays.
    train_step(networks, optimizers, values, batch, config, perceptual) -> metrics: one
      optimisation step on NNX modules in place (GAN stages: D first, then G, with one
      generator forward); values holds what `consumes` names.
    sample_columns: keys of batch, values and outputs pictured in training's sample grids,
      in order; evaluation's grids show those of every stage of its walk.
    intermediates: outputs that try-on writes beside its result (`--intermediates`) and the
      try-on page shows.
    scorer: its paired scores in evaluation (None: the stage has none).
    ground_truth(config) -> {consumed key: batch key}: consumed outputs that training takes
      from the ground truth instead of an earlier stage (never at inference).
    uses_vgg: its train_step gets a perceptual loss (else perceptual is None).
    image: the output that is a try-on picture of the person (None: not one), what
      evaluation scores and try-on writes when the walk ends at this stage.
    in_pipeline: a step of the try-on walk (`stages.PIPELINE`). False: trained, checkpointed
      and exported like a stage, but run apart (the person analyzer, which makes the walk's
      annotations from a photo).
    """

    name: str
    networks: Mapping[str, Network]
    inference: tuple[str, ...]
    consumes: tuple[str, ...]
    produces: Mapping[str, int]
    features: Mapping[str, int] = dataclasses.field(default_factory=dict)
    infer: Callable[[Networks, Values, Batch], dict[str, jax.Array]]
    train_step: Callable[..., dict[str, jax.Array]]
    sample_columns: tuple[str, ...]
    intermediates: tuple[str, ...] = ()
    scorer: Scorer | None = None
    ground_truth: Callable[[ml_collections.ConfigDict], Mapping[str, str]] = no_ground_truth
    uses_vgg: bool = False
    image: str | None = None
    in_pipeline: bool = True


def concat(values: Mapping[str, jax.Array], keys: Sequence[str]) -> jax.Array:
    """The arrays of `keys`, (B, H, W, C_k) each, concatenated along channels in that order."""
    return jnp.concatenate([values[key] for key in keys], axis=-1)


def eval_view(module: nnx.Module) -> nnx.Module:
    """The module with BatchNorm using its running statistics (inference mode)."""
    return nnx.view(module, use_running_average=True, raise_if_not_found=False)


def forward_with_pullback(module: nnx.Module, forward: Callable[[nnx.Module], Any]
                          ) -> tuple[Any, Callable[[Any], nnx.State]]:
    """Runs forward(module) once in training mode: (output, pullback).

    The BatchNorm statistics of `module` move once, by this forward. pullback(cotangent of
    output) -> gradients of the module's nnx.Params, so a step can use one generator output
    for D's update and for G's loss (`generator_update`).
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def pure(params):
        # copy: the statistics' Variables must belong to this trace to be updated in it.
        merged = nnx.merge(graphdef, params, rest, copy=True)
        return forward(merged), nnx.state(merged, nnx.Not(nnx.Param))

    output, vjp, updated = jax.vjp(pure, params, has_aux=True)
    nnx.update(module, updated)
    return output, lambda cotangent: vjp(cotangent)[0]


def generator_update(module: nnx.Module, optimizer: nnx.Optimizer, output: Any,
                     pullback: Callable[[Any], nnx.State],
                     loss_fn: Callable[..., tuple[jax.Array, dict]], *loss_args: Any
                     ) -> dict[str, jax.Array]:
    """One update of `module` from loss_fn(output, *loss_args) -> (total, terms).

    output and pullback come from `forward_with_pullback`; loss_args (e.g. the discriminator)
    are used, not differentiated. Returns the terms plus "g_loss" (the total).
    """
    (total, terms), cotangent = nnx.value_and_grad(loss_fn, has_aux=True)(output, *loss_args)
    optimizer.update(module, pullback(cotangent))
    return {**terms, "g_loss": total}


def discriminator_update(disc: nnx.Module, optimizer: nnx.Optimizer, real: jax.Array,
                         fake: jax.Array, kind: str) -> jax.Array:
    """One D step on real and (detached) fake inputs, (B, H, W, C) each; returns the D loss."""
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d):
        return losses.gan_d_loss(d(real), d(fake), kind)

    loss, grads = nnx.value_and_grad(loss_fn)(disc)
    optimizer.update(disc, grads)
    return loss


def adversarial_step(networks: Networks, optimizers: Optimizers,
                     forward: Callable[[nnx.Module], Any], condition: jax.Array,
                     real: jax.Array, fake: Callable[[Any], jax.Array],
                     loss_fn: Callable[..., tuple[jax.Array, dict]], kind: str
                     ) -> dict[str, jax.Array]:
    """One GAN step of networks["generator"] against networks["discriminator"].

    The generator runs once: output = forward(generator). D sees (condition, image) pairs,
    concatenated along channels: it is updated first, on `real` against the detached
    fake(output); then the generator from loss_fn(output, judge) -> (total, terms), where
    judge(image) is the updated D's output on (condition, image).
    Returns {"d_loss", **terms, "g_loss"}.
    """
    gen, disc = networks["generator"], networks["discriminator"]
    output, pullback = forward_with_pullback(gen, forward)

    def judged(image):
        return jnp.concatenate([condition, image], axis=-1)

    d_loss = discriminator_update(disc, optimizers["discriminator"], judged(real),
                                  judged(fake(output)), kind)

    def generator_loss(output, disc):
        return loss_fn(output, lambda image: disc(judged(image)))

    return {"d_loss": d_loss, **generator_update(gen, optimizers["generator"], output, pullback,
                                                 generator_loss, disc)}
