"""The person analyzer: a photo -> its LIP parsing and its COCO-18 keypoints.

A U-Net (Ronneberger et al. 2015) of the shared conv block: `levels` resolutions, each two
[3x3 conv, norm, ReLU]; the first level keeps the input size, each next one halves it (stride-2
conv) and doubles the width up to `max_width`; the decoder upsamples (`UpConv`) and
concatenates the encoder's output of the same size before its two convs. Three heads read it:

- parsing: 1x1 conv at the input size -> (B, H, W, 20) logits;
- joints: 1x1 conv at the input size -> (B, H, W, 18) logits, one spatial distribution per
  joint (softmax over the H x W pixels: where the joint is, if it is there);
- presence: the bottleneck averaged over space -> (B, 18) logits, whether each joint is in
  the photo (OpenPose writes missing joints as 0, 0, 0).

The photo's size must be a multiple of 2**(levels - 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.models.generator import check_spatial_size
from mgvton_jax.models.layers import Conv, NormKind, UpConv, UpsampleKind, make_norm


def _double_conv(in_channels: int, out_channels: int, norm: NormKind, dtype: DTypeLike,
                 rngs: nnx.Rngs, stride: int = 1) -> nnx.Sequential:
    """[3x3 conv (stride), norm, ReLU, 3x3 conv, norm, ReLU]: (B, H, W, Cin) ->
    (B, H/stride, W/stride, Cout)."""
    return nnx.Sequential(
        Conv(in_channels, out_channels, 3, stride=stride, padding=1, dtype=dtype, rngs=rngs),
        make_norm(norm, out_channels, dtype=dtype, rngs=rngs), nnx.relu,
        Conv(out_channels, out_channels, 3, padding=1, dtype=dtype, rngs=rngs),
        make_norm(norm, out_channels, dtype=dtype, rngs=rngs), nnx.relu)


class PersonAnalyzer(nnx.Module):
    """Photo (B, H, W, in_channels) in [-1, 1] -> parsing logits (B, H, W, num_labels), joint
    logits (B, H, W, num_joints) and presence logits (B, num_joints), all float32."""

    def __init__(
        self,
        in_channels: int,
        *,
        num_labels: int,
        num_joints: int,
        width: int = 16,
        max_width: int = 128,
        levels: int = 5,
        norm: NormKind = "batch",
        upsample: UpsampleKind = "resize",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.levels = levels
        widths = [min(width * 2**i, max_width) for i in range(levels)]
        self.down = nnx.List([
            _double_conv(in_channels if i == 0 else widths[i - 1], widths[i], norm, dtype, rngs,
                         stride=1 if i == 0 else 2)
            for i in range(levels)])
        self.up = nnx.List([
            UpConv(widths[i + 1], widths[i], kind=upsample, dtype=dtype, rngs=rngs)
            for i in reversed(range(levels - 1))])
        self.merge = nnx.List([
            _double_conv(2 * widths[i], widths[i], norm, dtype, rngs)
            for i in reversed(range(levels - 1))])
        self.parsing_head = Conv(widths[0], num_labels, 1, dtype=dtype, rngs=rngs)
        self.joint_head = Conv(widths[0], num_joints, 1, dtype=dtype, rngs=rngs)
        self.presence_head = nnx.Linear(widths[-1], num_joints, dtype=dtype, rngs=rngs)

    def __call__(self, photo: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """photo: (B, H, W, C) float, H and W multiples of 2**(levels - 1) -> (parsing logits
        (B, H, W, num_labels), joint logits (B, H, W, num_joints), presence logits
        (B, num_joints)), float32."""
        check_spatial_size(photo.shape[1], photo.shape[2], self.levels - 1)
        skips = []
        x = photo
        for block in self.down:
            x = block(x)
            skips.append(x)
        presence = self.presence_head(x.astype(jnp.float32).mean(axis=(1, 2)))
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(jnp.concatenate([up(x), skip.astype(x.dtype)], axis=-1))
        return (self.parsing_head(x).astype(jnp.float32),
                self.joint_head(x).astype(jnp.float32), presence.astype(jnp.float32))
