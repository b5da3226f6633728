"""Converts torchvision's VGG19 weights to the .npz that `load_vgg19_params` reads.

    python -m mgvton_jax.tools.convert_vgg19 --torch-weights vgg19-dcbb9e9d.pth --out vgg19.npz

Nothing is downloaded: fetch torchvision's file yourself. torch is needed for this one-off
conversion only (`pip install torch==2.13.0`, the CPU build); training never imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from mgvton_jax.models import vgg


def torch_feature_indices() -> dict[str, int]:
    """Our layer name -> index of that convolution in torchvision's `vgg19().features`.

    Each convolution is followed by a ReLU, and a max-pool precedes every block but the first,
    so conv1_1 -> 0, conv1_2 -> 2, conv2_1 -> 5, ..., conv5_1 -> 28.
    """
    indices = {}
    index = 0
    for block_index, block in enumerate(vgg.VGG19_BLOCKS):
        if block_index:
            index += 1  # the max-pool
        for name in block:
            indices[name] = index
            index += 2  # the convolution and its ReLU
    return indices


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """torchvision VGG19 state dict (as NumPy) -> our parameter pytree.

    Args:
      state: `features.{i}.weight` (C_out, C_in, 3, 3) OIHW and `features.{i}.bias` (C_out,)
        arrays; keys not needed up to conv5_1 (later convs, the classifier) are ignored.
    Returns:
      {"conv1_1": {"kernel": (3, 3, C_in, C_out) HWIO float32, "bias": (C_out,) float32}, ...}.
    Raises:
      ValueError: a needed key is missing or has the wrong shape (the torch key is named).
    """
    expected_shapes = vgg.vgg19_param_shapes()
    params = {}
    for name, index in torch_feature_indices().items():
        kernel_h, kernel_w, in_channels, out_channels = expected_shapes[name]["kernel"]
        torch_shapes = {
            f"features.{index}.weight": (out_channels, in_channels, kernel_h, kernel_w),
            f"features.{index}.bias": (out_channels,),
        }
        for key, shape in torch_shapes.items():
            if key not in state:
                raise ValueError(f"state dict lacks {key!r} ({name}).")
            if tuple(state[key].shape) != shape:
                raise ValueError(
                    f"{key!r} ({name}) has shape {tuple(state[key].shape)}, expected {shape}."
                )
        weight, bias = (np.asarray(state[key], np.float32) for key in torch_shapes)
        params[name] = {"kernel": np.transpose(weight, (2, 3, 1, 0)), "bias": bias}
    return params


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mgvton_jax.tools.convert_vgg19",
        description=(
            "Convert torchvision's VGG19 ImageNet weights (IMAGENET1K_V1, file "
            f"{vgg.TORCHVISION_VGG19_FILE}) into the .npz used by the perceptual loss. Nothing "
            f"is downloaded: get the file yourself from {vgg.TORCHVISION_VGG19_URL} (or copy "
            "it from a torch hub cache, ~/.cache/torch/hub/checkpoints/). Needs torch "
            "(pip install torch) for this conversion only."
        ),
    )
    parser.add_argument(
        "--torch-weights",
        required=True,
        help=f"path to torchvision's {vgg.TORCHVISION_VGG19_FILE} (a vgg19 state dict)",
    )
    parser.add_argument("--out", required=True, help="output .npz path (written as given)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    args = _parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit(
            "convert_vgg19 needs PyTorch to read the .pth file: pip install torch==2.13.0 "
            "(needed for this conversion only; mgvton_jax itself does not use torch)."
        )
    state = torch.load(args.torch_weights, map_location="cpu", weights_only=True)
    arrays = {key: value.detach().cpu().numpy() for key, value in state.items()}
    vgg.save_vgg19_params(convert_state_dict(arrays), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
