"""Training-step speed per stage: the package's jitted JAX step beside the same PyTorch step.

    python benchmarks/train_step.py [--sizes tiny,full] [--stages parsing,gmm,warp_gan,refine]
                                    [--steps N] [--batch B] [--dtype float32|bfloat16]
                                    [--torch-threads T] [--no-torch]
    python benchmarks/train_step.py --device-report     # full size, batch 40, bfloat16

For each size and stage: `mgvton_jax.training.step.compile_stage` with untrained frozen earlier
stages, on a random compact batch (`examples.COMPACT_INPUTS`, expanded in the step), compiled
ahead of time (the compile time; XLA's cost analysis gives the FLOPs of one step, its memory
analysis the program's device memory), one untimed step, then the median of --steps timed
steps (default 10 tiny, 3 full). Sizes: tiny = the tiny config (64x48, batch 4); full =
256x192, batch 1 (or --batch). The perceptual loss uses random VGG19 weights (full widths at
the full size), the paper's network. Beside it, the same step in PyTorch (`torch_reference.py`:
the frozen earlier stages' forwards, the generator once, D first, then G; same shapes) on the
same device, one untimed warm-up step; bfloat16 runs torch under autocast.

"step s, frozen cached" is the same step given the frozen stages' outputs, as it runs once the
frozen-stage cache holds an example (`--config.train.cache_frozen=True`).

--device-report is the accelerator table: full size, batch 40, bfloat16 compute, and per stage
the share of the device's dense BF16 peak (for the devices in DENSE_BF16_PEAK), the peak device
memory in use, and the largest batch that fits in the device's memory (extrapolated from the
compiled memory of batch B and 2B; devices that report no memory limit show "-").
"""

from __future__ import annotations

import argparse
import dataclasses
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

from mgvton_jax import config_lib, constants, distributed, stages
from mgvton_jax.data import examples
from mgvton_jax.stages import parsing
from mgvton_jax.training.step import compile_stage

try:
    import torch
    import torch_reference
except ImportError:  # torch is a benchmark-only dependency
    torch = None

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SIZES = ("tiny", "full")
FULL_BATCH_SIZE = 1  # CPU: one 256x192 example per step
DEFAULT_STEPS = {"tiny": 10, "full": 3}
REPORT_BATCH_SIZE = 40  # the paper's batch
# Dense BF16 peak FLOP/s by device kind (vendor data sheets; matched as substrings).
DENSE_BF16_PEAK = {
    "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12,
    "A100": 312e12, "L4": 121e12, "TPU v4": 275e12, "TPU v5 lite": 197e12,
    "TPU v5p": 459e12, "TPU v6 lite": 918e12,
}
GIB = 2**30


def stage_config(stage: str, size: str, batch: int | None = None,
                 dtype: str = "float32") -> ml_collections.ConfigDict:
    """The stage's config at `size` with the benchmark batch, compute dtype and random VGG19."""
    cfg = config_lib.load_config_file(CONFIG_DIR / f"{stage}.py", size)
    if size == "full":
        cfg.train.batch_size = FULL_BATCH_SIZE
        cfg.perceptual.random_width_divisor = 1
    if batch:
        cfg.train.batch_size = batch
    cfg.train.compute_dtype = dtype
    cfg.perceptual.random = True
    cfg.perceptual.weights_path = ""
    return cfg


def random_batch(cfg: ml_collections.ConfigDict, rng: np.random.Generator
                 ) -> dict[str, np.ndarray]:
    """This process's share of a random compact batch (`examples.COMPACT_INPUTS`) of the
    config's batch and size: pictures uniform uint8, masks {0, 1}, parsings uniform over the
    labels, every joint present at a uniform position."""
    batch, (height, width) = cfg.train.batch_size // jax.process_count(), cfg.image_size
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


@dataclasses.dataclass
class JaxResult:
    compile_s: float
    step_times: list[float]
    flops: float | None  # per step, XLA cost analysis
    program_bytes: int  # arguments + outputs + temporaries - donated (XLA memory analysis)
    peak_bytes: int | None  # the device's peak bytes in use (None: not reported)
    cached_step_times: list[float] | None  # the step on stored frozen outputs (frozen_cache)


def _flops(executable) -> float | None:
    analysis = executable.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _program_bytes(executable) -> int:
    memory = executable.memory_analysis()
    return int(memory.argument_size_in_bytes + memory.output_size_in_bytes
               + memory.temp_size_in_bytes - memory.alias_size_in_bytes)


def _compiled(cfg: ml_collections.ConfigDict):
    """(CompiledStage, device batch) of the stage with untrained frozen earlier stages."""
    frozen = {name: stages.build_networks(name, cfg, nnx.Rngs(0),
                                          only=stages.get(name).inference)
              for name in stages.required_stages(cfg.stage, cfg)}
    compiled = compile_stage(cfg, frozen)
    return compiled, compiled.to_device(random_batch(cfg, np.random.default_rng(cfg.seed)))


def time_jax(cfg: ml_collections.ConfigDict, steps: int) -> JaxResult:
    """Compiles the stage's step ahead of time, runs one untimed step, times `steps` more.

    Raises:
      FloatingPointError: a non-finite metric.
    """
    compiled, batch = _compiled(cfg)
    start = time.perf_counter()
    executable = compiled.lower_step(compiled.state, batch).compile()
    compile_s = time.perf_counter() - start
    carry = {"state": compiled.state}

    def one_step():
        # The state is donated: always continue from the returned one.
        carry["state"], carry["metrics"] = executable(carry["state"], compiled.constants,
                                                      batch)
        jax.block_until_ready((carry["state"], carry["metrics"]))

    one_step()
    step_times = time_calls(one_step, steps)
    bad = {k: float(v) for k, v in carry["metrics"].items() if not math.isfinite(float(v))}
    if bad:
        raise FloatingPointError(f"{cfg.stage}: non-finite metrics {bad}")
    stats = jax.local_devices()[0].memory_stats() or {}
    cached_step_times = None
    if compiled.consumed:  # the same step on the frozen stages' outputs, as the cache feeds it
        values = compiled.frozen_outputs(batch)

        def cached_step():
            carry["state"], carry["metrics"] = compiled.given_step(carry["state"], batch, values)
            jax.block_until_ready((carry["state"], carry["metrics"]))

        cached_step()
        cached_step_times = time_calls(cached_step, steps)
    return JaxResult(compile_s, step_times, _flops(executable), _program_bytes(executable),
                     stats.get("peak_bytes_in_use"), cached_step_times)


def largest_batch(cfg: ml_collections.ConfigDict) -> int | None:
    """The largest global batch whose compiled step fits in the device's memory, from the
    program memory at the config's batch B and at 2B (linear in the batch); None where the
    device reports no memory limit."""
    limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
    if not limit:
        return None
    sizes = {}
    for batch in (cfg.train.batch_size, 2 * cfg.train.batch_size):
        probe = cfg.copy_and_resolve_references()
        probe.train.batch_size = batch
        compiled, device_batch = _compiled(probe)
        sizes[batch] = _program_bytes(compiled.lower_step(compiled.state, device_batch).compile())
    (b1, m1), (b2, m2) = sorted(sizes.items())
    per_example = (m2 - m1) / (b2 - b1)
    fits = int((limit - (m1 - per_example * b1)) // per_example)
    devices = jax.device_count()
    return fits // devices * devices


def torch_step(cfg: ml_collections.ConfigDict, device: str) -> Callable[[], float] | None:
    """The PyTorch reference step of cfg.stage (None for stages without one)."""
    def sizes(section, fields=None):
        return {field: section[field] for field in (fields or section)}

    model, train = cfg.model, dict(cfg.train)
    autocast = torch.bfloat16 if cfg.train.compute_dtype == "bfloat16" else None
    common = dict(batch=cfg.train.batch_size, image_size=tuple(cfg.image_size), seed=cfg.seed,
                  device=device, autocast=autocast)
    generator_fields = torch_reference.GENERATOR_FIELDS
    discriminator = sizes(model.discriminator, torch_reference.DISCRIMINATOR_FIELDS)
    vgg = dict(vgg_width_divisor=cfg.perceptual.random_width_divisor,
               imagenet_normalize=cfg.perceptual.imagenet_normalize)
    earlier = dict(condition_channels=stages.channels(parsing.CONDITION),
                   num_labels=constants.NUM_LABELS, pose_channels=constants.NUM_KEYPOINTS,
                   clothes_labels=tuple(cfg.data.clothes_labels))
    frozen = {"parsing": sizes(model.parsing, generator_fields), "gmm": sizes(model.gmm),
              "warp_gan": sizes(model.warp_gan)}
    if cfg.stage == "parsing":
        return torch_reference.parsing_step(
            sizes(model.parsing, generator_fields), discriminator, train, dict(cfg.loss),
            condition_channels=earlier["condition_channels"], num_labels=constants.NUM_LABELS,
            **common)
    if cfg.stage == "warp_gan":
        return torch_reference.warp_gan_step(
            sizes(model.warp_gan), discriminator, frozen, train, dict(cfg.loss),
            feature_matching_layers=cfg.loss_options.feature_matching_layers, **vgg,
            **earlier, **common)
    if cfg.stage == "refine":
        return torch_reference.refine_step(
            sizes(model.refine, generator_fields), frozen, train, dict(cfg.loss), **vgg,
            **earlier, **common)
    return None


def time_torch(cfg: ml_collections.ConfigDict, steps: int, device: str) -> list[float] | None:
    """Seconds of each of `steps` PyTorch reference steps after one warm-up; None without one.

    Raises:
      FloatingPointError: a non-finite loss.
    """
    step = torch_step(cfg, device)
    if step is None:
        return None
    losses = [step()]
    times = time_calls(lambda: losses.append(step()), steps)
    if not all(math.isfinite(loss) for loss in losses):
        raise FloatingPointError(f"{cfg.stage}: torch losses {losses}")
    return times


def dense_bf16_peak(device: jax.Device) -> float | None:
    kind = getattr(device, "device_kind", "")
    return next((peak for name, peak in DENSE_BF16_PEAK.items() if name in kind), None)


def machine_summary(torch_threads: int | None) -> str:
    """Date, processor or device, core count, load, library versions, one line."""
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    device = jax.devices()[0]
    torch_part = (f"torch {torch.__version__} ({torch_threads} threads)" if torch
                  else "torch not installed")
    return (f"{datetime.date.today()}, {model}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}; jax {jax.__version__} on {device.platform} "
            f"({getattr(device, 'device_kind', '?')}) x{jax.device_count()}, {torch_part}")


def format_row(cells: list[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def format_times(times: list[float] | None) -> str:
    """Seconds to 3 decimals, space-separated; "-" for none."""
    return " ".join(f"{t:.3f}" for t in times) if times else "-"


HEADER = ["stage", "size", "batch", "dtype", "compile s", "step s", "images/s", "GFLOP/step",
          "TFLOP/s", "% of BF16 peak", "memory GiB", "largest batch", "torch step s",
          "JAX/torch", "step s, frozen cached"]


def table_row(cfg: ml_collections.ConfigDict, size: str, result: JaxResult,
              torch_s: float | None, fits: int | None) -> list[str]:
    batch = cfg.train.batch_size
    step_s = statistics.median(result.step_times)
    flop_rate = result.flops / step_s if result.flops else None
    peak = dense_bf16_peak(jax.devices()[0]) if cfg.train.compute_dtype == "bfloat16" else None
    memory = result.peak_bytes or result.program_bytes
    return [
        cfg.stage, f"{size} {cfg.image_size[0]}x{cfg.image_size[1]}", str(batch),
        cfg.train.compute_dtype, f"{result.compile_s:.1f}", f"{step_s:.3f}",
        f"{batch / step_s:.3g}",
        f"{result.flops / 1e9:.1f}" if result.flops else "-",
        f"{flop_rate / 1e12:.3g}" if flop_rate else "-",
        f"{100 * flop_rate / peak:.1f}" if flop_rate and peak else "-",
        f"{memory / GIB:.2f}", str(fits) if fits else "-",
        f"{torch_s:.3f}" if torch_s else "-",
        f"{step_s / torch_s:.2f}" if torch_s else "-",
        f"{statistics.median(result.cached_step_times):.3f}" if result.cached_step_times
        else "-",
    ]


def main() -> None:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="tiny,full (default both; report: full)")
    parser.add_argument("--stages", default=",".join(stages.PIPELINE))
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per measurement (default {DEFAULT_STEPS})")
    parser.add_argument("--batch", type=int, default=None,
                        help="global batch (default: tiny 4, full 1; report 40)")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                        help="compute dtype (default float32; report bfloat16)")
    parser.add_argument("--device-report", action="store_true",
                        help="full size, batch 40, bfloat16, share of peak and largest batch")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own, one per core)")
    parser.add_argument("--no-torch", action="store_true", help="JAX columns only")
    distributed.add_arguments(parser)
    args = parser.parse_args()
    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               args.distributed)
    except distributed.DistributedError as err:
        parser.error(str(err))
    say = print if distributed.is_main() else lambda *_, **__: None
    report = args.device_report
    sizes = (args.sizes or ("full" if report else ",".join(SIZES))).split(",")
    stage_names = args.stages.split(",")
    if unknown := set(sizes) - set(SIZES) | set(stage_names) - set(stages.PIPELINE):
        parser.error(f"unknown sizes or stages: {sorted(unknown)}")
    batch = args.batch or (REPORT_BATCH_SIZE if report else None)
    dtype = args.dtype or ("bfloat16" if report else "float32")
    use_torch = torch is not None and not args.no_torch and jax.process_count() == 1
    torch_device = "cuda" if use_torch and jax.devices()[0].platform == "gpu" and \
        torch.cuda.is_available() else "cpu"
    if use_torch and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if use_torch and torch_device == "cpu" and jax.devices()[0].platform != "cpu":
        use_torch = False  # a CPU torch step beside an accelerator's is no comparison
    say(machine_summary(torch.get_num_threads() if torch else None), flush=True)

    rows = []
    for size in sizes:
        steps = args.steps or DEFAULT_STEPS[size]
        for stage in stage_names:
            cfg = stage_config(stage, size, batch, dtype)
            result = time_jax(cfg, steps)
            torch_times = time_torch(cfg, steps, torch_device) if use_torch else None
            fits = largest_batch(cfg) if report else None
            torch_s = statistics.median(torch_times) if torch_times else None
            rows.append(table_row(cfg, size, result, torch_s, fits))
            say(f"done: {stage} {size}: JAX compile {result.compile_s:.1f} s, steps "
                f"{format_times(result.step_times)}; torch steps "
                f"{format_times(torch_times)}", flush=True)
            jax.clear_caches()
    say(format_row(HEADER))
    say(format_row(["---"] * len(HEADER)))
    for row in rows:
        say(format_row(row))
    say("- memory: the device's peak bytes in use where it reports them, else the compiled "
        "program's arguments + outputs + temporaries (XLA memory analysis).")
    say("- step s, frozen cached: the step given the frozen earlier stages' outputs "
        "(--config.train.cache_frozen=True, once each example is stored).")
    if torch is None:
        say("- torch is not installed: pip install torch==2.13.0 for the PyTorch columns.")
    elif not use_torch:
        say("- no PyTorch columns: --no-torch, several processes, or no torch for this "
            "device.")


if __name__ == "__main__":
    main()
