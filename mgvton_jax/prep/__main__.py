"""python -m mgvton_jax.prep: analyze your photos, check them, convert them, write a pair list."""

from __future__ import annotations

import argparse
import sys

from mgvton_jax import analyze
from mgvton_jax.data import readers
from mgvton_jax.data.readers import DataError
from mgvton_jax.export import ModelError, describe
from mgvton_jax.prep import checks, converters, make_pairs


def _size(text: str) -> tuple[int, int]:
    """"WxH" (as the messages write sizes) -> (H, W)."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 192x256")
    return int(height), int(width)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mgvton_jax.prep",
                                     description=__doc__.split(": ", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    photos = commands.add_parser(
        "analyze", help="person photos -> their parsing PNG and OpenPose keypoints JSON",
        description="Writes OUT/image/NAME, OUT/image-parse/STEM.png, "
        "OUT/pose/STEM_keypoints.json and OUT/preview/STEM.png per photo (VITON's folders).")
    photos.add_argument("photos", nargs="+", metavar="PHOTO")
    photos.add_argument("--out", required=True, help="output directory")
    photos.add_argument("--analyzer", help="analyzer model directory (default: the shipped "
                        "one, pretrained/analyzer)")
    photos.add_argument("--threshold", type=float, default=analyze.PRESENCE_THRESHOLD,
                        help="a joint's presence below this is missing (default "
                        f"{analyze.PRESENCE_THRESHOLD})")
    check = commands.add_parser(
        "check", help="report every problem of try-on inputs (exit 1 if one is unusable)")
    check.add_argument("--person", help="person photo")
    check.add_argument("--person-parsing", "--parsing",  # try-on's name; the old one an alias
                       help="its parsing (label-id PNG)")
    check.add_argument("--keypoints", help="an OpenPose keypoint JSON of the photo")
    check.add_argument("--clothes", help="product image")
    check.add_argument("--clothes-mask", help="its mask (default: computed from white)")
    check.add_argument("--dir", help="a data set directory (MPV, JDAI MPV or VITON layout)")
    check.add_argument("--pair-list", help="with --dir: the pair list")
    colours = commands.add_parser("parsing-colours",
                                  help="colour rendering of a parsing -> label-id PNG")
    colours.add_argument("input")
    colours.add_argument("output")
    colours.add_argument("--palette", choices=sorted(converters.PALETTES),
                         help="lip (also CIHP) or pascal (SCHP); default: the one that fits")
    body25 = commands.add_parser("body25", help="OpenPose BODY_25 JSON -> COCO-18 JSON")
    body25.add_argument("input")
    body25.add_argument("output")
    rescale = commands.add_parser("rescale-keypoints",
                                  help="keypoints of a photo -> of the photo resized")
    rescale.add_argument("input")
    rescale.add_argument("output")
    rescale.add_argument("--from", dest="source", type=_size, required=True,
                         help="WxH of the photo the keypoints were measured on")
    rescale.add_argument("--to", dest="target", type=_size, required=True,
                         help="WxH of the photo they are for")
    mask = commands.add_parser("clothes-mask", help="product image -> clothes mask PNG")
    mask.add_argument("input")
    mask.add_argument("output")
    pairs = commands.add_parser(
        "make-pairs", help="pair list for a folder of your own triplets",
        description=make_pairs.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pairs.add_argument("dir")
    pairs.add_argument("--split", default="test", help="train or test (default test)")
    pairs.add_argument("--out", help="the pair list to write (default DIR/data_pair.txt)")
    return parser


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.dir:
        problems = checks.check_directory(args.dir, args.pair_list)
    else:
        if not (args.person or args.clothes or args.keypoints):
            parser.error(
                "check needs --dir, or --person/--person-parsing, --keypoints, --clothes")
        if bool(args.person) != bool(args.person_parsing):
            parser.error("--person and --person-parsing go together")
        problems = []
        if args.person:
            problems += checks.check_person(args.person, args.person_parsing, args.keypoints)
        elif args.keypoints:
            problems += checks.check_keypoints(args.keypoints)
        if args.clothes:
            problems += checks.check_clothes(args.clothes, args.clothes_mask)
    for problem in problems:
        print(problem)
    errors = sum(not problem.usable for problem in problems)
    print(f"{errors} unusable, {len(problems) - errors} notes" if problems else
          "no problems found")
    return 1 if errors else 0


def _analyze(args: argparse.Namespace) -> int:
    """Analyses each photo; an unreadable photo or one without a person is a counted skip."""
    try:
        analyzer = analyze.Analyzer.load(args.analyzer, args.threshold)
    except ModelError as err:
        raise SystemExit(f"error: {err}") from None
    print(describe(analyzer.path, "analyzer"), file=sys.stderr)
    skipped = 0
    for photo_path in args.photos:
        try:
            photo = readers.read_rgb(photo_path)
            analysis = analyzer(photo, photo_path)
            written = analyze.write_analysis(photo_path, photo, analysis, args.out)
        except (DataError, OSError) as err:
            skipped += 1
            print(f"skipped {err}", file=sys.stderr)
            continue
        joints = int((analysis.keypoints[:, 2] > 0).sum())
        print(f"{photo_path}: {joints} of {len(analysis.keypoints)} joints -> {written[1]}, "
              f"{written[2]}")
    print(f"analyzed {len(args.photos) - skipped} photos into {args.out}; skipped {skipped}")
    return 1 if skipped else 0


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            sys.exit(_check(args, parser))
        if args.command == "analyze":
            sys.exit(_analyze(args))
        if args.command == "parsing-colours":
            palette = converters.write_parsing_ids(args.input, args.output, args.palette)
            print(f"wrote {args.output}: label ids read from the {palette} palette")
        elif args.command == "body25":
            converters.write_coco18(args.input, args.output)
            print(f"wrote {args.output}: COCO-18 joints taken from BODY_25 by name")
        elif args.command == "rescale-keypoints":
            converters.write_rescaled_keypoints(args.input, args.output, args.source,
                                                args.target)
            print(f"wrote {args.output}")
        elif args.command == "clothes-mask":
            share = converters.write_clothes_mask(args.input, args.output)
            print(f"wrote {args.output}: the clothes cover {100 * share:.0f}% of the image")
        elif args.command == "make-pairs":
            out, count, notes = make_pairs.write_pairs(args.dir, args.out, args.split)
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"wrote {out}: {count} triplets; build the data set with python -m "
                  f"mgvton_jax.data.build --mpv-dir {args.dir} --data-dir DATA")
    except DataError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
