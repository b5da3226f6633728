"""The stage registry and the one walk over it that training, evaluation and try-on share.

Every module of this package (but `base`) declares one `STAGE` (`base.Stage`). The pipeline
order follows from what each stage consumes and produces; a stage needs the earlier stages
that produce what it consumes (less what its training takes from the ground truth). Stages
declared `in_pipeline=False` (the person analyzer) are trained and exported by name but are
no step of the walk.

    values = run_stages(PIPELINE, networks, batch)   # networks: {stage: {network: module}}
    values["refined"]                                 # the try-on result, (B, H, W, 3)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence

import jax
import ml_collections
from flax import nnx

from mgvton_jax.data.examples import MODEL_INPUT_CHANNELS
from mgvton_jax.stages.base import Batch, Stage, eval_view


class StageMissingError(RuntimeError):
    """A stage that the walk needs has no trained networks."""


def _discover() -> dict[str, Stage]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            stage = importlib.import_module(f"{__name__}.{info.name}").STAGE
            found[stage.name] = stage
    return found


def _pipeline_order(stages: Mapping[str, Stage]) -> tuple[str, ...]:
    """The stages of the walk (`Stage.in_pipeline`), producers before consumers; ties by
    name. Raises ValueError on an unmet input."""
    stages = {name: stage for name, stage in stages.items() if stage.in_pipeline}
    producer = {key: stage.name for stage in stages.values() for key in stage.produces}
    order: list[str] = []
    while len(order) < len(stages):
        ready = sorted(
            name for name, stage in stages.items() if name not in order
            and all(producer.get(key) in order for key in stage.consumes))
        if not ready:
            stuck = {name: [k for k in stages[name].consumes if producer.get(k) not in order]
                     for name in stages if name not in order}
            raise ValueError(f"stages whose inputs no earlier stage produces: {stuck}")
        order.append(ready[0])
    return tuple(order)


STAGES: dict[str, Stage] = _discover()
# The try-on walk's stages in the order they run.
PIPELINE: tuple[str, ...] = _pipeline_order(STAGES)
_PRODUCER = {key: name for name, stage in STAGES.items() for key in stage.produces}
# The one table of channel counts: model inputs, stage outputs, stage-derived features.
CHANNELS: dict[str, int] = {
    **MODEL_INPUT_CHANNELS,
    **{key: c for stage in STAGES.values() for key, c in {**stage.produces,
                                                          **stage.features}.items()},
}


def get(name: str) -> Stage:
    """The stage called `name`; ValueError listing the known ones otherwise."""
    if name not in STAGES:
        apart = [n for n in STAGES if n not in PIPELINE]
        raise ValueError(f"unknown stage {name!r}; the stages are {list(PIPELINE)} and, apart "
                         f"from the walk, {apart}")
    return STAGES[name]


def channels(keys: Sequence[str]) -> int:
    """Channel count of the arrays `keys` concatenated (from `CHANNELS`)."""
    return sum(CHANNELS[key] for key in keys)


def build_networks(name: str, config: ml_collections.ConfigDict, rngs: nnx.Rngs,
                   only: Iterable[str] | None = None) -> dict[str, nnx.Module]:
    """The networks of stage `name` (or those in `only`) built from its config."""
    networks = get(name).networks
    return {net: networks[net].build(config, channels, rngs)
            for net in (networks if only is None else only)}


def restored_networks(name: str, config: ml_collections.ConfigDict, only: Iterable[str],
                      restore: Callable[[dict], dict]) -> dict[str, nnx.Module]:
    """The networks `only` of stage `name`, built from its config, with the values that
    restore(pure-dict target of their state) returns (e.g. an orbax restore).

    The target holds only shapes, dtypes and the device (`jax.ShapeDtypeStruct`): the networks
    are built abstractly, so no initialiser runs (8 of the 12 s that loading the analyzer took
    on a 2-core CPU).
    """
    abstract = nnx.eval_shape(lambda: build_networks(name, config, nnx.Rngs(config.seed),
                                                     only=only))
    graphdef, state = nnx.split(abstract)
    # On this process's first device, as concrete arrays would be (not where the writer had
    # them: a checkpoint of a 4-device run restores in a 1-device one).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, restore(target))
    return nnx.merge(graphdef, state)


def required_stages(name: str, config: ml_collections.ConfigDict | None = None
                    ) -> tuple[str, ...]:
    """The earlier stages stage `name` needs, in pipeline order.

    With a config: for training, without what its training takes from the ground truth.
    Without one: for inference.
    """
    stage = get(name)
    taught = stage.ground_truth(config) if config is not None else {}
    needed: set[str] = set()
    keys = [key for key in stage.consumes if key not in taught]
    while keys:
        producer = _PRODUCER[keys.pop()]
        if producer not in needed:
            needed.add(producer)
            keys.extend(STAGES[producer].consumes)
    return tuple(n for n in PIPELINE if n in needed)


def run_stages(names: Sequence[str], networks: Mapping[str, Mapping[str, nnx.Module]],
               batch: Batch, values: Mapping[str, jax.Array] | None = None
               ) -> dict[str, jax.Array]:
    """Runs stages `names` in order, in inference mode, each on the earlier ones' outputs.

    Args:
      names: stages in pipeline order (e.g. `PIPELINE`, or `required_stages(...)`).
      networks: {stage: {network: module}} holding at least each stage's `inference` ones.
      batch: model inputs, (B, H, W, C) arrays keyed as `MODEL_INPUT_CHANNELS`.
      values: outputs already known (e.g. ground truth a training stage is taught with).
    Returns:
      values plus every output of the stages run, (B, H, W, C) each.
    Raises:
      StageMissingError: a stage in `names` has no networks, or lacks an input it consumes.
    """
    values = dict(values or {})
    for name in names:
        stage = get(name)
        if name not in networks:
            raise StageMissingError(f"the {name!r} stage is needed but was not loaded")
        missing = [key for key in stage.consumes if key not in values]
        if missing:
            raise StageMissingError(
                f"the {name!r} stage needs {missing}, made by "
                f"{sorted({_PRODUCER[k] for k in missing})}, which did not run before it")
        views = {net: eval_view(networks[name][net]) for net in stage.inference}
        values.update(stage.infer(views, values, batch))
    return values
