"""The Keras callbacks of adapt_tf under their former common name (kept so imports keep working).

Each callback lives in the module of its concept; new code imports from there:

* `adapt_tf.sparsity`: `DynamicSparsity` (DST on G or D), `reset_regrown_slots`.
* `adapt_tf.evaluation`: `PeriodicEvaluation`, `FIDState`, `COLUMNS`, `evaluation_metric`,
  `generator_scores`, `toy_generator_scores`, `fid_reference`, `reference_cache_path`.
* `adapt_tf.flops_logger`: `FlopsLogger`, `FlopsState`, `training_schedule`, `network_costs`.
* `adapt_tf.run_io`: `MetricsLogger`, `SampleLogs`, `SampleGrid`, `Checkpointer`,
  `TerminateOnNaN`, `save_image_grid`.

`adapt_tf.ADAPTController` (`adapt_tf.controller`) and `adapt_tf.gmp.GradualMagnitudePruning`
never lived here. Callbacks talk through Keras `logs`: `FlopsLogger` and the evaluations add
entries (`train_flops`, `fid`, ...) that a `MetricsLogger` placed after them writes.
"""
from __future__ import annotations

from adapt_tf.evaluation import (COLUMNS, FIDState, PeriodicEvaluation, evaluation_metric,
                                 fid_reference, generator_scores, reference_cache_path,
                                 toy_generator_scores)
from adapt_tf.flops_logger import FlopsLogger, FlopsState, network_costs, training_schedule
from adapt_tf.run_io import (Checkpointer, MetricsLogger, SampleGrid, SampleLogs,
                             TerminateOnNaN, save_image_grid)
from adapt_tf.sparsity import DynamicSparsity, reset_regrown_slots

__all__ = ["DynamicSparsity", "MetricsLogger", "SampleLogs", "SampleGrid", "Checkpointer",
           "TerminateOnNaN", "save_image_grid", "FlopsState", "FlopsLogger", "training_schedule",
           "network_costs",
           "FIDState", "PeriodicEvaluation", "COLUMNS", "evaluation_metric",
           "generator_scores", "toy_generator_scores", "fid_reference", "reference_cache_path",
           "reset_regrown_slots"]
