"""MG-VTON training losses as pure jnp functions, and their weighted sum (docs/design.md).

Every loss returns a scalar. Reductions are means over all elements unless a docstring says
otherwise. GAN and cross-entropy losses compute in float32 (safe under bfloat16 activations); the
others keep the input dtype. Images, masks and grids are NHWC.

Discriminator outputs come in one of two layouts (pix2pixHD's `MultiscaleDiscriminator` with
intermediate features):
  - one logits array, e.g. (B, h, w, 1) patch logits of a single discriminator, or
  - a list over scales of lists over layers, `outputs[scale][layer]`, each an NHWC array, whose
    LAST entry per scale is that scale's patch logits and the others its intermediate features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

MultiscaleOutputs = Sequence[Sequence[jax.Array]]
DiscriminatorOutput = jax.Array | MultiscaleOutputs


class _GanObjective(NamedTuple):
    """Per-scale terms of one GAN objective; each maps a logits array to a scalar mean."""

    d_real: Callable[[jax.Array], jax.Array]  # D's loss on real samples
    d_fake: Callable[[jax.Array], jax.Array]  # D's loss on generated samples
    g_fake: Callable[[jax.Array], jax.Array]  # G's loss on generated samples


# Vanilla is the non-saturating form: BCE-with-logits to target 1 is softplus(-x), to 0 softplus(x).
_GAN_OBJECTIVES = {
    "vanilla": _GanObjective(
        d_real=lambda x: jnp.mean(jax.nn.softplus(-x)),
        d_fake=lambda x: jnp.mean(jax.nn.softplus(x)),
        g_fake=lambda x: jnp.mean(jax.nn.softplus(-x)),
    ),
    "lsgan": _GanObjective(
        d_real=lambda x: jnp.mean(jnp.square(x - 1.0)),
        d_fake=lambda x: jnp.mean(jnp.square(x)),
        g_fake=lambda x: jnp.mean(jnp.square(x - 1.0)),
    ),
    "hinge": _GanObjective(
        d_real=lambda x: jnp.mean(jax.nn.relu(1.0 - x)),
        d_fake=lambda x: jnp.mean(jax.nn.relu(1.0 + x)),
        g_fake=lambda x: -jnp.mean(x),
    ),
}
GAN_KINDS: tuple[str, ...] = tuple(_GAN_OBJECTIVES)


def _gan_objective(kind: str) -> _GanObjective:
    if kind not in _GAN_OBJECTIVES:
        raise ValueError(f"Unknown GAN loss kind {kind!r}; choose one of {GAN_KINDS}.")
    return _GAN_OBJECTIVES[kind]


def _is_layer_list(value: object) -> bool:
    return isinstance(value, (list, tuple))


def _patch_logits_per_scale(outputs: DiscriminatorOutput) -> list[jax.Array]:
    """The patch logits of every scale, as float32 (losses in full precision under bf16)."""
    if not _is_layer_list(outputs):
        return [jnp.asarray(outputs, jnp.float32)]
    if not outputs or not all(_is_layer_list(scale) and scale for scale in outputs):
        raise TypeError(
            "Expected one logits array or a non-empty list over scales of non-empty lists over "
            "layers (last entry = patch logits)."
        )
    return [jnp.asarray(scale[-1], jnp.float32) for scale in outputs]


def gan_d_loss(
    real_outputs: DiscriminatorOutput, fake_outputs: DiscriminatorOutput, kind: str
) -> jax.Array:
    """Discriminator loss 0.5 * (sum_scales loss(real) + sum_scales loss(fake)), as pix2pixHD.

    Args:
      real_outputs: D on real samples: one logits array (any shape) or the multiscale layout
        (module docstring); only each scale's last entry (the patch logits) is used.
      fake_outputs: D on generated samples, same layout and number of scales.
      kind: "vanilla" (BCE with logits, targets 1 / 0), "lsgan" (squared error to 1 / 0) or
        "hinge" (mean relu(1 - real) + mean relu(1 + fake)).
    Returns:
      float32 scalar.
    """
    objective = _gan_objective(kind)
    real_logits = _patch_logits_per_scale(real_outputs)
    fake_logits = _patch_logits_per_scale(fake_outputs)
    if len(real_logits) != len(fake_logits):
        raise ValueError(
            f"real has {len(real_logits)} scales but fake has {len(fake_logits)}."
        )
    real_term = sum(objective.d_real(logits) for logits in real_logits)
    fake_term = sum(objective.d_fake(logits) for logits in fake_logits)
    return 0.5 * (real_term + fake_term)


def gan_g_loss(fake_outputs: DiscriminatorOutput, kind: str) -> jax.Array:
    """Generator adversarial loss summed over scales.

    Args:
      fake_outputs: D on generated samples: one logits array or the multiscale layout.
      kind: "vanilla" (non-saturating: BCE with logits to target 1), "lsgan" (squared error to
        1) or "hinge" (-mean logits).
    Returns:
      float32 scalar.
    """
    objective = _gan_objective(kind)
    return sum(objective.g_fake(logits) for logits in _patch_logits_per_scale(fake_outputs))


def l1_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference of two same-shape (broadcastable) arrays; scalar."""
    return jnp.mean(jnp.abs(a - b))


def feature_matching_loss(
    real_features: MultiscaleOutputs,
    fake_features: MultiscaleOutputs,
    num_layers: int | None = None,
) -> jax.Array:
    """pix2pixHD discriminator feature matching (MG-VTON's L_feat).

    loss = sum_scales sum_layers (1 / num_d) * (4 / (n_layers_d + 1)) * mean|F_fake - F_real|
    with F_real under stop_gradient. num_d is the number of scales. For a scale whose list holds
    L entries (L - 1 intermediate feature maps, then the patch logits), n_layers_d = L - 2
    (pix2pixHD's NLayerDiscriminator returns n_layers_d + 2 outputs), so each layer weighs
    4 / (L - 1) / num_d: with all layers used, the weights of one scale sum to 4 / num_d.

    Args:
      real_features: D outputs on real samples, `[scale][layer]` NHWC arrays (last = logits).
      fake_features: D outputs on generated samples, same structure and shapes.
      num_layers: use only the first `num_layers` layers of each scale (MG-VTON: 3) with the
        same per-layer weight; None uses every layer except the last (pix2pixHD).
    Returns:
      scalar (not yet multiplied by a lambda_feat).
    """
    if len(real_features) != len(fake_features) or not fake_features:
        raise ValueError(
            f"real has {len(real_features)} scales and fake {len(fake_features)}; "
            "need the same non-zero number."
        )
    num_d = len(fake_features)
    loss = jnp.zeros((), jnp.float32)
    for real_scale, fake_scale in zip(real_features, fake_features, strict=True):
        num_outputs = len(fake_scale)
        if len(real_scale) != num_outputs or num_outputs < 2:
            raise ValueError(
                "Each scale needs the same number (>= 2) of real and fake outputs, got "
                f"{len(real_scale)} and {num_outputs}."
            )
        num_feature_maps = num_outputs - 1  # = n_layers_d + 1
        used = num_feature_maps if num_layers is None else num_layers
        if not 1 <= used <= num_feature_maps:
            raise ValueError(f"num_layers must be in [1, {num_feature_maps}], got {num_layers}.")
        layer_weight = (1.0 / num_d) * (4.0 / num_feature_maps)
        for real, fake in zip(real_scale[:used], fake_scale[:used], strict=True):
            loss = loss + layer_weight * l1_loss(fake, jax.lax.stop_gradient(real))
    return loss


def parsing_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Pixel-wise softmax cross-entropy (LIP's parsing loss), mean over pixels.

    Args:
      logits: (B, H, W, K) float parsing logits (K = constants.NUM_LABELS = 20 in MG-VTON).
      labels: (B, H, W) integer label ids in [0, K), or (B, H, W, K) one-hot (or any per-pixel
        probability) targets.
    Returns:
      float32 scalar: mean over B*H*W of -sum_k target_k * log_softmax(logits)_k.
    """
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    if labels.shape == logits.shape:
        per_pixel = -jnp.sum(labels * log_probs, axis=-1)
    elif labels.shape == logits.shape[:-1] and jnp.issubdtype(labels.dtype, jnp.integer):
        per_pixel = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    else:
        raise ValueError(
            f"labels must be integer ids of shape {logits.shape[:-1]} or one-hot of shape "
            f"{logits.shape}; got {labels.dtype} {labels.shape}."
        )
    return jnp.mean(per_pixel)


def geometric_matching_loss(
    warped_clothes_mask: jax.Array, target_clothes_region: jax.Array
) -> jax.Array:
    """L_geo = mean |T_theta(C_mask) - C_hat_mask| (paper Sec. 3.4).

    Args:
      warped_clothes_mask: (B, H, W, 1) float clothes mask warped by the predicted TPS.
      target_clothes_region: (B, H, W, 1) float clothes region of the (synthesized) parsing.
    Returns:
      scalar.
    """
    return l1_loss(warped_clothes_mask, target_clothes_region)


def mask_regulariser(mask: jax.Array) -> jax.Array:
    """mean |1 - M|: pulls the composition mask toward the warped clothes (paper Eq. 7).

    Args:
      mask: (B, H, W, 1) float composition mask in [0, 1].
    Returns:
      scalar.
    """
    return jnp.mean(jnp.abs(1.0 - mask))


def grid_tv_loss(theta: jax.Array, grid_size: int) -> jax.Array:
    """Total variation of the TPS control-point offsets (optional GMM regulariser).

    theta follows the TPS layout of `ops.warp.tps_grid`: theta[:, :N] are x-offsets,
    theta[:, N:] the y-offsets, N = G*G, control point k = i*G + j. Each offset map is laid
    out G x G over (i, j) and the loss is the mean, over the batch, both maps and every pair
    of 4-neighbours on the lattice, of the absolute offset difference.

    Args:
      theta: (B, 2*G*G) float TPS offsets.
      grid_size: G, control points per side.
    Returns:
      scalar.
    """
    batch, num_params = theta.shape
    if num_params != 2 * grid_size * grid_size:
        raise ValueError(f"theta has {num_params} values per sample; expected 2*{grid_size}^2.")
    offsets = theta.reshape(batch, 2, grid_size, grid_size)
    along_i = jnp.abs(jnp.diff(offsets, axis=2)).ravel()
    along_j = jnp.abs(jnp.diff(offsets, axis=3)).ravel()
    return jnp.mean(jnp.concatenate([along_i, along_j]))


def grid_gic_loss(grid: jax.Array) -> jax.Array:
    """CP-VTON+ grid interval consistency (GIC; CP-VTON+ weighs it by 40).

    For every interior pixel p: | |x(left) - x(p)| - |x(right) - x(p)| | on the x-coordinate plus
    | |y(up) - y(p)| - |y(down) - y(p)| | on the y-coordinate, summed over pixels and batch and
    divided by B*H*W. It is zero for any affine grid, so it penalises uneven stretching only.

    Args:
      grid: (B, H, W, 2) float sampling grid, [..., 0] = x (along W), [..., 1] = y (along H).
    Returns:
      scalar.
    """
    batch, height, width, _ = grid.shape
    grid_x, grid_y = grid[..., 0], grid[..., 1]
    centre_x = grid_x[:, 1:-1, 1:-1]
    centre_y = grid_y[:, 1:-1, 1:-1]
    to_left = jnp.abs(grid_x[:, 1:-1, :-2] - centre_x)
    to_right = jnp.abs(grid_x[:, 1:-1, 2:] - centre_x)
    to_up = jnp.abs(grid_y[:, :-2, 1:-1] - centre_y)
    to_down = jnp.abs(grid_y[:, 2:, 1:-1] - centre_y)
    total = jnp.sum(jnp.abs(to_left - to_right)) + jnp.sum(jnp.abs(to_up - to_down))
    return total / (batch * height * width)


def weighted_sum(weights: Mapping[str, float], terms: Mapping[str, Callable[[], jax.Array]]
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """sum_k weights[k] * terms[k](), for a stage's config.loss section and its loss terms.

    A term of weight 0 is not computed at all (its network, e.g. the perceptual loss's VGG,
    costs nothing in the step); the others are.
    Returns:
      (the weighted sum, {name: value} of the computed terms).
    Raises:
      ValueError: a weight names no term (e.g. a typo in --config.loss.x) or a term has no
        weight (a config file that forgot one); the message lists both.
    """
    unweighted, unused = sorted(set(terms) - set(weights)), sorted(set(weights) - set(terms))
    if unweighted or unused:
        raise ValueError(
            f"loss weights and terms differ: terms without a weight {unweighted}, weights "
            f"without a term {unused}; the terms are {sorted(terms)}")
    values = {name: term() for name, term in terms.items() if weights[name]}
    return sum(weights[name] * value for name, value in values.items()), values
