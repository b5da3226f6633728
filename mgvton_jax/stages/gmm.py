"""Mask-based geometric matching: TPS offsets that warp the clothes onto the person.

Stream A is [body shape, clothes region] of a target parsing (stage I's at inference; the
ground truth in training unless config.train.use_synthesized_parsing), stream B the clothes
mask. Loss L_geo = |T(clothes mask) - clothes region of the target parsing| (paper); grid
regularisers are options (weight 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mgvton_jax import constants, losses
from mgvton_jax.data.representation import blurred_silhouette
from mgvton_jax.models.gmm import GeometricMatcher
from mgvton_jax.ops.warp import grid_sample, tps_grid
from mgvton_jax.stages import base
from mgvton_jax.stages.base import (
    Network,
    Scorer,
    Stage,
    concat,
    forward_with_pullback,
    generator_update,
)


def clothes_region(parsing: jax.Array,
                   labels: tuple[int, ...] = constants.CLOTHES_LABELS) -> jax.Array:
    """(B, H, W, 20) one-hot or probabilities -> (B, H, W, 1) clothes-region mask in [0, 1]."""
    return parsing[..., list(labels)].sum(axis=-1, keepdims=True)


def blurred_body_shape(parsing: jax.Array,
                       coarse_hw: tuple[int, int] = constants.BODY_SHAPE_SIZE) -> jax.Array:
    """Body-shape mask of a (B, H, W, 20) parsing: `blurred_silhouette` of 1 - background.

    The same blur as the data's `body_shape_mask`, so the GMM sees the same kind of input
    from the ground truth and from stage I. Returns (B, H, W, 1) in [0, 1].
    """
    return blurred_silhouette(1.0 - parsing[..., :1], coarse_hw)


PERSON_STREAM = ("person_body_shape", "clothes_region")
CLOTHES_STREAM = ("clothes_mask",)


def person_stream(parsing: jax.Array) -> jax.Array:
    """GMM stream A (B, H, W, 2): [body shape, clothes region] of a target parsing."""
    features = {"person_body_shape": blurred_body_shape(parsing),
                "clothes_region": clothes_region(parsing)}
    return concat(features, PERSON_STREAM)


def _warp(theta: jax.Array, grid_size: int, image: jax.Array, padding: str) -> jax.Array:
    return grid_sample(image, tps_grid(theta, grid_size, image.shape[1:3]), padding)


def infer(networks: base.Networks, values: base.Values, batch: base.Batch) -> dict[str, jax.Array]:
    """{"warped_clothes": (B, H, W, 3) border-padded, "warped_mask": (B, H, W, 1) zeros}."""
    gmm = networks["gmm"]
    theta = gmm(person_stream(values["parsing"]), batch["clothes_mask"])
    return {"warped_clothes": _warp(theta, gmm.grid_size, batch["clothes"], "border"),
            "warped_mask": _warp(theta, gmm.grid_size, batch["clothes_mask"], "zeros")}


def train_step(networks: base.Networks, optimizers: base.Optimizers, values: base.Values,
               batch: base.Batch, config: ml_collections.ConfigDict,
               perceptual: base.Perceptual | None) -> dict[str, jax.Array]:
    del perceptual
    gmm, mask = networks["gmm"], batch["clothes_mask"]
    stream_a = person_stream(values["parsing"])
    region = clothes_region(batch["target_parsing"])
    theta, pullback = forward_with_pullback(gmm, lambda g: g(stream_a, mask))

    def loss_fn(theta):
        grid = tps_grid(theta, gmm.grid_size, mask.shape[1:3])
        terms = {
            "geometric": lambda: losses.geometric_matching_loss(
                grid_sample(mask, grid, "zeros"), region),
            "grid_tv": lambda: losses.grid_tv_loss(theta, gmm.grid_size),
            "grid_gic": lambda: losses.grid_gic_loss(grid),
        }
        return losses.weighted_sum(config.loss, terms)

    return generator_update(gmm, optimizers["gmm"], theta, pullback, loss_fn)


def mask_overlap(values: base.Values) -> jax.Array:
    """(B, 2) float32 pixel counts per example: intersection and union of the warped clothes
    mask and the clothes region of the target parsing, each thresholded at 0.5."""
    warped = values["warped_mask"][..., 0] > 0.5
    region = clothes_region(values["target_parsing"])[..., 0] > 0.5
    return jnp.stack([(warped & region).sum((1, 2)), (warped | region).sum((1, 2))],
                     axis=-1).astype(jnp.float32)


def mask_iou(sums: np.ndarray) -> dict[str, float]:
    """{"warped_mask_iou": intersection / union over the test set}."""
    return {"warped_mask_iou": float(sums[0] / sums[1])}


def ground_truth(config: ml_collections.ConfigDict) -> dict[str, str]:
    """GMM training reads the target parsing unless told to use stage I's (docs/design.md)."""
    return {} if config.train.use_synthesized_parsing else {"parsing": "target_parsing"}


STAGE = Stage(
    name="gmm",
    networks={"gmm": Network(module=GeometricMatcher, section="gmm",
                             inputs=(PERSON_STREAM, CLOTHES_STREAM), sized=True)},
    inference=("gmm",),
    consumes=("parsing",),
    produces={"warped_clothes": 3, "warped_mask": 1},
    features={"person_body_shape": 1, "clothes_region": 1},
    infer=infer,
    train_step=train_step,
    sample_columns=("clothes", "parsing", "warped_mask", "warped_clothes", "target_image"),
    intermediates=("warped_clothes",),
    scorer=Scorer(per_example=mask_overlap, summary=mask_iou),
    ground_truth=ground_truth,
)
