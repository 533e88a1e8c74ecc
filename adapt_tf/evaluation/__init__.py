"""Evaluation: how good a generator is, during and after training.

* `metrics`: Inception features, FID, Inception Score and reference statistics.
* `classifier_metric`: the offline metric of any labelled dataset (a small classifier of its
  classes); `toy_metric`: its case for the default `toy_shapes` dataset.
* `scorers`: one `Scorer` for every metric, the `PeriodicEvaluation` callback that keeps the
  best checkpoint, and the final test of a run.
"""
