"""Per-network sizes: `model_config("full")` (paper) and `model_config("tiny")` (CPU tests).

Sections and fields (each section is what the matching builder in `mgvton_jax.models` takes):
- parsing, refine: ngf, n_downsample, n_blocks, convs_per_block, norm ("batch" | "instance" |
  "none").
- warp_gan: the generator fields above plus matcher_ngf, matcher_n_layers, matcher_norm,
  grid_size (parsing matcher, TPS control points per side).
- discriminator: ndf, n_layers, num_d, norm (shared by the stage I and Warp-GAN D's).
- gmm: ngf, n_layers (feature-extractor stride-2 blocks after the first), grid_size, norm.

"full": paper sizes (spec 1.6, Q3-Q7): 64 filters, 3 downsamples, 9 residual blocks of 2 convs,
BatchNorm; D ndf 64, 3 layers, 2 scales, InstanceNorm; GMM ngf 64, 3 layers, 5x5 grid.
"tiny": 8 filters, 2 residual blocks, D 2 layers; GMM / matcher feature extractors 2 layers so
that 64x48 inputs still leave a non-empty regression map (3 layers need W >= 64).
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("full", "tiny")


def model_config(variant: str = "full") -> ml_collections.ConfigDict:
    """ConfigDict with sections parsing, discriminator, gmm, warp_gan, refine (see above)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    full = variant == "full"
    width = 64 if full else 8
    generator = dict(
        ngf=width, n_downsample=3, n_blocks=9 if full else 2, convs_per_block=2, norm="batch"
    )
    matcher_layers = 3 if full else 2
    return ml_collections.ConfigDict(
        dict(
            parsing=dict(generator),
            refine=dict(generator),
            warp_gan=dict(
                generator,
                matcher_ngf=width,
                matcher_n_layers=matcher_layers,
                matcher_norm="batch",
                grid_size=5,
            ),
            discriminator=dict(ndf=width, n_layers=3 if full else 2, num_d=2, norm="instance"),
            gmm=dict(ngf=width, n_layers=matcher_layers, grid_size=5, norm="batch"),
        )
    )
