"""Which test triplets an evaluation scores, and reading them in batches.

Modes: "paired" (each stored triplet whose target wears the clothes: the target photo is the
ground truth), "unpaired" (the data set's own list of other people's clothes, e.g. VITON's
test_pairs.txt: each person once), "shuffled" (each person with the clothes and the target
pose of two other, seeded random, test triplets). A list of person photo names keeps
(`names`) or leaves out (`exclude`) people, e.g. VITON's test people also seen in training.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from mgvton_jax import distributed
from mgvton_jax.data import examples, pipeline
from mgvton_jax.data.pairs import file_stem
from mgvton_jax.data.readers import DataError

MODES = ("paired", "unpaired", "shuffled")


def _photos(key: bytes | str) -> tuple[str, str, str]:
    """(reference, target, clothes) file names of a record's key."""
    key = key.decode() if isinstance(key, bytes) else str(key)
    reference, target, clothes = (PurePosixPath(part).name for part in key.split("|"))
    return reference, target, clothes


def read_names(path: str | os.PathLike) -> set[str]:
    """The photo file names of a list (one per line, first column; blank lines skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the list of names ({err})") from None
    names = {PurePosixPath(line.split()[0]).name for line in lines if line.strip()}
    if not names:
        raise DataError(f"{path}: the list of names is empty")
    return names


@dataclasses.dataclass
class Selection:
    """indices: the stored test triplets scored; donors[i]: (clothes index, pose index) of
    the i-th (its own index twice unless shuffled); left_out: {reason: count};
    pose_fixed: every scored triplet's target is its reference photo (VITON)."""

    source: object
    indices: list[int]
    donors: list[tuple[int, int]]
    left_out: dict[str, int]
    pose_fixed: bool


def select(data_dir: Path, mode: str, seed: int = 0, names: set[str] | None = None,
           exclude: set[str] | None = None) -> Selection:
    """The test triplets of `mode`, of the people in `names` and not in `exclude`."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    source = pipeline.data_source(data_dir, "test")
    count = len(source)
    if count == 0:
        raise DataError(f"{data_dir}: the test split is empty")
    keys, paired = [], []
    for i in range(count):  # each record read once
        record = source[i]
        keys.append(_photos(record["key"]))
        paired.append(bool(record["paired"]))
    left_out: dict[str, int] = {}
    if mode == "paired":
        indices = [i for i in range(count) if paired[i]]
        left_out["unpaired"] = count - len(indices)
    elif mode == "unpaired":
        # Each person once: their unpaired triplet, else (a list line with their own clothes,
        # kept once as a paired triplet by the builder) their paired one.
        with_other = {keys[i][0] for i in range(count) if not paired[i]}
        indices = [i for i in range(count) if not paired[i] or keys[i][0] not in with_other]
        left_out["paired"] = count - len(indices)
    else:
        indices = list(range(count))
    if names is not None:
        kept = [i for i in indices if keys[i][0] in names]
        left_out["not in the names list"] = len(indices) - len(kept)
        indices = kept
    if exclude is not None:
        kept = [i for i in indices if keys[i][0] not in exclude]
        left_out["in the exclude list"] = len(indices) - len(kept)
        indices = kept
    if not indices:
        raise DataError(f"{data_dir}: no test triplet left for mode {mode} "
                        f"(left out: {left_out})")
    if mode == "shuffled":
        if count < 2:
            raise DataError(f"{data_dir}: shuffled mode needs at least 2 test triplets")
        rng = np.random.default_rng(seed)

        def other(i: int) -> int:
            j = int(rng.integers(count - 1))
            return j + (j >= i)

        donors = [(other(i), other(i)) for i in indices]
    else:
        donors = [(i, i) for i in indices]
    pose_fixed = mode != "shuffled" and all(keys[i][0] == keys[i][1] for i in indices)
    return Selection(source, indices, donors, left_out, pose_fixed)


def shuffled_raw(raw: dict, clothes_donor: dict, pose_donor: dict) -> dict:
    """raw wearing clothes_donor's clothes in pose_donor's target pose (no ground truth)."""
    mixed = dict(raw)
    mixed["clothes"], mixed["clothes_mask"] = clothes_donor["clothes"], \
        clothes_donor["clothes_mask"]
    mixed["target_keypoints"] = pose_donor["target_keypoints"]
    return mixed


@dataclasses.dataclass
class Example:
    """name: the file stem of its results; stored: the raw example at the stored size;
    model: what the model walks, at its size (other clothes and pose when shuffled)."""

    name: str
    stored: dict
    model: dict


def batches(selection: Selection, mine: list[int], image_size: tuple[int, int],
            batch_size: int, clothes_labels: tuple[int, ...]) -> Iterator[list[Example]]:
    """This process's examples (positions `mine` of the selection), batch_size at a time."""
    source, batch = selection.source, []

    def read(index: int) -> dict:
        return examples.decode_record(source[index], clothes_labels)

    for position in mine:
        index, (clothes_index, pose_index) = selection.indices[position], \
            selection.donors[position]
        stored = read(index)
        model = examples.resize_raw(stored, image_size)
        if clothes_index != index:
            model = shuffled_raw(model, examples.resize_raw(read(clothes_index), image_size),
                                 examples.resize_raw(read(pose_index), image_size))
        batch.append(Example(file_stem(source[index]["key"]), stored, model))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def mean_target(selection: Selection, mine: list[int], image_size: tuple[int, int] | None
                ) -> np.ndarray:
    """The mean target photo of the examples (every process's share) at image_size (None:
    the stored size), (H, W, 3) uint8: the mean-target baseline, known before any example is
    scored. Only the target photos are decoded."""
    total = None
    for position in mine:
        photo = examples.decode_photo(selection.source[selection.indices[position]]
                                      ["target_image"])
        photo = examples.resize_photo(photo, image_size) if image_size else photo
        total = photo.astype(np.float64) if total is None else total + photo
    total = distributed.gather_rows(total[None]).sum(axis=0)
    count = distributed.gather_rows(np.array([len(mine)])).sum()
    return (total / count).round().astype(np.uint8)
