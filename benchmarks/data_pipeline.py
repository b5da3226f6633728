"""Input-pipeline throughput: the grain pipeline against a plain single-process PIL loop.

    python benchmarks/data_pipeline.py [--people 24] [--batch-size 8] [--batches 20]
                                       [--warmup 2] [--workdir DIR]

Writes a synthetic MPV set, builds it into the array_record data set, then times, at 256x192:
- `mgvton_jax.data.pipeline.make_dataset(..., workers=W, flip_probability=0.5)` for W in (0, 2);
- the naive loader a user would write: per example, read the triplet's files from the MPV
  directory with PIL (`examples.load_triplet`), decode, flip with probability 0.5, compact
  (`examples.compact_example`), and np.stack the examples into batches, all in this process.
Every loader yields batches of one layout (checked): compact batches keyed as
`examples.COMPACT_INPUTS` (uint8 pictures and label ids, keypoint coordinates; the jitted step
expands them into model inputs on the device). Warm-up batches (worker start-up included) are
not timed. "images per CPU s" is images per second of one core: the batches' images over the
CPU seconds every thread and worker process spent on them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import tensorflow_datasets as tfds
from absl import flags

from mgvton_jax import constants
from mgvton_jax.data import build, examples, layouts, pairs, pipeline, synth

FLIP_PROBABILITY = 0.5
# Batch 40 in 18.6 ms: the Warp-GAN step's BF16 FLOP bound on one H100 (benchmarks/README.md).
H100_WARP_GAN_IMAGES_PER_S = 2150
GRAIN_WORKER_COUNTS = (0, 2)
Batch = dict[str, np.ndarray]


def prepare_data(workdir: Path, num_people: int, seed: int) -> tuple[Path, Path]:
    """Writes the synthetic MPV set and builds it, reusing both when already in `workdir`.

    Returns:
      (mpv_dir, data_dir): the raw MPV-layout directory and the built data set directory.
    """
    mpv_dir = workdir / f"synthetic_mpv_{num_people}_seed{seed}"
    data_dir = workdir / f"built_{num_people}_seed{seed}"
    done = mpv_dir / ".complete"
    if not done.exists():
        start = time.perf_counter()
        summary = synth.write_synthetic_mpv(mpv_dir, num_people, seed)
        done.touch()
        print(f"wrote {summary['images']} synthetic photos of {num_people} people in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    report = build.build_dataset(mpv_dir, data_dir, progress=False)
    print(f"built data set ({report['written']}) in {time.perf_counter() - start:.1f} s",
          flush=True)
    return mpv_dir, data_dir


def pil_batches(mpv_dir: Path, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless batches read straight from the MPV directory, one example at a time.

    Uses the training triplets in both directions (as the built train split does), reshuffled
    every epoch by a NumPy generator seeded with `seed`.
    """
    source = layouts.open_source(mpv_dir)
    triplets = pairs.with_both_directions(
        t for t in source.pair_list.triplets if t.split == "train")
    rng = np.random.default_rng(seed)

    def endless_examples() -> Iterator[dict]:
        while True:
            for index in rng.permutation(len(triplets)):
                record, _ = examples.load_triplet(source.layout, triplets[index])
                raw = examples.decode_record(record)
                if rng.random() < FLIP_PROBABILITY:
                    raw = examples.flip_raw(raw)
                yield examples.compact_example(raw)

    stream = endless_examples()
    while True:
        chunk = list(itertools.islice(stream, batch_size))
        yield {key: np.stack([example[key] for example in chunk]) for key in chunk[0]}


def check_batch(batch: Batch, batch_size: int) -> None:
    """Raises ValueError unless `batch` is a compact batch of batch_size at 256x192."""
    expected = {key: ((batch_size, *examples.compact_shape(key, constants.IMAGE_SIZE)),
                      np.dtype(dtype))
                for key, (dtype, _) in examples.COMPACT_INPUTS.items()}
    found = {key: (tuple(batch[key].shape), batch[key].dtype) for key in expected
             if key in batch}
    if found != expected:
        raise ValueError(f"unexpected batch layout {found}; expected {expected}")


def cpu_seconds() -> float:
    """User + system CPU seconds used so far by this process and its live child processes."""
    process = psutil.Process()
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def time_batches(next_batch: Callable[[], Batch], batch_size: int, warmup: int,
                 timed: int) -> dict[str, float]:
    """Draws `warmup` untimed then `timed` timed batches.

    Returns:
      {"first_batch_s": seconds to the first batch, "batches_per_s": over the timed batches,
       "cpu_s_per_batch": CPU seconds (all threads and worker processes) per timed batch}.
    """
    start = time.perf_counter()
    check_batch(next_batch(), batch_size)
    first_batch_s = time.perf_counter() - start
    for _ in range(warmup - 1):
        next_batch()
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for _ in range(timed):
        next_batch()
    return {"first_batch_s": first_batch_s,
            "batches_per_s": timed / (time.perf_counter() - start),
            "cpu_s_per_batch": (cpu_seconds() - start_cpu) / timed}


def time_grain(data_dir: Path, batch_size: int, workers: int, warmup: int, timed: int,
               seed: int) -> dict[str, float]:
    """`time_batches` over the grain pipeline with `workers` worker processes."""
    dataset = pipeline.make_dataset(data_dir, "train", batch_size, seed=seed, workers=workers,
                                    flip_probability=FLIP_PROBABILITY)
    iterator = iter(dataset)
    try:
        return time_batches(lambda: next(iterator), batch_size, warmup, timed)
    finally:
        iterator.close()


def print_table(rows: list[tuple[str, dict[str, float]]], batch_size: int) -> None:
    """Prints loader, batches/s, images/s, ratio to the PIL loop (the first row), CPU s per
    batch, images per CPU second and seconds to the first batch."""
    baseline = rows[0][1]["batches_per_s"]
    header = (f"| {'loader':<28} | batches/s | images/s | vs PIL loop | CPU s/batch "
              "| images per CPU s | first batch s |")
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for name, result in rows:
        rate = result["batches_per_s"]
        per_core = batch_size / result["cpu_s_per_batch"]
        print(f"| {name:<28} | {rate:9.2f} | {rate * batch_size:8.1f} | "
              f"{rate / baseline:10.2f}x | {result['cpu_s_per_batch']:11.2f} | "
              f"{per_core:16.1f} | {result['first_batch_s']:13.2f} |")
    print(f"- demand: an H100 at its bound runs the full-size Warp-GAN step at about "
          f"{H100_WARP_GAN_IMAGES_PER_S} images/s, {H100_WARP_GAN_IMAGES_PER_S / 16:.0f} images/s "
          "per core of a 16-core host (benchmarks/README.md).")


def main() -> None:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=24,
                        help="synthetic people (2-3 poses each)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed batches first (>= 1; worker start-up falls in these)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the data sets go (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.warmup < 1 or args.batches < 1:
        parser.error("--warmup and --batches must be >= 1")
    # grain's worker processes read absl flags, which a plain script never parses.
    flags.FLAGS.mark_as_parsed()
    tfds.disable_progress_bar()

    with tempfile.TemporaryDirectory(prefix="mgvton_bench_") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        mpv_dir, data_dir = prepare_data(workdir, args.people, args.seed)
        print(f"{platform.machine()}, {os.cpu_count()} CPUs, load "
              f"average {os.getloadavg()[0]:.2f}; batch {args.batch_size} at "
              f"{constants.IMAGE_HEIGHT}x{constants.IMAGE_WIDTH}, {args.warmup} warm-up + "
              f"{args.batches} timed batches per loader", flush=True)
        baseline = pil_batches(mpv_dir, args.batch_size, args.seed)
        rows = [("PIL loop (1 process)",
                 time_batches(lambda: next(baseline), args.batch_size, args.warmup,
                              args.batches))]
        for workers in GRAIN_WORKER_COUNTS:
            rows.append((f"grain, workers={workers}",
                         time_grain(data_dir, args.batch_size, workers, args.warmup,
                                    args.batches, args.seed)))
    print_table(rows, args.batch_size)


if __name__ == "__main__":
    main()
