"""The four MG-VTON networks (Flax NNX) and builders from a config section.

Builders take one section of `presets.model_config(variant)` (an ml_collections.ConfigDict or
any object with the same attributes):

- `build_parsing_generator(cfg.parsing, rngs)` -> `ParsingGenerator` (24 -> 20 logits).
  Fields: ngf, n_downsample, n_blocks, convs_per_block, norm.
- `build_discriminator(cfg.discriminator, in_channels, rngs)` -> `MultiscaleDiscriminator`.
  Fields: ndf, n_layers, num_d, norm. in_channels: 44 for stage I (condition 24 + parsing 20),
  41 for Warp-GAN (image 3 + pose 18 + parsing 20).
- `build_gmm(cfg.gmm, image_size, rngs)` -> `GeometricMatcher` (streams of 2 and 1 channels).
  Fields: ngf, n_layers, grid_size, norm.
- `build_warp_gan_generator(cfg.warp_gan, rngs, image_size=IMAGE_SIZE)` -> `WarpGANGenerator`.
  Fields: ngf, n_downsample, n_blocks, convs_per_block, norm, matcher_ngf, matcher_n_layers,
  matcher_norm, grid_size. image_size fixes the parsing matcher's Linear layers.
- `build_refinement(cfg.refine, rngs)` -> `RefinementRender` (24 -> mask).
  Fields: ngf, n_downsample, n_blocks, convs_per_block, norm.

Every builder also takes the keywords `dtype=jnp.float32` and `remat=False`:
- dtype: the compute dtype (e.g. jnp.bfloat16 for mixed precision). Parameters and BatchNorm
  statistics stay float32. Generator outputs (parsing logits, Warp-GAN image, refinement mask)
  and the GMM / parsing-matcher transformation parameters are float32; discriminator feature
  maps and logits are in the compute dtype.
- remat: rematerialise every residual block of the generator trunk (`nnx.remat`): same values
  and gradients, less activation memory, about one more trunk forward per backward pass.
  Ignored by `build_discriminator` and `build_gmm` (no trunk); accepted there so that every
  builder is called the same way.

Eval mode for BatchNorm networks: `nnx.view(model, use_running_average=True)` (layers.py).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.constants import IMAGE_SIZE
from mgvton_jax.models.discriminator import MultiscaleDiscriminator, PatchDiscriminator
from mgvton_jax.models.generator import (
    Decoder,
    Encoder,
    ParsingGenerator,
    ResidualTrunk,
    ResnetBlock,
    ResnetGenerator,
)
from mgvton_jax.models.gmm import (
    FeatureExtractor,
    GeometricMatcher,
    ParameterRegressor,
    correlation,
    l2_normalize,
)
from mgvton_jax.models.layers import Conv, UpConv, make_norm
from mgvton_jax.models.presets import model_config
from mgvton_jax.models.refine import RefinementRender, compose
from mgvton_jax.models.warp_gan import (
    ParsingMatch,
    ParsingMatcher,
    SoftGate,
    WarpGANGenerator,
    WarpGANOutput,
    warp_affine_tps,
)

__all__ = [
    "Conv",
    "Decoder",
    "Encoder",
    "FeatureExtractor",
    "GeometricMatcher",
    "MultiscaleDiscriminator",
    "ParameterRegressor",
    "ParsingGenerator",
    "ParsingMatch",
    "ParsingMatcher",
    "PatchDiscriminator",
    "RefinementRender",
    "ResidualTrunk",
    "ResnetBlock",
    "ResnetGenerator",
    "SoftGate",
    "UpConv",
    "WarpGANGenerator",
    "WarpGANOutput",
    "build_discriminator",
    "build_gmm",
    "build_parsing_generator",
    "build_refinement",
    "build_warp_gan_generator",
    "compose",
    "correlation",
    "l2_normalize",
    "make_norm",
    "model_config",
    "warp_affine_tps",
]


def _generator_fields(cfg: Any) -> dict[str, Any]:
    """The ResnetGenerator size fields of a config section, as keyword arguments."""
    return dict(
        ngf=cfg.ngf,
        n_downsample=cfg.n_downsample,
        n_blocks=cfg.n_blocks,
        convs_per_block=cfg.convs_per_block,
        norm=cfg.norm,
    )


def build_parsing_generator(
    cfg: Any, rngs: nnx.Rngs, *, dtype: DTypeLike = jnp.float32, remat: bool = False
) -> ParsingGenerator:
    """Stage I generator from a `parsing` section (fields, dtype, remat: module docstring)."""
    return ParsingGenerator(**_generator_fields(cfg), dtype=dtype, remat=remat, rngs=rngs)


def build_discriminator(
    cfg: Any,
    in_channels: int,
    rngs: nnx.Rngs,
    *,
    dtype: DTypeLike = jnp.float32,
    remat: bool = False,
) -> MultiscaleDiscriminator:
    """Multiscale PatchGAN from a `discriminator` section, for in_channels input channels.

    remat is ignored (no residual trunk).
    """
    del remat
    return MultiscaleDiscriminator(
        in_channels,
        num_d=cfg.num_d,
        ndf=cfg.ndf,
        n_layers=cfg.n_layers,
        norm=cfg.norm,
        dtype=dtype,
        rngs=rngs,
    )


def build_gmm(
    cfg: Any,
    image_size: tuple[int, int],
    rngs: nnx.Rngs,
    *,
    dtype: DTypeLike = jnp.float32,
    remat: bool = False,
) -> GeometricMatcher:
    """GMM from a `gmm` section for (H, W) = image_size inputs; remat is ignored (no trunk)."""
    del remat
    return GeometricMatcher(
        image_size=image_size,
        ngf=cfg.ngf,
        n_layers=cfg.n_layers,
        grid_size=cfg.grid_size,
        norm=cfg.norm,
        dtype=dtype,
        rngs=rngs,
    )


def build_warp_gan_generator(
    cfg: Any,
    rngs: nnx.Rngs,
    image_size: tuple[int, int] = IMAGE_SIZE,
    *,
    dtype: DTypeLike = jnp.float32,
    remat: bool = False,
) -> WarpGANGenerator:
    """Warp-GAN generator from a `warp_gan` section for (H, W) = image_size inputs."""
    return WarpGANGenerator(
        image_size=image_size,
        **_generator_fields(cfg),
        matcher_ngf=cfg.matcher_ngf,
        matcher_n_layers=cfg.matcher_n_layers,
        matcher_norm=cfg.matcher_norm,
        grid_size=cfg.grid_size,
        dtype=dtype,
        remat=remat,
        rngs=rngs,
    )


def build_refinement(
    cfg: Any, rngs: nnx.Rngs, *, dtype: DTypeLike = jnp.float32, remat: bool = False
) -> RefinementRender:
    """Refinement render from a `refine` section."""
    return RefinementRender(**_generator_fields(cfg), dtype=dtype, remat=remat, rngs=rngs)
