"""TFDS builder `mpv_triplets`: a try-on data set directory -> array_record train/test splits.

TensorFlow-free: images are stored as their encoded bytes and decoded with PIL in the input
pipeline. Training triplets go both ways (A -> B and B -> A); a VITON test split holds its
list's pairs (the unpaired protocol) and every listed person in their own clothes (the paired
one, whose ground truth is the photo). Use `mgvton_jax.data.build` (or `build.build_dataset`)
rather than this class directly: it also writes the report of skipped triplets.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from mgvton_jax import constants
from mgvton_jax.data import examples, layouts, pairs, readers

NAME = "mpv_triplets"


@dataclasses.dataclass
class BuildLog:
    """What happened while building: skipped triplets (with the reason) and notes."""

    listed: Counter = dataclasses.field(default_factory=Counter)
    written: Counter = dataclasses.field(default_factory=Counter)
    skipped: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


class MpvTriplets(tfds.core.GeneratorBasedBuilder):
    """MPV (or VITON) triplets: reference pose, target pose, clothes of one person."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Triplets with encoded images, parsing and COCO-18 keypoints."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the data set directory (MPV, JDAI MPV or VITON layout) as the manual directory: "
        "python -m mgvton_jax.data.build --mpv-dir DIR --data-dir OUT"
    )

    def __init__(self, *, pair_list: str | None = None, progress: bool = True, **kwargs):
        self._pair_list = pair_list
        self._progress = progress
        self.log = BuildLog()
        self.source: layouts.Source | None = None
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        encoded = tfds.features.Tensor(shape=(), dtype=np.object_)  # PNG/JPEG bytes, 256x192
        keypoints = tfds.features.Tensor(shape=(constants.NUM_KEYPOINTS, 3), dtype=np.float32)
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                **{key: encoded for key in examples.IMAGE_KEYS + examples.PARSING_KEYS},
                "clothes_mask": encoded,
                **{key: keypoints for key in examples.KEYPOINT_KEYS},
                "paired": tfds.features.Scalar(dtype=np.bool_),
                "key": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        self.source = layouts.open_source(dl_manager.manual_dir, self._pair_list)
        for bad in self.source.pair_list.bad_lines:
            self.log.skipped.append(
                ("pair list", f"{bad.path}:{bad.line_number}: {bad.text!r}", bad.reason))
        by_split = {split: [t for t in self.source.pair_list.triplets if t.split == split]
                    for split in pairs.SPLITS}
        by_split["train"] = pairs.with_both_directions(by_split["train"])
        if self.source.layout.name == "viton":  # both test protocols: the list's, and paired
            by_split["test"] = pairs.with_own_clothes(by_split["test"])
        if not any(by_split.values()):
            raise readers.DataError(
                f"{', '.join(str(p) for p in self.source.pair_files)}: no usable line "
                f"({len(self.source.pair_list.bad_lines)} bad lines)")
        for split, triplets in by_split.items():
            self.log.listed[split] = len(triplets)
        return {split: self._generate_examples(split, triplets)
                for split, triplets in by_split.items() if triplets}

    def _generate_examples(self, split: str, triplets: list[pairs.Triplet]):
        assert self.source is not None
        for triplet in tqdm(triplets, desc=f"{split} triplets", disable=not self._progress):
            try:
                record, notes = examples.load_triplet(self.source.layout, triplet)
            except readers.DataError as err:
                self.log.skipped.append((split, triplet.key, str(err)))
                continue
            except (OSError, ValueError, TypeError, SyntaxError, EOFError) as err:
                # A file no reader check foresaw: this triplet is skipped, the build goes on.
                self.log.skipped.append((split, triplet.key,
                                         f"unreadable file ({type(err).__name__}: {err})"))
                continue
            self.log.notes.extend(notes)
            self.log.written[split] += 1
            yield triplet.key, record
        if not self.log.written[split]:
            raise readers.DataError(f"no triplet of the {split} split could be read "
                                    f"({len(triplets)} listed, all skipped)")

