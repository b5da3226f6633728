"""Builds the array_record data set from a try-on data directory, with a report of skips.

    python -m mgvton_jax.data.build --mpv-dir DIR --data-dir OUT [--pair-list F]

DIR may be in the MPV, JDAI-MPV or VITON layout (see `layouts`). Triplets whose files are
missing or unreadable are skipped; each is listed with its reason in
OUT/mpv_triplets/<version>/build_report.txt (and .json), and counted on the console.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import tensorflow_datasets as tfds

from mgvton_jax.data import readers, synth, tfds_builder

REPORT_NAME = "build_report"


def _source_of(mpv_dir: str | os.PathLike, pair_list: str | None) -> dict:
    return {"mpv_dir": str(Path(mpv_dir).resolve()),
            "pair_list": str(Path(pair_list).resolve()) if pair_list else None}


def _write_report(directory: Path, report: dict) -> Path:
    """REPORT_NAME.json and .txt in directory; returns the .txt."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{REPORT_NAME}.json").write_text(json.dumps(report, indent=1))
    lines = [f"{split}\t{key}\t{reason}" for split, key, reason in report["skipped"]]
    text = directory / f"{REPORT_NAME}.txt"
    text.write_text(f"# {len(lines)} skipped (split, triplet, reason)\n" + "\n".join(lines)
                    + "\n# notes\n" + "\n".join(report["notes"]) + "\n")
    return text


def is_built(data_dir: str | os.PathLike) -> bool:
    """data_dir holds a complete build (an interrupted one leaves no dataset_info.json)."""
    return (dataset_dir(data_dir) / "dataset_info.json").is_file()


def build_dataset(mpv_dir: str | os.PathLike, data_dir: str | os.PathLike,
                  pair_list: str | None = None, progress: bool = True,
                  overwrite: bool = False) -> dict:
    """Builds `mpv_triplets` into data_dir and writes the build report next to it.

    A complete build of the same source is kept (and its report returned); an interrupted
    one is redone.
    Returns:
      The report: source, layout, written (per split), skipped [(split, key, reason)],
      notes, and the dataset directory.
    Raises:
      DataError: mpv_dir is missing or empty or in no known layout; data_dir holds a data set
        of another source (unless overwrite); or no triplet of a split (or of the pair list)
        could be read; the report is then DATA_DIR/build_report.txt.
    """
    if not Path(mpv_dir).is_dir() or not any(Path(mpv_dir).iterdir()):
        raise readers.DataError(f"{mpv_dir}: data set directory not found or empty")
    data_dir = Path(data_dir)
    source = _source_of(mpv_dir, pair_list)
    if is_built(data_dir) and not overwrite:
        report = read_report(data_dir)
        if report.get("source") != source:
            raise readers.DataError(
                f"{data_dir} holds a data set built from {report.get('source', 'elsewhere')}, "
                f"not from {source}; build into a new --data-dir, or pass --overwrite")
        return report
    shutil.rmtree(data_dir / tfds_builder.NAME, ignore_errors=True)  # old or interrupted
    builder = tfds_builder.MpvTriplets(data_dir=str(data_dir), file_format="array_record",
                                       pair_list=pair_list, progress=progress)

    def report_of() -> dict:
        return {"source": source, "mpv_dir": str(mpv_dir),
                "layout": builder.source.layout.name if builder.source else None,
                "pair_lists": [str(p) for p in builder.source.pair_files] if builder.source
                else [], "listed": dict(builder.log.listed), "written": dict(builder.log.written),
                "skipped": builder.log.skipped, "notes": builder.log.notes,
                "dataset_dir": str(builder.data_dir)}

    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(mpv_dir)))
    except readers.DataError as err:
        shutil.rmtree(data_dir / tfds_builder.NAME, ignore_errors=True)
        report = report_of()
        text = _write_report(data_dir, report)
        pointer = f" The skipped triplets and why: {text}" if report["skipped"] else ""
        raise readers.DataError(f"{err}; nothing was built.{pointer}") from None
    report = report_of()
    _write_report(Path(builder.data_dir), report)
    return report


def dataset_dir(data_dir: str | os.PathLike) -> Path:
    """The version directory of the built data set under data_dir."""
    builder = tfds_builder.MpvTriplets(data_dir=str(data_dir), file_format="array_record")
    return Path(builder.data_dir)


def read_report(data_dir: str | os.PathLike) -> dict:
    """The build report of the data set in data_dir ({} if it has none)."""
    path = dataset_dir(data_dir) / f"{REPORT_NAME}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def built_dataset(data_dir: str | os.PathLike) -> Path:
    """data_dir, checked to hold a complete built data set.

    Raises:
      DataError: it does not (or its build was interrupted); the message gives the command
        that builds one.
    """
    data_dir = Path(data_dir)
    if not is_built(data_dir):
        state = "an interrupted build" if (data_dir / tfds_builder.NAME).is_dir() else \
            "no built data set"
        raise readers.DataError(
            f"{data_dir}: {state}; build it with python -m mgvton_jax.data.build "
            f"--mpv-dir YOUR_MPV_DIR --data-dir {data_dir}")
    return data_dir


def synthetic_dataset(root: str | os.PathLike, people: int, seed: int = 0) -> Path:
    """The built data set of `people` synthetic people under root, written on first use.

    root/synthetic_mpv_<people>/ holds the MPV-layout files (finished when `.complete`
    exists), root/tfds_<people>/ the built data set, whose directory is returned.
    """
    root = Path(root)
    raw = root / f"synthetic_mpv_{people}"
    if not (raw / ".complete").exists():
        shutil.rmtree(raw, ignore_errors=True)  # what an interrupted first run left
        print(f"writing {people} synthetic people to {raw}", flush=True)
        synth.write_synthetic_mpv(raw, people, seed=seed, progress=True)
        (raw / ".complete").touch()
    data_dir = root / f"tfds_{people}"
    if not is_built(data_dir):
        build_dataset(raw, data_dir, overwrite=True)
    return data_dir


def dataset_for(data_config, seed: int, workdir: str | os.PathLike,
                multi_process: bool = False) -> Path:
    """The data set a stage config names: data_config.data_dir (checked), or else the
    synthetic set of data_config.synthetic_people written and built under WORKDIR/data.

    Raises:
      DataError: data_dir holds no built data set, or a multi-process run names none.
    """
    if data_config.data_dir:
        return built_dataset(data_config.data_dir)
    if multi_process:
        raise readers.DataError(
            "multi-process runs need a built data set: set --config.data.data_dir")
    return synthetic_dataset(Path(workdir) / "data", data_config.synthetic_people, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpv-dir", required=True,
                        help="data set directory (MPV, JDAI-MPV or VITON layout)")
    parser.add_argument("--data-dir", required=True, help="output directory for the data set")
    parser.add_argument("--pair-list", help="pair-list file (default: found in --mpv-dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a data set already built in --data-dir")
    args = parser.parse_args(argv)
    try:
        report = build_dataset(args.mpv_dir, args.data_dir, args.pair_list,
                               overwrite=args.overwrite)
    except readers.DataError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"layout {report['layout']}; written "
          f"{report['written']}; skipped {len(report['skipped'])}; notes "
          f"{len(report['notes'])}; report: {report['dataset_dir']}/{REPORT_NAME}.txt")


if __name__ == "__main__":
    main()
