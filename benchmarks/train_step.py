"""Training-step time per stage: the package's jitted JAX step beside a PyTorch G + D step.

    python benchmarks/train_step.py [--sizes tiny,full] [--stages parsing,gmm,warp_gan,refine]
                                    [--steps N] [--torch-threads T]

For each size and stage: `mgvton_jax.training.loop.compile_stage` with untrained frozen earlier
stages, on a random compact batch (`examples.COMPACT_INPUTS`, expanded in the step; full:
batch 1 at 256x192; tiny: the tiny config's batch at 64x48). The first call (trace + XLA
compile + one step), less one step time, is reported as the compile time; the step time is the
median of --steps
further calls (default 10 tiny, 3 full). Beside it, the same generator + discriminator step
in PyTorch (`torch_reference.py`, CPU, float32, same sizes from the config, one untimed warm-up
step) for parsing, warp_gan and refine. The perceptual loss uses random VGG19 weights (full
widths at the full size).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np
from flax import nnx

from mgvton_jax import config_lib, constants, stages
from mgvton_jax.data import examples
from mgvton_jax.stages import parsing, warp_gan
from mgvton_jax.training import loop

try:
    import torch
    import torch_reference
except ImportError:  # torch is a benchmark-only dependency
    torch = None

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SIZES = ("tiny", "full")
FULL_BATCH_SIZE = 1  # CPU: one 256x192 example per step
DEFAULT_STEPS = {"tiny": 10, "full": 3}

NOTES = (
    "JAX compile s: the first call (tracing + XLA compilation + one step) less one step s. "
    "Step s: median of the timed steps after it; torch: median after one untimed step.",
    "warp_gan is approximate: the JAX step also runs the parsing matcher, the reference encoder "
    "with bottleneck warping and the frozen parsing + GMM forwards; the torch stand-in is a "
    "GlobalGenerator 44->3 + 2-scale D on 41 channels + VGG19 on fake and real.",
    "refine: the JAX step also runs the frozen parsing, GMM and Warp-GAN forwards; torch runs "
    "only the GlobalGenerator 24->1 + VGG19.",
    "gmm: no torch reference.",
)


def stage_config(stage: str, size: str) -> ml_collections.ConfigDict:
    """The stage's config at `size`, with the benchmark batch and random VGG19 weights."""
    cfg = config_lib.load_config_file(CONFIG_DIR / f"{stage}.py", size)
    if size == "full":
        cfg.train.batch_size = FULL_BATCH_SIZE
        cfg.perceptual.random_width_divisor = 1
    cfg.perceptual.random = True
    cfg.perceptual.weights_path = ""
    return cfg


def random_batch(cfg: ml_collections.ConfigDict, rng: np.random.Generator
                 ) -> dict[str, np.ndarray]:
    """A random compact batch (`examples.COMPACT_INPUTS`) of the config's batch and size:
    pictures uniform uint8, masks {0, 1}, parsings uniform over the labels, every joint
    present at a uniform position."""
    batch, (height, width) = cfg.train.batch_size, cfg.image_size
    draws = {
        "image": lambda shape: rng.integers(0, 256, shape, np.uint8),
        "mask": lambda shape: rng.integers(0, 2, shape, np.uint8),
        "parsing": lambda shape: rng.integers(0, constants.NUM_LABELS, shape, np.uint8),
        "keypoints": lambda shape: np.concatenate(
            [rng.uniform(2, [width - 1, height - 1], (*shape[:-1], 2)), np.ones((*shape[:-1], 1))],
            axis=-1).astype(np.float32),
    }
    kinds = {"reference_image": "image", "target_image": "image", "clothes": "image",
             "clothes_mask": "mask", "reference_parsing": "parsing",
             "target_parsing": "parsing", "target_keypoints": "keypoints"}
    if set(kinds) != set(examples.COMPACT_INPUTS):
        raise ValueError(f"compact inputs changed: {sorted(examples.COMPACT_INPUTS)}")
    return {key: draws[kind]((batch, *examples.compact_shape(key, cfg.image_size)))
            for key, kind in kinds.items()}


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    """Wall-clock seconds of each of `count` successive calls of `call`."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def time_jax(cfg: ml_collections.ConfigDict, steps: int) -> tuple[float, list[float]]:
    """Compiles the stage's step and times it.

    Returns:
      (seconds of the first call, seconds of each of the `steps` calls after it).
    Raises:
      FloatingPointError: a non-finite metric.
    """
    frozen = {name: stages.build_networks(name, cfg, nnx.Rngs(0),
                                          only=stages.get(name).inference)
              for name in stages.required_stages(cfg.stage, cfg)}
    compiled = loop.compile_stage(cfg, frozen)
    batch = compiled.to_device(random_batch(cfg, np.random.default_rng(cfg.seed)))
    carry = {"state": compiled.state}

    def one_step():
        # The state is donated: always continue from the returned one.
        carry["state"], carry["metrics"] = compiled.step(carry["state"], batch)
        jax.block_until_ready((carry["state"], carry["metrics"]))

    first_call_s, *step_times = time_calls(one_step, steps + 1)
    bad = {k: float(v) for k, v in carry["metrics"].items() if not math.isfinite(float(v))}
    if bad:
        raise FloatingPointError(f"{cfg.stage}: non-finite metrics {bad}")
    return first_call_s, step_times


def torch_step(cfg: ml_collections.ConfigDict) -> Callable[[], float] | None:
    """The PyTorch reference step of cfg.stage (None for stages without one)."""
    def sizes(section, fields):
        return {field: section[field] for field in fields}

    model, train = cfg.model, dict(cfg.train)
    common = dict(batch=cfg.train.batch_size, image_size=tuple(cfg.image_size), seed=cfg.seed)
    generator_fields = torch_reference.GENERATOR_FIELDS
    discriminator = sizes(model.discriminator, torch_reference.DISCRIMINATOR_FIELDS)
    vgg = dict(vgg_width_divisor=cfg.perceptual.random_width_divisor,
               imagenet_normalize=cfg.perceptual.imagenet_normalize)
    if cfg.stage == "parsing":
        return torch_reference.parsing_step(
            sizes(model.parsing, generator_fields), discriminator, train, dict(cfg.loss),
            condition_channels=stages.channels(parsing.CONDITION),
            num_labels=constants.NUM_LABELS, **common)
    if cfg.stage == "warp_gan":
        return torch_reference.warp_gan_step(
            sizes(model.warp_gan, generator_fields), discriminator, train, dict(cfg.loss),
            feature_matching_layers=cfg.loss_options.feature_matching_layers,
            generator_channels=stages.channels(warp_gan.MAIN_INPUTS),
            condition_channels=stages.channels(warp_gan.CONDITION), **vgg, **common)
    if cfg.stage == "refine":
        return torch_reference.refine_step(
            sizes(model.refine, generator_fields), train, dict(cfg.loss),
            pose_channels=constants.NUM_KEYPOINTS, **vgg, **common)
    return None


def time_torch(cfg: ml_collections.ConfigDict, steps: int) -> list[float] | None:
    """Seconds of each of `steps` PyTorch reference steps after one warm-up; None without one.

    Raises:
      FloatingPointError: a non-finite loss.
    """
    step = torch_step(cfg)
    if step is None:
        return None
    losses = [step()]
    times = time_calls(lambda: losses.append(step()), steps)
    if not all(math.isfinite(loss) for loss in losses):
        raise FloatingPointError(f"{cfg.stage}: torch losses {losses}")
    return times


def machine_summary(torch_threads: int | None) -> str:
    """Date, CPU, core count, load, library versions and thread counts, one line."""
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    torch_part = (f"torch {torch.__version__} ({torch_threads} threads)" if torch
                  else "torch not installed")
    return (f"{datetime.date.today()}, {model}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}; jax {jax.__version__} on {jax.devices()[0].platform} "
            f"x{jax.device_count()}, {torch_part}")


def format_row(cells: list[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def format_times(times: list[float] | None) -> str:
    """Seconds to 3 decimals, space-separated; "-" for none."""
    return " ".join(f"{t:.3f}" for t in times) if times else "-"


def main() -> None:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="tiny,full")
    parser.add_argument("--stages", default=",".join(stages.PIPELINE))
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per measurement (default {DEFAULT_STEPS})")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own, one per core)")
    args = parser.parse_args()
    sizes, stage_names = args.sizes.split(","), args.stages.split(",")
    if unknown := set(sizes) - set(SIZES) | set(stage_names) - set(stages.PIPELINE):
        parser.error(f"unknown sizes or stages: {sorted(unknown)}")
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(machine_summary(torch.get_num_threads() if torch else None), flush=True)

    header = ["stage", "size", "batch", "JAX compile s", "JAX step s", "JAX img/s",
              "torch step s", "JAX/torch"]
    rows = []
    for size in sizes:
        steps = args.steps or DEFAULT_STEPS[size]
        for stage in stage_names:
            cfg = stage_config(stage, size)
            batch = cfg.train.batch_size
            first_call_s, jax_times = time_jax(cfg, steps)
            torch_times = time_torch(cfg, steps) if torch else None
            jax_s = statistics.median(jax_times)
            torch_s = statistics.median(torch_times) if torch_times else None
            rows.append([
                stage, f"{size} {cfg.image_size[0]}x{cfg.image_size[1]}", str(batch),
                f"{first_call_s - jax_s:.1f}", f"{jax_s:.3f}", f"{batch / jax_s:.3g}",
                f"{torch_s:.3f}" if torch_s else "-",
                f"{jax_s / torch_s:.2f}" if torch_s else "-",
            ])
            print(f"done: {stage} {size}: JAX first call {first_call_s:.2f} s, steps "
                  f"{format_times(jax_times)}; torch steps {format_times(torch_times)}",
                  flush=True)
            jax.clear_caches()
    print(format_row(header))
    print(format_row(["---"] * len(header)))
    for row in rows:
        print(format_row(row))
    for note in NOTES:
        print("-", note)
    if torch is None:
        print("- torch is not installed: pip install torch==2.13.0 for the PyTorch columns.")


if __name__ == "__main__":
    main()
