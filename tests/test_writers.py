"""Tests of adapt_tf.runs.writers's MetricsLogger: rows hold the train step's values and the entries
callbacks placed before it added to the same Keras `logs`; fields absent from the logs stay
empty, and a resumed run drops the rows past its iteration. TerminateOnNaN reads the model's
record of the first non-finite loss only at its cadence; Checkpointer saves nothing after one."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from adapt_tf import balance
from adapt_tf.runs import writers
from adapt_tf.runs.writers import MetricsLogger


class _Model:
    """What the logger reads from a `SparseGAN`: the iteration (nothing it could reset: the
    logger changes no model state, `SparseGAN(loss_mean_every=...)` averages the losses)."""

    def __init__(self):
        self.iteration = 0
        self.criterion = balance.BR  # what `SampleLogs` reads of it


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
    assert rows[0]["d_density"] == ""

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
    assert writers.duration(seconds) == text


def test_progress_rate_is_over_the_last_interval_and_eta_uses_it(tmp_path, monkeypatch):
    clock = iter([100.0, 110.0, 130.0])  # begin; row at 20 iterations; row at 40
    monkeypatch.setattr(writers.time, "time", lambda: next(clock))
    logger = MetricsLogger(str(tmp_path), every=20, total_steps=100, tensorboard=False)
    model = _Model()
    logger.set_model(model)
    logger.on_train_begin()
    # 20 iterations in 10 s: 2 it/s, 80 left: 40 s. Then 20 in 20 s (not 40 in 30 s): 1 it/s.
    assert logger._progress(20) == "elapsed 0:00:10, 2.00 it/s, ETA 0:00:40"
    assert logger._progress(40) == "elapsed 0:00:30, 1.00 it/s, ETA 0:01:00"


def test_grid_upscales_nearest_to_the_tile_size_with_white_borders():
    images = -np.ones((3, 8, 8, 3), np.float32)
    images[1, 0, 0] = 1.0  # one white pixel: an 8 x 8 white block after the 8x upscale
    pixels = writers.grid_pixels(images)
    pitch = writers.TILE_PIXELS + 2  # 8 px * 8 = 64, and a 2 px border
    assert pixels.shape == (2 * pitch + 2, 2 * pitch + 2, 3) and pixels.dtype == np.uint8
    assert (pixels[2:66, 2:66] == 0).all()  # image 0, black, top left
    block = pixels[2:66, 68:132, 0]  # image 1, top right
    assert (block[:8, :8] == 255).all() and (block[8:, :] == 0).all() and (block[:, 8:] == 0).all()
    assert (pixels[68:132, 68:132] == 255).all()  # no 4th image: white
    assert (pixels[:2] == 255).all() and (pixels[:, 66:68] == 255).all()
    # The factor rounds up (48 px: 2x, 96 px), by the larger side; TILE_PIXELS or more: none.
    assert writers.grid_pixels(np.zeros((1, 48, 20, 1))).shape == (100, 44, 1)
    assert writers.grid_pixels(np.zeros((1, 70, 65, 1))).shape == (74, 69, 1)


def test_row_labels_add_a_left_margin_with_text_in_each_row():
    images = np.ones((4, 32, 32, 3), np.float32)  # white: any dark pixel is text
    plain = writers.grid_pixels(images, columns=2)
    labelled = writers.grid_pixels(images, columns=2, row_labels=["class 0", "class 11"])
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 20
    np.testing.assert_array_equal(labelled[:, margin:], plain)
    pitch = 66
    for row in (0, 1):
        assert (labelled[2 + row * pitch:2 + (row + 1) * pitch, :margin] < 128).any()
    with pytest.raises(ValueError, match="1 labels for 2 rows"):
        writers.grid_pixels(images, columns=2, row_labels=["class 0"])
    gray = writers.grid_pixels(images[..., :1], columns=2, row_labels=["a", "b"])
    assert gray.shape[2] == 3


@pytest.mark.parametrize("num_images, num_classes, shape", [
    (64, 12, (12, 5)), (64, 10, (10, 6)), (64, 16, (16, 4)), (64, 17, (8, 8)),
    (64, 200, (8, 8)), (64, 1, (1, 16)), (16, 3, (3, 5)), (8, 10, (2, 2))])
def test_class_rows_put_every_class_in_a_row_when_four_images_fit(num_images, num_classes,
                                                                  shape):
    assert writers.class_rows(num_images, num_classes) == shape


class _ConditionalModel:
    """What SampleGrid reads from a conditional `SparseGAN`: its classes and `sample`."""

    num_classes = 3

    def sample(self, n, *, seed, labels):
        import tensorflow as tf
        return tf.zeros([n, 4, 4, 3]) + tf.reshape(tf.cast(labels, tf.float32), [-1, 1, 1, 1])


@pytest.mark.parametrize("class_names, expected", [
    (("red_disc", "green_disc", "blue_disc"), ["red_disc", "green_disc", "blue_disc"]),
    (None, ["class 0", "class 1", "class 2"])])
def test_grid_rows_are_labelled_with_the_class_names_in_label_order(
        tmp_path, monkeypatch, class_names, expected):
    seen = []
    original = writers.grid_pixels
    monkeypatch.setattr(writers, "grid_pixels", lambda images, **kwargs: seen.append(
        (images, kwargs["row_labels"])) or original(images, **kwargs))
    grid = writers.SampleGrid(str(tmp_path), num_images=12, tensorboard=False,
                              class_names=class_names)
    grid.set_model(_ConditionalModel())
    assert os.path.exists(grid.write(1))
    (images, labels), = seen
    assert labels == expected
    # Row k holds class k's samples (4 columns of 3 rows), so its label names its class.
    assert [float(images[4 * k, 0, 0, 0]) for k in range(3)] == [0.0, 1.0, 2.0]


def test_grid_refuses_class_names_that_do_not_match_the_models_classes(tmp_path):
    grid = writers.SampleGrid(str(tmp_path), num_images=12, tensorboard=False,
                              class_names=("a", "b"))
    grid.set_model(_ConditionalModel())
    with pytest.raises(ValueError, match="2 class_names for a model of 3 classes"):
        grid.write(1)


def test_mask_changes_reach_sample_logs_through_the_iterations_logs(tmp_path):
    # Two changes of D in one iteration sum; G's row comes first; the density is the last one
    # logged, and the logs' d_density becomes it (the density in force).
    logs = {"d_density": np.float32(0.5)}
    writers.log_mask_change(logs, network="discriminator", dropped=3, grown=5, density=0.52)
    writers.log_mask_change(logs, network="discriminator", dropped=2, grown=0, density=0.5)
    writers.log_mask_change(logs, network="generator", dropped=7, grown=7, density=0.2)
    assert logs["d_density"] == 0.5 and logs["g_mask_grown"] == 7
    assert writers.logged_mask_changes(logs) == [
        {"network": "generator", "dropped": 7, "grown": 7, "density": 0.2},
        {"network": "discriminator", "dropped": 5, "grown": 5, "density": 0.5}]
    assert writers.logged_mask_changes({"d_density": 0.5}) == []

    sample_logs = writers.SampleLogs(str(tmp_path))
    model = _Model()
    sample_logs.set_model(model)
    sample_logs.on_train_begin()
    model.iteration = 4
    sample_logs.on_train_batch_end(3, logs)
    model.iteration = 5
    sample_logs.on_train_batch_end(4, {"d_density": 0.5})  # no change: no row
    assert _rows(os.path.join(tmp_path, "masks.csv")) == [
        {"step": "4", "network": "generator", "dropped": "7", "grown": "7", "density": "0.2"},
        {"step": "4", "network": "discriminator", "dropped": "5", "grown": "5",
         "density": "0.5"}]


# ------------------------------------------------------------------- TerminateOnNaN, saving


class _GuardedModel:
    """What TerminateOnNaN reads from a `SparseGAN`: the iteration and `first_nonfinite`
    (counted), and the flag it sets."""

    def __init__(self):
        self.iteration = 0
        self.bad = None
        self.reads = []
        self.stop_training = False

    @property
    def first_nonfinite(self):
        self.reads.append(self.iteration)
        return self.bad


class _Loss:
    """A logged loss that counts its reads (a device-to-host copy each, for a tensor)."""

    reads = 0

    def __array__(self, dtype=None, copy=None):
        _Loss.reads += 1
        return np.array(float("nan"), np.float32)


def test_nan_guard_reads_the_device_record_only_at_its_cadence_and_stops_there():
    guard, model = writers.TerminateOnNaN(every=5), _GuardedModel()
    guard.set_model(model)
    _Loss.reads = 0
    for step in range(1, 13):
        model.iteration = step
        if step == 7:
            model.bad = 7  # the iteration that recorded the first non-finite loss
        guard.on_train_batch_end(step - 1, {"d_loss": _Loss(), "g_loss": _Loss()})
        if model.stop_training:
            break
    assert model.reads == [5, 10] and _Loss.reads == 2  # the losses once, when found
    assert guard.bad_step == 7 and model.iteration == 10 and math.isnan(guard.bad_logs["d_loss"])
    guard.on_train_end()
    assert model.reads == [5, 10]  # found already: no further read
    quiet = writers.TerminateOnNaN(every=5)
    quiet.set_model(_GuardedModel())
    quiet.on_train_end()  # a fit ending between two checks still checks
    assert quiet.model.reads == [0] and quiet.bad_step is None and not quiet.model.stop_training
    with pytest.raises(ValueError, match="every must be a positive integer, got 0"):
        writers.TerminateOnNaN(every=0)


class _Gan(tf.Module):
    """What Checkpointer saves and checks of a `SparseGAN`."""

    def __init__(self):
        super().__init__()
        self.step = tf.Variable(2, dtype=tf.int64)
        self.weight = tf.Variable([1.0, 2.0])
        self.g_optimizer, self.d_optimizer = tf.Module(), tf.Module()
        self.first_nonfinite = None
        self.stop_training = False


def test_checkpointer_writes_nothing_after_a_nonfinite_loss_even_with_finite_weights(tmp_path):
    gan = _Gan()
    checkpointer = writers.Checkpointer(str(tmp_path), gan)
    assert checkpointer.save() is not None
    gan.step.assign(4)
    gan.first_nonfinite = 3
    assert checkpointer.save() is None
    assert checkpointer.refused_step == 4 and gan.stop_training
    assert [os.path.basename(p) for p in checkpointer.manager.checkpoints] == ["ckpt-2"]


@pytest.mark.parametrize("extra_fields, shown", [((), "BR 0.250"), (("ada_rt",), "ADA r_t 0.700")])
def test_the_progress_line_shows_the_window_of_the_runs_criterion(
        tmp_path, monkeypatch, extra_fields, shown):
    lines = []
    monkeypatch.setattr(writers.logging, "info", lambda message, *args: lines.append(
        message % args))
    logger = MetricsLogger(str(tmp_path), every=1, extra_fields=extra_fields, tensorboard=False)
    logger.set_model(_Model())
    logger.on_train_begin()
    logger.write_row(1, {"d_loss": 1.0, "g_loss": 2.0, "br": 0.25, "ada_rt": 0.7,
                         "g_density": 0.2, "d_density": 0.3})
    line, = [line for line in lines if line.startswith("step 1")]
    assert f"g_loss 2.0000  {shown}  d_G 0.200  d_D 0.300" in line
