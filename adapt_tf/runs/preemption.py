"""Graceful stops on SIGTERM and SIGINT, what SLURM, Kubernetes and Ctrl-C send.

`StopOnSignal` turns the first such signal into "finish the current iteration, then stop":
`fit` ends after the iteration in flight, the `Checkpointer` saves at `on_train_end`, and
`train_lib.train` raises `TrainingInterrupted` with the conventional exit code (128 + signal
number: 143 for SIGTERM, 130 for SIGINT), which the CLI exits with. A second signal acts as if
there were no handler (SIGINT raises KeyboardInterrupt, SIGTERM kills), so a stuck process can
still be stopped.
"""
from __future__ import annotations

import signal
import threading

from absl import logging

from adapt_tf import _compat

__all__ = ["StopOnSignal", "TrainingInterrupted", "SIGNALS"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, *, signum: int):
        super().__init__(message)
        self.message = message  # str(self) may gain gin's "In call to configurable ..."
        self.signum = signum
        self.exit_code = 128 + signum


class StopOnSignal(_compat.Callback):
    """Stops `fit` after the iteration during which SIGTERM or SIGINT arrived.

    Handlers are installed for the duration of `fit` (main thread only: Python delivers
    signals there) and the previous ones restored afterwards. Place it last, after the
    `Checkpointer`, so that handlers are still in place while the final save runs.
    `received` is the signal number, or None.
    """

    def __init__(self):
        super().__init__()
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def _handle(self, signum, frame):
        self.received = signum
        signal.signal(signum, self._previous[signum])
        logging.warning("Received %s: finishing this iteration, then saving and stopping.",
                        signal.Signals(signum).name)

    def on_train_batch_end(self, batch, logs=None):
        if self.received is not None:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
