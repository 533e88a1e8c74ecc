"""Tests of adapt_tf.run_io's MetricsLogger: rows hold the train step's values and the entries
callbacks placed before it added to the same Keras `logs`; fields absent from the logs stay
empty, and a resumed run drops the rows past its iteration."""
from __future__ import annotations

import csv
import os

import numpy as np

from adapt_tf.run_io import MetricsLogger


class _Model:
    """What the logger reads from a `SparseGAN`: the iteration and `reset_metrics`."""

    def __init__(self):
        self.iteration = 0
        self.resets = 0

    def reset_metrics(self):
        self.resets += 1


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_rows_hold_train_step_values_and_entries_other_callbacks_added(tmp_path):
    logger = MetricsLogger(str(tmp_path), every=2, total_steps=5,
                           extra_fields=("train_flops", "fid"), tensorboard=False)
    model = _Model()
    logger.set_model(model)
    logger.on_train_begin()
    for step in range(1, 6):
        model.iteration = step
        logs = {"d_loss": np.float32(0.5 * step), "g_loss": np.float32(1.0), "br": 0.25,
                "train_flops": 10.0 * step}  # as a FlopsLogger placed before the logger adds
        if step == 4:
            logs["fid"] = 12.5  # as an evaluation callback adds at its iteration
        logger.on_train_batch_end(step - 1, logs)
    rows = _rows(os.path.join(tmp_path, "metrics.csv"))
    assert [int(row["step"]) for row in rows] == [2, 4, 5]
    assert [float(row["d_loss"]) for row in rows] == [1.0, 2.0, 2.5]
    assert [row["train_flops"] for row in rows] == ["20.0", "40.0", "50.0"]
    assert [row["fid"] for row in rows] == ["", "12.5", ""]
    assert rows[0]["d_density"] == "" and model.resets == 3

    model.iteration = 2  # resumed from the checkpoint of iteration 2
    resumed = MetricsLogger(str(tmp_path), every=2, extra_fields=("train_flops", "fid"),
                            tensorboard=False)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert [int(row["step"]) for row in _rows(os.path.join(tmp_path, "metrics.csv"))] == [2]
