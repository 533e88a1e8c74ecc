"""Tests of adapt_tf.run_io's MetricsLogger: rows hold the train step's values and the entries
callbacks placed before it added to the same Keras `logs`; fields absent from the logs stay
empty, and a resumed run drops the rows past its iteration."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from adapt_tf import run_io
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
    assert [row["train_flops"] for row in rows] == ["20", "40", "50"]
    assert [row["fid"] for row in rows] == ["", "12.5", ""]
    assert rows[0]["d_density"] == "" and model.resets == 3

    model.iteration = 2  # resumed from the checkpoint of iteration 2
    resumed = MetricsLogger(str(tmp_path), every=2, extra_fields=("train_flops", "fid"),
                            tensorboard=False)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert [int(row["step"]) for row in _rows(os.path.join(tmp_path, "metrics.csv"))] == [2]


def test_floats_are_written_to_six_significant_digits(tmp_path):
    logger = MetricsLogger(str(tmp_path), every=1, extra_fields=("train_flops", "fid"),
                           tensorboard=False)
    model = _Model()
    logger.set_model(model)
    logger.on_train_begin()
    model.iteration = 1
    row = logger.write_row(1, {"d_loss": 1.0 / 3.0, "g_loss": np.float32(-2.5e-7),
                               "train_flops": 123456789.0, "fid": float("nan"), "br": 0.5})
    assert row["d_loss"] == 1.0 / 3.0  # the returned row (and TensorBoard) keep every digit
    written = _rows(os.path.join(tmp_path, "metrics.csv"))[0]
    assert (written["d_loss"], written["g_loss"], written["train_flops"], written["fid"],
            written["br"], written["step"]) == ("0.333333", "-2.5e-07", "1.23457e+08", "nan",
                                                "0.5", "1")


@pytest.mark.parametrize("seconds, text", [(0.0, "0:00:00"), (59.5, "0:01:00"),
                                           (3725.4, "1:02:05"), (-3.0, "0:00:00"),
                                           (36000.0, "10:00:00")])
def test_duration_is_hours_minutes_seconds(seconds, text):
    assert run_io.duration(seconds) == text


def test_progress_rate_is_over_the_last_interval_and_eta_uses_it(tmp_path, monkeypatch):
    clock = iter([100.0, 110.0, 130.0])  # begin; row at 20 iterations; row at 40
    monkeypatch.setattr(run_io.time, "time", lambda: next(clock))
    logger = MetricsLogger(str(tmp_path), every=20, total_steps=100, tensorboard=False)
    model = _Model()
    logger.set_model(model)
    logger.on_train_begin()
    # 20 iterations in 10 s: 2 it/s, 80 left: 40 s. Then 20 in 20 s (not 40 in 30 s): 1 it/s.
    assert logger._progress(20) == "elapsed 0:00:10, 2.00 it/s, ETA 0:00:40"
    assert logger._progress(40) == "elapsed 0:00:30, 1.00 it/s, ETA 0:01:00"
