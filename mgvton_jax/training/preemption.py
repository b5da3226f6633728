"""Stopping on SIGTERM/SIGINT after a checkpoint: a flag the training loop checks per step."""

from __future__ import annotations

import signal
from types import FrameType

import jax
from absl import logging

from mgvton_jax import distributed


class Preemption:
    """Within `with`, turns SIGTERM/SIGINT into a request to stop (the previous handlers come
    back on exit)."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self) -> Preemption:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        logging.warning("signal %d: saving a checkpoint and stopping", signum)
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stop(self, log_step: bool) -> bool:
        """Whether to stop after this step. Processes stop together: in a multi-process run a
        signal counts at the next log step everywhere (a collective at each log step)."""
        if jax.process_count() == 1:
            return self.requested
        return log_step and distributed.agree(self.requested)
