"""Try-on from files: a person photo, a clothes image and a target pose.

    python -m mgvton_jax.tryon [--model M] --person P.jpg --clothes C.jpg --out OUT.png \
        [--pose T_keypoints.json | --pose T.jpg] [--person-parsing P.png]
    python -m mgvton_jax.tryon [--model M] --pairs LIST.txt --data-root D --out-dir O

M is a model directory (`python -m mgvton_jax.export`); without --model, the shipped VITON
model (pretrained/viton/). What is not given about the person comes from the person analyzer
(`mgvton_jax.analyze`; --analyzer, default the shipped one, pretrained/analyzer/): the
parsing of P.jpg when --person-parsing is left out, the target pose from P.jpg itself when
--pose is left out, or from another photo when --pose names one. Inputs of any size are
fitted into the model's frame (resized, keeping the aspect, and padded: white for photos,
background for the parsing) with the keypoints mapped alike; the result is cropped and resized
back (bicubic) and composed with the photo's own pixels where the try-on keeps them
(`mgvton_jax.photo_size`), so OUT has the person photo's size and sharpness outside the
clothes and arms. A parsing is LIP/CIHP label ids of the person photo, a pose an OpenPose
COCO-18 JSON measured on a photo of the person photo's size (else --pose-size).

In Python:

    from mgvton_jax import TryOn
    result = TryOn.load("M")(person="P.jpg", clothes="C.jpg")   # parsing and pose analysed
    result = TryOn.load("M")(person="P.jpg", person_parsing="P.png", clothes="C.jpg",
                             pose="T_keypoints.json")
    result.image  # (H, W, 3) uint8, the person photo's size
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from mgvton_jax import distributed, inference, photo_size
from mgvton_jax.analyze import Analyzer
from mgvton_jax.data import layouts
from mgvton_jax.data.pairs import file_stem
from mgvton_jax.data.readers import DataError
from mgvton_jax.export import ModelError, describe, shipped_model
from mgvton_jax.mesh import round_up
from mgvton_jax.tryon_inputs import (
    TryOnInputs,
    framed_example,
    read_inputs,
    read_photo,
    source_name,
)


def is_photo(source) -> bool:
    """Whether a pose source is a photo (an image file or an (h, w, 3) array), not keypoints
    (a JSON file or an (18, 3) array)."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() in Image.registered_extensions()
    return np.ndim(source) == 3


@dataclasses.dataclass
class TryOnResult:
    """image: (h, w, 3) uint8 at the person photo's size; intermediates: the outputs the
    stages declare (`Stage.intermediates`: parsing, warped clothes, coarse result, composition
    mask), pictured at that size; notes: choices made for the user (e.g. a computed clothes
    mask)."""

    image: np.ndarray
    intermediates: dict[str, np.ndarray]
    notes: list[str]


def read_or_analyse(analyzer: Callable[[], Analyzer], person, person_parsing, clothes, pose,
                    clothes_mask=None, pose_size: tuple[int, int] | None = None
                    ) -> TryOnInputs:
    """Reads and checks one try-on's inputs (`TryOn.__call__` for the arguments), analysing
    the person photo for a parsing or pose not given, and a pose photo for its keypoints;
    analyzer() gives the analyzer, called only when one is needed.

    Raises:
      DataError: an input that cannot be used (`analyze.NoPersonError`: a photo without a
        person); the message names it and says why.
    """
    notes = []
    if person_parsing is None or pose is None:
        photo = read_photo(person)
        analysis = analyzer()(photo, source_name(person))
        found = []
        if person_parsing is None:
            person_parsing = analysis.parsing
            found.append("parsing")
        if pose is None:
            pose, pose_size = analysis.keypoints, photo.shape[:2]
            found.append("pose")
        notes.append(f"{' and '.join(found)} of {source_name(person)} from the person analyzer")
        person = photo
    if is_photo(pose):
        photo = read_photo(pose)
        notes.append(f"target pose from the photo {source_name(pose)} by the person analyzer")
        pose, pose_size = analyzer()(photo, source_name(pose)).keypoints, photo.shape[:2]
    inputs = read_inputs(person, person_parsing, clothes, pose, clothes_mask, pose_size)
    inputs.notes[:0] = notes
    return inputs


class TryOn:
    """A trained pipeline that dresses people: `TryOn.load(model_dir)(person=..., ...)`.

    batch_size: examples per walk of `dress` (rounded up to a multiple of the devices).
    compose: the result keeps the photo's own pixels where the try-on keeps them
      (`photo_size`); False gives the network's picture resized to the photo, everywhere.
    analyzer: what analyses a photo given without its parsing or pose (None: the shipped
      analyzer, loaded when first needed).
    """

    def __init__(self, model: inference.Pipeline, batch_size: int = 8, compose: bool = True,
                 analyzer: Analyzer | None = None):
        self.model, self.compose, self._analyzer = model, compose, analyzer
        self.batch_size = round_up(batch_size, model.batch_multiple)
        self.intermediates = tuple(key for key in model.columns("intermediates")
                                   if key != model.image_key)

    @classmethod
    def load(cls, path: str | os.PathLike, batch_size: int = 8,
             analyzer: Analyzer | None = None) -> TryOn:
        """Raises ModelError when path is not a model directory (the message says why)."""
        return cls(inference.load_model_dir(path), batch_size, analyzer=analyzer)

    @property
    def analyzer(self) -> Analyzer:
        """The person analyzer (the shipped one unless given; ModelError without it)."""
        if self._analyzer is None:
            self._analyzer = Analyzer.load()
        return self._analyzer

    def inputs(self, person, person_parsing=None, clothes=None, pose=None, clothes_mask=None,
               pose_size: tuple[int, int] | None = None) -> TryOnInputs:
        """`read_or_analyse` with this try-on's analyzer (see `__call__` for the arguments)."""
        return read_or_analyse(lambda: self.analyzer, person, person_parsing, clothes, pose,
                               clothes_mask, pose_size)

    def __call__(self, person=None, person_parsing=None, clothes=None, pose=None,
                 clothes_mask=None, pose_size: tuple[int, int] | None = None, *,
                 inputs: TryOnInputs | None = None) -> TryOnResult:
        """Dresses `person` in `clothes`, in `pose`.

        Args:
          person: photo file or (h, w, 3) uint8.
          person_parsing: label-id PNG of that photo, or (h, w) uint8 ids in 0..19; None:
            analysed from the photo.
          clothes: product image file or (h', w', 3) uint8.
          pose: OpenPose COCO-18 JSON file, or (18, 3) float (x, y, confidence); a photo
            file or (h, w, 3) uint8 array of someone in the pose (analysed); None: the
            person's own pose, analysed from the photo.
          clothes_mask: file or (h', w') {0, 1}; None computes it from the white background.
          pose_size: (height, width) of the photo the pose was measured on (default: the
            person photo's).
          inputs: instead of the above, what `inputs` returned.
        Raises:
          DataError: an input that cannot be used; the message names it and says why.
        """
        if inputs is None:
            inputs = self.inputs(person, person_parsing, clothes, pose, clothes_mask, pose_size)
        return self.dress([inputs])[0]

    def dress(self, many: Sequence[TryOnInputs]) -> list[TryOnResult]:
        """One result per inputs, walked `batch_size` at a time; the last batch (or a lone
        example) is padded to a multiple of the devices only."""
        labels = tuple(self.model.config.data.clothes_labels)
        framed = [framed_example(inputs, self.model.image_size, labels) for inputs in many]
        keys = (self.model.image_key, *self.intermediates)
        results = []
        for start in range(0, len(framed), self.batch_size):
            chunk = framed[start:start + self.batch_size]
            rows = round_up(len(chunk), self.model.batch_multiple)
            pictures, label_maps, _ = self.model(
                inference.stack_padded([c for c, _ in chunk], rows), pictures=keys,
                label_maps=(photo_size.PARSING,))
            for row, (_, fit) in enumerate(chunk):
                inputs = many[start + row]
                back = {key: fit.back(pictures[key][row], Image.NEAREST if key == "parsing"
                                      else Image.BILINEAR) for key in self.intermediates}
                image = fit.back(pictures[self.model.image_key][row], Image.BICUBIC)
                if self.compose:
                    generated = fit.back(label_maps[photo_size.PARSING][row], Image.NEAREST)
                    image = photo_size.compose(
                        inputs.photo, image,
                        photo_size.keep_mask(inputs.parsing, generated, labels))
                results.append(TryOnResult(image, back, inputs.notes))
        return results


def write_image(path: str | os.PathLike, picture: np.ndarray) -> None:
    """Writes `picture` whole or not at all: to a temporary name, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise DataError(f"{path}: unknown image type {path.suffix!r}; use .png or .jpg")
    partial = path.with_name(f".{path.name}.partial")
    try:
        Image.fromarray(picture).save(partial, format=image_format)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_result(result: TryOnResult, out: str | os.PathLike, intermediates: bool) -> list[Path]:
    """OUT (and OUT_<name>.png per intermediate when asked); returns the files written."""
    out = Path(out)
    written = [out]
    write_image(out, result.image)
    if intermediates:
        for key, picture in result.intermediates.items():
            path = out.with_name(f"{out.stem}_{key}.png")
            write_image(path, picture)
            written.append(path)
    return written


def _pair_inputs(layout: layouts.Layout, triplet) -> TryOnInputs:
    """A pair-list line's inputs: the reference person in the target's pose, measured on the
    target's photo."""
    split = triplet.split
    with Image.open(layout.find(layouts.PERSON, triplet.target, split)) as image:
        pose_size = (image.height, image.width)
    return read_inputs(layout.find(layouts.PERSON, triplet.reference, split),
                       layout.find(layouts.PARSING, triplet.reference, split),
                       layout.find(layouts.CLOTHES, triplet.clothes, split),
                       layout.find(layouts.KEYPOINTS, triplet.target, split),
                       layout.find(layouts.CLOTHES_MASK, triplet.clothes, split), pose_size)


def _run_pairs(tryon: TryOn, pair_file: str, data_root: str, out_dir: str,
               intermediates: bool) -> int:
    """Every triplet of an MPV pair list under data_root, `tryon.batch_size` per walk; bad
    ones are counted skips. In a multi-process run each process tries on its share of the
    lines; returns the total."""
    source = layouts.open_source(data_root, pair_file)
    main = distributed.is_main()
    for bad in source.pair_list.bad_lines if main else ():
        print(f"skipped {bad}", file=sys.stderr)
    done, failed = 0, 0
    waiting: list[tuple[str, TryOnInputs]] = []
    mine = source.pair_list.triplets[jax.process_index()::jax.process_count()]
    for number, triplet in enumerate(mine, 1):
        try:
            waiting.append((triplet.key, _pair_inputs(source.layout, triplet)))
        except (DataError, OSError) as err:
            failed += 1
            print(f"skipped {triplet.key}: {err}", file=sys.stderr)
        if waiting and (len(waiting) == tryon.batch_size or number == len(mine)):
            results = tryon.dress([inputs for _, inputs in waiting])
            for (key, _), result in zip(waiting, results, strict=True):
                try:
                    write_result(result, Path(out_dir) / f"{file_stem(key)}.png", intermediates)
                    done += 1
                except (DataError, OSError) as err:
                    failed += 1
                    print(f"skipped {key}: {err}", file=sys.stderr)
            waiting = []
    done, failed = distributed.gather_rows(np.array([[done, failed]])).sum(axis=0)
    failed += len(source.pair_list.bad_lines)
    if main:
        print(f"wrote {done} try-on results to {out_dir}; skipped {failed}")
    return int(done)


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 256x192")
    return int(height), int(width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mgvton_jax.tryon",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (mgvton_jax.export; default: the "
                        "shipped VITON model, pretrained/viton)")
    parser.add_argument("--person", help="person photo (any size)")
    parser.add_argument("--person-parsing", help="LIP/CIHP label-id PNG of the person photo "
                        "(default: analysed from the photo)")
    parser.add_argument("--clothes", help="clothes (product) image")
    parser.add_argument("--clothes-mask", help="clothes mask (default: from the white "
                        "background)")
    parser.add_argument("--pose", help="the target pose: an OpenPose COCO-18 keypoint JSON, or "
                        "a photo of someone in it (analysed); default: the person's own")
    parser.add_argument("--analyzer", help="person analyzer model directory (default: the "
                        "shipped one, pretrained/analyzer)")
    parser.add_argument("--pose-size", type=_size, help="HEIGHTxWIDTH of the photo the pose "
                        "was measured on (default: the person photo's)")
    parser.add_argument("--out", help="result image (.png or .jpg)")
    parser.add_argument("--pairs", help="an MPV pair list: one result per line")
    parser.add_argument("--data-root", help="with --pairs: the data set directory")
    parser.add_argument("--out-dir", help="with --pairs: where the results go")
    parser.add_argument("--intermediates", action="store_true",
                        help="also write OUT_KEY.png for each stage's intermediates (parsing, "
                        "warped_clothes, coarse, composition_mask)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="with --pairs: examples per walk (rounded up to a multiple of "
                        "the devices)")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    single = ("person", "clothes", "out")
    if args.pairs:
        if not (args.data_root and args.out_dir):
            parser.error("--pairs needs --data-root and --out-dir")
    elif missing := [f"--{name.replace('_', '-')}" for name in single
                     if getattr(args, name) is None]:
        parser.error(f"missing {' '.join(missing)} (or use --pairs)")
    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               args.distributed)
        model = args.model or shipped_model()
        if args.pairs:
            if distributed.is_main():
                print(describe(model), file=sys.stderr)
            if not _run_pairs(TryOn.load(model, args.batch_size), args.pairs, args.data_root,
                              args.out_dir, args.intermediates):
                raise SystemExit("error: no pair could be tried on")
            return
        if Path(args.out).suffix.lower() not in Image.registered_extensions():
            raise DataError(f"{args.out}: unknown image type; use .png or .jpg")

        @functools.cache
        def analyzer() -> Analyzer:  # loaded once, when a photo is to be analysed
            loaded = Analyzer.load(args.analyzer)
            print(describe(loaded.path, "analyzer"), file=sys.stderr)
            return loaded

        # The inputs first: a bad file is reported before the try-on model loads.
        inputs = read_or_analyse(analyzer, args.person, args.person_parsing, args.clothes,
                                 args.pose, args.clothes_mask, args.pose_size)
        print(describe(model), file=sys.stderr)
        for note in inputs.notes:
            print(f"note: {note}", file=sys.stderr)
        result = TryOn.load(model)(inputs=inputs)
        written = write_result(result, args.out, args.intermediates)
    except (DataError, ModelError, distributed.DistributedError) as err:
        raise SystemExit(f"error: {err}") from None
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()

