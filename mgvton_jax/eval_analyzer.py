"""Scores the person analyzer against a built data set's own annotations (its test people).

    python -m mgvton_jax.eval_analyzer --data-dir D --out O [--analyzer A]
        [--names LIST | --exclude-names LIST] [--limit N]

Each test person once (the paired triplets' target photos, at the stored 256x192), analysed as
`prep analyze` does (`mgvton_jax.analyze`), against the stored parsing and keypoints: parsing
pixel accuracy, mean IoU, each label's IoU and share of the annotated pixels; keypoint PCK at
0.1 and 0.2 of the torso size, overall and per joint, and the shares of joints missed and
invented (`mgvton_jax.metrics.keypoint_scores`). Photos the analyzer would refuse
(`NoPersonError`) are counted and scored as analysed. Writes O/results.json and O/grid.png
(photo, annotated and analysed parsing and pose, for the first people).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mgvton_jax import constants, visualize
from mgvton_jax.analyze import Analysis, Analyzer, NoPersonError, check_person, preview
from mgvton_jax.data import build, examples
from mgvton_jax.data.readers import DataError
from mgvton_jax.eval_examples import read_names, select
from mgvton_jax.export import ModelError, describe
from mgvton_jax.metrics.keypoint_scores import COUNTS, keypoint_counts, keypoint_scores
from mgvton_jax.metrics.scores import label_iou, segmentation_scores

GRID_ROWS = 8
BATCH = 16


def _confusion(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(20, 20) pixel counts, rows the true label, columns the predicted one."""
    k = constants.NUM_LABELS
    return np.bincount(truth.astype(np.int64).ravel() * k + predicted.ravel(),
                       minlength=k * k).reshape(k, k)


def score(analyzer: Analyzer, data_dir: Path, names: set[str] | None = None,
          exclude: set[str] | None = None, limit: int | None = None) -> tuple[dict, np.ndarray]:
    """(results, grid picture) of the analyzer on the test people of a built data set."""
    selection = select(data_dir, "paired", names=names, exclude=exclude)
    indices = selection.indices[:limit] if limit else selection.indices
    confusion = np.zeros((constants.NUM_LABELS,) * 2, np.int64)
    sums = {key: np.zeros(constants.NUM_KEYPOINTS, np.int64) for key in COUNTS}
    refused, rows = 0, []
    began = time.perf_counter()
    for start in range(0, len(indices), BATCH):
        raws = [examples.decode_record(selection.source[i]) for i in indices[start:start + BATCH]]
        analyses = analyzer.analyse([raw["target_image"] for raw in raws])
        for raw, analysis in zip(raws, analyses, strict=True):
            confusion += _confusion(raw["target_parsing"], analysis.parsing)
            for key, count in keypoint_counts(analysis.keypoints,
                                              raw["target_keypoints"]).items():
                sums[key] += count
            try:
                check_person(analysis, "")
            except NoPersonError:
                refused += 1
            if len(rows) < GRID_ROWS:
                rows.append((raw, analysis))
        print(f"analysed {min(start + BATCH, len(indices))}/{len(indices)}", file=sys.stderr)
    seconds = time.perf_counter() - began
    iou = label_iou(confusion)
    results = {
        "people": len(indices), "left_out": selection.left_out, "refused": refused,
        "seconds": round(seconds, 1),
        "parsing": {**segmentation_scores(confusion), "iou_per_label": {
            name: None if np.isnan(v) else float(v)
            for name, v in zip(constants.LIP_LABELS, iou, strict=True)},
            "pixel_share_per_label": dict(zip(
                constants.LIP_LABELS, (confusion.sum(axis=1) / confusion.sum()).tolist(),
                strict=True))},
        "keypoints": keypoint_scores(sums),
    }
    return results, _grid(rows)


def _grid(rows: list) -> np.ndarray:
    """One row per person: photo, annotated parsing, analysed parsing, annotated pose,
    analysed pose (on the photo)."""
    columns = {"photo": [], "parsing (annotated)": [], "parsing (analysed)": [],
               "pose (annotated)": [], "pose (analysed)": []}
    for raw, analysis in rows:
        photo = raw["target_image"]
        annotated = preview(photo, Analysis(raw["target_parsing"], raw["target_keypoints"]))
        analysed = preview(photo, analysis)
        pictures = (photo, annotated[0], analysed[0], annotated[1], analysed[1])
        for key, picture in zip(columns, pictures, strict=True):
            columns[key].append(picture)
    return visualize.batch_grid({key: np.stack(v) for key, v in columns.items()},
                                list(columns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mgvton_jax.eval_analyzer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="a built data set (its test split)")
    parser.add_argument("--out", required=True, help="directory for results.json, grid.png")
    parser.add_argument("--analyzer", help="analyzer model directory (default: the shipped "
                        "one, pretrained/analyzer)")
    people = parser.add_mutually_exclusive_group()
    people.add_argument("--names", help="score only the person photos this list names")
    people.add_argument("--exclude-names", help="leave out the person photos this list names "
                        "(VITON: test_photos_in_train.txt)")
    parser.add_argument("--limit", type=int, help="score the first N people only")
    args = parser.parse_args(argv)
    try:
        names = read_names(args.names) if args.names else None
        exclude = read_names(args.exclude_names) if args.exclude_names else None
        analyzer = Analyzer.load(args.analyzer)
        print(describe(analyzer.path, "analyzer"), file=sys.stderr)
        results, grid = score(analyzer, build.built_dataset(args.data_dir), names, exclude,
                              args.limit)
    except (DataError, ModelError) as err:
        raise SystemExit(f"error: {err}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    visualize.save_png(out / "grid.png", grid)
    parsing, keypoints = results["parsing"], results["keypoints"]
    print(f"{results['people']} people ({results['refused']} refused), "
          f"{results['seconds']} s: parsing accuracy {parsing['pixel_accuracy']:.4f}, "
          f"mean IoU {parsing['mean_iou']:.4f}; PCK@0.1 {keypoints['pck@0.1']:.4f}, "
          f"PCK@0.2 {keypoints['pck@0.2']:.4f}, missed {keypoints['missed']:.4f}, "
          f"invented {keypoints['invented']:.4f}; wrote {out / 'results.json'}, "
          f"{out / 'grid.png'}")


if __name__ == "__main__":
    main()
