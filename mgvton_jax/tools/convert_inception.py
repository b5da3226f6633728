"""Converts pytorch-fid's Inception weights (.pth) to the .npz that evaluation reads.

    python -m mgvton_jax.tools.convert_inception --torch-weights FILE.pth --out inception.npz

Nothing is downloaded: fetch the file yourself (see `inception_weights.missing_weights_message`).
torch is needed for this one-off conversion only; evaluation reads the .npz without it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mgvton_jax.metrics import inception, inception_weights


def convert_arrays(arrays: Mapping[str, np.ndarray], source: str = "state dict"
                   ) -> dict[str, np.ndarray]:
    """The arrays the network needs, float32, under their state-dict keys; checked.

    Raises:
      WeightsError: a key is missing or mis-shaped (named in the message).
    """
    expected = inception.expected_arrays()
    for key, shape in expected.items():
        if key not in arrays:
            raise inception_weights.WeightsError(f"{source}: lacks {key}")
        if tuple(arrays[key].shape) != shape:
            raise inception_weights.WeightsError(
                f"{source}: {key} has shape {tuple(arrays[key].shape)}, expected {shape}")
    return {key: np.asarray(arrays[key], np.float32) for key in expected}


def write_npz(arrays: Mapping[str, np.ndarray], out: str | os.PathLike) -> None:
    """Writes exactly `out` (no suffix added), via a temporary file and a rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".npz", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mgvton_jax.tools.convert_inception",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-weights", required=True,
                        help=f"pytorch-fid's {inception_weights.WEIGHTS_FILE}")
    parser.add_argument("--out", required=True, help="the .npz to write")
    args = parser.parse_args(argv)
    try:
        arrays = convert_arrays(inception_weights.read_arrays(args.torch_weights),
                                args.torch_weights)
    except inception_weights.WeightsError as err:
        raise SystemExit(f"error: {err}") from None
    write_npz(arrays, args.out)
    print(f"wrote {args.out}: {len(arrays)} arrays")


if __name__ == "__main__":
    main()
