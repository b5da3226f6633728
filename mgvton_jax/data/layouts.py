"""Where the files of a triplet live in each known data set layout.

Known layouts (`detect_layout` tells them apart):
- `mpv`: the MPV release / competition layout: `all/<PID>/<name>.jpg` (people and clothes),
  `all/<PID>/<clothes>_mask.jpg`, `all_parsing/<PID>/<name>.png` (LIP),
  `all_person_clothes_keypoints/<PID>/<name>_keypoints.json`, `all_poseA_poseB_clothes*.txt`.
- `mpv_jdai`: the JDAI-CV re-organisation: `images/`, `cloth_image/`, `cloth_mask/<c>_mask.png`,
  `parse_cihp/` (CIHP labels, read as LIP ids: docs/design.md), `pose_coco/`,
  `data_pair.txt`; files may sit flat although the pair list names them `<PID>/<name>.jpg`,
  or under `train/`/`val/`.
- `viton`: CP-VTON's VITON: `{train,test}/{image,cloth,cloth-mask,image-parse,pose}` and
  `{train,test}_pairs.txt` (one photo per person: pose-fixed try-on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mgvton_jax.data import pairs
from mgvton_jax.data.readers import DataError

# File kinds of a triplet.
PERSON, CLOTHES, CLOTHES_MASK, PARSING, KEYPOINTS = (
    "person", "clothes", "clothes_mask", "parsing", "keypoints",
)


@dataclass(frozen=True)
class Layout:
    """Resolves pair-list names to files. `folders[kind]` are tried in order; names are
    formatted from `templates[kind]` with {name} (file name) and {stem} (name without suffix).
    """

    name: str
    root: Path
    folders: dict[str, tuple[str, ...]]
    templates: dict[str, tuple[str, ...]]
    split_folders: bool  # folders hold train/ and test/ (or val/) sub-folders

    def candidates(self, kind: str, entry: str, split: str) -> list[Path]:
        entry_path = PurePosixPath(entry)
        parents = [str(entry_path.parent), ""] if str(entry_path.parent) != "." else [""]
        splits = [split, "val"] if split == "test" else [split]
        out = []
        for folder in self.folders[kind]:
            bases = [self.root / folder]
            if self.split_folders:
                bases = [self.root / s / folder for s in splits] + bases
            else:
                bases = bases + [self.root / folder / s for s in splits]
            for base in bases:
                for parent in parents:
                    for template in self.templates[kind]:
                        file = template.format(name=entry_path.name, stem=entry_path.stem)
                        out.append(base / parent / file)
        return out

    def find(self, kind: str, entry: str, split: str) -> Path:
        """The file of `kind` for pair-list entry `entry`; DataError naming where it looked."""
        candidates = self.candidates(kind, entry, split)
        for path in candidates:
            if path.is_file():
                return path
        raise DataError(
            f"{candidates[0]}: {kind} file for {entry!r} not found (also looked in "
            f"{len(candidates) - 1} other places, e.g. {candidates[-1]})"
        )


_TEMPLATES = {
    PERSON: ("{name}",),
    CLOTHES: ("{name}",),
    CLOTHES_MASK: ("{stem}_mask.jpg", "{stem}_mask.png"),
    PARSING: ("{stem}.png",),
    KEYPOINTS: ("{stem}_keypoints.json",),
}


# Folders of each kind of file, per layout.
_FOLDERS = {
    "mpv": {PERSON: ("all",), CLOTHES: ("all",), CLOTHES_MASK: ("all",),
            PARSING: ("all_parsing",), KEYPOINTS: ("all_person_clothes_keypoints",)},
    "mpv_jdai": {PERSON: ("images",), CLOTHES: ("cloth_image", "images"),
                 CLOTHES_MASK: ("cloth_mask",), PARSING: ("parse_cihp",),
                 KEYPOINTS: ("pose_coco",)},
    "viton": {PERSON: ("image",), CLOTHES: ("cloth",), CLOTHES_MASK: ("cloth-mask",),
              PARSING: ("image-parse",), KEYPOINTS: ("pose",)},
}


def _layout(name: str, root: Path) -> Layout:
    viton = name == "viton"  # split folders; masks named like their clothes
    templates = {**_TEMPLATES, CLOTHES_MASK: ("{name}", "{stem}.png", "{stem}.jpg")} \
        if viton else _TEMPLATES
    return Layout(name=name, root=root, folders=_FOLDERS[name], templates=templates,
                  split_folders=viton)


@dataclass
class Source:
    """A data set on disk: its layout and the triplets of its pair list(s)."""

    layout: Layout
    pair_list: pairs.PairList
    pair_files: list[Path]


def open_source(root: str | os.PathLike, pair_list: str | os.PathLike | None = None
                ) -> Source:
    """Detects the layout under `root` and reads its pair list(s).

    Args:
      root: data set directory (see the module docstring for the layouts).
      pair_list: explicit MPV pair-list file; default: the one found in `root`.
    Raises:
      DataError: unknown layout, or several candidate pair lists and none chosen.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data set directory not found")
    viton_root = next((r for r in (root, root / "data") if any(
        (r / f"{split}_pairs.txt").is_file() or (r / split / "image").is_dir()
        for split in pairs.SPLITS)), None)
    if (root / "all").is_dir():
        layout = _layout("mpv", root)
        found = sorted(root.glob("all_poseA_poseB_clothes*.txt"))
    elif (root / "images").is_dir() and (root / "parse_cihp").is_dir():
        layout = _layout("mpv_jdai", root)
        found = sorted(root.glob("data_pair*.txt"))
    elif viton_root is not None:
        layout = _layout("viton", viton_root)
        # A named list's split is in its name (train_pairs.txt, test_samples_pair.txt).
        lists = ({"train" if "train" in Path(pair_list).name else "test": Path(pair_list)}
                 if pair_list is not None else
                 {split: viton_root / f"{split}_pairs.txt" for split in pairs.SPLITS
                  if (viton_root / f"{split}_pairs.txt").is_file()})
        if not lists:
            raise DataError(
                f"{viton_root}: VITON layout without train_pairs.txt or test_pairs.txt; name "
                "your pair list (2 columns: person.jpg clothes.jpg) with --pair-list")
        result = pairs.PairList()
        for split, path in lists.items():
            read = pairs.read_viton_pairs(path, split)
            result.triplets += read.triplets
            result.bad_lines += read.bad_lines
        return Source(layout, result, list(lists.values()))
    else:
        raise DataError(
            f"{root}: unknown data set layout. Expected MPV (all/, all_parsing/, "
            "all_person_clothes_keypoints/, all_poseA_poseB_clothes*.txt), JDAI MPV (images/, "
            "cloth_image/, cloth_mask/, parse_cihp/, pose_coco/, data_pair.txt) or VITON "
            "(train_pairs.txt, train/image, train/cloth, ...)"
        )
    if pair_list is not None:
        found = [Path(pair_list)]
    if len(found) != 1:
        raise DataError(
            f"{root}: expected one pair list, found {[str(f) for f in found] or 'none'}; "
            "name one with --pair-list"
        )
    return Source(layout, pairs.read_mpv_pairs(found[0]), found)

