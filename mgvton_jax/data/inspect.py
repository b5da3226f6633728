"""Shows a batch of the built data set: a summary on the console and a PNG grid.

    python -m mgvton_jax.data.inspect --data-dir D [--split train] [--out batch.png]

Columns: reference, target, clothes, clothes mask, target pose, hair/face/body-shape masks,
reference and target parsing (LIP palette), reference without clothes.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import numpy as np

from mgvton_jax import visualize
from mgvton_jax.data import examples, pipeline

COLUMNS = (
    "reference_image", "target_image", "clothes", "clothes_mask", "target_pose", "hair_mask",
    "face_mask", "body_shape", "reference_parsing", "target_parsing",
    "reference_without_clothes",
)


def describe_batch(batch: Mapping[str, np.ndarray]) -> str:
    """One line per entry: shape, dtype, min, max, mean."""
    lines = []
    for key in examples.MODEL_INPUT_CHANNELS:
        value = batch[key]
        lines.append(f"{key:28s} {str(value.shape):20s} {value.dtype} min {value.min():+.3f} "
                     f"max {value.max():+.3f} mean {value.mean():+.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="where the data set was built")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flip-probability", type=float, default=0.0)
    parser.add_argument("--out", default="batch.png", help="PNG file to write")
    args = parser.parse_args(argv)
    dataset = pipeline.make_dataset(args.data_dir, args.split, args.batch_size, seed=args.seed,
                                    flip_probability=args.flip_probability, num_epochs=1)
    iterator = iter(dataset)
    try:
        batch = examples.model_inputs(next(iterator))
    finally:
        iterator.close()
    batch = {key: np.asarray(value) for key, value in batch.items()}
    print(describe_batch(batch))
    visualize.save_png(args.out, visualize.batch_grid(batch, COLUMNS))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
