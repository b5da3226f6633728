"""A trained pipeline ready to run: its networks loaded, the stage walk jitted over devices.

Evaluation (`mgvton_jax.eval`) loads one from a training workdir, try-on
(`mgvton_jax.tryon`) from an exported model directory; both then call it on batches of
model inputs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from flax import nnx

from mgvton_jax import stages, visualize, xla
from mgvton_jax.checkpoints import load_inference_networks, stage_dir
from mgvton_jax.data import examples
from mgvton_jax.export import ModelError, load_model
from mgvton_jax.mesh import data_shardings, pad_rows


def stack_padded(rows: Sequence[Mapping[str, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    """Examples (dicts of arrays) stacked into one batch of `size` rows (`mesh.pad_rows`)."""
    return {key: pad_rows(np.stack([row[key] for row in rows]), size) for key in rows[0]}


def walk_to(stop_after: str | None = None) -> tuple[str, ...]:
    """The stages to run, in order, to the end of the pipeline or to `stop_after`, which must
    output a try-on picture (`Stage.image`)."""
    names = stages.PIPELINE if stop_after is None else \
        stages.PIPELINE[:stages.PIPELINE.index(stages.get(stop_after).name) + 1]
    if stages.get(names[-1]).image is None:
        pictured = [n for n in stages.PIPELINE if stages.get(n).image]
        raise ValueError(f"the {names[-1]!r} stage outputs no try-on picture; stop after one "
                         f"of {pictured}")
    return names


@dataclasses.dataclass
class Pipeline:
    """Inference networks of the stages `names` and their jitted walk.

    steps: {stage: checkpoint step}; configs: {stage: training config}.
    image_key: the output that is the try-on result (the last stage's `image`).
    """

    names: tuple[str, ...]
    networks: Mapping[str, Mapping[str, nnx.Module]]
    steps: Mapping[str, int]
    configs: Mapping[str, ml_collections.ConfigDict]
    # This process's devices: each process of a multi-process run walks its own examples.
    devices: Sequence = dataclasses.field(default_factory=jax.local_devices)

    def __post_init__(self):
        self.image_key = stages.get(self.names[-1]).image
        self._replicated, self._data = data_shardings(self.devices)
        graphdef, state = nnx.split({n: dict(self.networks[n]) for n in self.names})
        self._state = jax.device_put(state, self._replicated)
        names, clothes_labels = self.names, tuple(self.config.data.clothes_labels)

        def walk(state, compact, pictures, label_maps, scores):
            batch = examples.model_inputs(compact, clothes_labels)
            values = {**batch, **stages.run_stages(names, nnx.merge(graphdef, state), batch)}
            scorers = {name: stages.get(name).scorer for name in names} if scores else {}
            return ({key: visualize.to_rgb(values[key]) for key in pictures},
                    {key: values[key].argmax(-1).astype(np.uint8) for key in label_maps},
                    {name: scorer.per_example(values) for name, scorer in scorers.items()
                     if scorer is not None})

        self._walk: Callable = xla.jit(walk, platform=self.devices[0].platform,
                                       in_shardings=(self._replicated, self._data),
                                       out_shardings=self._data,
                                       static_argnums=(2, 3, 4))  # what comes back

    @property
    def config(self) -> ml_collections.ConfigDict:
        """The last stage's config (image size and data settings are shared)."""
        return self.configs[self.names[-1]]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.image_size)

    def columns(self, key: str) -> tuple[str, ...]:
        """The `key` field of every stage of the walk (e.g. "intermediates"), in walk order,
        each name once."""
        return tuple(dict.fromkeys(k for name in self.names
                                   for k in getattr(stages.get(name), key)))

    def __call__(self, batch: Mapping[str, np.ndarray], pictures: Sequence[str] = (),
                 scores: bool = False, label_maps: Sequence[str] = ()
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Walks compact examples (B, ...) keyed as `examples.COMPACT_INPUTS`.

        B must divide by the device count (`batch_multiple`). Only what is asked for comes
        back to the host:
        Returns:
          ({key: (B, H, W, 3) uint8 picture (`visualize.to_rgb`)} for the model inputs and
           outputs named in `pictures`; {key: (B, H, W) uint8 label ids (argmax)} for the
           parsings named in `label_maps`; with scores, {stage: (B, ...) numbers} of each
           stage of the walk that declares a `Stage.scorer`, else {}).
        """
        batch = {key: np.asarray(value) for key, value in batch.items()
                 if key in examples.COMPACT_INPUTS}
        return jax.device_get(self._walk(self._state, jax.device_put(batch, self._data),
                                         tuple(pictures), tuple(label_maps), scores))

    @property
    def batch_multiple(self) -> int:
        return len(self.devices)


def load_workdir(workdir: str | Path, stop_after: str | None = None) -> Pipeline:
    """The pipeline trained in workdir (WORKDIR/STAGE), each stage at its latest checkpoint.

    Raises:
      StageMissingError: a stage of the walk has no checkpoint (the message says how to
        train it).
    """
    names = walk_to(stop_after)
    networks, steps, configs = {}, {}, {}
    for name in names:
        networks[name], meta = load_inference_networks(name, stage_dir(workdir, name))
        steps[name] = meta["step"]
        configs[name] = ml_collections.ConfigDict(meta["config"])
    return Pipeline(names, networks, steps, configs)


def load_model_dir(path: str | Path) -> Pipeline:
    """The pipeline of a model directory written by `python -m mgvton_jax.export`.

    Raises:
      ModelError: not such a directory, or a stage's files are missing.
    """
    networks, manifest = load_model(path)
    names = tuple(manifest["stages"])
    if names != walk_to()[:len(names)] or stages.get(names[-1]).image is None:
        raise ModelError(f"{path}: holds the stages {list(names)}, not a try-on pipeline "
                         f"({list(stages.PIPELINE)})")
    configs = {name: ml_collections.ConfigDict(json.loads(
        (Path(path) / name / "config.json").read_text())) for name in names}
    steps = {name: entry["step"] for name, entry in manifest["stages"].items()}
    return Pipeline(names, networks, steps, configs)
