"""Pair lists: MPV `all_poseA_poseB_clothes*.txt` / `data_pair.txt` and VITON `*_pairs.txt`.

A pair list becomes `Triplet`s: the same person in the same clothes seen in a reference pose
and a target pose, plus the clothes' product image. Paths stay as written in the list
(e.g. `PID/name.jpg`); a `layouts.Layout` turns them into files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from mgvton_jax.data.readers import DataError

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Triplet:
    """One training/test example. `paired`: the target image really wears `clothes`."""

    reference: str
    target: str
    clothes: str
    split: str
    paired: bool = True

    @property
    def key(self) -> str:
        return f"{self.reference}|{self.target}|{self.clothes}"

    def reversed(self) -> Triplet:
        return Triplet(self.target, self.reference, self.clothes, self.split, self.paired)


@dataclass(frozen=True)
class BadLine:
    path: str
    line_number: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.reason}: {self.text!r}"


@dataclass
class PairList:
    triplets: list[Triplet] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)


def _read_lines(path: str | os.PathLike, bad: list[BadLine]) -> Iterable[tuple[int, str]]:
    """(line number, text) of the non-blank lines; a line that is not UTF-8 goes to `bad`.

    Raises:
      DataError: the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().splitlines()
    except OSError as err:
        raise DataError(f"{path}: cannot read the pair list ({err.strerror})") from None
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            bad.append(BadLine(str(path), number, raw.decode("utf-8", "replace").strip(),
                               "not UTF-8 text"))
            continue
        if line:
            yield number, line


class _Deduplicated:
    """Keeps the first of repeated triplets; a repeat is a bad line naming the first."""

    def __init__(self, path: str | os.PathLike, result: PairList):
        self.path, self.result, self.first = str(path), result, {}

    def add(self, number: int, line: str, triplet: Triplet) -> None:
        key = (triplet.key, triplet.split)
        if key in self.first:
            self.result.bad_lines.append(BadLine(self.path, number, line,
                                                 f"repeats line {self.first[key]}"))
        else:
            self.first[key] = number
            self.result.triplets.append(triplet)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_mpv_pairs(path: str | os.PathLike) -> PairList:
    """Reads an MPV pair list: 4 whitespace-separated columns `poseA poseB clothes split`.

    Tabs or spaces, a missing final newline and CRLF are all accepted. A line with another
    column count, a split other than train/test, a column that is not an image (e.g. the
    JDAI `demo.txt`, whose 2nd column is a keypoint JSON), text that is not UTF-8, or a
    repeat of an earlier line is recorded in `bad_lines`.
    """
    result = PairList()
    kept = _Deduplicated(path, result)
    for number, line in _read_lines(path, result.bad_lines):
        columns = line.split()
        reason = None
        if len(columns) != 4:
            reason = f"{len(columns)} columns, expected 4 (poseA poseB clothes train|test)"
        elif columns[3] not in SPLITS:
            reason = f"split {columns[3]!r} is not one of {SPLITS}"
        elif not all(_is_image(c) for c in columns[:3]):
            reason = "the first three columns must be image files (.jpg/.png)"
        if reason:
            result.bad_lines.append(BadLine(str(path), number, line, reason))
        else:
            kept.add(number, line, Triplet(*columns))
    result.bad_lines.sort(key=lambda bad: bad.line_number)
    return result


def read_viton_pairs(path: str | os.PathLike, split: str) -> PairList:
    """Reads a VITON/CP-VTON pair list: 2 columns `person.jpg clothes.jpg`.

    VITON has one photo per person, so reference = target (pose-fixed try-on). A pair is
    `paired` when the clothes belong to the person (`000003_0.jpg` with `000003_1.jpg`).
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    result = PairList()
    kept = _Deduplicated(path, result)
    for number, line in _read_lines(path, result.bad_lines):
        columns = line.split()
        if len(columns) != 2 or not all(_is_image(c) for c in columns):
            result.bad_lines.append(
                BadLine(str(path), number, line, "expected 2 image columns: person clothes")
            )
            continue
        person, clothes = columns
        paired = person.rsplit("_", 1)[0] == clothes.rsplit("_", 1)[0]
        kept.add(number, line, Triplet(person, person, clothes, split, paired))
    result.bad_lines.sort(key=lambda bad: bad.line_number)
    return result


def with_own_clothes(triplets: Iterable[Triplet]) -> list[Triplet]:
    """VITON triplets followed by the paired protocol's: each person wearing their own
    clothes (`NNNNNN_0.jpg` with `NNNNNN_1.jpg`), the ground truth being their photo; each
    triplet once, in order."""
    listed = list(triplets)
    return _unique(listed + [Triplet(t.reference, t.target, _own_clothes(t.reference), t.split)
                             for t in listed])


def _own_clothes(person: str) -> str:
    stem, _, suffix = person.rpartition(".")
    return f"{stem.rsplit('_', 1)[0]}_1.{suffix}"


def file_stem(key: str | bytes) -> str:
    """A file name (no suffix) for a triplet key "A/ref.jpg|A/target.jpg|A/clothes.jpg":
    the three file stems joined by "__", other characters than [A-Za-z0-9._-] as "_"."""
    key = key.decode() if isinstance(key, bytes) else str(key)
    stems = [PurePosixPath(part).stem for part in key.split("|")]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(stems))


def with_both_directions(triplets: Iterable[Triplet]) -> list[Triplet]:
    """Each triplet A->B followed by B->A (training uses both directions), without repeats."""
    return _unique(candidate for triplet in triplets
                   for candidate in (triplet, triplet.reversed()))


def _unique(triplets: Iterable[Triplet]) -> list[Triplet]:
    """Each triplet once (the first of a key), in order."""
    first: dict[str, Triplet] = {}
    for triplet in triplets:
        first.setdefault(triplet.key, triplet)
    return list(first.values())
