"""Tests of mgvton_jax.models: layer known answers, tiny forward passes, full-size shapes,
bfloat16 compute against float32, trunk rematerialisation.

Models are initialised with "rbg" PRNG keys: on XLA:CPU each random op of a new shape costs a
compile, about 10x cheaper with rbg than with the default threefry. Every tiny forward runs the
float32 network and its bfloat16-compute twin (same parameters) in one jit, to compile once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend.core import jaxprs_in_params

from mgvton_jax import stages
from mgvton_jax.config_lib import base_config, model_config
from mgvton_jax.constants import IMAGE_SIZE, NUM_LABELS
from mgvton_jax.models.discriminator import MultiscaleDiscriminator, downsample_average
from mgvton_jax.models.generator import ResnetBlock, ResnetGenerator
from mgvton_jax.models.gmm import FeatureExtractor, GeometricMatcher, correlation, l2_normalize
from mgvton_jax.models.layers import Conv, UpConv, make_norm
from mgvton_jax.models.refine import compose
from mgvton_jax.models.warp_gan import WarpGANGenerator

# Each test program runs once: skipping LLVM optimisation makes XLA:CPU compile 2-3x faster.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
TINY = model_config("tiny")
FULL = model_config("full")
TINY_SIZE = (64, 48)
BATCH = 2


def rngs(seed: int = 0) -> nnx.Rngs:
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def build(stage: str, network: str, variant: str = "tiny", dtype: str = "float32"):
    """A stage's network as training builds it (`**config.model[section]`)."""
    config = base_config(stage, variant)
    config.train.compute_dtype = dtype
    return stages.build_networks(stage, config, rngs(), only=[network])[network]


def uniform(seed: int, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0):
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape), jnp.float32)


# bfloat16 keeps 8 significant bits: each cast of an activation or kernel to it has a relative
# rounding error up to 2**-9 = 0.2%. Through the ~20-30 layers of a tiny network these add up
# (BatchNorm re-normalises after each conv, so they do not compound) to the 0.25-2.2% relative
# output errors measured here (training-mode BatchNorm); REL_TOL leaves a margin of 2x over the
# largest, while other weights, a missing layer or a dropped skip connection are off by O(1).
REL_TOL = 5e-2
# The GMM regressor is worse conditioned: BatchNorm centres convolutions of a nonnegative
# correlation volume (large common offset, small spread) over 4 values per channel at the tiny
# size. Even in float32 a 2**-9 relative perturbation of the volume moves theta by 1.6%; the
# measured bfloat16 error of theta is 10%. 0.25 is still far below the ~1.4 of an unrelated theta.
GMM_REL_TOL = 0.25


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| (Frobenius), in float64."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def float32_and_bfloat16_outputs(model: nnx.Module, bfloat16_factory, method: str, *args):
    """(model.method(*args), twin.method(*args)) in one jit; twin = bfloat16_factory() given
    model's parameters. The float32 `model` and the bfloat16-compute twin must have the same
    architecture; asserts that the twin creates the same parameter shapes, all float32.
    """
    abstract_twin = nnx.eval_shape(bfloat16_factory)
    twin_params = nnx.state(abstract_twin, nnx.Param)
    assert {leaf.dtype for leaf in jax.tree.leaves(twin_params)} == {jnp.dtype(jnp.float32)}
    assert jax.tree.map(jnp.shape, twin_params) == jax.tree.map(
        jnp.shape, nnx.state(model, nnx.Param)
    )
    graphs = (nnx.graphdef(model), nnx.graphdef(abstract_twin))

    def run(state, *inputs):
        return tuple(getattr(nnx.merge(graph, state), method)(*inputs) for graph in graphs)

    return jax.jit(run, compiler_options=FAST_COMPILE)(nnx.state(model), *args)


def assert_close_in_bfloat16(
    actual_bf16, expected_f32, dtype=jnp.float32, tolerance: float = REL_TOL
):
    """actual has `dtype` and is within `tolerance` of expected, but differs (really bf16)."""
    assert actual_bf16.dtype == dtype and expected_f32.dtype == jnp.float32
    assert 0.0 < relative_error(actual_bf16, expected_f32) < tolerance


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


def test_resize_upconv_is_nearest_upsampling_then_a_padded_conv():
    up = UpConv(4, 5, kind="resize", rngs=rngs())
    up.bias[...] = uniform(3, (5,))
    x = np.asarray(uniform(4, (2, 5, 3, 4)), np.float64)
    y = np.asarray(up(jnp.asarray(x, jnp.float32)))
    assert y.shape == (2, 10, 6, 5)
    # Each output pixel (r, c) copies input pixel (r // 2, c // 2); zero padding 1.
    nearest = np.pad(x[:, np.arange(10) // 2][:, :, np.arange(6) // 2], ((0, 0), (1, 1), (1, 1),
                                                                       (0, 0)))
    kernel = np.asarray(up.kernel[...], np.float64)
    expected = sum(np.einsum("bhwc,co->bhwo", nearest[:, i : i + 10, j : j + 6], kernel[i, j])
                   for i in range(3) for j in range(3)) + np.asarray(up.bias[...])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="upsample must be one of"):
        UpConv(4, 5, kind="pixelshuffle", rngs=rngs())


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


def test_conv_in_bfloat16_matches_numpy_on_rounded_operands():
    conv = Conv(3, 4, 3, padding=1, dtype=jnp.bfloat16, rngs=rngs())
    x = uniform(30, (2, 5, 4, 3))
    y = conv(x)
    assert conv.kernel[...].dtype == jnp.float32 and y.dtype == jnp.bfloat16
    # Products of bfloat16 operands are exact in float64: the only other error is the
    # rounding of the result to bfloat16 (2**-9 relative).
    x_rounded = np.asarray(x.astype(jnp.bfloat16), np.float64)
    kernel_rounded = np.asarray(conv.kernel[...].astype(jnp.bfloat16), np.float64)
    x_padded = np.pad(x_rounded, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np_conv(x_padded, kernel_rounded, 1)
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, rtol=2**-8, atol=1e-4)
    up = UpConv(3, 2, dtype=jnp.bfloat16, rngs=rngs())
    assert up(x).dtype == jnp.bfloat16 and up.kernel[...].dtype == jnp.float32


def test_norms_in_bfloat16_keep_float32_statistics():
    x = uniform(31, (4, 3, 3, 5), 1.0, 3.0)
    norm = make_norm("batch", 5, dtype=jnp.bfloat16, rngs=rngs())
    y = norm(x)
    assert y.dtype == jnp.bfloat16
    assert norm.mean[...].dtype == jnp.float32 and norm.scale[...].dtype == jnp.float32
    # Flax casts the input to bfloat16, then averages in float32: the running mean is the
    # float32-accurate mean of the rounded input (a bfloat16 mean would be off by ~1e-3).
    x_rounded = np.asarray(x.astype(jnp.bfloat16), np.float64)
    np.testing.assert_allclose(norm.mean[...], 0.1 * x_rounded.mean(axis=(0, 1, 2)), rtol=1e-6)
    assert make_norm("instance", 5, dtype=jnp.bfloat16, rngs=rngs())(x).dtype == jnp.bfloat16


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


def test_parsing_generator_tiny_forward_float32_and_bfloat16():
    generator = build("parsing", "generator")
    assert isinstance(generator, ResnetGenerator)
    logits, logits_bf16 = float32_and_bfloat16_outputs(
        generator,
        lambda: build("parsing", "generator", dtype="bfloat16"),
        "__call__",
        uniform(9, (BATCH, *TINY_SIZE, 24), 0.0, 1.0),
    )
    assert logits.shape == (BATCH, *TINY_SIZE, NUM_LABELS)
    assert np.isfinite(np.asarray(logits)).all()
    assert_close_in_bfloat16(logits_bf16, logits)


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


def test_discriminator_tiny_forward_float32_and_bfloat16():
    disc = build("parsing", "discriminator")  # condition 24 + parsing 20 = 44 channels
    outputs, outputs_bf16 = float32_and_bfloat16_outputs(
        disc,
        lambda: build("parsing", "discriminator", dtype="bfloat16"),
        "__call__",
        uniform(11, (BATCH, *TINY_SIZE, 44)),
    )
    # ndf 8, n_layers 2: convs k4 p2 with strides 2, 2, 1, 1 -> +1 pixel at every stride-1 conv.
    expected = [
        [(33, 25, 8), (17, 13, 16), (18, 14, 32), (19, 15, 1)],
        [(17, 13, 8), (9, 7, 16), (10, 8, 32), (11, 9, 1)],
    ]
    assert [[f.shape for f in scale] for scale in outputs] == [
        [(BATCH, *s) for s in scale] for scale in expected
    ]
    # Every feature map stays bfloat16 (the losses upcast); the patch logits are close.
    for scale, scale_bf16 in zip(outputs, outputs_bf16, strict=True):
        assert {f.dtype for f in scale_bf16} == {jnp.dtype(jnp.bfloat16)}
        assert_close_in_bfloat16(scale_bf16[-1], scale[-1], jnp.bfloat16)


def test_discriminator_full_shapes():
    def run(x):
        return build("parsing", "discriminator", "full")(x)

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


def test_gmm_tiny_forward_float32_and_bfloat16_and_size_check():
    gmm = build("gmm", "gmm")
    stream_a = uniform(14, (BATCH, *TINY_SIZE, 2), 0, 1)
    theta, theta_bf16 = float32_and_bfloat16_outputs(
        gmm,
        lambda: build("gmm", "gmm", dtype="bfloat16"),
        "__call__",
        stream_a,
        uniform(15, (BATCH, *TINY_SIZE, 1)),
    )
    assert theta.shape == (BATCH, 2 * 5 * 5)
    assert np.abs(np.asarray(theta)).max() <= 1.0
    assert_close_in_bfloat16(theta_bf16, theta, tolerance=GMM_REL_TOL)
    with pytest.raises(ValueError, match="image_size"):
        gmm(jnp.zeros((1, 32, 48, 2)), jnp.zeros((1, 32, 48, 1)))
    with pytest.raises(ValueError, match="too small"):
        GeometricMatcher(2, 1, image_size=TINY_SIZE, ngf=4, n_layers=3, rngs=rngs())


def test_gmm_full_shapes():
    extractor = nnx.eval_shape(lambda: FeatureExtractor(2, rngs=rngs()))
    assert extractor.output_size(*IMAGE_SIZE) == (16, 12)
    theta = jax.eval_shape(
        lambda a, b: build("gmm", "gmm", "full")(a, b),
        jax.ShapeDtypeStruct((3, *IMAGE_SIZE, 2), jnp.float32),
        jax.ShapeDtypeStruct((3, *IMAGE_SIZE, 1), jnp.float32),
    )
    assert theta.shape == (3, 50)


# ---------------------------------------------------------------------------------------------
# warp_gan.py


@pytest.fixture(scope="module")
def tiny_warp_gan() -> WarpGANGenerator:
    return build("warp_gan", "generator")


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


def test_warp_gan_tiny_forward_float32_and_bfloat16_start_at_identity_match(tiny_warp_gan):
    ref_parsing = one_hot_parsing(17)
    inputs = (
        uniform(18, (BATCH, *TINY_SIZE, 44)),  # main: clothes, reference, pose, S_t
        uniform(19, (BATCH, *TINY_SIZE, 23)),  # reference: reference image, S_ref
        one_hot_parsing(21),
        ref_parsing,
    )
    out, out_bf16 = float32_and_bfloat16_outputs(
        tiny_warp_gan, lambda: build("warp_gan", "generator", dtype="bfloat16"), "__call__",
        *inputs)
    assert out.image.shape == (BATCH, *TINY_SIZE, 3)
    assert np.abs(np.asarray(out.image)).max() <= 1.0
    assert_close_in_bfloat16(out_bf16.image, out.image)
    for match in (out.match, out_bf16.match):
        # Zero-initialised regressors: identity affine, zero TPS offsets, S_ref unchanged.
        assert match.affine.dtype == match.theta.dtype == jnp.float32
        np.testing.assert_allclose(match.affine, np.tile([1.0, 0, 0, 0, 1, 0], (BATCH, 1)))
        np.testing.assert_array_equal(match.theta, np.zeros((BATCH, 50)))
        np.testing.assert_allclose(match.warped_ref_parsing, ref_parsing, atol=1e-5)
    with pytest.raises(ValueError, match="image_size"):
        tiny_warp_gan.match_parsing(jnp.zeros((1, 32, 48, 20)), jnp.zeros((1, 32, 48, 20)))


def test_warp_gan_full_shapes():
    def run(*args):
        return build("warp_gan", "generator", "full")(*args)

    channels = (44, 23, NUM_LABELS, NUM_LABELS)
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


def test_refinement_tiny_forward_float32_and_bfloat16():
    render = build("refine", "render")
    inputs = uniform(24, (BATCH, *TINY_SIZE, 24), 0, 1)  # warped clothes, coarse, pose
    mask, mask_bf16 = float32_and_bfloat16_outputs(
        render, lambda: build("refine", "render", dtype="bfloat16"), "__call__", inputs)
    assert mask.shape == (BATCH, *TINY_SIZE, 1)
    assert_close_in_bfloat16(mask_bf16, mask)
    mask = np.asarray(mask)
    assert mask.min() > 0.0 and mask.max() < 1.0


def test_generators_full_shapes():
    x24 = jax.ShapeDtypeStruct((1, *IMAGE_SIZE, 24), jnp.float32)
    parsing = jax.eval_shape(lambda x: build("parsing", "generator", "full")(x), x24)
    assert parsing.shape == (1, *IMAGE_SIZE, NUM_LABELS)
    bottleneck = jax.eval_shape(lambda x: build("parsing", "generator", "full").encoder(x), x24)
    assert bottleneck.shape == (1, 32, 24, 512)
    mask = jax.eval_shape(lambda x: build("refine", "render", "full")(x), x24)
    assert mask.shape == (1, *IMAGE_SIZE, 1)


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
    assert param_count(lambda: build("parsing", "discriminator", "full")) == 2 * one_scale

    parsing = encoder_params(24) + trunk_decoder_params(NUM_LABELS)
    assert param_count(lambda: build("parsing", "generator", "full")) == parsing
    refine = encoder_params(24) + trunk_decoder_params(1)
    assert param_count(lambda: build("refine", "render", "full")) == refine

    gmm = extractor_params(2) + extractor_params(1) + regressor_params(50)
    assert param_count(lambda: build("gmm", "gmm", "full")) == gmm

    matcher = extractor_params(NUM_LABELS) + regressor_params(6) + regressor_params(50)
    gate = conv_params(1, 1024, 512) + conv_params(1, 512, 512)
    warp_gan = (
        matcher + encoder_params(23) + encoder_params(44) + gate + trunk_decoder_params(3)
    )
    assert param_count(lambda: build("warp_gan", "generator", "full")) == warp_gan
    d_warp = [41, 64, 128, 256, 512, 1]  # pose 18 + parsing 20 + image 3
    assert param_count(lambda: build("warp_gan", "discriminator", "full")) == 2 * sum(
        conv_params(4, a, b) for a, b in pairs(d_warp))


def test_presets():
    assert FULL.parsing.to_dict() == dict(
        ngf=64, n_downsample=3, n_blocks=9, convs_per_block=2, norm="batch", upsample="transpose"
    )
    # The paper's transposed convolutions at full size; resize-convolutions at the tiny size.
    assert {TINY[net].upsample for net in ("parsing", "warp_gan", "refine")} == {"resize"}
    assert (FULL.discriminator.ndf, FULL.discriminator.n_layers, FULL.discriminator.num_d) == (
        64, 3, 2
    )
    assert (FULL.gmm.ngf, FULL.gmm.grid_size, TINY.gmm.ngf, TINY.parsing.ngf) == (64, 5, 8, 8)
    with pytest.raises(ValueError, match="variant"):
        base_config("parsing", "huge")



# ---------------------------------------------------------------------------------------------
# Compute dtype of the pieces, gradients under bfloat16, trunk rematerialisation.


def all_equations(jaxpr):
    """Every equation of a jaxpr, those of nested jaxprs (jit, remat, custom_jvp) included."""
    for equation in jaxpr.eqns:
        yield equation
        for inner in jaxprs_in_params(equation.params):
            yield from all_equations(inner)


def test_bfloat16_pieces_output_dtypes_and_every_conv_runs_in_bfloat16():
    generator = nnx.eval_shape(
        lambda: build("warp_gan", "generator", dtype="bfloat16"))
    graph, state = nnx.split(generator)

    def output_dtypes(method, *channels_or_shapes):
        """Dtypes of method(generator, *float32 inputs), traced only (no compute)."""
        shapes = [(BATCH, *TINY_SIZE, c) if isinstance(c, int) else c for c in channels_or_shapes]
        out = jax.eval_shape(
            lambda s, *xs: method(nnx.merge(graph, s), *xs),
            state,
            *[jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes],
        )
        return jax.tree.map(lambda leaf: leaf.dtype, out)

    bf16, f32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
    bottleneck = (BATCH, 16, 12, 32)  # 64x48 / 2**2, ngf 8 * 2**2
    volume = (BATCH, 8, 6, 48)  # matcher features 8x6 -> correlation over 48 locations
    assert output_dtypes(lambda g, x: g.ref_encoder(x), 23) == bf16
    assert output_dtypes(lambda g, x: g.trunk.blocks[0](x), bottleneck) == bf16
    assert output_dtypes(lambda g, x: g.trunk(x), bottleneck) == bf16
    assert output_dtypes(lambda g, x: g.decoder(x), bottleneck) == f32
    assert output_dtypes(lambda g, a, b: g.gate(a, b), bottleneck, bottleneck) == bf16
    assert output_dtypes(lambda g, x: g.matcher.extractor(x), NUM_LABELS) == bf16
    assert output_dtypes(lambda g, x: g.matcher.affine_regressor(x), volume) == f32
    assert output_dtypes(lambda g, a, b: g.matcher(a, b), NUM_LABELS, NUM_LABELS) == (f32, f32)

    channels = (44, 23, NUM_LABELS, NUM_LABELS)
    jaxpr = jax.make_jaxpr(lambda s, *xs: nnx.merge(graph, s)(*xs))(
        state, *[jnp.zeros((BATCH, *TINY_SIZE, c)) for c in channels]
    )
    convs = [e for e in all_equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
    # matcher extractor 5 convs x 3 calls (S_t, S_ref, aligned S_ref) + 2 regressors x 4
    # + 2 encoders x 3 + gate 2 + trunk 2 x 2 + decoder 3
    assert len(convs) == 15 + 8 + 6 + 2 + 4 + 3
    assert {v.aval.dtype for e in convs for v in e.invars} == {bf16}


def tiny_generator(dtype=jnp.float32, remat: bool = False) -> ResnetGenerator:
    """3 -> 3 channels, ngf 4, one downsampling, two residual blocks; seed 0 parameters."""
    return ResnetGenerator(
        3, 3, ngf=4, n_downsample=1, n_blocks=2, dtype=dtype, remat=remat, rngs=rngs()
    )


@pytest.fixture(scope="module")
def tiny_generator_runs():
    """Output and parameter gradients of an L2 loss, plus the jaxpr, for the tiny generator
    in float32, with bfloat16 compute, and with remat; all three share the float32 parameters.
    """
    x = uniform(40, (BATCH, 8, 6, 3))
    target = uniform(41, (BATCH, 8, 6, 3))
    state = nnx.state(tiny_generator())

    def output_and_grads(graph, state, x, target):
        def loss_fn(generator):
            out = generator(x)
            return jnp.mean((out - target) ** 2), out

        (_, out), grads = nnx.value_and_grad(loss_fn, has_aux=True)(nnx.merge(graph, state))
        return out, grads

    runs = {}
    for name, factory in {
        "float32": tiny_generator,
        "bfloat16": lambda: tiny_generator(jnp.bfloat16),
        "remat": lambda: tiny_generator(remat=True),
    }.items():
        graph = nnx.graphdef(nnx.eval_shape(factory))
        traced = jax.jit(output_and_grads, static_argnums=0, compiler_options=FAST_COMPILE).trace(
            graph, state, x, target
        )
        runs[name] = (*traced.lower().compile()(state, x, target), traced.jaxpr)
    return runs


def test_bfloat16_gradients_are_float32_finite_and_aligned(tiny_generator_runs):
    out, grads, _ = tiny_generator_runs["float32"]
    out_bf16, grads_bf16, _ = tiny_generator_runs["bfloat16"]
    assert_close_in_bfloat16(out_bf16, out)
    leaves, leaves_bf16 = jax.tree.leaves(grads), jax.tree.leaves(grads_bf16)
    params = jax.tree.leaves(nnx.state(nnx.eval_shape(tiny_generator), nnx.Param))
    assert [g.shape for g in leaves_bf16] == [g.shape for g in leaves] == [p.shape for p in params]
    assert {g.dtype for g in leaves_bf16} == {jnp.dtype(jnp.float32)}
    flat = np.concatenate([np.ravel(g) for g in leaves])
    flat_bf16 = np.concatenate([np.ravel(g) for g in leaves_bf16])
    assert np.isfinite(flat_bf16).all()
    # Same descent direction as float32 (measured cosine 0.997; unrelated vectors give ~0).
    cosine = flat @ flat_bf16 / (np.linalg.norm(flat) * np.linalg.norm(flat_bf16))
    assert cosine > 0.99


def test_remat_gives_same_output_and_gradients_and_checkpoints(tiny_generator_runs):
    out, grads, jaxpr = tiny_generator_runs["float32"]
    out_remat, grads_remat, jaxpr_remat = tiny_generator_runs["remat"]
    np.testing.assert_allclose(out_remat, out, rtol=1e-6, atol=1e-7)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads_remat, grads
    )

    def remat_count(closed_jaxpr) -> int:
        names = [e.primitive.name for e in all_equations(closed_jaxpr.jaxpr)]
        return sum("remat" in name or "checkpoint" in name for name in names)

    assert remat_count(jaxpr) == 0
    assert remat_count(jaxpr_remat) == 2  # one per residual block
