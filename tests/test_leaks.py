"""No pixel of the clothes a person wears reaches a network at inference.

In VITON's pose-fixed pairs the reference photo is the ground truth, so the colours of the
worn upper clothes, dress or coat must reach the networks only through the product image
(and the 16x12 body shape, from the parsing). The test repaints those pixels of real VITON
photos and checks that every model input the inference networks read is unchanged, bit for
bit, through the data pipeline (training and eval) and through try-on's framing.
"""

import io

import numpy as np
import pytest
from PIL import Image
from real_samples import VITON, needs_real_samples

from mgvton_jax import config_lib, constants, stages
from mgvton_jax.data import examples, layouts, pairs
from mgvton_jax.tryon_inputs import framed_example, read_inputs

SIZES = [(256, 192), (128, 96), (64, 48)]


def inference_reads() -> set[str]:
    """The model inputs that some stage's inference network takes."""
    read = set()
    for name in stages.PIPELINE:
        stage = stages.get(name)
        for network in stage.inference:
            for keys in stage.networks[network].inputs:
                read.update(keys)
    return read & set(examples.MODEL_INPUT_CHANNELS)


def repainted(photo: np.ndarray, parsing: np.ndarray) -> np.ndarray:
    """The photo with the worn clothes' pixels inverted (every one of them changes)."""
    clothes = np.isin(parsing, constants.CLOTHES_LABELS)
    changed = photo.copy()
    changed[clothes] = 255 - changed[clothes]
    return changed


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    source = layouts.open_source(VITON)
    test = [t for t in source.pair_list.triplets if t.split == "test"]
    return [examples.load_triplet(source.layout, t)[0] for t in pairs.with_own_clothes(test)[:4]]


def test_inference_reads_no_photo_of_the_person():
    read = inference_reads()
    assert "reference_without_clothes" in read and "clothes" in read
    assert not read & {"reference_image", *examples.GROUND_TRUTH}


def _inputs(compact: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in examples.model_inputs(compact).items()}


@needs_real_samples
@pytest.mark.parametrize("image_hw", SIZES)
def test_worn_clothes_reach_no_inference_input_through_the_data(records, image_hw):
    read = inference_reads()
    for record in records:
        raw = examples.decode_record(record)
        changed = dict(record, reference_image=_png(
            repainted(raw["reference_image"], raw["reference_parsing"])))
        for flip in (False, True):
            inputs = []
            for one in (record, changed):
                example = examples.resize_raw(examples.decode_record(one), image_hw)
                example = examples.flip_raw(example) if flip else example
                inputs.append(_inputs(examples.compact_example(example)))
            assert not np.array_equal(inputs[0]["reference_image"],
                                      inputs[1]["reference_image"])  # the change is seen
            for key in read:
                np.testing.assert_array_equal(inputs[0][key], inputs[1][key], err_msg=key)


@needs_real_samples
@pytest.mark.parametrize("image_hw", SIZES)
def test_worn_clothes_reach_no_inference_input_through_tryon(records, image_hw):
    labels = tuple(config_lib.base_config("refine", "tiny").data.clothes_labels)
    read = inference_reads()
    for record in records[:2]:
        raw = examples.decode_record(record)
        photo = raw["reference_image"][:, 10:-10]  # not the frame's aspect: fitted, padded
        parsing = raw["reference_parsing"][:, 10:-10]
        inputs = []
        for person in (photo, repainted(photo, parsing)):
            tryon = read_inputs(person, parsing, raw["clothes"], raw["target_keypoints"],
                                raw["clothes_mask"])
            inputs.append(_inputs(framed_example(tryon, image_hw, labels)[0]))
        for key in read:
            np.testing.assert_array_equal(inputs[0][key], inputs[1][key], err_msg=key)
