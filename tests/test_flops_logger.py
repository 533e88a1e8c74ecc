"""Tests of adapt_tf.flops.flops_logger (FlopsLogger, FlopsState, training_schedule, network_costs)
and of the static FLOPs table behind `python -m adapt_tf.flops`.

The toy is linear, so its costs are hand-countable under the paper's convention
(docs/ALGORITHM.md §10): G(z) = z @ Wg with a [2, 3] kernel, D(x) = x @ Wd with a [3, 1] kernel, no
biases. Per sample, g_fwd = 6 d_G and d_fwd = 3 d_D MACs; per iteration
G = g_fwd (d_batch n_dis + 3 g_batch), D = d_fwd (3 d_batch n_dis + g_batch), and a run adds
G + n_dis D per iteration.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapt_tf.gan import architectures
from adapt_tf.sparse import dst, topology
from adapt_tf import flops
from adapt_tf.flops import __main__ as flops_cli
from adapt_tf.balance.controller import ADAPTController
from adapt_tf.flops.flops_logger import (FlopsLogger, FlopsState, network_costs,
                                         training_schedule)
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense, masked_layers
from adapt_tf.runs.writers import Checkpointer, MetricsLogger
from adapt_tf.sparse.sparsity import DynamicSparsity

import tensorflow as tf
import tf_keras as keras

ROOT = Path(__file__).resolve().parent.parent
N_DIS, D_BATCH, G_BATCH = 2, 4, 4
MG = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32)  # d_G = 4/6
SCHEDULE = flops.Schedule(d_batch=D_BATCH, g_batch=G_BATCH, n_dis=N_DIS)


def _iteration(g_active: int, d_active: int) -> int:
    """Hand count of one iteration's paper FLOPs with that many active kernel entries."""
    g_part = g_active * (D_BATCH * N_DIS + 3 * G_BATCH)
    d_part = d_active * (3 * D_BATCH * N_DIS + G_BATCH)
    return g_part + N_DIS * d_part


SPARSE, THINNED, DENSE = _iteration(4, 3), _iteration(4, 1), _iteration(6, 3)
assert (SPARSE, THINNED, DENSE) == (248, 136, 288)


def _gan():
    generator = keras.Sequential([keras.Input((2,)),
                                  MaskedDense(3, use_bias=False, name="g_dense")])
    discriminator = keras.Sequential([keras.Input((3,)),
                                      MaskedDense(1, use_bias=False, name="d_dense")])
    layer = masked_layers(generator)[0]
    layer.mask.assign(MG)
    layer.kernel.assign(layer.kernel * MG)
    gan = SparseGAN(generator, discriminator, latent_dim=2, n_dis=N_DIS, g_batch_size=G_BATCH)
    gan.compile(g_optimizer=keras.optimizers.SGD(0.01), d_optimizer=keras.optimizers.SGD(0.01))
    return gan


def _data(iterations: int):
    images = np.random.default_rng(0).normal(size=(iterations * N_DIS * D_BATCH, 3))
    return tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(
        N_DIS * D_BATCH, drop_remainder=True)


class _ThinD(keras.callbacks.Callback):
    """After iteration `step`, keeps one of D's three kernel entries (as ADAPT would prune)."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration == self.step:
            self.model.sparsity.assign("discriminator", [np.array([[1.0], [0.0], [0.0]])])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """4 iterations; D loses 2 of its 3 weights after iteration 2."""
    workdir = str(tmp_path_factory.mktemp("flops_run"))
    gan = _gan()
    logger = MetricsLogger(workdir, every=2, extra_fields=FlopsLogger.FIELDS, tensorboard=False)
    flops_logger = FlopsLogger(SCHEDULE)
    gan.fit(_data(4), epochs=1, verbose=0, callbacks=[_ThinD(2), flops_logger, logger])
    return workdir, gan, flops_logger


def test_cumulative_flops_follow_density_changes(run):
    _, gan, flops_logger = run
    accumulator = flops_logger.accumulator
    assert gan.iteration == 4
    assert accumulator.total == pytest.approx(2 * SPARSE + 2 * THINNED)
    assert accumulator.dense_total == pytest.approx(4 * DENSE)
    assert accumulator.ratio == pytest.approx((2 * 248 + 2 * 136) / (4 * 288))
    assert flops_logger.state.read() == {"total": 768.0, "dense_total": 1152.0,
                                         "iterations": 4}


class _CountingReads(FlopsLogger):
    """Counts the mask reads (`densities`, a device-to-host copy of every mask's count)."""

    reads = 0

    def densities(self):
        self.reads += 1
        return super().densities()


def test_masks_are_read_at_the_start_and_after_each_mask_change_only():
    gan, logger = _gan(), _CountingReads(SCHEDULE)
    gan.fit(_data(5), epochs=1, verbose=0, callbacks=[_ThinD(2), logger])
    assert logger.reads == 2  # on_train_begin, and after iteration 2's update
    assert logger.accumulator.total == pytest.approx(2 * SPARSE + 3 * THINNED)


def test_metrics_csv_rows_hold_cumulative_flops_and_ratio(run):
    workdir, _, _ = run
    with open(os.path.join(workdir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert [float(r["train_flops"]) for r in rows] == [2 * SPARSE, 2 * SPARSE + 2 * THINNED]
    assert float(rows[0]["train_flops_ratio"]) == pytest.approx(SPARSE / DENSE)
    assert float(rows[1]["train_flops_ratio"]) == pytest.approx(768 / 1152)


def test_checkpointed_state_continues_the_count(run, tmp_path):
    _, gan, flops_logger = run
    path = tf.train.Checkpoint(flops=flops_logger.state).save(str(tmp_path / "ckpt"))
    restored = FlopsState()
    tf.train.Checkpoint(flops=restored).restore(path).assert_consumed()
    resumed = FlopsLogger(SCHEDULE, state=restored)
    gan.fit(_data(2), epochs=1, verbose=0, callbacks=[resumed])
    assert gan.iteration == 6
    assert restored.read() == {"total": 768.0 + 2 * THINNED, "dense_total": 6.0 * DENSE,
                               "iterations": 6}


def test_the_totals_reach_the_variables_at_each_checkpoint_save_and_not_per_iteration(
        tmp_path):
    gan, logger = _gan(), FlopsLogger(SCHEDULE)
    seen = []

    class _Look(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(int(logger.state.iterations.numpy()))

    checkpointer = Checkpointer(str(tmp_path), gan, every=2, extra={"flops": logger.state})
    gan.fit(_data(5), epochs=1, verbose=0, callbacks=[_ThinD(2), logger, checkpointer, _Look()])
    assert seen == [0, 2, 2, 4, 4]  # written by the saves of iterations 2 and 4 only
    totals = {4: 2 * SPARSE + 2 * THINNED, 5: 2 * SPARSE + 3 * THINNED}  # 5: saved at the end
    for step, total in totals.items():
        restored = FlopsState()
        tf.train.Checkpoint(flops=restored).restore(
            os.path.join(str(tmp_path), f"ckpt-{step}")).expect_partial()
        assert restored.read() == {"total": float(total), "dense_total": step * DENSE,
                                   "iterations": step}


def test_missing_iterations_are_charged_and_a_state_ahead_is_refused():
    gan = _gan()
    gan.step.assign(3)  # e.g. a model trained before FLOPs were logged
    late = FlopsLogger(SCHEDULE)
    gan.fit(_data(1), epochs=1, verbose=0, callbacks=[late])
    assert int(late.state.iterations.numpy()) == 4  # written at the end of fit
    assert late.state.read() == {"total": 4.0 * SPARSE, "dense_total": 4.0 * DENSE,
                                 "iterations": 4}
    ahead = FlopsState()
    ahead.iterations.assign(10)
    with pytest.raises(ValueError, match="FlopsState restored"):
        gan.fit(_data(1), epochs=1, verbose=0, callbacks=[FlopsLogger(SCHEDULE, state=ahead)])


def test_training_schedule_reads_the_method_callbacks_and_bad_input():
    callbacks = [DynamicSparsity("generator", dst.SET(interval=3), total_steps=10),
                 ADAPTController("strict", total_steps=10, interval=4, growth="random")]
    schedule = training_schedule(callbacks, d_batch=4, g_batch=8, n_dis=2, br_interval=5)
    assert schedule == flops.Schedule(d_batch=4, g_batch=8, n_dis=2, br_interval=5,
                                      g_update_interval=3, d_update_interval=4,
                                      g_gradient_growth=False, d_gradient_growth=False)
    assert training_schedule([], d_batch=4, g_batch=8, n_dis=2, br_interval=None) == \
        flops.Schedule(4, 8, 2, br_interval=None)
    with pytest.raises(ValueError, match="convention must be one of"):
        FlopsLogger(SCHEDULE, convention="tables")
    with pytest.raises(ValueError, match="flops.Schedule"):
        FlopsLogger({"d_batch": 4})


def _table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| Static")]


def test_flops_cli_table_against_flops_module(capsys):
    """`python -m adapt_tf.flops` in process: the tiny config at 8 channels, strict setting."""
    from absl import flags

    flops_cli.define_flags()
    flags.FLAGS(["flops", f"--gin_file={ROOT / 'gin_configs' / 'test' / 'tiny.gin'}",
                 "--gin_bindings=train.g_width = 8", "--gin_bindings=train.d_width = 8",
                 "--gin_bindings=method.setting = 'strict'", "--densities=0.3"])
    try:
        flops_cli.main(["flops"])
    finally:
        flags.FLAGS.unparse_flags()
    text = capsys.readouterr().out
    assert text.startswith("sngan32 on toy_shapes (strict setting): 8 iterations, n_dis 2, "
                           "batch D 8 / G 8, ERK masks, convention 'paper'")
    rows = _table_rows(text)
    assert [row[:3] for row in rows] == [["Static-Balance", "30%", "30%"],
                                         ["Static-Strong", "30%", "50%"]]
    # The same numbers straight from adapt_tf.flops: ERK masks over the masked kernels, the
    # tiny config's batches, n_dis and 8 iterations.
    generator, discriminator = architectures.build_models("sngan32", g_width=8, d_width=8)
    costs = network_costs(generator, discriminator, latent_dim=128, num_classes=None)
    shapes = [{layer.name: tuple(layer.kernel.shape) for layer in masked_layers(model)}
              for model in (generator, discriminator)]
    schedule = flops.Schedule(d_batch=8, g_batch=8, n_dis=2, br_interval=1)
    for row, d_density in zip(rows, (0.3, 0.5)):
        expected = flops.training_flops(
            *costs, schedule, iterations=8, g_densities=topology.erk_densities(shapes[0], 0.3),
            d_densities=topology.erk_densities(shapes[1], d_density))
        assert float(row[3]) == pytest.approx(expected.total, rel=1e-4)
        assert float(row[4].rstrip("%")) == pytest.approx(100 * expected.ratio, abs=0.006)
    dense = float(text.splitlines()[1].split(":")[1])
    assert dense == pytest.approx(expected.dense_total, rel=1e-4)


def test_static_flops_relaxed_strong_d_is_dense_and_bad_input():
    result = flops_cli.StaticFlops("t", 10.0, [{"configuration": "Static-Strong",
                                                "g_density": 0.1, "d_density": 1.0,
                                                "flops": 5.0, "ratio": 0.5}])
    assert flops_cli.format_table(result).splitlines()[-1] == \
        "| Static-Strong | 10% | 100% | 5.0000e+00 | 50.00% |"
    with pytest.raises(ValueError, match="(?i)unknown architecture 'sngan'"):
        flops_cli.static_flops({"architecture": "sngan"})


def test_python_m_adapt_tf_flops_cli_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "adapt_tf.flops", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert "--gin_file" in result.stdout and "--convention" in result.stdout


def test_costs_of_a_128px_biggan_at_tiny_width_follow_the_layer_shapes():
    # FLOPs accounting beyond the paper's sizes: every masked conv costs kh·kw·cin·cout MACs
    # per output pixel, every masked linear cin·cout, attention its two matmuls.
    from adapt_tf.gan.architectures.blocks import AttentionMap

    generator, discriminator = architectures.build_models("biggan128", g_width=4, d_width=8,
                                                          num_classes=3)
    costs = network_costs(generator, discriminator, latent_dim=120, num_classes=3)
    for model, model_costs in zip((generator, discriminator), costs):
        by_name = {cost.name: cost for cost in model_costs}
        for layer in masked_layers(model):
            kernel = layer.kernel.shape
            pixels = np.prod(layer.output_shape[1:-1]) if len(kernel) == 4 else 1
            assert by_name[layer.name].weight_macs == np.prod(kernel) * pixels, layer.name
            assert by_name[layer.name].masked_params == np.prod(kernel)
        attention = [layer for layer in model.layers if isinstance(layer, AttentionMap)]
        side = 64  # min(64, 128 / 2)
        channels = attention[0].input_shape[0][-1], attention[0].input_shape[2][-1]
        assert by_name[attention[0].name].other_macs == (
            side * side * (side // 2) ** 2 * sum(channels))


def test_static_flops_at_another_image_size_names_and_counts_that_architecture():
    arguments = {"architecture": "sngan32", "image_size": 128, "dataset": "toy_shapes",
                 "g_width": 1, "d_width": 2, "d_batch_size": 2, "g_batch_size": 2, "n_dis": 1,
                 "total_steps": 3, "br_interval": 1, "sparse_init": "erk"}
    result = flops_cli.static_flops(arguments, densities=(0.5,))
    assert result.title.startswith("sngan128 on toy_shapes")
    generator, discriminator = architectures.build_models("sngan128", g_width=1, d_width=2)
    costs = network_costs(generator, discriminator, latent_dim=128, num_classes=None)
    dense = flops.training_flops(*costs, flops.Schedule(d_batch=2, g_batch=2, n_dis=1,
                                                        br_interval=1), iterations=3)
    assert result.dense_total == pytest.approx(dense.dense_total, rel=1e-12)
    with pytest.raises(ValueError, match=r"image_size=100.*\[32, 48, 64, 128, 256\]"):
        flops_cli.static_flops({**arguments, "image_size": 100})
