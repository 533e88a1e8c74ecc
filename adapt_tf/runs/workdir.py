"""A run directory's files and their integrity: one run per workdir, nothing saved or kept that
a resumed run cannot trust.

`Workdir(W)` owns the file names of a workdir W (`python -m adapt_tf.train --workdir=W`); every
module asks it for a path instead of spelling the name:

| `Workdir` attribute | path | what |
|---|---|---|
| `config` | `W/operative_config.gin` | the run's configuration (written atomically) |
| `metrics` | `W/metrics.csv` | one row per logged iteration |
| `br_log` | `W/br.csv` | every BR sample (`train.sample_logs`) |
| `ada_log` | `W/ada.csv` | every ADA-criterion sample (`train.sample_logs`) |
| `mask_log` | `W/masks.csv` | every mask change (`train.sample_logs`) |
| `tensorboard` | `W/tensorboard/` | TensorBoard summaries |
| `samples` | `W/samples/step_N.png` | sample grids |
| `checkpoints` | `W/checkpoints/ckpt-N.*` | checkpoints (`rejected/`: unusable ones set aside) |
| `best_checkpoints` | `W/checkpoints_best/` | the best-scoring one (evaluating in training) |
| `eval` | `W/eval.json` | scores of `python -m adapt_tf.evaluate` and `train.test_eval` |
| `training_plot` | `W/training.png` | BR, densities and FID over the run |
| `export` | `W/export/` | `python -m adapt_tf.export`'s SavedModels and TFLite file |
| `report` | `W/report/` | `python -m adapt_tf.report W`'s default output |
| `lock_file` | `W/.lock`, `W/.lock.pid` | held while a process trains in W, and that process's id |
| `orphaned(n)` | `W/orphaned/n/` | the files of a previous run that had no checkpoint to resume |

Reading and writing them safely (locks, atomic writes, checkpoints' integrity, torn CSV rows)
is `adapt_tf.runs.storage`.
"""
from __future__ import annotations

import dataclasses
import os

__all__ = ["Workdir", "WorkdirError", "WorkdirInUseError", "CHECKPOINT_KINDS", "CONFIG_NAME",
           "METRICS_NAME", "CHECKPOINT_DIR", "BEST_CHECKPOINT_DIR", "EVAL_NAME", "REJECTED_DIR",
           "RECORD_ROOT", "RUN_FILES"]

CONFIG_NAME = "operative_config.gin"
METRICS_NAME = "metrics.csv"
BR_LOG_NAME = "br.csv"
ADA_LOG_NAME = "ada.csv"
MASK_LOG_NAME = "masks.csv"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = "checkpoints_best"
REJECTED_DIR = "rejected"
EVAL_NAME = "eval.json"
PLOT_NAME = "training.png"
EXPORT_DIR = "export"
REPORT_DIR = "report"
LOCK_NAME = ".lock"
ORPHANED_DIR = "orphaned"
# The root name, in every checkpoint `writers.Checkpointer` saves, of the text recording the
# run's configuration (the CLI's gin config; `configurables.recorded_bindings` reads it).
RECORD_ROOT = "run_record"
# The checkpoint directories a finished run is read back from, by the name the CLIs take.
CHECKPOINT_KINDS = {"best": BEST_CHECKPOINT_DIR, "last": CHECKPOINT_DIR}
# Root names of the checkpoint (`writers.Checkpointer`) whose float values must be finite;
# others may hold inf legitimately (the best FID before any evaluation).
MODEL_STATE_ROOTS = ("gan", "g_optimizer", "d_optimizer")


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of the files of workdir `path` (see the table in the module docstring)."""

    path: str

    def _join(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def config(self) -> str:
        return self._join(CONFIG_NAME)

    @property
    def metrics(self) -> str:
        return self._join(METRICS_NAME)

    @property
    def br_log(self) -> str:
        """Every BR sample (`train.sample_logs`)."""
        return self._join(BR_LOG_NAME)

    @property
    def ada_log(self) -> str:
        """Every ADA-criterion sample (`train.sample_logs` with `balance_criterion` "ada")."""
        return self._join(ADA_LOG_NAME)

    @property
    def mask_log(self) -> str:
        """Every mask change (`train.sample_logs`)."""
        return self._join(MASK_LOG_NAME)

    def orphaned(self, number: int) -> str:
        """Where `set_aside_previous_run` keeps the files of the n-th run that had no
        checkpoint to resume."""
        return os.path.join(self.path, ORPHANED_DIR, str(number))

    @property
    def tensorboard(self) -> str:
        return self._join(TENSORBOARD_DIR)

    @property
    def samples(self) -> str:
        return self._join(SAMPLES_DIR)

    @property
    def checkpoints(self) -> str:
        return self._join(CHECKPOINT_DIR)

    @property
    def best_checkpoints(self) -> str:
        return self._join(BEST_CHECKPOINT_DIR)

    def checkpoint_directory(self, kind: str) -> str:
        """The directory of the "best" or the "last" (`CHECKPOINT_KINDS`) checkpoints."""
        return self._join(CHECKPOINT_KINDS[kind])

    @property
    def eval(self) -> str:
        return self._join(EVAL_NAME)

    @property
    def training_plot(self) -> str:
        return self._join(PLOT_NAME)

    @property
    def export(self) -> str:
        return self._join(EXPORT_DIR)

    @property
    def report(self) -> str:
        return self._join(REPORT_DIR)

    @property
    def lock_file(self) -> str:
        return self._join(LOCK_NAME)


class WorkdirError(ValueError):
    """A workdir cannot be used as asked; the message names the file and the fix."""


class WorkdirInUseError(WorkdirError):
    """Another process holds the workdir's lock."""


# The files a run writes beside its checkpoints, which describe that run only.
RUN_FILES = (CONFIG_NAME, METRICS_NAME, BR_LOG_NAME, ADA_LOG_NAME, MASK_LOG_NAME, EVAL_NAME,
             PLOT_NAME, TENSORBOARD_DIR, SAMPLES_DIR, BEST_CHECKPOINT_DIR, EXPORT_DIR,
             REPORT_DIR, os.path.join(CHECKPOINT_DIR, REJECTED_DIR))
