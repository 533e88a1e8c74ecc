"""A run's configuration and records, read back: what `evaluate`, `report` and the FLOPs CLI
share.

A workdir written by `python -m adapt_tf.train` holds `operative_config.gin` (every
`train_lib.RunSpec` field the run used), `metrics.csv`, `checkpoints/`, `checkpoints_best/`
(with FID evaluation) and, after `python -m adapt_tf.evaluate`, `eval.json`
(`workdir.Workdir` names them). `ParsedConfig` is the parsed configuration: the run spec's fields
(bound values and defaults) and the method's table cell in the paper's grid.

This module is gin-free: the configuration is parsed at the composition root
(`configurables.parse_run_config`, `configurables.read_run_config`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from absl import logging

from adapt_tf import balance
from adapt_tf.runs import methods, paper, train_lib, storage, workdir as workdir_lib

__all__ = ["ParsedConfig", "read_metrics", "read_eval", "read_window_samples", "read_mask_changes"]


@dataclasses.dataclass(frozen=True)
class ParsedConfig:
    """One run's configuration.

    Attributes:
      arguments: the `train_lib.RunSpec` fields, bound or default; "method" holds the
        `methods.Method` unless parsed with `with_method=False`.
      method_arguments: the bindings of `methods.method` (name, g_density, setting, ...).
    """

    arguments: dict[str, Any]
    method_arguments: dict[str, Any]

    @property
    def method_setting(self) -> str:
        """"relaxed" (Table 1) or "strict" (Table 2: `method.setting = 'strict'`, or
        ADAPT_strict, which is strict whatever the binding)."""
        if self.method_arguments.get("name") == "adapt_strict":
            return "strict"
        return self.method_arguments.get("setting", "relaxed")

    @property
    def setting(self) -> str:
        """The paper's setting, e.g. "sngan_cifar10" (`paper.setting_name`)."""
        return paper.setting_name(self.arguments["architecture"], self.arguments["dataset"])

    @property
    def method(self) -> methods.Method:
        if "method" not in self.arguments:
            raise ValueError("This ParsedConfig was parsed with with_method=False; parse it again "
                             "with with_method=True to get the Method.")
        return self.arguments["method"]

    @property
    def cell(self) -> str:
        """The row of the paper's tables, e.g. "sdst_strong_rigl_strict" (`paper.cell_name`)."""
        return paper.cell_name(self.method.name, self.method_setting)

    def run_spec(self, **overrides) -> train_lib.RunSpec:
        """The `train_lib.RunSpec` of `arguments` with `overrides` (e.g. the `workdir` of a
        parsed config that has none)."""
        return train_lib.RunSpec(**{**self.arguments, **overrides})


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """The rows of `workdir/metrics.csv` as floats (empty cells NaN); [] if there is none,
    with a warning if checkpoints hold iterations all the same. Torn rows are dropped with a
    warning (`storage.read_csv_rows`)."""
    path = workdir_lib.Workdir(workdir).metrics
    rows = storage.read_csv_rows(path)[1] if os.path.isfile(path) else []
    checkpoints = storage.checkpoint_paths(workdir_lib.Workdir(workdir).checkpoints)
    if not rows and checkpoints:
        logging.warning("%s has no rows, but %s holds trained iterations (newest %s): the "
                        "run's logged values are lost, not zero or NaN.", path,
                        os.path.dirname(checkpoints[0]), os.path.basename(checkpoints[0]))
    return [{key: _float(value) for key, value in row.items()} for row in rows]


def read_window_samples(workdir: str) -> list[tuple[int, float]]:
    """(step, value) of every window sample `train.sample_logs` wrote, from the CSV of the
    first `balance.CRITERIA` that has one: the kept BR samples of `br.csv`, or the shares of
    `ada.csv`; [] if there is none."""
    for criterion in balance.CRITERIA.values():
        path = criterion.log_path(workdir)
        if os.path.isfile(path):
            return criterion.window_values(storage.read_csv_rows(path)[1])
    return []


def read_mask_changes(workdir: str) -> list[dict[str, Any]]:
    """The rows of `masks.csv` (step, network, dropped, grown, density); [] without it."""
    path = workdir_lib.Workdir(workdir).mask_log
    if not os.path.isfile(path):
        return []
    _, rows = storage.read_csv_rows(path, text_fields=("network",))
    return [{"step": int(row["step"]), "network": row["network"], "dropped": int(row["dropped"]),
             "grown": int(row["grown"]), "density": float(row["density"])} for row in rows]


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_eval(workdir: str) -> dict[str, Any] | None:
    """`workdir/eval.json` as written by `python -m adapt_tf.evaluate` (and the test-set
    evaluation at the end of a run), or None."""
    return storage.read_json(workdir_lib.Workdir(workdir).eval) or None
