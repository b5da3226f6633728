"""A stage's train step, jitted once over the data mesh.

Data parallelism is `jax.jit` over a 1-D device mesh ("data", `mesh.data_shardings`): the
train state is replicated, the batch is split over devices, and XLA inserts the gradient
all-reduces (the modern form of pmap data parallelism). BatchNorm statistics are therefore
over the global batch. The earlier stages a stage needs are inference networks passed to the
step as arguments, run by the same walk (`stages.run_stages`) as evaluation and try-on.

Batches are compact (`examples.COMPACT_INPUTS`, (B, ...) each) and expanded into the model
inputs inside the step; `constants` is (frozen earlier stages' state, VGG parameters).
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np
from flax import nnx

from mgvton_jax import stages, xla
from mgvton_jax.data import examples
from mgvton_jax.mesh import data_shardings
from mgvton_jax.models import vgg
from mgvton_jax.training.state import build_train_state, check_batch, perceptual_network

Batch = dict[str, jax.Array]


class StageFunctions:
    """The stage's pure functions of (state, constants, compact batch), before jit.

    Args:
      config: the stage config.
      graphdef: the graph of {"networks", "optimizers"} whose state the step takes.
      frozen_graphdef: the graph of {stage: inference networks} of the frozen stages.
    """

    def __init__(self, config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                 frozen_graphdef: nnx.GraphDef):
        self.config, self.graphdef, self.frozen_graphdef = config, graphdef, frozen_graphdef
        self.stage = stages.get(config.stage)
        self.required = stages.required_stages(self.stage.name, config)
        self.taught = self.stage.ground_truth(config)
        # What the frozen stages give the step: the rest of what it consumes is ground truth.
        self.consumed = tuple(key for key in self.stage.consumes if key not in self.taught)

    def _expand(self, compact: Batch) -> Batch:
        return examples.model_inputs(compact, tuple(self.config.data.clothes_labels))

    def _taught(self, batch: Batch) -> Batch:
        return {key: batch[source] for key, source in self.taught.items()}

    def _earlier_outputs(self, frozen_state: nnx.State, batch: Batch) -> Batch:
        """What the stage consumes: the frozen stages' outputs (and taught ground truth)."""
        frozen = nnx.merge(self.frozen_graphdef, frozen_state)
        return jax.lax.stop_gradient(
            stages.run_stages(self.required, frozen, batch, self._taught(batch)))

    def frozen_outputs(self, constants: tuple, compact: Batch) -> Batch:
        """{consumed key: (B, H, W, C)}: the frozen stages' outputs the step consumes."""
        values = self._earlier_outputs(constants[0], self._expand(compact))
        return {key: values[key] for key in self.consumed}

    def train_step(self, state: nnx.State, constants: tuple, compact: Batch,
                   given: Batch | None = None) -> tuple[nnx.State, dict[str, jax.Array]]:
        """One optimisation step: (new state, {loss term: scalar}). With `given` (the
        consumed outputs, `frozen_outputs`), the frozen stages are not run."""
        batch = self._expand(compact)
        model = nnx.merge(self.graphdef, state)
        frozen_state, vgg_params = constants
        perceptual = functools.partial(
            vgg.perceptual_loss, vgg_params,
            imagenet_normalize=self.config.perceptual.imagenet_normalize,
        ) if self.stage.uses_vgg else None
        values = self._earlier_outputs(frozen_state, batch) if given is None else \
            {**self._taught(batch), **given}
        metrics = self.stage.train_step(model["networks"], model["optimizers"], values, batch,
                                        self.config, perceptual)
        return nnx.state(model), metrics

    def samples(self, state: nnx.State, constants: tuple, compact: Batch) -> Batch:
        """The model inputs, the earlier stages' and this stage's outputs (inference mode)."""
        batch = self._expand(compact)
        model = nnx.merge(self.graphdef, state)
        values = stages.run_stages([self.stage.name], {self.stage.name: model["networks"]},
                                   batch, self._earlier_outputs(constants[0], batch))
        return {**batch, **values}


class CompiledStage:
    """A stage's train state and constants placed on the devices, and its functions, each
    jitted once over them (built by `compile_stage`).

    Args:
      functions: the stage's pure functions.
      state: the networks' and optimisers' state of `functions.graphdef`, to replicate.
      constants: (frozen stages' state, VGG parameters), to replicate.
      devices: the devices of the data mesh.
    Attributes:
      stage: the stage.
      state: the networks' and optimisers' state, replicated; each step donates it.
      constants: the frozen stages' state and the VGG parameters, replicated.
      consumed: the frozen stages' outputs the step consumes (less taught ground truth).
    """

    def __init__(self, functions: StageFunctions, state: nnx.State, constants: tuple,
                 devices: list):
        replicated, self._data = data_shardings(devices)
        self.stage, self.consumed = functions.stage, functions.consumed
        self.state = jax.device_put(state, replicated)
        self.constants = jax.device_put(constants, replicated)
        jit = functools.partial(xla.jit, platform=devices[0].platform)
        self._step = jit(functions.train_step,
                         in_shardings=(replicated, replicated, self._data),
                         out_shardings=(replicated, replicated), donate_argnums=0)
        self._given_step = jit(functions.train_step,
                               in_shardings=(replicated, replicated, self._data, self._data),
                               out_shardings=(replicated, replicated), donate_argnums=0)
        self._frozen_outputs = jit(functions.frozen_outputs,
                                   in_shardings=(replicated, self._data),
                                   out_shardings=self._data)
        self._samples = jit(functions.samples)

    def step(self, state: nnx.State, batch: Batch) -> tuple[nnx.State, dict[str, jax.Array]]:
        """One optimisation step on a device batch: (state, {loss term: scalar})."""
        return self._step(state, self.constants, batch)

    def given_step(self, state: nnx.State, batch: Batch, values: Batch
                   ) -> tuple[nnx.State, dict[str, jax.Array]]:
        """`step` with the consumed outputs given (`frozen_cache`), not computed."""
        return self._given_step(state, self.constants, batch, values)

    def frozen_outputs(self, batch: Batch) -> Batch:
        """{consumed key: (B, H, W, C)} of a device batch, for the frozen-stage cache."""
        return self._frozen_outputs(self.constants, batch)

    def samples(self, state: nnx.State, batch: Batch) -> Batch:
        """The model inputs and every stage's outputs of a device batch, for sample pictures."""
        return self._samples(state, self.constants, batch)

    def to_device(self, host_batch: dict[str, np.ndarray]) -> Batch:
        """This process's rows of a batch as global arrays split over "data"."""
        return {k: jax.make_array_from_process_local_data(self._data, np.asarray(v))
                for k, v in host_batch.items()}

    def lower_step(self, state: nnx.State, batch: Batch) -> jax.stages.Lowered:
        """The step lowered for XLA, to compile ahead of time for its cost and memory analysis
        (benchmarks); the compiled executable is called as (state, constants, batch)."""
        return self._step.lower(state, self.constants, batch)


def compile_stage(config: ml_collections.ConfigDict, frozen: dict,
                  devices: list | None = None) -> CompiledStage:
    """Builds the stage's networks and optimisers and jits its step over the devices.

    Args:
      config: the stage config.
      frozen: {stage: inference networks} of the earlier stages it needs (`load_frozen`),
        passed to the step as parameters and run in inference mode.
      devices: the devices of the data mesh (default: all of them).
    Raises:
      ConfigError: the global batch is not a positive multiple of the device count.
    """
    devices = jax.devices() if devices is None else devices
    check_batch(config, len(devices))
    networks, optimizers = build_train_state(config)
    graphdef, state = nnx.split({"networks": networks, "optimizers": optimizers})
    frozen_graphdef, frozen_state = nnx.split(dict(frozen))
    functions = StageFunctions(config, graphdef, frozen_graphdef)
    vgg_params = perceptual_network(config) if functions.stage.uses_vgg else {}
    return CompiledStage(functions, state, (frozen_state, vgg_params), devices)
