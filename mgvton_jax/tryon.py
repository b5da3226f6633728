"""How the four networks feed each other: the try-on pipeline as small pure functions.

Training (each stage's inputs from the frozen earlier ones) and inference use the same
functions. Batches are dicts of (B, H, W, C) arrays keyed as in
`mgvton_jax.data.examples.MODEL_INPUT_CHANNELS`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from mgvton_jax import constants
from mgvton_jax.data.representation import antialiased_bilinear_matrix
from mgvton_jax.ops.warp import grid_sample, tps_grid

Batch = Mapping[str, jax.Array]


def parsing_condition(batch: Batch) -> jax.Array:
    """Stage I input (B, H, W, 24): hair, face, body shape, clothes RGB, target pose."""
    return jnp.concatenate([batch["hair_mask"], batch["face_mask"], batch["body_shape"],
                            batch["clothes"], batch["target_pose"]], axis=-1)


def synthesize_parsing(parsing_generator: nnx.Module, batch: Batch) -> jax.Array:
    """Stage I prediction S'_t as probabilities (B, H, W, 20)."""
    return jax.nn.softmax(parsing_generator(parsing_condition(batch)), axis=-1)


def clothes_region(parsing: jax.Array,
                   labels: tuple[int, ...] = constants.CLOTHES_LABELS) -> jax.Array:
    """(B, H, W, 20) one-hot or probabilities -> (B, H, W, 1) clothes-region mask in [0, 1]."""
    return parsing[..., list(labels)].sum(axis=-1, keepdims=True)


def blurred_body_shape(parsing: jax.Array,
                       coarse_hw: tuple[int, int] = constants.BODY_SHAPE_SIZE) -> jax.Array:
    """Body-shape mask of a (B, H, W, 20) parsing: 1 - background, down to coarse_hw and back.

    The same antialiased bilinear resampling as the data pipeline's `body_shape_mask`, so the
    GMM sees the same kind of input from the ground truth and from stage I.
    Returns (B, H, W, 1) in [0, 1].
    """
    height, width = parsing.shape[1:3]
    person = 1.0 - parsing[..., :1]
    down_rows = jnp.asarray(antialiased_bilinear_matrix(height, coarse_hw[0]), parsing.dtype)
    down_cols = jnp.asarray(antialiased_bilinear_matrix(width, coarse_hw[1]), parsing.dtype)
    up_rows = jnp.asarray(antialiased_bilinear_matrix(coarse_hw[0], height), parsing.dtype)
    up_cols = jnp.asarray(antialiased_bilinear_matrix(coarse_hw[1], width), parsing.dtype)
    coarse = jnp.einsum("ih,jw,bhwc->bijc", down_rows, down_cols, person)
    return jnp.clip(jnp.einsum("ih,jw,bhwc->bijc", up_rows, up_cols, coarse), 0.0, 1.0)


def gmm_streams(parsing: jax.Array, body_shape: jax.Array | None = None
                ) -> jax.Array:
    """GMM stream A (B, H, W, 2): [body shape, clothes region] of a target parsing.

    body_shape defaults to `blurred_body_shape(parsing)`; the training data carries the
    ground-truth one as `target_body_shape`.
    """
    if body_shape is None:
        body_shape = blurred_body_shape(parsing)
    return jnp.concatenate([body_shape, clothes_region(parsing)], axis=-1)


def warp_clothes(gmm: nnx.Module, stream_a: jax.Array, clothes: jax.Array,
                 clothes_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """TPS-warps the clothes onto the person.

    Args:
      gmm: the geometric matcher; theta = gmm(stream_a, clothes_mask).
      stream_a: (B, H, W, 2) from `gmm_streams`.
      clothes: (B, H, W, 3) in [-1, 1]; clothes_mask: (B, H, W, 1).
    Returns:
      warped clothes (B, H, W, 3) (border padding), warped mask (B, H, W, 1) (zero padding),
      theta (B, 2 G^2).
    """
    theta = gmm(stream_a, clothes_mask)
    grid = tps_grid(theta, gmm.grid_size, clothes.shape[1:3])
    return (grid_sample(clothes, grid, "border"), grid_sample(clothes_mask, grid, "zeros"),
            theta)


def warp_gan_inputs(batch: Batch, warped: jax.Array, parsing: jax.Array
                    ) -> tuple[jax.Array, ...]:
    """Warp-GAN generator arguments: (warped clothes, reference without clothes, target pose,
    synthesized parsing, reference parsing)."""
    return (warped, batch["reference_without_clothes"], batch["target_pose"], parsing,
            batch["reference_parsing"])


def warp_gan_condition(batch: Batch, parsing: jax.Array) -> jax.Array:
    """What D_warp sees besides the image (B, H, W, 38): target pose, synthesized parsing."""
    return jnp.concatenate([batch["target_pose"], parsing], axis=-1)


def eval_view(module: nnx.Module) -> nnx.Module:
    """The module with BatchNorm using its running statistics (inference mode)."""
    return nnx.view(module, use_running_average=True, raise_if_not_found=False)


def run_frozen(frozen: Mapping[str, nnx.Module], batch: Batch,
               use_ground_truth_parsing: bool = False) -> dict[str, jax.Array]:
    """Runs the frozen earlier stages that exist in `frozen` (inference mode, no gradient).

    Args:
      frozen: any prefix of {"parsing": generator, "gmm": matcher, "warp_gan": generator}.
      batch: model inputs.
      use_ground_truth_parsing: feed the target parsing instead of stage I's (design Q11).
    Returns:
      "parsing" (B, H, W, 20) probabilities; with "gmm": "warped_clothes", "warped_mask";
      with "warp_gan": "coarse" (B, H, W, 3).
    """
    out = {}
    if use_ground_truth_parsing or "parsing" not in frozen:
        out["parsing"] = batch["target_parsing"]
    else:
        out["parsing"] = synthesize_parsing(eval_view(frozen["parsing"]), batch)
    if "gmm" in frozen:
        out["warped_clothes"], out["warped_mask"], _ = warp_clothes(
            eval_view(frozen["gmm"]), gmm_streams(out["parsing"]), batch["clothes"],
            batch["clothes_mask"])
    if "warp_gan" in frozen:
        out["coarse"] = eval_view(frozen["warp_gan"])(
            *warp_gan_inputs(batch, out["warped_clothes"], out["parsing"]))
    return jax.lax.stop_gradient(out)
