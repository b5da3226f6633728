"""How long the person analyzer takes on one photo, as `prep analyze` and try-on run it.

    python benchmarks/analyze.py [--analyzer DIR] [--photo P.jpg] [--repeats 20]

The shipped analyzer (or --analyzer) on one photo (default: the first shipped VITON example)
at its own size and upscaled to 1536x2048 (a phone photo): the time to load the model, the
first call (compile included) and the median of --repeats calls of `Analyzer.__call__` (fit
into the frame, the network, decoding the joints, the parsing resized to the photo's size),
with the network alone beside it. Then `python -m mgvton_jax.prep analyze` on the photo as a
new process, start to finish (Python and JAX start-up included): what a user waits for.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from mgvton_jax.analyze import Analyzer
from mgvton_jax.data import readers
from mgvton_jax.export import SHIPPED_EXAMPLES
from mgvton_jax.tryon_inputs import Fit

PHONE_HW = (2048, 1536)


def _median_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyzer", help="analyzer directory (default: the shipped one)")
    parser.add_argument("--photo", default=str(next(iter(sorted(
        (SHIPPED_EXAMPLES / "test" / "image").glob("*.jpg"))))))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}, "
          f"jax {jax.__version__}; photo {args.photo}")
    began = time.perf_counter()
    analyzer = Analyzer.load(args.analyzer)
    print(f"load: {time.perf_counter() - began:.2f} s")
    photo = readers.read_rgb(args.photo)
    phone = np.asarray(Image.fromarray(photo).resize(PHONE_HW[::-1], Image.BICUBIC))
    print("| photo | first call s | call s (median) | network s (median) |")
    print("| --- | --- | --- | --- |")
    for picture in (photo, phone):
        began = time.perf_counter()
        analyzer(picture)
        first = time.perf_counter() - began
        framed = Fit.of(picture.shape[:2], analyzer.image_size).image(picture, 255,
                                                                     Image.BILINEAR)[None]
        call = _median_seconds(lambda picture=picture: analyzer(picture), args.repeats)
        network = _median_seconds(lambda framed=framed: analyzer.maps(framed), args.repeats)
        print(f"| {picture.shape[1]}x{picture.shape[0]} | {first:.3f} | {call:.3f} | "
              f"{network:.4f} |")
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mgvton_jax.prep", "analyze", args.photo, "--out", out]
        if args.analyzer:
            command += ["--analyzer", args.analyzer]
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        print(f"python -m mgvton_jax.prep analyze (one photo, new process): "
              f"{time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
