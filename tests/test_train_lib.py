"""End-to-end runs of train_lib on the tiny config: artefacts, exact resume, the CLI."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf

from adapt_tf import balance, data
from adapt_tf.runs import configurables, methods, train_lib, storage, workdir
from adapt_tf.sparse import layers as L
from image_data import class_folder, png, store_tfds
from inception_stub import save_tiny_inception
from test_cli import CPP_LOG_LINE

import tf_keras as keras

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "gin_configs" / "test" / "tiny.gin")
QUICKSTART = str(ROOT / "gin_configs" / "quickstart.gin")


def _train(workdir, *bindings, extra_callbacks=(), **arguments):
    gin.clear_config()
    configurables.parse_config([TINY], list(bindings))
    return configurables.train(workdir=str(workdir), extra_callbacks=list(extra_callbacks),
                               **arguments)


class _StopAt(keras.callbacks.Callback):
    """Interrupts a run after `step` iterations, as a killed job would (then checkpoints)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration >= self.step:
            self.model.stop_training = True


def _state(gan):
    masks = [layer.mask.numpy() for layer in L.masked_layers(gan.generator)
             + L.masked_layers(gan.discriminator)]
    weights = [w.numpy() for w in gan.generator.weights + gan.discriminator.weights
               + gan.ema_generator.weights]
    return masks, weights, gan.balance.values(), gan.density("discriminator")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    return workdir, _state(_train(workdir))


def test_tiny_run_writes_metrics_checkpoints_and_samples(uninterrupted):
    workdir, (_, _, window, d_density) = uninterrupted
    with open(workdir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert {"br", "d_density", "g_density", "d_loss", "g_loss"} <= set(rows[0])
    assert all(np.isfinite(float(r["d_loss"])) for r in rows)
    assert float(rows[0]["g_density"]) == pytest.approx(0.3, abs=1e-3)
    # The controller acted at iteration 4 (window of 2 BR samples full): d_D moved by 0.05.
    assert abs(d_density - 0.3) == pytest.approx(0.05, abs=2e-3)
    # metrics.csv shows the density in force after each iteration: the decision's at row 4.
    assert [float(r["d_density"]) for r in rows] == pytest.approx(
        [0.3, d_density, d_density, d_density], abs=2e-3)
    assert len(window) == 2
    assert sorted(os.listdir(workdir / "samples")) == ["step_4.png", "step_8.png"]
    assert any(name.startswith("ckpt-8") for name in os.listdir(workdir / "checkpoints"))


def _tensorboard_events(directory) -> dict[str, list]:
    """{tag: [(step, value)]} of every summary in `directory`'s event files."""
    events: dict[str, list] = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                events.setdefault(value.tag, []).append(
                    (event.step, tf.make_ndarray(value.tensor)))
    return events


def test_tensorboard_holds_grids_layer_densities_and_decisions(uninterrupted):
    workdir, _ = uninterrupted
    events = _tensorboard_events(workdir / "tensorboard")
    assert [step for step, _ in events["samples"]] == [4, 8]  # the grid cadence
    _, (width, height, png) = events["samples"][-1]  # an image summary: width, height, PNG
    assert png == (workdir / "samples" / "step_8.png").read_bytes()
    layers = {tag for tag in events if tag.startswith("layer_density/")}
    assert {tag.split("/")[1] for tag in layers} == {"generator", "discriminator"}
    assert all([step for step, _ in events[tag]] == [4, 8] for tag in layers)
    decisions = [(step, text.item().decode()) for step, text in events["decisions"]]
    assert len(decisions) == 1 and "d_density 0.3000 -> 0.2500" in decisions[0][1]
    assert [step for step, _ in events["d_density"]] == [2, 4, 6, 8]


def test_resumed_run_matches_uninterrupted_run(tmp_path, uninterrupted):
    _, (masks, weights, window, d_density) = uninterrupted
    _train(tmp_path, extra_callbacks=[_StopAt(4)])
    resumed = _train(tmp_path)
    assert resumed.iteration == 8
    masks2, weights2, window2, d_density2 = _state(resumed)
    for a, b in zip(masks, masks2):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights, weights2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(window, window2, rtol=1e-4, atol=1e-5)
    assert d_density == pytest.approx(d_density2)
    with open(tmp_path / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4, 6, 8]


def test_the_official_switches_resume_exactly(tmp_path):
    # Every switch of the official code on. DiffAugment's draws are keyed to the iteration,
    # so a resumed run augments as an uninterrupted one. train.lr_decay: the rate of
    # iteration i is lr * (1 - i / 8); a run stopped after 4 iterations and resumed ends where
    # an uninterrupted one does, at the rate of iteration 7. train.ever_active: the logged
    # shares of ever-active weights, checkpointed, so the resumed run logs the same column.
    switches = ("train.lr_decay = True", "train.ever_active = True", "train.sample_logs = True",
                "train.diff_aug = 'color,translation,cutout'")
    full = _train(tmp_path / "full", *switches)
    _train(tmp_path / "resumed", *switches, extra_callbacks=[_StopAt(4)])
    resumed = _train(tmp_path / "resumed", *switches)
    masks, weights, window, d_density = _state(full)
    masks2, weights2, window2, d_density2 = _state(resumed)
    for a, b in zip(masks, masks2):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights, weights2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    base = float(keras.optimizers.Adam().get_config()["learning_rate"])  # tiny.gin keeps it
    for gan in (full, resumed):
        for optimizer in (gan.g_optimizer, gan.d_optimizer):
            assert float(optimizer.learning_rate) == pytest.approx(base * (1 - 7 / 8), rel=1e-6)
    columns = []
    for run in ("full", "resumed"):
        with open(tmp_path / run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        columns.append([(float(r["g_ever_active"]), float(r["d_ever_active"])) for r in rows])
        for row in rows:  # what is active now was active at some point
            assert float(row["g_ever_active"]) >= float(row["g_density"]) - 1e-6
            assert float(row["d_ever_active"]) >= float(row["d_density"]) - 1e-6
    assert columns[0] == columns[1]
    g_shares = [g for g, _ in columns[0]]
    assert g_shares == sorted(g_shares) and g_shares[-1] > g_shares[0]  # G-DST at 3 and 6
    # train.sample_logs: br.csv has every BR sample (br_interval 1: every iteration), masks.csv
    # every mask change; the resumed run's files read as the uninterrupted run's.
    logs = {}
    for run in ("full", "resumed"):
        with open(tmp_path / run / "br.csv") as f:
            br_rows = list(csv.DictReader(f))
        with open(tmp_path / run / "masks.csv") as f:
            mask_rows = list(csv.DictReader(f))
        logs[run] = br_rows, mask_rows
    (br_rows, mask_rows), (br_again, masks_again) = logs["full"], logs["resumed"]
    assert mask_rows == masks_again
    assert [(r["step"], r["kept"]) for r in br_rows] == [(r["step"], r["kept"])
                                                         for r in br_again]
    for key in ("gf", "df", "dr", "ratio"):
        np.testing.assert_allclose([float(r[key]) for r in br_again],
                                   [float(r[key]) for r in br_rows], rtol=1e-4, atol=1e-5)
    assert [int(r["step"]) for r in br_rows] == list(range(1, 9))
    for row in br_rows:
        gf, df, dr = (np.float32(row[key]) for key in ("gf", "df", "dr"))
        assert np.float32(row["ratio"]) == (gf - df) / (dr - df)
    kept = [float(r["ratio"]) for r in br_rows if r["kept"] == "1"]
    np.testing.assert_array_equal(np.float32(kept[-2:]), full.balance.values())  # window of 2
    # G-DST after iterations 3 and 6 (drop = grow), ADAPT after 4 (d_D by 0.05), not at 8.
    assert [(r["step"], r["network"]) for r in mask_rows] == [
        ("3", "generator"), ("4", "discriminator"), ("6", "generator")]
    for row in mask_rows:
        if row["network"] == "generator":
            assert row["dropped"] == row["grown"] != "0"
    d_change = mask_rows[1]
    d_total = sum(int(np.prod(layer.mask.shape)) for layer in full.masked_layers("discriminator"))
    assert abs(int(d_change["grown"]) - int(d_change["dropped"])) == round(0.05 * d_total)
    assert float(d_change["density"]) == pytest.approx(d_density, abs=1e-6)


def test_the_ada_criterion_logs_its_column_and_resumes_exactly(tmp_path):
    # The window holds ADA-style shares (logged as ada_rt, no br column values); the
    # controller's decision at iteration 4 reads them, and a resumed run decides alike.
    binding = ("train.balance_criterion = 'ada'", "train.sample_logs = True")
    full = _train(tmp_path / "full", *binding)
    _train(tmp_path / "resumed", *binding, extra_callbacks=[_StopAt(4)])
    resumed = _train(tmp_path / "resumed", *binding)
    for gan in (full, resumed):
        assert gan.criterion is balance.ADA
        assert all(0.0 <= v <= 1.0 for v in gan.balance.values())
    np.testing.assert_allclose(resumed.balance.values(), full.balance.values(), atol=1e-6)
    assert resumed.density("discriminator") == full.density("discriminator")
    rows = []
    for run in ("full", "resumed"):
        with open(tmp_path / run / "metrics.csv") as f:
            rows.append(list(csv.DictReader(f)))
    np.testing.assert_allclose([float(r["ada_rt"]) for r in rows[1]],
                               [float(r["ada_rt"]) for r in rows[0]], atol=1e-6)
    assert all(r["br"] == "" and 0.0 <= float(r["ada_rt"]) <= 1.0 for r in rows[0])
    # train.sample_logs: every iteration's sample in ada.csv (none in br.csv); the last two
    # are the window (br_window 2); the resumed run's file reads as the uninterrupted one's.
    traces = []
    for run in ("full", "resumed"):
        assert not (tmp_path / run / "br.csv").exists()
        with open(tmp_path / run / "ada.csv") as f:
            traces.append(list(csv.DictReader(f)))
    assert [int(r["step"]) for r in traces[0]] == [int(r["step"]) for r in traces[1]] == list(
        range(1, 9))
    np.testing.assert_allclose([float(r["share"]) for r in traces[1]],
                               [float(r["share"]) for r in traces[0]], atol=1e-6)
    np.testing.assert_array_equal(np.float32([float(r["share"]) for r in traces[0][-2:]]),
                                  full.balance.values())


def test_cli_writes_operative_config_and_rejects_bad_gin(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    bad = subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         "--gin_bindings=train.not_a_parameter = 3", f"--workdir={tmp_path / 'bad'}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0
    assert "not_a_parameter" in bad.stderr and "tiny.gin" in bad.stderr

    workdir = tmp_path / "cli"
    inception = save_tiny_inception(tmp_path / "inception")
    # With the test-set evaluation (FID on the stand-in Inception; no evaluation during
    # training, so the last checkpoint is tested).
    run = subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         "--gin_bindings=train.total_steps = 2", "--gin_bindings=train.test_eval = True",
         "--gin_bindings=train.eval_metric = 'fid'", "--gin_bindings=train.eval_num_samples = 20",
         f"--gin_bindings=train.inception_path = '{inception}'", f"--workdir={workdir}"],
        capture_output=True, text=True, timeout=600,
        env={k: v for k, v in env.items() if k != "TF_CPP_MIN_LOG_LEVEL"})  # as a user's
    assert run.returncode == 0, run.stderr[-3000:]
    # No C++ log lines of TensorFlow; progress lines with an ETA; the summary at the end.
    assert not CPP_LOG_LINE.search(run.stderr), run.stderr[-3000:]
    assert re.search(r"step 2/2 .* elapsed \d+:\d\d:\d\d, [\d.]+ it/s, ETA 0:00:00",
                     run.stderr), run.stderr[-3000:]
    summary = run.stdout[run.stdout.index(f"Run {workdir}: "):]  # tfds may print before it
    assert summary.splitlines()[:2] == [
        f"Run {workdir}: 2/2 iterations in {summary.split(' in ')[1].split(' ')[0]} "
        "(this process).", "  fid: not evaluated (train.eval_every unset; `python -m "
        "adapt_tf.evaluate --workdir=...` scores the checkpoints)."], run.stdout
    assert f"\n  Open: {workdir / 'training.png'}, {workdir / 'samples' / 'step_2.png'}, " \
           f"{workdir / 'metrics.csv'}, {workdir / 'tensorboard'}" in run.stdout
    config = (workdir / "operative_config.gin").read_text()
    assert "train.total_steps = 2" in config and "method.name = 'adapt_relaxed'" in config
    assert "train.test_eval = True" in config
    assert (workdir / "metrics.csv").exists()
    assert (workdir / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(workdir / "eval.json") as f:
        entry = json.load(f)["test"]
    assert (entry["checkpoint_kind"], entry["step"], entry["test_split"]) == ("last", 2, "test")
    assert entry["fid_test"] > 0 and entry["fid"] > 0


def test_missing_required_value_names_the_parameter(tmp_path):
    gin.clear_config()
    configurables.parse_config([str(ROOT / "gin_configs" / "base.gin")])
    # base.gin binds method.g_density but not method.name: gin names the missing value.
    with pytest.raises(TypeError, match=r"No values supplied .* \['name'\][\s\S]*'method'"):
        configurables.train(workdir=str(tmp_path))


def test_unknown_gin_file_is_a_clear_error():
    with pytest.raises(ValueError, match="not found"):
        configurables.parse_config(["gin_configs/no_such.gin"])


# ------------------------------------------------------------------- run integrity (issue 12)


class _InjectNaN(keras.callbacks.Callback):
    """Makes one D weight NaN after iteration `step`, as a diverging run would."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration == self.step:
            kernel = L.masked_layers(self.model.discriminator)[0].kernel
            kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0] * kernel.shape.rank],
                                                      [float("nan")]))


def test_diverged_run_saves_nothing_nonfinite_and_keeps_its_good_checkpoints(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    _train(tmp_path, "train.total_steps = 4", "train.checkpoint_every = 2")
    kept = sorted(os.listdir(checkpoints))
    assert {"ckpt-2.index", "ckpt-4.index"} <= set(kept)
    for _ in range(2):  # Rerunning as advised must not rotate the good checkpoints away.
        with pytest.raises(train_lib.TrainingDiverged,
                           match=r"iteration 6 .*newest finite checkpoint is \S*ckpt-4"):
            _train(tmp_path, "train.checkpoint_every = 2", extra_callbacks=[_InjectNaN(5)])
        assert sorted(os.listdir(checkpoints)) == kept
        assert storage.checkpoint_problem(str(checkpoints / "ckpt-4")) is None


def test_missing_newest_checkpoint_falls_back_and_resumes_exactly(tmp_path, uninterrupted,
                                                                  caplog):
    full, (masks, weights, window, _) = uninterrupted
    run = tmp_path / "run"
    shutil.copytree(full, run)
    for path in (run / "checkpoints").glob("ckpt-8.*"):
        path.unlink()
    with caplog.at_level(logging.WARNING):
        resumed = _train(run)
    assert "ckpt-8" in caplog.text and "unusable" in caplog.text
    assert resumed.iteration == 8  # From ckpt-4, not from iteration 1.
    masks2, weights2, window2, _ = _state(resumed)
    for a, b in zip(masks, masks2):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights, weights2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with open(run / "metrics.csv") as f, open(full / "metrics.csv") as g:
        rows, reference = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [r["step"] for r in rows] == ["2", "4", "6", "8"]
    assert rows[:2] == reference[:2]  # The rows before the fallback point were kept.


def _cli(workdir, *bindings, gin_file=TINY, extra=(), timeout=600):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ADAPT_TF_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={gin_file}",
         *[f"--gin_bindings={b}" for b in bindings], f"--workdir={workdir}", *extra],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def _error_line(result):
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("adapt_tf.train: error: ")
    return last


def test_image_size_trains_the_architecture_family_at_that_size(tmp_path):
    gan = _train(tmp_path, "train.image_size = 64", "train.total_steps = 2")
    assert gan.generator.name == "sngan64_generator"
    assert gan.generator.output_shape == (None, 64, 64, 3)
    assert gan.discriminator.input_shape == (None, 64, 64, 3)
    with open(tmp_path / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2"]
    # BigGAN-64 splits z with a tf op, which counting FLOPs before the first step kept.
    gan = _train(tmp_path / "biggan", "train.architecture = 'biggan32'", "train.g_width = 8",
                 "train.d_width = 8", "train.image_size = 64", "train.total_steps = 2")
    assert gan.generator.name == "biggan64_generator" and gan.iteration == 2


def test_cli_resume_refuses_changed_config_and_keeps_the_record_true(tmp_path):
    first = _cli(tmp_path, "train.total_steps = 2")
    assert first.returncode == 0, first.stderr[-3000:]
    config = tmp_path / "operative_config.gin"
    recorded = config.read_text()
    changed = _cli(tmp_path, "DENSITY = 0.5", "generator/Adam.learning_rate = 1e9",
                   "train.total_steps = 2")
    line = _error_line(changed)
    assert "method.g_density = 0.3 recorded, 0.5 now" in line
    assert "generator/Adam.learning_rate = 0.001 recorded, 1000000000.0 now" in line
    invalid = _cli(tmp_path, "DENSITY = 0", "train.total_steps = 2")
    assert "method.g_density = 0.3 recorded, 0 now" in _error_line(invalid)
    assert config.read_text() == recorded  # A refused rerun never rewrites the record.
    longer = _cli(tmp_path, "train.total_steps = 4")  # total_steps may change on resume.
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "train.total_steps = 4" in config.read_text()
    assert "method.g_density = %DENSITY" in config.read_text()
    with open(tmp_path / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "4"]


def test_cli_resume_checks_the_config_recorded_in_the_checkpoint_not_the_file(tmp_path):
    first = _cli(tmp_path, "train.total_steps = 2")
    assert first.returncode == 0, first.stderr[-3000:]
    config = tmp_path / "operative_config.gin"
    config.unlink()  # Deleted: the checkpoint still records DENSITY = 0.3.
    # Reading the run back (report, evaluate, export) uses the record too.
    assert configurables.read_run_config(str(tmp_path)).method.g_density == 0.3
    line = _error_line(_cli(tmp_path, "DENSITY = 0.5", "train.total_steps = 4"))
    assert "method.g_density = 0.3 recorded, 0.5 now; recorded in " in line and "ckpt-2" in line
    assert "DENSITY = 0.3" in config.read_text()  # restored from the checkpoint's record
    config.write_text(config.read_text().replace("DENSITY = 0.3", "DENSITY = 0.5"))  # edited
    line = _error_line(_cli(tmp_path, "train.total_steps = 4", gin_file=config))
    assert "method.g_density = 0.3 recorded, 0.5 now" in line
    assert "DENSITY = 0.3" in config.read_text()
    config.write_text(config.read_text().replace("DENSITY = 0.3", "DENSITY = 0.5"))
    assert configurables.read_run_config(str(tmp_path)).method.g_density == 0.3
    resumed = _cli(tmp_path, "train.total_steps = 4")  # the true config: accepted
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{config} differs in method.g_density; restored it from" in resumed.stderr
    assert "DENSITY = 0.3" in config.read_text() and "train.total_steps = 4" in config.read_text()
    # The resumed run's checkpoints record its own (resumable) changes, not the restored ones.
    assert "train.total_steps = 4" in storage.checkpoint_record(
        str(tmp_path / "checkpoints" / "ckpt-4"))
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert float(rows[-1]["g_density"]) == pytest.approx(0.3, abs=1e-3)


def test_a_restart_sets_the_previous_runs_files_aside_together(tmp_path):
    _train(tmp_path, "train.total_steps = 4", "train.sample_logs = True")
    (tmp_path / "eval.json").write_text('{"test": {"fid": 1.0}}')
    shutil.rmtree(tmp_path / "checkpoints")  # nothing to resume: the next run starts over
    old_events = sorted(os.listdir(tmp_path / "tensorboard"))
    _train(tmp_path, "train.total_steps = 2", "train.sample_logs = True")
    kept = tmp_path / "orphaned" / "1"
    assert (kept / "eval.json").exists() and not (tmp_path / "eval.json").exists()
    assert sorted(os.listdir(kept / "tensorboard")) == old_events
    assert not set(os.listdir(tmp_path / "tensorboard")) & set(old_events)
    assert os.listdir(kept / "samples") == ["step_4.png"]
    assert os.listdir(tmp_path / "samples") == ["step_2.png"]
    for name, steps in (("metrics.csv", {2, 4}), ("br.csv", {1, 2, 3, 4})):
        with open(kept / name) as f:
            assert {int(r["step"]) for r in csv.DictReader(f)} == steps
        with open(tmp_path / name) as f:
            assert max(int(r["step"]) for r in csv.DictReader(f)) == 2


def test_shortening_total_steps_below_the_trained_iteration_is_refused(tmp_path,
                                                                       uninterrupted):
    run = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run)
    metrics = (run / "metrics.csv").read_text()
    with pytest.raises(workdir.WorkdirError,
                       match=r"trained to iteration 8, beyond total_steps=4;.*total_steps >= 8"):
        _train(run, "train.total_steps = 4")
    assert (run / "metrics.csv").read_text() == metrics


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs to fill (mounting needs root or CAP_SYS_ADMIN), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill: {mounted.stderr.strip()}")
    yield mount
    # Lazily: a TensorBoard writer of the run may still hold a file open until collected.
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


class _FillDisk(keras.callbacks.Callback):
    """After iteration `step`, fills the workdir's file system with `filler`."""

    def __init__(self, step, filler):
        super().__init__()
        self.step, self.filler = step, filler

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration == self.step:
            with open(self.filler, "wb") as f:
                with contextlib.suppress(OSError):
                    for size in (1 << 20, 1 << 12, 1):
                        while True:
                            f.write(b"\0" * size)
                            f.flush()


def test_a_full_disk_is_one_error_and_the_previous_checkpoint_resumes(small_disk):
    run, filler = small_disk / "run", small_disk / "filler"
    with pytest.raises(workdir.WorkdirError) as error:  # one line through the CLI
        _train(run, extra_callbacks=[_FillDisk(5, filler)])
    message = str(error.value)
    assert "\n" not in message and ("No space left" in message or "Cannot save" in message)
    assert "ckpt-4" in message and "rerun to resume" in message
    assert storage.checkpoint_problem(str(run / "checkpoints" / "ckpt-4")) is None
    filler.unlink()  # space returns
    assert _train(run).iteration == 8
    assert not list((run / "checkpoints").glob("*_temp"))
    with open(run / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "4", "6", "8"]


def test_a_file_damaged_past_its_header_stops_the_run_naming_it_keeping_its_checkpoint(tmp_path):
    """40 flat images, batches of 16 (n_dis 2 x 8): step 2's batch ends epoch 0, so a file
    first met there stops iteration 3; the checkpoint of iteration 2 is an intact run's."""
    rng = np.random.default_rng(0)
    for k in range(40):
        png(tmp_path / "intact" / f"{k:03d}.png", rng.integers(0, 256, (32, 32, 3), np.uint8))
    shutil.copytree(tmp_path / "intact", tmp_path / "damaged")
    index = int(data._permuted_indices(tf.constant(2, tf.int64), batch_size=16, n=40,
                                       seed=0)[0])  # position 32 of epoch 0's permutation
    damaged = tmp_path / "damaged" / f"{index:03d}.png"
    damaged.write_bytes(damaged.read_bytes()[:33])  # PNG signature and IHDR chunk only
    bindings = ("train.seed = 0", "train.checkpoint_every = 1", "train.eval_every = None")
    with pytest.raises(data.DamagedImageError) as error:  # a ValueError: one CLI line
        _train(tmp_path / "run", *bindings, f"train.dataset = 'folder:{tmp_path / 'damaged'}'")
    message = str(error.value)
    assert "\n" not in message and "1 image file(s) of folder " in message
    assert f": {str(damaged)!r} (Invalid PNG. Failed to initialize decoder.). Replace" in message
    latest = str(tmp_path / "run" / "checkpoints" / "ckpt-2")
    assert f"Training stopped; the newest checkpoint, {latest}, is intact " in message
    assert "train the repaired folder in a new --workdir" in message
    assert [os.path.basename(p) for p in storage.checkpoint_paths(
        str(tmp_path / "run" / "checkpoints"))] == ["ckpt-2", "ckpt-1"]
    assert storage.checkpoint_problem(latest) is None
    # Nothing of the failed iteration 3 was saved: the state is an intact run's after 2.
    _train(tmp_path / "intact_run", *bindings, "train.total_steps = 2",
           f"train.dataset = 'folder:{tmp_path / 'intact'}'")
    values, intact = _checkpoint_values(tmp_path / "run"), _checkpoint_values(
        tmp_path / "intact_run")
    assert values.keys() == intact.keys() and len(values) > 50
    for key, value in values.items():
        np.testing.assert_array_equal(value, intact[key], err_msg=key)


def test_cli_refuses_a_workdir_another_process_trains_in(tmp_path):
    with storage.lock(str(tmp_path)):
        result = _cli(tmp_path)
    assert f"workdir in use by pid {os.getpid()}" in _error_line(result)
    assert not (tmp_path / "metrics.csv").exists()
    assert not (tmp_path / "operative_config.gin").exists()


_UNCLOSED = "include 'base.gin'\ntrain.total_steps = [1, 2\n"


@pytest.mark.parametrize("case, bindings, expected", [
    ("bad_density", ["DENSITY = 0"], "g_density must be in (0, 1], got 0;"),
    ("unknown_method", ["method.name = 'adapt_fancy'"], "adapt_fancy"),
    ("unknown_architecture", ["train.architecture = 'resnet9'"], "'resnet9'"),
    ("unknown_dataset", ["train.dataset = 'mnist'"], "Unknown dataset 'mnist'"),
    ("missing_include", [], "no_such_file.gin"),
    ("unclosed_bracket", [], "unclosed bracket"),
    ("not_prepared", ["train.dataset = 'cifar10'"], "train.download = True"),
    ("unwritable_workdir", [], "is not a writable directory"),
    ("bad_diff_aug", ["train.diff_aug = 'colour'"], "diff_aug='colour': each of ("),
    ("unsupported_image_size", ["train.image_size = 100"],
     "image_size=100: the sngan family of architecture 'sngan32' is defined at "
     "[32, 48, 64, 128, 256] px"),
    ("bad_criterion", ["train.balance_criterion = 'fake'"],
     "balance_criterion='fake': choose 'br'"),
    ("test_stats_unused", ["train.test_reference_stats = 'test.npz'"],
     "test_reference_stats='test.npz' is read only by the test-set evaluation"),
    ("test_eval_offline", ["train.test_eval = True", "train.eval_metric = 'fid'"],
     "inception_path"),
    ("zero_sample_every", ["train.sample_every = 0"], "sample_every must be a positive integer"),
    ("zero_d_batch_size", ["train.d_batch_size = 0"], "d_batch_size must be a positive integer"),
    ("bad_loss", ["train.loss = 'bogus'"], "'bogus'"),
    ("bad_mixed_precision", ["train.mixed_precision = 'float8'"], "float8"),
    ("bad_ema_decay", ["train.ema_decay = 1.5"], "1.5"),
])
def test_cli_user_errors_are_one_line_naming_the_value(tmp_path, case, bindings, expected):
    gin_file, run = TINY, tmp_path / "run"
    if case in ("missing_include", "unclosed_bracket"):
        gin_file = tmp_path / f"{case}.gin"
        gin_file.write_text(_UNCLOSED if case == "unclosed_bracket"
                            else f"include '{TINY}'\ninclude 'no_such_file.gin'\n")
    if case == "not_prepared":
        bindings = [*bindings, f"train.data_dir = '{tmp_path / 'empty_tfds'}'"]
    if case == "unwritable_workdir":
        (tmp_path / "file").write_text("")
        run = tmp_path / "file" / "run"
    if case == "test_eval_offline":  # no Inception there: fails before training
        bindings = [*bindings, f"train.inception_path = '{tmp_path / 'no_inception'}'"]
    line = _error_line(_cli(run, *bindings, gin_file=gin_file))
    assert expected in line
    assert "In call to configurable" not in line  # gin's suffix names an address, not a value
    if case == "unclosed_bracket":
        assert str(gin_file) in line
    assert not (run / "operative_config.gin").exists()  # validated before it is written
    assert not storage.checkpoint_paths(str(run / "checkpoints"))


def test_cli_debug_flag_shows_the_traceback(tmp_path):
    result = _cli(tmp_path, "train.dataset = 'mnist'", extra=["--debug"])
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_only_methods_with_a_d_controller_sample_the_window_unless_asked():
    # The official static, SDST, dense and BigGAN runs take no BR passes; ADAPT and DDA read
    # the window. `balance_diagnostic` samples it for any method.
    for name in methods.METHODS:
        spec = train_lib.RunSpec(workdir="unused", total_steps=10,
                                 method=methods.method(name, g_density=0.5))
        assert train_lib.samples_window(spec) == (name in ("adapt_relaxed", "adapt_strict",
                                                           "dda")), name
        assert train_lib.samples_window(dataclasses.replace(spec, balance_diagnostic=True))


def test_a_static_run_takes_no_window_samples_and_its_flops_count_no_br_passes(tmp_path):
    static = ("method.name = 'static_balance'", "train.flops_convention = 'exact'")
    quiet = _train(tmp_path / "static", *static)
    assert not quiet.window_sampling and int(quiet.balance.count.numpy()) == 0
    assert "_window_sample" not in quiet.trace_counts
    logged = _train(tmp_path / "diagnostic", *static, "train.balance_diagnostic = True")
    assert logged.window_sampling and int(logged.balance.count.numpy()) == 2
    flops = []
    for run in ("static", "diagnostic"):
        with open(tmp_path / run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        flops.append(float(rows[-1]["train_flops"]))
        assert all(np.isnan(float(r["br"] or "nan")) == (run == "static") for r in rows), rows
    assert flops[1] > flops[0]  # the diagnostic's BR passes are counted


# ---------------------------------------------------------------- datasets by URI, end to end

# The quickstart (class-conditional BigGAN-32) shrunk to a few iterations, without evaluation.
_SHORT_QUICKSTART = ("train.d_batch_size = 4", "train.g_batch_size = 4", "train.log_every = 2",
                     "train.checkpoint_every = 2", "train.sample_every = 2",
                     "train.num_sample_images = 4", "train.eval_every = None")


def _checkpoint_values(run) -> dict:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def test_cli_trains_on_a_class_folder_resumes_exactly_and_refuses_changed_data(tmp_path):
    images = class_folder(tmp_path, size=32)
    uri = f"folder:{images}"
    bindings = (f"train.dataset = '{uri}'", *_SHORT_QUICKSTART)
    full, parts = tmp_path / "full", tmp_path / "parts"
    for run, steps in ((full, 4), (parts, 2), (parts, 4)):
        result = _cli(run, *bindings, f"train.total_steps = {steps}", gin_file=QUICKSTART)
        assert result.returncode == 0, result.stderr[-3000:]
    assert (full / "metrics.csv").read_text() == (parts / "metrics.csv").read_text()
    values, resumed = _checkpoint_values(full), _checkpoint_values(parts)
    assert values.keys() == resumed.keys() and len(values) > 50
    for key, value in values.items():
        np.testing.assert_array_equal(value, resumed[key], err_msg=key)
    assert sorted(os.listdir(full / "samples")) == ["step_2.png", "step_4.png"]
    assert (full / "training.png").exists()
    config = (parts / "operative_config.gin").read_text()
    assert re.search(rf"train.dataset_fingerprint = \\?\s*'{data.fingerprint(uri)}'", config)
    png(images / "a_cls" / "added.png", np.zeros((32, 32, 3), np.uint8))
    line = _error_line(_cli(parts, *bindings, "train.total_steps = 6", gin_file=QUICKSTART))
    assert "train.dataset_fingerprint = " in line and "now" in line
    assert "train.total_steps = 4" in (parts / "operative_config.gin").read_text()


def test_cli_trains_unconditionally_on_a_flat_folder_and_on_a_tfds_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(15):
        png(tmp_path / "flat" / f"{k:02d}.png", rng.integers(0, 256, (32, 32, 3), np.uint8))
    png(tmp_path / "flat" / "wide.png", rng.integers(0, 256, (32, 48), np.uint8))
    store_tfds(tmp_path / "tfds", "tiny_pictures")
    runs = {"flat": [f"train.dataset = 'folder:{tmp_path / 'flat'}'"],
            "tfds": ["train.dataset = 'tfds:tiny_pictures/grey'",
                     f"train.data_dir = '{tmp_path / 'tfds'}'", "train.d_batch_size = 4"]}
    for name, bindings in runs.items():
        run = tmp_path / f"run_{name}"
        result = _cli(run, *bindings, "train.total_steps = 2")
        assert result.returncode == 0, result.stderr[-3000:]
        with open(run / "metrics.csv") as f:
            assert [row["step"] for row in csv.DictReader(f)] == ["2"]
        assert storage.checkpoint_paths(str(run / "checkpoints"))
        assert os.listdir(run / "samples")
        assert "train.dataset_fingerprint = " in (run / "operative_config.gin").read_text()
    assert "image feature 'picture', label feature 'digit'" in result.stderr


@pytest.mark.parametrize("case, expected", [
    ("missing_folder", "does not exist or is not a directory"),
    ("few_images", "holds 3 images, fewer than one batch of 16 (n_dis * d_batch_size)"),
    ("corrupt_file", "broken.png' is not a PNG, JPEG, BMP or WebP image"),
    ("flat_folder_conditional", "has no labels"),
    ("tfds_not_prepared", "is not prepared"),
    ("tfds_without_image", "has no image feature"),
])
def test_cli_refuses_bad_data_in_one_line_leaving_no_workdir(tmp_path, case, expected):
    folder, gin_file = tmp_path / "images", TINY
    for k in range(3 if case == "few_images" else 20):
        png(folder / f"{k}.png", np.zeros((32, 32, 3), np.uint8))
    bindings = [f"train.dataset = 'folder:{folder}'"]
    if case == "missing_folder":
        bindings = [f"train.dataset = 'folder:{tmp_path / 'nowhere'}'"]
    elif case == "corrupt_file":
        (folder / "broken.png").write_bytes(b"GIF89a is not a PNG")
    elif case == "flat_folder_conditional":
        gin_file = QUICKSTART
    elif case.startswith("tfds"):
        store_tfds(tmp_path / "tfds", "tiny_table", image=False)
        name = "tiny_table/grey" if case == "tfds_without_image" else "mnist"
        bindings = [f"train.dataset = 'tfds:{name}'", f"train.data_dir = '{tmp_path / 'tfds'}'"]
    run = tmp_path / "run"
    line = _error_line(_cli(run, *bindings, gin_file=gin_file))
    assert expected in line
    assert not run.exists()  # nothing written for a run that never started


def test_train_takes_a_tf_data_dataset_in_python(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    gan = _train(tmp_path, "train.total_steps = 2",
                 dataset=tf.data.Dataset.from_tensor_slices(images))
    assert gan.iteration == 2
    with open(tmp_path / "metrics.csv") as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["2"]


def test_run_checks_refuse_unusable_or_changed_data(tmp_path):
    images = np.zeros((20, 32, 32, 3), np.uint8)
    spec = configurables.parse_run_config([TINY]).run_spec(workdir=str(tmp_path),
                                                           dataset=images)
    train_lib.check_arguments(spec)  # 20 images, batch n_dis 2 * 8 = 16
    fingerprint = data.fingerprint(images)
    train_lib.check_arguments(dataclasses.replace(spec, dataset_fingerprint=fingerprint))
    cases = {
        "fewer than one batch of 16": dict(dataset=images[:15]),
        "has no labels": dict(architecture="biggan32"),
        "changed since the run was configured": dict(dataset_fingerprint="0" * 64),
        "pass reference_stats": dict(eval_every=2),
    }
    for expected, change in cases.items():
        with pytest.raises(ValueError, match=expected):
            train_lib.check_arguments(dataclasses.replace(spec, **change))
