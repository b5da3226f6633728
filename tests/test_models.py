"""Tests of mgvton_jax.models: layer known answers, tiny forward passes, full-size shapes.

Models are initialised with "rbg" PRNG keys: on XLA:CPU each random op of a new shape costs a
compile, about 10x cheaper with rbg than with the default threefry.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgvton_jax.constants import IMAGE_SIZE, NUM_KEYPOINTS, NUM_LABELS
from mgvton_jax.models import (
    Conv,
    FeatureExtractor,
    GeometricMatcher,
    MultiscaleDiscriminator,
    ParsingGenerator,
    RefinementRender,
    ResnetBlock,
    ResnetGenerator,
    UpConv,
    WarpGANGenerator,
    build_discriminator,
    build_gmm,
    build_parsing_generator,
    build_refinement,
    build_warp_gan_generator,
    compose,
    correlation,
    l2_normalize,
    make_norm,
    model_config,
)
from mgvton_jax.models.discriminator import downsample_average

TINY = model_config("tiny")
FULL = model_config("full")
TINY_SIZE = (64, 48)
BATCH = 2


def rngs(seed: int = 0) -> nnx.Rngs:
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def uniform(seed: int, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0):
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape), jnp.float32)


def jit_call(model: nnx.Module, method: str, *args):
    """Runs model.method(*args) under jax.jit (one compile instead of one per eager op)."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, *a: getattr(nnx.merge(graphdef, s), method)(*a))(state, *args)


def param_count(factory) -> int:
    """Number of nnx.Param scalars of the model `factory()` builds, without allocating it."""
    abstract = nnx.eval_shape(factory)
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def np_conv(x_padded: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Reference cross-correlation, NHWC x HWIO, on an already padded input."""
    k = kernel.shape[0]
    out_h = (x_padded.shape[1] - k) // stride + 1
    out_w = (x_padded.shape[2] - k) // stride + 1
    out = np.zeros((x_padded.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x_padded[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", patch, kernel)
    return out


# ---------------------------------------------------------------------------------------------
# layers.py


@pytest.mark.parametrize(("pad_mode", "np_mode", "stride"), [
    ("reflect", "reflect", 1), ("zero", "constant", 2), ("reflect", "reflect", 2),
])
def test_conv_padding_and_stride_match_numpy(pad_mode, np_mode, stride):
    conv = Conv(3, 4, 3, stride=stride, padding=2, pad_mode=pad_mode, rngs=rngs())
    conv.bias[...] = uniform(1, (4,))
    x = np.asarray(uniform(2, (2, 7, 6, 3)))
    x_padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode=np_mode)
    expected = np_conv(x_padded, np.asarray(conv.kernel[...]), stride) + np.asarray(conv.bias[...])
    np.testing.assert_allclose(conv(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)


def test_conv_init_statistics_and_no_bias():
    conv = Conv(64, 128, 3, use_bias=False, rngs=rngs())
    kernel = np.asarray(conv.kernel[...])
    assert kernel.shape == (3, 3, 64, 128) and conv.bias is None
    assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001
    scale = np.asarray(make_norm("batch", 4096, rngs=rngs()).scale[...])
    assert abs(scale.mean() - 1.0) < 0.002 and abs(scale.std() - 0.02) < 0.002


def test_upconv_doubles_size_and_is_pytorch_transposed_conv():
    up = UpConv(4, 5, rngs=rngs())
    up.bias[...] = uniform(3, (5,))
    x = np.asarray(uniform(4, (2, 5, 3, 4)))
    y = np.asarray(up(jnp.asarray(x)))
    assert y.shape == (2, 10, 6, 5)
    # PyTorch ConvTranspose2d(3, stride=2, padding=1, output_padding=1): scatter every input
    # pixel with the weight, then drop `padding` rows/cols at the start.
    torch_weight = np.asarray(up.kernel[...])[::-1, ::-1]
    full = np.zeros((2, 2 * 5 + 1, 2 * 3 + 1, 5))
    for i in range(5):
        for j in range(3):
            full[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :] += np.einsum(
                "bc,hwco->bhwo", x[:, i, j, :], torch_weight
            )
    expected = full[:, 1 : 1 + 10, 1 : 1 + 6, :] + np.asarray(up.bias[...])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_instance_norm_known_answer():
    norm = make_norm("instance", 3, rngs=rngs())
    assert not jax.tree.leaves(nnx.state(norm, nnx.Param))  # affine=False
    x = np.asarray(uniform(5, (2, 6, 5, 3), 0.0, 4.0))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(norm(jnp.asarray(x)), (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    assert make_norm("none", 3, rngs=rngs())(x) is x
    with pytest.raises(ValueError, match="norm"):
        make_norm("group", 3, rngs=rngs())


def test_batch_norm_train_uses_batch_stats_and_eval_uses_running_stats():
    norm = make_norm("batch", 3, rngs=rngs())
    norm.bias[...] = uniform(6, (3,))
    scale, bias = np.asarray(norm.scale[...]), np.asarray(norm.bias[...])
    x = np.asarray(uniform(7, (4, 5, 5, 3), 1.0, 3.0))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))

    train_out = np.asarray(norm(jnp.asarray(x)))
    np.testing.assert_allclose(
        train_out, (x - mean) / np.sqrt(var + 1e-5) * scale + bias, rtol=1e-4, atol=1e-4
    )
    # PyTorch momentum 0.1 from the initial (0, 1) running statistics.
    running_mean, running_var = 0.1 * mean, 0.9 + 0.1 * var
    np.testing.assert_allclose(norm.mean[...], running_mean, rtol=1e-5)
    np.testing.assert_allclose(norm.var[...], running_var, rtol=1e-5)

    eval_norm = nnx.view(norm, use_running_average=True)
    eval_out = np.asarray(eval_norm(jnp.asarray(x)))
    expected = (x - running_mean) / np.sqrt(running_var + 1e-5) * scale + bias
    np.testing.assert_allclose(eval_out, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(eval_out - train_out).max() > 0.1
    np.testing.assert_allclose(norm.mean[...], running_mean, rtol=1e-5)  # eval: no update
    assert norm.use_running_average is False and eval_norm.use_running_average is True


def test_view_switches_every_batch_norm_of_a_network():
    generator = ResnetGenerator(3, 3, ngf=4, n_downsample=1, n_blocks=1, rngs=rngs())
    eval_generator = nnx.view(generator, use_running_average=True)

    def flags(model):
        return [m.use_running_average for _, m in nnx.iter_modules(model)
                if isinstance(m, nnx.BatchNorm)]

    assert len(flags(generator)) == 5  # stem, down, 2 in the block, up
    assert not any(flags(generator)) and all(flags(eval_generator))


# ---------------------------------------------------------------------------------------------
# generator.py


@pytest.mark.parametrize("convs_per_block", [2, 3])
def test_residual_block_with_zero_convs_is_identity(convs_per_block):
    block = ResnetBlock(8, convs_per_block=convs_per_block, norm="none", rngs=rngs())
    x = uniform(8, (2, 6, 5, 8))
    assert np.abs(np.asarray(block(x) - x)).max() > 1e-4  # random weights: not the identity
    nnx.update(block, jax.tree.map(jnp.zeros_like, nnx.state(block, nnx.Param)))
    np.testing.assert_array_equal(block(x), x)


def test_generator_rejects_sizes_not_divisible_by_downsampling():
    generator = ResnetGenerator(3, 3, ngf=4, n_downsample=2, n_blocks=1, rngs=rngs())
    with pytest.raises(ValueError, match="divisible"):
        generator(jnp.zeros((1, 20, 18, 3)))


def test_parsing_generator_tiny_forward():
    generator = build_parsing_generator(TINY.parsing, rngs())
    assert isinstance(generator, ParsingGenerator)
    logits = jit_call(generator, "__call__", uniform(9, (BATCH, *TINY_SIZE, 24), 0.0, 1.0))
    assert logits.shape == (BATCH, *TINY_SIZE, NUM_LABELS)
    assert np.isfinite(np.asarray(logits)).all()


# ---------------------------------------------------------------------------------------------
# discriminator.py


def test_downsample_average_excludes_padding():
    x = np.asarray(uniform(10, (1, 5, 4, 2)))
    expected = np.zeros((1, 3, 2, 2))
    for i in range(3):
        for j in range(2):
            window = x[:, max(2 * i - 1, 0) : 2 * i + 2, max(2 * j - 1, 0) : 2 * j + 2, :]
            expected[:, i, j, :] = window.mean(axis=(1, 2))
    np.testing.assert_allclose(downsample_average(jnp.asarray(x)), expected, rtol=1e-6)


def test_discriminator_tiny_forward():
    disc = build_discriminator(TINY.discriminator, 44, rngs())
    outputs = jit_call(disc, "__call__", uniform(11, (BATCH, *TINY_SIZE, 44)))
    # ndf 8, n_layers 2: convs k4 p2 with strides 2, 2, 1, 1 -> +1 pixel at every stride-1 conv.
    expected = [
        [(33, 25, 8), (17, 13, 16), (18, 14, 32), (19, 15, 1)],
        [(17, 13, 8), (9, 7, 16), (10, 8, 32), (11, 9, 1)],
    ]
    assert [[f.shape for f in scale] for scale in outputs] == [
        [(BATCH, *s) for s in scale] for scale in expected
    ]


def test_discriminator_full_shapes():
    def run(x):
        return build_discriminator(FULL.discriminator, 44, rngs())(x)

    outputs = jax.eval_shape(run, jax.ShapeDtypeStruct((1, *IMAGE_SIZE, 44), jnp.float32))
    expected = [
        [(129, 97, 64), (65, 49, 128), (33, 25, 256), (34, 26, 512), (35, 27, 1)],
        [(65, 49, 64), (33, 25, 128), (17, 13, 256), (18, 14, 512), (19, 15, 1)],
    ]
    assert [[f.shape[1:] for f in scale] for scale in outputs] == expected
    three = jax.eval_shape(
        lambda x: MultiscaleDiscriminator(44, num_d=3, rngs=rngs())(x),
        jax.ShapeDtypeStruct((1, *IMAGE_SIZE, 44), jnp.float32),
    )
    assert three[2][-1].shape == (1, 11, 9, 1)


# ---------------------------------------------------------------------------------------------
# gmm.py


def test_l2_normalize_known_answer():
    x = jnp.asarray([[[[3.0, 4.0], [0.0, 0.0]]]])
    y = np.asarray(l2_normalize(x))
    np.testing.assert_allclose(y[0, 0, 0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(y[0, 0, 1], [0.0, 0.0])  # eps keeps zero vectors finite


def test_correlation_matches_loop_with_column_major_channels():
    a = np.asarray(uniform(12, (2, 4, 3, 5)))
    b = np.asarray(uniform(13, (2, 4, 3, 5)))
    h, w = 4, 3
    expected = np.zeros((2, h, w, h * w))
    for y_b in range(h):
        for x_b in range(w):
            for y_a in range(h):
                for x_a in range(w):
                    expected[:, y_b, x_b, x_a * h + y_a] = np.sum(
                        a[:, y_a, x_a] * b[:, y_b, x_b], axis=-1
                    )
    np.testing.assert_allclose(correlation(jnp.asarray(a), jnp.asarray(b)), expected, atol=1e-5)


def test_gmm_tiny_forward_and_size_check():
    gmm = build_gmm(TINY.gmm, TINY_SIZE, rngs())
    stream_a = uniform(14, (BATCH, *TINY_SIZE, 2), 0, 1)
    theta = jit_call(gmm, "__call__", stream_a, uniform(15, (BATCH, *TINY_SIZE, 1)))
    assert theta.shape == (BATCH, 2 * 5 * 5)
    assert np.abs(np.asarray(theta)).max() <= 1.0
    with pytest.raises(ValueError, match="image_size"):
        gmm(jnp.zeros((1, 32, 48, 2)), jnp.zeros((1, 32, 48, 1)))
    with pytest.raises(ValueError, match="too small"):
        GeometricMatcher(image_size=TINY_SIZE, ngf=4, n_layers=3, rngs=rngs())


def test_gmm_full_shapes():
    extractor = nnx.eval_shape(lambda: FeatureExtractor(2, rngs=rngs()))
    assert extractor.output_size(*IMAGE_SIZE) == (16, 12)
    theta = jax.eval_shape(
        lambda a, b: build_gmm(FULL.gmm, IMAGE_SIZE, rngs())(a, b),
        jax.ShapeDtypeStruct((3, *IMAGE_SIZE, 2), jnp.float32),
        jax.ShapeDtypeStruct((3, *IMAGE_SIZE, 1), jnp.float32),
    )
    assert theta.shape == (3, 50)


# ---------------------------------------------------------------------------------------------
# warp_gan.py


@pytest.fixture(scope="module")
def tiny_warp_gan() -> WarpGANGenerator:
    return build_warp_gan_generator(TINY.warp_gan, rngs(), image_size=TINY_SIZE)


def one_hot_parsing(seed: int) -> jax.Array:
    labels = np.random.default_rng(seed).integers(0, NUM_LABELS, (BATCH, *TINY_SIZE))
    return jax.nn.one_hot(labels, NUM_LABELS)


def test_warp_features_identity_and_one_pixel_shift(tiny_warp_gan):
    features = uniform(16, (BATCH, 8, 6, 5))
    identity = jnp.tile(jnp.asarray([1.0, 0, 0, 0, 1, 0]), (BATCH, 1))
    zero_theta = jnp.zeros((BATCH, 50))
    warped = tiny_warp_gan.warp_features(features, identity, zero_theta)
    np.testing.assert_allclose(warped, features, atol=1e-5)
    # Translation by one pixel in x (2 / (w - 1) normalised): out[:, :, j] = in[:, :, j + 1],
    # and the last column samples outside the map -> 0 (zero padding).
    shift = identity.at[:, 2].set(2.0 / (6 - 1))
    shifted = np.asarray(tiny_warp_gan.warp_features(features, shift, zero_theta))
    np.testing.assert_allclose(shifted[:, :, :-1], features[:, :, 1:], atol=1e-5)
    np.testing.assert_allclose(shifted[:, :, -1], 0.0, atol=1e-5)


def test_warp_gan_tiny_forward_starts_at_identity_match(tiny_warp_gan):
    ref_parsing = one_hot_parsing(17)
    inputs = (
        uniform(18, (BATCH, *TINY_SIZE, 3)),
        uniform(19, (BATCH, *TINY_SIZE, 3)),
        uniform(20, (BATCH, *TINY_SIZE, NUM_KEYPOINTS), 0, 1),
        one_hot_parsing(21),
        ref_parsing,
    )
    out = jit_call(tiny_warp_gan, "forward", *inputs)
    assert out.image.shape == (BATCH, *TINY_SIZE, 3)
    assert np.abs(np.asarray(out.image)).max() <= 1.0
    # Zero-initialised regressors: identity affine, zero TPS offsets, S_ref unchanged.
    np.testing.assert_allclose(out.match.affine, np.tile([1.0, 0, 0, 0, 1, 0], (BATCH, 1)))
    np.testing.assert_array_equal(out.match.theta, np.zeros((BATCH, 50)))
    np.testing.assert_allclose(out.match.warped_ref_parsing, ref_parsing, atol=1e-5)
    with pytest.raises(ValueError, match="image_size"):
        tiny_warp_gan.match_parsing(jnp.zeros((1, 32, 48, 20)), jnp.zeros((1, 32, 48, 20)))


def test_warp_gan_full_shapes():
    def run(*args):
        return build_warp_gan_generator(FULL.warp_gan, rngs()).forward(*args)

    channels = (3, 3, NUM_KEYPOINTS, NUM_LABELS, NUM_LABELS)
    out = jax.eval_shape(
        run, *[jax.ShapeDtypeStruct((1, *IMAGE_SIZE, c), jnp.float32) for c in channels]
    )
    assert out.image.shape == (1, *IMAGE_SIZE, 3)
    assert out.match.affine.shape == (1, 6) and out.match.theta.shape == (1, 50)
    assert out.match.warped_ref_parsing.shape == (1, *IMAGE_SIZE, NUM_LABELS)


# ---------------------------------------------------------------------------------------------
# refine.py


def test_compose_known_answers():
    clothes = uniform(22, (1, 4, 3, 3))
    coarse = uniform(23, (1, 4, 3, 3))
    ones = jnp.ones((1, 4, 3, 1))
    np.testing.assert_allclose(compose(ones, clothes, coarse), clothes)
    np.testing.assert_allclose(compose(0 * ones, clothes, coarse), coarse)
    np.testing.assert_allclose(compose(0.5 * ones, clothes, coarse), (clothes + coarse) / 2,
                               rtol=1e-6)


def test_refinement_tiny_forward():
    render = build_refinement(TINY.refine, rngs())
    assert isinstance(render, RefinementRender)
    clothes = uniform(24, (BATCH, *TINY_SIZE, 3))
    coarse = uniform(25, (BATCH, *TINY_SIZE, 3))
    result, mask = jit_call(
        render, "__call__", clothes, coarse, uniform(26, (BATCH, *TINY_SIZE, NUM_KEYPOINTS), 0, 1)
    )
    assert result.shape == (BATCH, *TINY_SIZE, 3) and mask.shape == (BATCH, *TINY_SIZE, 1)
    mask = np.asarray(mask)
    assert mask.min() > 0.0 and mask.max() < 1.0
    np.testing.assert_allclose(result, mask * clothes + (1 - mask) * coarse, atol=1e-6)


def test_generators_full_shapes():
    x24 = jax.ShapeDtypeStruct((1, *IMAGE_SIZE, 24), jnp.float32)
    parsing = jax.eval_shape(lambda x: build_parsing_generator(FULL.parsing, rngs())(x), x24)
    assert parsing.shape == (1, *IMAGE_SIZE, NUM_LABELS)
    bottleneck = jax.eval_shape(
        lambda x: build_parsing_generator(FULL.parsing, rngs()).encoder(x), x24
    )
    assert bottleneck.shape == (1, 32, 24, 512)
    x3 = jax.ShapeDtypeStruct((1, *IMAGE_SIZE, 3), jnp.float32)
    pose = jax.ShapeDtypeStruct((1, *IMAGE_SIZE, NUM_KEYPOINTS), jnp.float32)
    result, mask = jax.eval_shape(
        lambda a, b, p: build_refinement(FULL.refine, rngs())(a, b, p), x3, x3, pose
    )
    assert result.shape == (1, *IMAGE_SIZE, 3) and mask.shape == (1, *IMAGE_SIZE, 1)


# ---------------------------------------------------------------------------------------------
# Parameter counts at full size against counts derived by hand from the architecture.


def conv_params(kernel: int, c_in: int, c_out: int) -> int:
    return kernel * kernel * c_in * c_out + c_out


def pairs(widths: list[int]) -> list[tuple[int, int]]:
    """(input, output) widths of consecutive layers."""
    return list(zip(widths[:-1], widths[1:], strict=True))


def bn_params(channels: int) -> int:
    return 2 * channels  # scale and bias


def encoder_params(c_in: int, ngf: int = 64) -> int:
    widths = [ngf, 2 * ngf, 4 * ngf, 8 * ngf]
    return conv_params(7, c_in, ngf) + bn_params(ngf) + sum(
        conv_params(3, a, b) + bn_params(b) for a, b in pairs(widths)
    )


def trunk_decoder_params(c_out: int, ngf: int = 64, blocks: int = 9) -> int:
    widths = [ngf, 2 * ngf, 4 * ngf, 8 * ngf]
    trunk = blocks * 2 * (conv_params(3, 8 * ngf, 8 * ngf) + bn_params(8 * ngf))
    ups = sum(conv_params(3, b, a) + bn_params(a) for a, b in pairs(widths))
    return trunk + ups + conv_params(7, ngf, c_out)


def extractor_params(c_in: int) -> int:
    widths = [c_in, 64, 128, 256, 512]
    return (
        sum(conv_params(4, a, b) + bn_params(b) for a, b in pairs(widths))
        + conv_params(3, 512, 512) + bn_params(512) + conv_params(3, 512, 512)
    )


def regressor_params(out_dim: int) -> int:
    widths = [16 * 12, 512, 256, 128, 64]
    kernels = [4, 4, 3, 3]
    layers = zip(kernels, pairs(widths), strict=True)
    convs = sum(conv_params(k, a, b) + bn_params(b) for k, (a, b) in layers)
    return convs + 64 * 4 * 3 * out_dim + out_dim


def test_full_size_parameter_counts():
    assert param_count(lambda: Conv(44, 64, 4, rngs=rngs())) == 4 * 4 * 44 * 64 + 64
    assert param_count(lambda: UpConv(512, 256, rngs=rngs())) == 3 * 3 * 512 * 256 + 256

    d_widths = [44, 64, 128, 256, 512, 1]
    one_scale = sum(conv_params(4, a, b) for a, b in pairs(d_widths))
    assert param_count(lambda: build_discriminator(FULL.discriminator, 44, rngs())) == 2 * one_scale

    parsing = encoder_params(24) + trunk_decoder_params(NUM_LABELS)
    assert param_count(lambda: build_parsing_generator(FULL.parsing, rngs())) == parsing
    refine = encoder_params(24) + trunk_decoder_params(1)
    assert param_count(lambda: build_refinement(FULL.refine, rngs())) == refine

    gmm = extractor_params(2) + extractor_params(1) + regressor_params(50)
    assert param_count(lambda: build_gmm(FULL.gmm, IMAGE_SIZE, rngs())) == gmm

    matcher = extractor_params(NUM_LABELS) + regressor_params(6) + regressor_params(50)
    gate = conv_params(1, 1024, 512) + conv_params(1, 512, 512)
    warp_gan = (
        matcher + encoder_params(23) + encoder_params(44) + gate + trunk_decoder_params(3)
    )
    assert param_count(lambda: build_warp_gan_generator(FULL.warp_gan, rngs())) == warp_gan


def test_presets():
    assert FULL.parsing.to_dict() == dict(
        ngf=64, n_downsample=3, n_blocks=9, convs_per_block=2, norm="batch"
    )
    assert (FULL.discriminator.ndf, FULL.discriminator.n_layers, FULL.discriminator.num_d) == (
        64, 3, 2
    )
    assert (FULL.gmm.ngf, FULL.gmm.grid_size, TINY.gmm.ngf, TINY.parsing.ngf) == (64, 5, 8, 8)
    with pytest.raises(ValueError, match="variant"):
        model_config("huge")
