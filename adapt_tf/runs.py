"""A run's configuration and records, read back: what `evaluate`, `report` and the FLOPs CLI
share.

A workdir written by `python -m adapt_tf.train` holds `operative_config.gin` (every `train`
argument the run used), `metrics.csv`, `checkpoints/`, `checkpoints_best/` (with FID
evaluation) and, after `python -m adapt_tf.evaluate`, `eval.json`. `RunConfig` is the parsed
configuration: `train`'s keyword arguments (bound values and defaults) and the method's
table cell in the paper's grid.

Parsing goes through gin (`configurables.parse_config`), so it clears gin's global config and
leaves the parsed one in place.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from typing import Any, Sequence

import gin
from absl import logging

from adapt_tf import configurables, methods, paper, train_lib, workdir as workdir_lib

__all__ = ["RunConfig", "parse_run_config", "current_run_config", "read_run_config",
           "read_metrics", "read_eval", "recorded_bindings", "check_resume",
           "RESUMABLE_CHANGES"]

CONFIG_NAME = workdir_lib.CONFIG_NAME
METRICS_NAME = workdir_lib.METRICS_NAME
EVAL_NAME = workdir_lib.EVAL_NAME
# Bindings a resumed run may change: when, how often and where it runs, not what it trains.
# total_steps also rescales the method's schedules (e.g. the drop fraction) from then on.
RESUMABLE_CHANGES = ("train.total_steps", "train.log_every", "train.checkpoint_every",
                     "train.sample_every", "train.num_sample_images", "train.eval_every",
                     "train.data_dir", "train.download", "train.strategy", "train.devices",
                     "train.jit_compile")


@dataclasses.dataclass(frozen=True)
class RunConfig:
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
            raise ValueError("This RunConfig was parsed with with_method=False; parse it again "
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


def parse_run_config(gin_files: Sequence[str], gin_bindings: Sequence[str] = (), *,
                     with_method: bool = True) -> RunConfig:
    """Parses gin files and bindings (clearing gin's config first) into a `RunConfig`.

    Args:
      gin_files, gin_bindings: as `python -m adapt_tf.train` takes them.
      with_method: build the `methods.Method` (needs `method.name` bound); False for configs
        that only set up a setting (e.g. `gin_configs/settings/*.gin`).
    """
    gin.clear_config()
    configurables.parse_config(list(gin_files), list(gin_bindings))
    return current_run_config(with_method=with_method)


def current_run_config(*, with_method: bool = True) -> RunConfig:
    """The `RunConfig` of gin's current config (`parse_run_config` without parsing)."""
    bound = gin.get_bindings(configurables.RUN_SPEC, resolve_references=False)
    if not with_method:
        bound.pop("method", None)
    defaults = {field.name: field.default for field in dataclasses.fields(train_lib.RunSpec)
                if field.default is not dataclasses.MISSING}
    # deepcopy resolves gin references: macros to values, @method() to its result.
    arguments = {**defaults, **copy.deepcopy(bound)}
    method_arguments = gin.get_bindings("adapt_tf.methods.method")
    return RunConfig(arguments, method_arguments)


def read_run_config(workdir: str, *, with_method: bool = True) -> RunConfig:
    """The `RunConfig` of a run, from `workdir/operative_config.gin`; arguments["workdir"] is
    `workdir` (the run may have been moved)."""
    path = workdir_lib.Workdir(workdir).config
    if not os.path.isfile(path):
        raise ValueError(f"{workdir!r} has no {CONFIG_NAME}; pass the workdir of a run started "
                         "with `python -m adapt_tf.train --workdir=...`.")
    config = parse_run_config([path], with_method=with_method)
    config.arguments["workdir"] = workdir
    return config


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """The rows of `workdir/metrics.csv` as floats (empty cells NaN); [] if there is none.
    Torn rows are dropped with a warning (`workdir.read_csv_rows`)."""
    path = workdir_lib.Workdir(workdir).metrics
    if not os.path.isfile(path):
        return []
    _, rows = workdir_lib.read_csv_rows(path)
    return [{key: _float(value) for key, value in row.items()} for row in rows]


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def recorded_bindings(workdir: str) -> dict[str, Any] | None:
    """`configurables.config_bindings()` of the run recorded in `workdir` if it has
    checkpoints (None otherwise, or with a warning if its config is missing). Clears gin."""
    if not workdir_lib.checkpoint_paths(workdir_lib.Workdir(workdir).checkpoints):
        return None
    path = workdir_lib.Workdir(workdir).config
    if not os.path.isfile(path):
        logging.warning("%s has checkpoints but no %s: the configuration cannot be checked "
                        "against them.", workdir, CONFIG_NAME)
        return None
    gin.clear_config()
    try:
        configurables.parse_config([path])
    except (ValueError, TypeError, KeyError, OSError, SyntaxError) as error:
        raise workdir_lib.WorkdirError(
            f"Cannot read the recorded configuration {path} ({error}); restore it from a "
            "backup, or use a new --workdir.") from None
    bindings = configurables.config_bindings()
    gin.clear_config()
    return bindings


def check_resume(workdir: str, recorded: dict[str, Any] | None,
                 bindings: dict[str, Any]) -> None:
    """Refuses to resume a run with bindings that differ from its `recorded` ones, except
    `RESUMABLE_CHANGES`: `WorkdirError` listing each differing binding, recorded and new."""
    if recorded is None:
        return
    differences = [(key, old, new) for key, old, new in
                   configurables.binding_differences(recorded, bindings)
                   if key not in RESUMABLE_CHANGES]
    if differences:
        listed = "; ".join(f"{key} = {old!r} recorded, {new!r} now"
                           for key, old, new in differences)
        raise workdir_lib.WorkdirError(
            f"{workdir} holds checkpoints of a run with another configuration ({listed}). "
            f"Resume it with its recorded configuration ({workdir_lib.Workdir(workdir).config})"
            f", or train the new one in a new --workdir. Only {', '.join(RESUMABLE_CHANGES)} "
            "may change on resume.")


def read_eval(workdir: str) -> dict[str, Any] | None:
    """`workdir/eval.json` as written by `python -m adapt_tf.evaluate`, or None."""
    path = workdir_lib.Workdir(workdir).eval
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)
