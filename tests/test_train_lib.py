"""End-to-end runs of train_lib on the tiny config: artefacts, exact resume, the CLI."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import gin
import numpy as np
import pytest

from adapt_tf import configurables, layers as L, train_lib

import tf_keras as keras

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "gin_configs" / "test" / "tiny.gin")


def _train(workdir, *bindings, extra_callbacks=()):
    gin.clear_config()
    configurables.parse_config([TINY], list(bindings))
    return configurables.train(workdir=str(workdir), extra_callbacks=list(extra_callbacks))


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
    assert len(window) == 2
    assert sorted(os.listdir(workdir / "samples")) == ["step_4.png", "step_8.png"]
    assert any(name.startswith("ckpt-8") for name in os.listdir(workdir / "checkpoints"))


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


def test_cli_writes_operative_config_and_rejects_bad_gin(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    bad = subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         "--gin_bindings=train.not_a_parameter = 3", f"--workdir={tmp_path / 'bad'}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0
    assert "not_a_parameter" in bad.stderr and "tiny.gin" in bad.stderr

    workdir = tmp_path / "cli"
    run = subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         "--gin_bindings=train.total_steps = 2", f"--workdir={workdir}"],
        capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    config = (workdir / "operative_config.gin").read_text()
    assert "train.total_steps = 2" in config and "method.name = 'adapt_relaxed'" in config
    assert (workdir / "metrics.csv").exists()


def test_missing_required_value_names_the_parameter(tmp_path):
    gin.clear_config()
    configurables.parse_config([str(ROOT / "gin_configs" / "base.gin")])
    # base.gin binds method.g_density but not method.name: gin names the missing value.
    with pytest.raises(TypeError, match=r"No values supplied .* \['name'\][\s\S]*'method'"):
        configurables.train(workdir=str(tmp_path))


def test_unknown_gin_file_is_a_clear_error():
    with pytest.raises(ValueError, match="not found"):
        configurables.parse_config(["gin_configs/no_such.gin"])
