"""Warp-GAN generator: bottleneck-feature warping with affine + TPS (docs/design.md).

Our reading of the paper and of Soft-Gated Warping-GAN (the exact formulas are not published):

1. `ParsingMatcher` (GEO-style, built from the GMM pieces): a siamese `FeatureExtractor`
   (shared by both parsings and both steps), L2 normalisation, correlation with the target
   parsing as stream A, then
   - step 1: affine = identity + regressed residual (6 values, no tanh) from
     corr(S_t, S_ref);
   - step 2: S_ref is warped by that affine (at image resolution, zero padding), and the TPS
     offsets theta (2*G*G, tanh) are regressed from corr(S_t, affine-warped S_ref).
   Both regressors' last Linear starts at zero, so an untrained matcher is the identity warp.
   The full sampling grid is Affine(TPS(p)) (`compose_affine_tps`): it maps S_ref onto S_t.
2. Reference encoder on its input (the stage gives [reference image without clothes 3,
   S_ref 20] = 23 channels) down to the bottleneck (H/2^n, W/2^n, C = ngf * 2^n); its
   features are warped with that grid built at bottleneck resolution (same normalised
   coordinates), zero padding.
3. Main encoder on its input (the stage gives [warped clothes 3, reference without clothes 3,
   target pose 18, S_t 20] = 44 channels), to the same bottleneck shape.
4. Soft gate (per location and channel): gate = sigmoid(conv1x1([main, warped_ref]))
   (2C -> C), merged = main + gate * conv1x1(warped_ref) (C -> C).
5. `ResidualTrunk` + `Decoder` (generator.py) -> RGB in [-1, 1] (tanh).

The parsings are (B, H, W, 20) maps in [0, 1]: one-hot for the reference, one-hot or softmax
probabilities for the synthesized target parsing. The trainer supervises the matcher with an
L1 between `match_parsing(...).warped_ref_parsing` and S_t.

`dtype` is the compute dtype (layers.py). Affine, theta and the image are float32; the
bottleneck features are warped in the compute dtype (`grid_sample` computes coordinates in at
least float32); `remat` rematerialises the trunk's residual blocks (generator.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mgvton_jax.constants import IMAGE_SIZE, NUM_LABELS
from mgvton_jax.models.generator import (
    RGB_CHANNELS,
    Encoder,
    check_spatial_size,
    trunk_and_decoder,
)
from mgvton_jax.models.gmm import (
    FeatureExtractor,
    ParameterRegressor,
    check_image_size,
    correlation,
    l2_normalize,
)
from mgvton_jax.models.layers import Conv, NormKind, UpsampleKind
from mgvton_jax.ops.warp import affine_grid, compose_affine_tps, grid_sample

# Row-major 2x3 identity matrix in the layout of `mgvton_jax.ops.warp.apply_affine`.
IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
AFFINE_PARAMS = len(IDENTITY_AFFINE)


class ParsingMatch(NamedTuple):
    """Parsing matcher outputs.

    affine: (B, 6) row-major 2x3 matrices; theta: (B, 2*G*G) TPS offsets; warped_ref_parsing:
    (B, H, W, 20) S_ref sampled at Affine(TPS(p)), zero outside.
    """

    affine: jax.Array
    theta: jax.Array
    warped_ref_parsing: jax.Array


class WarpGANOutput(NamedTuple):
    """Warp-GAN generator outputs: image (B, H, W, 3) in [-1, 1] plus the `ParsingMatch`."""

    image: jax.Array
    match: ParsingMatch


def warp_affine_tps(
    x: jax.Array, affine: jax.Array, theta: jax.Array, grid_size: int, padding: str = "zeros"
) -> jax.Array:
    """Samples x (B, h, w, C) at Affine(TPS(p)) for every output pixel p -> (B, h, w, C).

    affine: (B, 6); theta: (B, 2*G*G); the grid is built at x's own resolution.
    """
    grid = compose_affine_tps(affine, theta, grid_size, x.shape[1:3])
    return grid_sample(x, grid, padding=padding)


class ParsingMatcher(nnx.Module):
    """GEO-style affine + TPS matcher between two parsings (see the module docstring).

    __call__(target_parsing, ref_parsing), both (B, H, W, in_channels) with (H, W) ==
    image_size, returns (affine (B, 6), theta (B, 2*G*G)), float32 for any compute `dtype`.
    """

    def __init__(
        self,
        in_channels: int = NUM_LABELS,
        *,
        image_size: tuple[int, int] = IMAGE_SIZE,
        ngf: int = 64,
        n_layers: int = 3,
        grid_size: int = 5,
        norm: NormKind = "batch",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.image_size = tuple(image_size)
        self.grid_size = grid_size
        self.extractor = FeatureExtractor(
            in_channels, ngf=ngf, n_layers=n_layers, norm=norm, dtype=dtype, rngs=rngs
        )
        feature_size = self.extractor.output_size(*self.image_size)
        regressor_args = dict(feature_size=feature_size, ngf=ngf, norm=norm,
                              zero_init_output=True, dtype=dtype, rngs=rngs)
        volume_channels = feature_size[0] * feature_size[1]
        self.affine_regressor = ParameterRegressor(
            volume_channels, AFFINE_PARAMS, out_activation="none", **regressor_args)
        self.tps_regressor = ParameterRegressor(
            volume_channels, 2 * grid_size * grid_size, out_activation="tanh", **regressor_args)

    def _features(self, parsing: jax.Array) -> jax.Array:
        """(B, H, W, in_channels) -> L2-normalised (B, h, w, C) features."""
        return l2_normalize(self.extractor(parsing))

    def __call__(
        self, target_parsing: jax.Array, ref_parsing: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(B, H, W, in_channels) x 2 -> (affine (B, 6), theta (B, 2*G*G)), float32."""
        check_image_size(target_parsing, self.image_size)
        check_image_size(ref_parsing, self.image_size)
        target_features = self._features(target_parsing)
        residual = self.affine_regressor(
            correlation(target_features, self._features(ref_parsing))
        )
        affine = jnp.asarray(IDENTITY_AFFINE, residual.dtype) + residual
        aligned_ref = grid_sample(
            ref_parsing, affine_grid(affine, self.image_size), padding="zeros"
        )
        theta = self.tps_regressor(correlation(target_features, self._features(aligned_ref)))
        return affine, theta


class SoftGate(nnx.Module):
    """merged = main + sigmoid(conv1x1([main, warped])) * conv1x1(warped), all (B, h, w, C).

    Computes in `dtype`.
    """

    def __init__(self, channels: int, *, dtype: DTypeLike = jnp.float32, rngs: nnx.Rngs):
        self.gate_conv = Conv(2 * channels, channels, 1, dtype=dtype, rngs=rngs)
        self.feature_conv = Conv(channels, channels, 1, dtype=dtype, rngs=rngs)

    def __call__(self, main: jax.Array, warped: jax.Array) -> jax.Array:
        """main, warped: (B, h, w, C) float -> (B, h, w, C) in the compute dtype."""
        gate = jax.nn.sigmoid(self.gate_conv(jnp.concatenate([main, warped], axis=-1)))
        features = self.feature_conv(warped)
        return main.astype(features.dtype) + gate * features


class WarpGANGenerator(nnx.Module):
    """Stage II generator: coarse try-on image from warped clothes, reference, pose, parsings.

    Inputs (all (B, H, W, .), H, W multiples of 2**n_downsample and equal to image_size): the
    main encoder's input (main_channels), the reference encoder's input (reference_channels),
    the synthesized target parsing S_t and the reference parsing S_ref (parsing_channels each;
    one-hot or probabilities). Both encoders go to C = ngf * 2**n_downsample channels (512 at
    full size) at the bottleneck (H / 2**n_downsample, W / 2**n_downsample); the output is RGB
    (tanh), float32. `upsample` is the decoder's `UpConv` kind; `dtype` is the compute dtype of
    every sub-network; `remat` rematerialises the trunk.
    """

    def __init__(
        self,
        main_channels: int,
        reference_channels: int,
        parsing_channels: int = NUM_LABELS,
        *,
        image_size: tuple[int, int] = IMAGE_SIZE,
        ngf: int = 64,
        n_downsample: int = 3,
        n_blocks: int = 9,
        convs_per_block: int = 2,
        norm: NormKind = "batch",
        matcher_ngf: int = 64,
        matcher_n_layers: int = 3,
        matcher_norm: NormKind = "batch",
        grid_size: int = 5,
        upsample: UpsampleKind = "transpose",
        dtype: DTypeLike = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        self.n_downsample = n_downsample
        self.grid_size = grid_size
        self.matcher = ParsingMatcher(
            parsing_channels,
            image_size=image_size,
            ngf=matcher_ngf,
            n_layers=matcher_n_layers,
            grid_size=grid_size,
            norm=matcher_norm,
            dtype=dtype,
            rngs=rngs,
        )
        encoder_args = dict(ngf=ngf, n_downsample=n_downsample, norm=norm, dtype=dtype, rngs=rngs)
        self.ref_encoder = Encoder(reference_channels, **encoder_args)
        self.main_encoder = Encoder(main_channels, **encoder_args)
        channels = self.main_encoder.out_channels
        self.gate = SoftGate(channels, dtype=dtype, rngs=rngs)
        self.trunk, self.decoder = trunk_and_decoder(
            channels, RGB_CHANNELS, ngf=ngf, n_downsample=n_downsample, n_blocks=n_blocks,
            convs_per_block=convs_per_block, norm=norm, out_activation="tanh",
            upsample=upsample, dtype=dtype, remat=remat, rngs=rngs)

    def warp_features(self, features: jax.Array, affine: jax.Array, theta: jax.Array) -> jax.Array:
        """Warps (B, h, w, C) features by Affine(TPS(p)) at their own resolution, zero padding."""
        return warp_affine_tps(features, affine, theta, self.grid_size, padding="zeros")

    def match_parsing(self, target_parsing: jax.Array, ref_parsing: jax.Array) -> ParsingMatch:
        """(B, H, W, 20) x 2 -> `ParsingMatch` (affine, theta, S_ref warped onto S_t)."""
        affine, theta = self.matcher(target_parsing, ref_parsing)
        warped = warp_affine_tps(ref_parsing, affine, theta, self.grid_size, padding="zeros")
        return ParsingMatch(affine, theta, warped)

    def __call__(
        self,
        main_input: jax.Array,
        reference_input: jax.Array,
        target_parsing: jax.Array,
        ref_parsing: jax.Array,
    ) -> WarpGANOutput:
        """Image (B, H, W, 3) in [-1, 1] and the parsing match (inputs: class docstring)."""
        check_spatial_size(main_input.shape[1], main_input.shape[2], self.n_downsample)
        match = self.match_parsing(target_parsing, ref_parsing)
        warped_ref_features = self.warp_features(
            self.ref_encoder(reference_input), match.affine, match.theta)
        merged = self.gate(self.main_encoder(main_input), warped_ref_features)
        return WarpGANOutput(self.decoder(self.trunk(merged)), match)
