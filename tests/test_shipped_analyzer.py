"""The shipped person analyzer on the shipped VITON examples (test people unseen in training):
known answers against their annotations, every kind of photo a person may give, and try-on
from a plain photo on the command line."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgvton_jax import analyze, constants
from mgvton_jax.data import readers
from mgvton_jax.export import SHIPPED_ANALYZER, SHIPPED_EXAMPLES, load_model
from mgvton_jax.metrics.keypoint_scores import keypoint_counts
from mgvton_jax.metrics.scores import label_iou
from mgvton_jax.prep import checks
from mgvton_jax.tryon import read_or_analyse

ROOT = Path(__file__).resolve().parents[1]
TEST = SHIPPED_EXAMPLES / "test"
PEOPLE = sorted(p.name for p in (TEST / "image").glob("*.jpg"))
# Floors below the lowest of the four photos, measured on 2026-12-07 (docs/analyzer.md,
# "Tests"): person-versus-background IoU 0.9125-0.9737, pixel accuracy 0.7874-0.9053,
# PCK@0.2 0.8125-1.0; hair, upper clothes and face IoU 0.519-0.887.
PERSON_IOU_FLOOR = 0.9
ACCURACY_FLOOR = 0.75
PCK_FLOOR = 0.75
LABEL_IOU_FLOOR = 0.45


@pytest.fixture(scope="module")
def analyzer():
    return analyze.Analyzer.load()


def _annotations(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stem = Path(name).stem
    return (readers.read_rgb(TEST / "image" / name),
            readers.read_parsing(TEST / "image-parse" / f"{stem}.png"),
            readers.read_keypoints(TEST / "pose" / f"{stem}_keypoints.json").keypoints)


def _person_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a > 0) & (b > 0)).sum() / ((a > 0) | (b > 0)).sum())


def _pck(estimated: np.ndarray, annotated: np.ndarray, at: float = 0.2) -> float:
    counts = keypoint_counts(estimated, annotated)
    return counts[f"correct@{at}"].sum() / counts["with_torso"].sum()


def test_the_shipped_analyzer_is_small_and_documented():
    size = sum(f.stat().st_size for f in SHIPPED_ANALYZER.rglob("*") if f.is_file())
    assert size <= 20 * 2**20
    card = (SHIPPED_ANALYZER / "MODEL.md").read_text()
    assert "python -m mgvton_jax.train --config configs/analyzer.py:cpu" in card
    assert "research" in card and "studio" in card
    _, manifest = load_model(SHIPPED_ANALYZER)
    assert list(manifest["stages"]) == ["analyzer"]


@pytest.mark.parametrize("name", PEOPLE)
def test_each_example_is_analysed_close_to_its_annotation(analyzer, name):
    photo, parsing, keypoints = _annotations(name)
    analysis = analyzer(photo, name)
    assert analysis.parsing.shape == parsing.shape
    assert _person_iou(analysis.parsing, parsing) > PERSON_IOU_FLOOR
    assert (analysis.parsing == parsing).mean() > ACCURACY_FLOOR
    iou = label_iou(np.bincount(parsing.astype(int).ravel() * 20 + analysis.parsing.ravel(),
                                minlength=400).reshape(20, 20))
    for label in (2, 5, 13):  # hair, upper clothes, face: in every example
        assert iou[label] > LABEL_IOU_FLOOR, (name, constants.LIP_LABELS[label], iou[label])
    assert _pck(analysis.keypoints, keypoints) > PCK_FLOOR


def _agreement(a: analyze.Analysis, b: analyze.Analysis) -> tuple[float, float]:
    """(share of pixels with the same label, largest distance of a joint both found)."""
    both = (a.keypoints[:, 2] > 0) & (b.keypoints[:, 2] > 0)
    distance = np.linalg.norm(a.keypoints[both, :2] - b.keypoints[both, :2], axis=1)
    return float((a.parsing == b.parsing).mean()), float(distance.max(initial=0))


def test_exif_rotation_is_honoured(analyzer, tmp_path):
    photo = readers.read_rgb(TEST / "image" / PEOPLE[0])
    upright, sideways = tmp_path / "upright.png", tmp_path / "sideways.png"
    Image.fromarray(photo).save(upright)
    # Stored rotated a quarter turn, with the EXIF note (orientation 6) that turns it back.
    exif = Image.Exif()
    exif[readers.EXIF_ORIENTATION] = 6
    Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90).save(sideways, exif=exif)
    assert Image.open(sideways).size == (256, 192)
    shown = readers.read_rgb(sideways)
    np.testing.assert_array_equal(shown, photo)
    same, _ = _agreement(analyzer(shown), analyzer(readers.read_rgb(upright)))
    assert same == 1.0


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_grey_cmyk_alpha_and_palette_photos_are_analysed(analyzer, tmp_path, mode):
    photo, parsing, keypoints = _annotations(PEOPLE[3])
    image = Image.fromarray(photo)
    if mode == "RGBA":  # the background made transparent: composited on white
        alpha = np.where(np.all(photo > 235, axis=-1), 0, 255).astype(np.uint8)
        image = Image.fromarray(np.dstack([photo, alpha]), "RGBA")
    else:
        image = image.convert(mode)
    path = tmp_path / f"photo.{'jpg' if mode == 'CMYK' else 'png'}"
    image.save(path)
    analysis = analyzer(readers.read_rgb(path), str(path))
    if mode == "L":
        # Trained on colour photos only, it does worse on grey ones (docs/analyzer.md): on
        # this photo person IoU 0.934 and PCK@0.2 0.857 (colour: 0.974, 0.857).
        assert _person_iou(analysis.parsing, parsing) > PERSON_IOU_FLOOR
        assert _pck(analysis.keypoints, keypoints) > PCK_FLOOR
    else:  # the same colours: the same analysis but for a few pixels (measured >= 0.996)
        same, distance = _agreement(analysis, analyzer(photo))
        assert same > 0.98 and distance < 3, (same, distance)


def test_any_size_and_aspect_is_fitted_and_mapped_back(analyzer):
    photo, parsing, keypoints = _annotations(PEOPLE[2])
    reference = analyzer(photo)
    big = np.asarray(Image.fromarray(photo).resize((1536, 2048), Image.BICUBIC))
    analysis = analyzer(big)
    assert analysis.parsing.shape == (2048, 1536)
    small = np.asarray(Image.fromarray(analysis.parsing).resize((192, 256), Image.NEAREST))
    assert (small == reference.parsing).mean() > 0.97
    both = (analysis.keypoints[:, 2] > 0) & (reference.keypoints[:, 2] > 0)
    scaled = (reference.keypoints[both, :2] + 0.5) * 8 - 0.5
    assert np.abs(analysis.keypoints[both, :2] - scaled).max() < 8 * 2
    # A landscape photo: the person in the middle of a wide white picture.
    wide = np.full((256, 480, 3), 255, np.uint8)
    wide[:, 144:336] = photo
    analysis = analyzer(wide)
    shifted = keypoints.copy()
    shifted[:, 0] = np.where(keypoints[:, 2] > 0, keypoints[:, 0] + 144, 0)
    assert _pck(analysis.keypoints, shifted) > PCK_FLOOR - 0.2


def test_photos_without_a_person_or_with_a_tiny_one_are_refused(analyzer):
    blank = np.full((300, 200, 3), 255, np.uint8)
    with pytest.raises(analyze.NoPersonError, match="blank: no person found"):
        analyzer(blank, "blank")
    noise = np.random.default_rng(0).integers(0, 256, (256, 192, 3), dtype=np.uint8)
    with pytest.raises(analyze.NoPersonError, match="noise: no person found"):
        analyzer(noise, "noise")
    clothes = readers.read_rgb(TEST / "cloth" / "004285_1.jpg")
    with pytest.raises(analyze.NoPersonError, match="clothes: no person found"):
        analyzer(clothes, "clothes")
    tiny = np.full((1024, 768, 3), 255, np.uint8)
    photo = readers.read_rgb(TEST / "image" / PEOPLE[0])
    tiny[400:464, 300:348] = np.asarray(Image.fromarray(photo).resize((48, 64)))
    with pytest.raises(analyze.NoPersonError, match="tiny: (no person found|the person is)"):
        analyzer(tiny, "tiny")


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_prep_analyze_writes_files_prep_check_accepts(tmp_path):
    photos = [str(TEST / "image" / name) for name in PEOPLE]
    run = _run("mgvton_jax.prep", "analyze", *photos, "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "the shipped VITON person analyzer" in run.stderr
    assert f"analyzed {len(PEOPLE)} photos into {tmp_path}; skipped 0" in run.stdout
    for name in PEOPLE:
        stem = Path(name).stem
        problems = checks.check_person(tmp_path / "image" / name,
                                       tmp_path / "image-parse" / f"{stem}.png",
                                       tmp_path / "pose" / f"{stem}_keypoints.json")
        assert not checks.unusable(problems), problems
        assert (tmp_path / "preview" / f"{stem}.png").is_file()


def test_a_pose_from_another_photo(analyzer):
    person, other = (TEST / "image" / name for name in PEOPLE[:2])
    inputs = read_or_analyse(lambda: analyzer, person, None, TEST / "cloth" / "017428_1.jpg",
                             other)
    np.testing.assert_array_equal(inputs.keypoints,
                                  analyzer(readers.read_rgb(other)).keypoints)
    np.testing.assert_array_equal(inputs.parsing, analyzer(readers.read_rgb(person)).parsing)
    assert inputs.notes[:2] == [f"parsing of {person} from the person analyzer",
                                f"target pose from the photo {other} by the person analyzer"]


def test_tryon_from_a_plain_photo_on_the_command_line(tmp_path):
    person, clothes = str(TEST / "image" / PEOPLE[0]), str(TEST / "cloth" / "017428_1.jpg")
    out = tmp_path / "out.png"
    run = _run("mgvton_jax.tryon", "--person", person, "--clothes", clothes, "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "the shipped VITON person analyzer" in run.stderr
    assert f"parsing and pose of {person} from the person analyzer" in run.stderr
    assert np.asarray(Image.open(out)).shape == (256, 192, 3)
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (192, 256), "white").save(blank)
    run = _run("mgvton_jax.tryon", "--person", str(blank), "--clothes", clothes, "--out",
               str(tmp_path / "none.png"))
    assert run.returncode == 1
    assert f"error: {blank}: no person found" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "none.png").exists()
