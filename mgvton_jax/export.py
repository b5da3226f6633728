"""Exports a trained pipeline as one self-contained model directory, and loads it back.

    python -m mgvton_jax.export --workdir W --out M
    python -m mgvton_jax.export --workdir W --out A --analyzer   # the person analyzer

M/manifest.json names the stages (in pipeline order) with their checkpoint steps, the image
size and the parsing labels; M/STAGE/config.json is the stage's training config and
M/STAGE/weights/ its inference networks (parameters and BatchNorm statistics only, orbax).
`load_model(M)` needs nothing else: no workdir, no optimiser, no training code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from mgvton_jax import constants, distributed, stages
from mgvton_jax.checkpoints import CheckpointError, load_inference_networks

FORMAT = "mgvton-jax model 1"


class ModelError(RuntimeError):
    """A model directory that cannot be written or read; the message names it."""


# What the repository ships (README, "Results on VITON"): the model trained on VITON, the
# person analyzer trained on VITON, and a few VITON test people and clothes to try them on.
_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = _ROOT / "pretrained" / "viton"
SHIPPED_ANALYZER = _ROOT / "pretrained" / "analyzer"
SHIPPED_EXAMPLES = _ROOT / "examples" / "viton"
ANALYZER = "analyzer"  # the stage exported by --analyzer


def _shipped(path: Path, what: str, flag: str) -> Path:
    if not (path / "manifest.json").is_file():
        raise ModelError(f"no {flag} given and the shipped {what} {path} is not there (a "
                         f"clone of the repository has it); name a model directory with {flag}")
    return path


def shipped_model() -> Path:
    """The shipped try-on model's directory. Raises ModelError where this install lacks it
    (a package installed without the repository)."""
    return _shipped(SHIPPED_MODEL, "model", "--model")


def shipped_analyzer() -> Path:
    """The shipped person analyzer's directory (ModelError as `shipped_model`)."""
    return _shipped(SHIPPED_ANALYZER, "person analyzer", "--analyzer")


def describe(path: str | os.PathLike, what: str = "model") -> str:
    """One line saying which model (or analyzer: what="analyzer") a command uses."""
    resolved = Path(path).resolve()
    shipped = {SHIPPED_MODEL: "the shipped VITON model, pretrained/viton/MODEL.md",
               SHIPPED_ANALYZER: "the shipped VITON person analyzer, "
                                 "pretrained/analyzer/MODEL.md"}.get(resolved)
    return f"{what}: {path}" + (f" ({shipped})" if shipped else "")


def export_model(workdir: str | os.PathLike, out: str | os.PathLike,
                 names: tuple[str, ...] = stages.PIPELINE) -> dict:
    """Writes the stages `names` (default: the try-on pipeline) trained in workdir
    (WORKDIR/STAGE) to out.

    The directory appears whole or not at all: it is written under a temporary name and
    renamed. In a multi-process run every process reads the checkpoints (orbax restores
    collectively) and process 0 alone writes. Returns the manifest.
    Raises:
      ModelError: out already exists.
      StageMissingError: a stage has no checkpoint in workdir (the message says how to train it).
    """
    out = Path(out)
    if out.exists():
        raise ModelError(f"{out} exists; choose another --out or remove it")
    loaded = {name: load_inference_networks(name, Path(workdir) / name)
              for name in names}
    first_config = next(iter(loaded.values()))[1]["config"]
    manifest = {"format": FORMAT, "image_size": first_config["image_size"],
                "labels": list(constants.LIP_LABELS),
                "stages": {name: {"step": meta["step"], "total_steps": meta["total_steps"],
                                  "networks": list(networks)}
                           for name, (networks, meta) in loaded.items()}}
    if distributed.is_main():
        _write_model(out, loaded, manifest)
    return manifest


def _write_model(out: Path, loaded: dict, manifest: dict) -> None:
    # Process 0 writes alone: its checkpointer must not wait for the other processes.
    checkpointer = ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, (networks, meta) in loaded.items():
            config = ml_collections.ConfigDict(meta["config"])
            (partial / name).mkdir()
            (partial / name / "config.json").write_text(config.to_json_best_effort(indent=1))
            # As host arrays: orbax refuses process-local jax.Arrays in a multi-process run.
            weights = jax.device_get(nnx.to_pure_dict(nnx.state(networks)))
            checkpointer.save((partial / name / "weights").absolute(), weights)
            checkpointer.wait_until_finished()
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
        partial.rename(out)
    finally:
        checkpointer.close()
        shutil.rmtree(partial, ignore_errors=True)


def load_model(path: str | os.PathLike) -> tuple[dict[str, dict[str, nnx.Module]], dict]:
    """({stage: inference networks}, manifest) of a directory written by `export_model`.

    The networks are ready for `stages.run_stages(stages.PIPELINE, networks, batch)`.
    Raises:
      ModelError: path is not such a directory, or a stage's files are missing.
    """
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise ModelError(f"{path}: not a model directory (no manifest.json); write one with "
                         "python -m mgvton_jax.export --workdir W --out DIR")
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{manifest_file}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    checkpointer = ocp.StandardCheckpointer()
    networks = {}
    try:
        for name, entry in manifest["stages"].items():
            stage_dir = path / name
            if not (stage_dir / "config.json").is_file() or not (stage_dir / "weights").is_dir():
                raise ModelError(f"{stage_dir}: config.json or weights/ missing")
            config = ml_collections.ConfigDict(json.loads((stage_dir / "config.json").read_text()))
            weights = (stage_dir / "weights").absolute()
            networks[name] = stages.restored_networks(
                name, config, entry["networks"],
                lambda target, weights=weights: checkpointer.restore(weights, target))
    finally:
        checkpointer.close()
    return networks, manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the training workdir (W/STAGE/...)")
    parser.add_argument("--out", required=True, help="the model directory to write (new)")
    parser.add_argument("--analyzer", action="store_true",
                        help="export the person analyzer (W/analyzer), not the try-on pipeline")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               args.distributed)
        manifest = export_model(args.workdir, args.out,
                                (ANALYZER,) if args.analyzer else stages.PIPELINE)
    except (ModelError, stages.StageMissingError, CheckpointError,
            distributed.DistributedError) as err:
        raise SystemExit(f"error: {err}") from None
    if distributed.is_main():
        steps = ", ".join(f"{name} step {entry['step']}"
                          for name, entry in manifest["stages"].items())
        print(f"wrote {args.out}: {steps}")


if __name__ == "__main__":
    main()
