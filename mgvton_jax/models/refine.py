"""The refinement render's multi-pose composition (paper Eq. 6).

The refinement network itself is a `ResnetGenerator` with a 1-channel sigmoid output (the
composition mask M); `mgvton_jax.stages.refine` declares its inputs.
"""

from __future__ import annotations

import jax


def compose(mask: jax.Array, warped_clothes: jax.Array, coarse: jax.Array) -> jax.Array:
    """Paper Eq. 6: mask * warped_clothes + (1 - mask) * coarse.

    mask: (B, H, W, 1) in [0, 1]; warped_clothes, coarse: (B, H, W, 3) -> (B, H, W, 3).
    """
    return mask * warped_clothes + (1 - mask) * coarse
