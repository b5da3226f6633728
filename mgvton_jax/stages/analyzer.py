"""The person analyzer: a photo -> its parsing and its keypoints, for try-on from a plain photo.

Not a step of the try-on walk (`Stage.in_pipeline` False): it makes the annotations the walk's
inputs are derived from (`mgvton_jax.analyze` turns its outputs into a parsing PNG and an
OpenPose keypoints file). It trains like a stage, on any built data set, from each target
photo and that photo's own parsing and keypoints:

- cross_entropy: pixel softmax cross-entropy against the parsing;
- joints: for each joint present, the cross-entropy of the joint's spatial softmax against its
  disc in target_pose normalised to sum 1 (the disc's centre is the joint);
- presence: binary cross-entropy of each joint's presence logit against whether it is there.

Besides the people, each step shows it a few product images as photos without a person, and
shrinks some examples within the frame (config.augment, `training_examples`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mgvton_jax import losses
from mgvton_jax.constants import NUM_KEYPOINTS, NUM_LABELS
from mgvton_jax.models.analyzer import PersonAnalyzer
from mgvton_jax.ops import warp
from mgvton_jax.stages import base
from mgvton_jax.stages.base import Network, Stage

PHOTO = ("target_image",)  # the photo analysed; its annotations are the target's


def _spatial_log_softmax(logits: jax.Array) -> jax.Array:
    """(B, H, W, J) -> log of one distribution over the H x W pixels per (example, joint)."""
    return jax.nn.log_softmax(logits, axis=(1, 2))


def infer(networks: base.Networks, values: base.Values, batch: base.Batch) -> dict[str, jax.Array]:
    """{"analyzed_parsing": probabilities (B, H, W, 20), "analyzed_joints": (B, H, W, 18)}.

    analyzed_joints is each joint's spatial distribution scaled to peak at its presence
    probability: where the joint is (the distribution) and whether it is there (the peak).
    """
    del values
    parsing_logits, joint_logits, presence = networks["analyzer"](batch["target_image"])
    log_where = _spatial_log_softmax(joint_logits)
    peak = log_where.max(axis=(1, 2), keepdims=True)
    joints = jnp.exp(log_where - peak) * jax.nn.sigmoid(presence)[:, None, None, :]
    return {"analyzed_parsing": jax.nn.softmax(parsing_logits, axis=-1),
            "analyzed_joints": joints}


def joint_losses(joint_logits: jax.Array, presence: jax.Array, discs: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """(location loss, presence loss), float32 scalars.

    Args:
      joint_logits: (B, H, W, J) logits of where each joint is.
      presence: (B, J) logits of whether each joint is in the photo.
      discs: (B, H, W, J) {0, 1} target discs (`examples.model_inputs`' target_pose); an
        empty channel is a missing joint.
    Returns:
      the mean over present joints of -sum_pixels disc/|disc| * log softmax(logits), and the
      mean over all joints of the presence binary cross-entropy.
    """
    area = discs.sum(axis=(1, 2))
    present = (area > 0).astype(jnp.float32)
    where = discs / jnp.maximum(area, 1.0)[:, None, None, :]
    location = -(where * _spatial_log_softmax(joint_logits)).sum(axis=(1, 2))
    location = (location * present).sum() / jnp.maximum(present.sum(), 1.0)
    return location, optax.sigmoid_binary_cross_entropy(presence, present).mean()


def zoomed_out(key: jax.Array, photos: jax.Array, parsing: jax.Array, discs: jax.Array,
               probability: float, min_scale: float
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each example, with `probability`, shrunk by a scale in [min_scale, 1] and moved within
    the frame, the freed border filled as try-on fills it (white photo, background, no joint):
    people who fill less of the frame than VITON's (a photo of another aspect, a full body).

    photos (B, H, W, 3) in [-1, 1], parsing (B, H, W, 20) one-hot, discs (B, H, W, 18): the
    same arrays moved alike (bilinear; labels and discs become soft at their edges).
    """
    batch = photos.shape[0]
    zoom_key, scale_key, shift_key = jax.random.split(key, 3)
    zoom = jax.random.uniform(zoom_key, (batch,)) < probability
    scale = jnp.where(zoom, jax.random.uniform(scale_key, (batch,), minval=min_scale,
                                               maxval=1.0), 1.0)
    shift = jax.random.uniform(shift_key, (batch, 2), minval=-1.0, maxval=1.0) * \
        (1.0 - scale)[:, None]
    zero = jnp.zeros_like(scale)
    # Output (x, y) in [-1, 1] samples the input at ((x - shift_x) / s, (y - shift_y) / s).
    params = jnp.stack([1 / scale, zero, -shift[:, 0] / scale,
                        zero, 1 / scale, -shift[:, 1] / scale], axis=-1)
    grid = warp.affine_grid(params, photos.shape[1:3])

    def moved(array, fill):  # what lies outside the input becomes `fill`
        return warp.grid_sample(array - fill, grid, padding="zeros") + fill

    background = jax.nn.one_hot(0, parsing.shape[-1], dtype=parsing.dtype)
    return moved(photos, 1.0), moved(parsing, background), moved(discs, 0.0)


def training_examples(batch: base.Batch, key: jax.Array, augment: ml_collections.ConfigDict
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(photos, one-hot parsings, joint discs) the analyzer learns from: the batch's target
    photos and, as photos without a person (empty parsing, no joint), the first
    augment.clothes_negatives product images; all `zoomed_out` with augment's settings."""
    photos, parsing, discs = batch["target_image"], batch["target_parsing"], \
        batch["target_pose"]
    negatives = batch["clothes"][:augment.clothes_negatives]
    count = negatives.shape[0]
    photos = jnp.concatenate([photos, negatives])
    parsing = jnp.concatenate([parsing, jnp.broadcast_to(
        jax.nn.one_hot(0, parsing.shape[-1], dtype=parsing.dtype),
        (count, *parsing.shape[1:]))])
    discs = jnp.concatenate([discs, jnp.zeros((count, *discs.shape[1:]), discs.dtype)])
    return zoomed_out(key, photos, parsing, discs, augment.zoom_probability,
                      augment.min_zoom)


def train_step(networks: base.Networks, optimizers: base.Optimizers, values: base.Values,
               batch: base.Batch, config: ml_collections.ConfigDict,
               perceptual: base.Perceptual | None) -> dict[str, jax.Array]:
    del values, perceptual
    analyzer, optimizer = networks["analyzer"], optimizers["analyzer"]
    # A key of the seed and the step: the same augmentation when a run resumes.
    key = jax.random.fold_in(jax.random.key(config.seed), optimizer.step[...])
    photos, parsing, discs = training_examples(batch, key, config.augment)
    outputs, pullback = base.forward_with_pullback(analyzer, lambda net: net(photos))

    def loss_fn(outputs):
        parsing_logits, joint_logits, presence = outputs
        # One computation for both terms, and none when both weigh 0.
        located = functools.cache(functools.partial(joint_losses, joint_logits, presence,
                                                    discs))
        terms = {
            "cross_entropy": lambda: losses.parsing_cross_entropy(parsing_logits, parsing),
            "joints": lambda: located()[0],
            "presence": lambda: located()[1],
        }
        return losses.weighted_sum(config.loss, terms)

    return base.generator_update(analyzer, optimizer, outputs, pullback, loss_fn)


STAGE = Stage(
    name="analyzer",
    networks={"analyzer": Network(
        module=PersonAnalyzer, section="analyzer", inputs=(PHOTO,),
        fixed={"num_labels": NUM_LABELS, "num_joints": NUM_KEYPOINTS})},
    inference=("analyzer",),
    consumes=(),
    produces={"analyzed_parsing": NUM_LABELS, "analyzed_joints": NUM_KEYPOINTS},
    infer=infer,
    train_step=train_step,
    sample_columns=("target_image", "analyzed_parsing", "target_parsing", "analyzed_joints",
                    "target_pose"),
    in_pipeline=False,
)
