"""Checkpoint save and restore times of full-size stages, as training, eval and export use them.

    python benchmarks/checkpoint_io.py [--stages parsing,gmm,warp_gan,refine] [--variant full]
                                       [--workdir DIR] [--repeats 3]

Per stage: its train state (networks and Adam states, random weights) at the config variant's
size is saved through the package's checkpoint writer (`StageCheckpoints.save` + `wait`: the
asynchronous write, then the SHA-256 checksums it seals the step with), then read back as a
resumed training run reads it (`restore_latest` of the whole step: verification + restore) and
as evaluation, export and later stages read it (`load_inference_networks`: the inference item
only). Times are the median of --repeats reads (the files are in the page cache after the
first, so the numbers are CPU-bound: hashing, deserialising and copying, not the disk).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import grain
import jax
import numpy as np
from flax import nnx

from mgvton_jax import stages
from mgvton_jax.checkpoints import StageCheckpoints, load_inference_networks
from mgvton_jax.config_lib import VARIANTS, base_config
from mgvton_jax.training.state import build_train_state, inference_item


def _megabytes(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def measure(stage: str, variant: str, workdir: Path, repeats: int) -> dict:
    """{"state MB", "inference MB", "save s", "resume s", "inference read s"} of one stage."""
    config = base_config(stage, variant)
    stage_dir = workdir / stage
    stage_dir.mkdir(parents=True)
    (stage_dir / "config.json").write_text(config.to_json_best_effort())
    networks, optimizers = build_train_state(config)
    pure = nnx.to_pure_dict(nnx.state({"networks": networks, "optimizers": optimizers}))
    # A trained state has no all-zero Adam moments (which orbax would store compressed).
    rng = np.random.default_rng(0)
    pure = jax.tree.map(lambda x: rng.standard_normal(x.shape, np.float32) if
                        np.issubdtype(x.dtype, np.floating) else np.asarray(x), pure)
    meta = {"step": 1, "total_steps": 1, "stage": stage, "process_count": 1,
            "config": config.to_dict()}
    checkpoints = StageCheckpoints(stage_dir / "checkpoints")
    position = iter(grain.MapDataset.range(4).to_iter_dataset())  # the input position item
    start = time.perf_counter()
    checkpoints.save(1, pure, inference_item(stages.get(stage), pure), position, meta)
    checkpoints.wait()
    save = time.perf_counter() - start

    def timed(read) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            read()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    resume = timed(lambda: checkpoints.restore_latest(
        lambda step: checkpoints.restore(step, pure)))
    checkpoints.close()
    inference = timed(lambda: load_inference_networks(stage, stage_dir))
    step_dir = stage_dir / "checkpoints" / "1"
    return {"state MB": _megabytes(step_dir / "state"),
            "inference MB": _megabytes(step_dir / "inference"),
            "save s": save, "resume s": resume, "inference read s": inference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default=",".join(stages.PIPELINE))
    parser.add_argument("--variant", default="full", help="config variant (full: 256x192)")
    parser.add_argument("--workdir", help="where to write (default: a temporary directory)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    unknown = [name for name in args.stages.split(",") if name not in stages.PIPELINE]
    if unknown:
        parser.error(f"--stages: unknown {unknown}; the stages are {','.join(stages.PIPELINE)}")
    if args.variant not in VARIANTS:
        parser.error(f"--variant {args.variant!r}: one of {', '.join(VARIANTS)}")
    if args.workdir and not Path(args.workdir).is_dir():
        parser.error(f"--workdir {args.workdir}: no such directory")
    print(f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"{jax.device_count()} {jax.default_backend()} device(s)")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows = {name: measure(name, args.variant, Path(tmp), args.repeats)
                for name in args.stages.split(",")}
    columns = list(next(iter(rows.values())))
    print("| stage | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, row in rows.items():
        print(f"| {name} {args.variant} | " + " | ".join(f"{row[c]:.2f}" for c in columns)
              + " |")


if __name__ == "__main__":
    main()
