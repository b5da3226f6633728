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
