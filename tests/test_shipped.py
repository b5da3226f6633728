"""The shipped VITON model on the shipped examples: it loads, dresses real people in the
asked-for clothes at their photo's size, and is what try-on uses without --model."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgvton_jax import TryOn, constants
from mgvton_jax.data import readers
from mgvton_jax.export import SHIPPED_EXAMPLES, SHIPPED_MODEL, load_model

ROOT = Path(__file__).resolve().parents[1]
TEST = SHIPPED_EXAMPLES / "test"


def _pairs() -> list[tuple[str, str]]:
    lines = (SHIPPED_EXAMPLES / "test_pairs.txt").read_text().split("\n")
    return [tuple(line.split()) for line in lines if line.strip()]


def _clothes_colour(name: str) -> np.ndarray:
    """The mean RGB of a product image's clothes pixels (its mask)."""
    pixels = readers.read_rgb(TEST / "cloth" / name).astype(np.float64)
    return pixels[readers.read_mask(TEST / "cloth-mask" / name) > 0].mean(axis=0)


@pytest.fixture(scope="module")
def tryon():
    return TryOn.load(SHIPPED_MODEL)


def test_the_shipped_model_is_small_and_documented():
    size = sum(f.stat().st_size for f in SHIPPED_MODEL.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    card = (SHIPPED_MODEL / "MODEL.md").read_text()
    assert "python -m mgvton_jax.train --config configs/viton.py:cpu" in card
    assert "research" in card
    _, manifest = load_model(SHIPPED_MODEL)
    assert list(manifest["stages"]) == ["parsing", "gmm", "warp_gan", "refine"]


def test_the_shipped_model_dresses_each_example_in_the_asked_for_clothes(tryon):
    for person, clothes in _pairs():
        stem = Path(person).stem
        photo = readers.read_rgb(TEST / "image" / person)
        parsing = readers.read_parsing(TEST / "image-parse" / f"{stem}.png")
        result = tryon(person=photo, person_parsing=parsing,
                       clothes=TEST / "cloth" / clothes,
                       clothes_mask=TEST / "cloth-mask" / clothes,
                       pose=TEST / "pose" / f"{stem}_keypoints.json").image
        assert result.shape == photo.shape and result.dtype == np.uint8
        worn = np.isin(parsing, constants.CLOTHES_LABELS)
        colour = result[worn].astype(np.float64).mean(axis=0)
        new, old = _clothes_colour(clothes), _clothes_colour(stem[:-2] + "_1.jpg")
        assert np.linalg.norm(colour - new) < np.linalg.norm(colour - old), (person, clothes)
        # Outside the clothes and arms most of the photo is the photo itself.
        kept = np.all(result == photo, axis=-1)
        assert kept[parsing == 0].mean() > 0.9


def test_tryon_without_model_uses_the_shipped_one(tmp_path):
    person, clothes = _pairs()[0]
    stem = Path(person).stem
    out = tmp_path / "out.png"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "mgvton_jax.tryon", "--person", str(TEST / "image" / person),
         "--person-parsing", str(TEST / "image-parse" / f"{stem}.png"),
         "--clothes", str(TEST / "cloth" / clothes),
         "--clothes-mask", str(TEST / "cloth-mask" / clothes),
         "--pose", str(TEST / "pose" / f"{stem}_keypoints.json"), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "the shipped VITON model" in run.stderr
    assert np.asarray(Image.open(out)).shape == (256, 192, 3)


def test_the_page_gallery_offers_every_shipped_person_clothes_and_pose():
    # VITON's pairs are pose-fixed: each photo is a person and a pose (a bug once dropped the
    # poses, and the page refused the examples).
    from mgvton_jax.demo import Gallery

    gallery = Gallery(SHIPPED_EXAMPLES)
    assert (len(gallery.people), len(gallery.clothes), len(gallery.poses)) == (4, 4, 4)
