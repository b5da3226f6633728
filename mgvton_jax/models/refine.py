"""Stage III refinement render with the multi-pose composition mask (spec 1.5, Q12).

A `ResnetGenerator` maps [warped clothes 3, coarse Warp-GAN image 3, target pose 18] = 24
channels to a 1-channel sigmoid mask M; the result is M * warped clothes + (1 - M) * coarse
(paper Eq. 6). No rendered-image head (Q12).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.constants import NUM_KEYPOINTS
from mgvton_jax.models.generator import RGB_CHANNELS, ResnetGenerator
from mgvton_jax.models.layers import NormKind

REFINE_IN_CHANNELS = RGB_CHANNELS + RGB_CHANNELS + NUM_KEYPOINTS


def compose(mask: jax.Array, warped_clothes: jax.Array, coarse: jax.Array) -> jax.Array:
    """Paper Eq. 6: mask * warped_clothes + (1 - mask) * coarse.

    mask: (B, H, W, 1) in [0, 1]; warped_clothes, coarse: (B, H, W, 3) -> (B, H, W, 3).
    """
    return mask * warped_clothes + (1 - mask) * coarse


class RefinementRender(nnx.Module):
    """G_p: (warped clothes, coarse image, target pose) -> (refined image, composition mask).

    Inputs (B, H, W, 3), (B, H, W, 3), (B, H, W, 18), concatenated in that order
    (in_channels = 24); H, W multiples of 2**n_downsample. Outputs: result (B, H, W, 3) and
    mask (B, H, W, 1) in [0, 1], float32 (the result is float32 for float32 inputs). The mask
    network is available as `generator`; `dtype` and `remat` as `ResnetGenerator`.
    """

    def __init__(
        self,
        in_channels: int = REFINE_IN_CHANNELS,
        *,
        ngf: int = 64,
        n_downsample: int = 3,
        n_blocks: int = 9,
        convs_per_block: int = 2,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        self.generator = ResnetGenerator(
            in_channels,
            1,
            ngf=ngf,
            n_downsample=n_downsample,
            n_blocks=n_blocks,
            convs_per_block=convs_per_block,
            norm=norm,
            out_activation="sigmoid",
            dtype=dtype,
            remat=remat,
            rngs=rngs,
        )

    def __call__(
        self, warped_clothes: jax.Array, coarse: jax.Array, target_pose: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """-> (result (B, H, W, 3), mask (B, H, W, 1)); see the class docstring."""
        mask = self.generator(jnp.concatenate([warped_clothes, coarse, target_pose], axis=-1))
        return compose(mask, warped_clothes, coarse), mask
