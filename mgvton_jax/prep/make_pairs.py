"""An MPV pair list for a folder of one's own triplets.

The folder has the JDAI MPV layout, which the data set builder reads:

    DIR/images/GROUP@N=VIEW.jpg        person photos (the same person in the same clothes)
    DIR/parse_cihp/GROUP@N=VIEW.png    their parsings (label ids)
    DIR/pose_coco/GROUP@N=VIEW_keypoints.json
    DIR/cloth_image/GROUP@N=VIEW.jpg   the product image of the group's clothes
    DIR/cloth_mask/GROUP@N=VIEW_mask.png

A group is the text of a file name before its first "@" (MPV's naming, e.g.
1LJ21D005-G11@10=person_half_front.jpg), or before "=" when there is no "@". Every ordered
pair of different photos of a group, with the group's clothes, is one line
`GROUP/photoA GROUP/photoB GROUP/clothes SPLIT`.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from pathlib import Path

from mgvton_jax.data.pairs import IMAGE_EXTENSIONS, SPLITS
from mgvton_jax.data.readers import DataError

SEPARATORS = ("@", "=")


def group_of(stem: str) -> str | None:
    """The group of a file name's stem (module docstring); None without a separator."""
    for separator in SEPARATORS:
        if separator in stem:
            return stem.split(separator, 1)[0]
    return None


def _groups(folder: Path) -> dict[str, list[str]]:
    groups = defaultdict(list)
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        group = group_of(path.stem)
        if path.suffix.lower() in IMAGE_EXTENSIONS and group:
            groups[group].append(path.name)
    return groups


def pair_lines(root: str | os.PathLike, split: str = "test") -> tuple[list[str], list[str]]:
    """(pair-list lines, notes on groups left out) for the folder `root` (module docstring).

    Raises:
      DataError: no images/ or cloth_image/ folder, an unknown split, or no group with two
        photos and a product image.
    """
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {SPLITS}")
    people, clothes = _groups(root / "images"), _groups(root / "cloth_image")
    if not people or not clothes:
        raise DataError(f"{root}: expected images/GROUP@N=VIEW.jpg person photos and "
                        "cloth_image/GROUP@N=VIEW.jpg product images (see python -m "
                        "mgvton_jax.prep make-pairs --help)")
    lines, notes = [], []
    for group, photos in people.items():
        if group not in clothes:
            notes.append(f"group {group!r}: no product image in cloth_image/")
        elif len(photos) < 2:
            notes.append(f"group {group!r}: one photo; a triplet needs two poses")
        else:
            if len(clothes[group]) > 1:
                notes.append(f"group {group!r}: several product images, using "
                             f"{clothes[group][0]}")
            for a, b in itertools.permutations(photos, 2):
                lines.append(f"{group}/{a}\t{group}/{b}\t{group}/{clothes[group][0]}\t{split}")
    if not lines:
        raise DataError(f"{root}: no group with two photos and a product image: "
                        + "; ".join(notes))
    return lines, notes


def write_pairs(root: str | os.PathLike, out: str | os.PathLike | None = None,
                split: str = "test") -> tuple[Path, int, list[str]]:
    """Writes the pair list (default DIR/data_pair.txt, refused if it exists); returns (file,
    lines, notes)."""
    lines, notes = pair_lines(root, split)
    out = Path(out) if out else Path(root) / "data_pair.txt"
    if out.exists():
        raise DataError(f"{out}: already exists; name another file with --out")
    out.write_text("".join(f"{line}\n" for line in lines))
    return out, len(lines), notes
