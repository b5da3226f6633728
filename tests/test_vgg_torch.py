"""The VGG19 converter and features against PyTorch (torch is in the test extra)."""

import numpy as np
import torch

from mgvton_jax.models import vgg
from mgvton_jax.tools import convert_vgg19


def _torchvision_features(generator):
    """torchvision's vgg19().features layout up to relu5_1, with random weights."""
    layers, in_channels = [], 3
    for block_index, (block, width) in enumerate(zip(vgg.VGG19_BLOCKS, vgg.VGG19_BLOCK_WIDTHS,
                                                     strict=True)):
        if block_index:
            layers.append(torch.nn.MaxPool2d(2, 2))
        for _ in block:
            conv = torch.nn.Conv2d(in_channels, width, 3, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0, 0.05, generator=generator)
                conv.bias.normal_(0, 0.05, generator=generator)
            layers += [conv, torch.nn.ReLU()]
            in_channels = width
    return torch.nn.Sequential(*layers)  # features[0:30], up to relu5_1


def test_converted_torch_weights_reproduce_torch_features(tmp_path):
    features = _torchvision_features(torch.Generator().manual_seed(0))
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    torch.save(state, tmp_path / "vgg19.pth")
    convert_vgg19.main(["--torch-weights", str(tmp_path / "vgg19.pth"),
                        "--out", str(tmp_path / "vgg19.npz")])
    params = vgg.load_vgg19_params(tmp_path / "vgg19.npz")

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 32, 48, 3)).astype(np.float32)
    ours = vgg.vgg_features(params, images, imagenet_normalize=False)
    taps = {1: 0, 6: 1, 11: 2, 20: 3, 29: 4}  # relu1_1 .. relu5_1 in torchvision's indexing
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        for index, layer in enumerate(features):
            x = layer(x)
            if index in taps:
                expected = x.permute(0, 2, 3, 1).numpy()
                # float32 sums in another order; features grow to ~100 by relu5_1
                np.testing.assert_allclose(np.asarray(ours[taps[index]]), expected,
                                           rtol=1e-3, atol=1e-5 * np.abs(expected).max())
