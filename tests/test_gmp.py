"""GMP: tfmot's polynomial schedule driven by the iteration, per-layer magnitude pruning of the
masked layers' masks, the "gmp" method, tfmot's PrunableLayer interface, and a GMP run of
gin_configs/test/tiny.gin that reaches its target density by its end step."""
import csv
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from adapt_tf.runs import configurables, methods
from adapt_tf import export
from adapt_tf.sparse import gmp
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense, masked_layers

TINY_GIN = str(Path(__file__).resolve().parent.parent / "gin_configs" / "test" / "tiny.gin")


def _gan(seed=0):
    keras.utils.set_random_seed(seed)
    z = keras.Input((4,))
    h = MaskedDense(16, activation="relu", name="g1")(z)
    generator = keras.Model(z, MaskedDense(3, activation="tanh", name="g2")(h))
    x = keras.Input((3,))
    h = MaskedDense(16, activation="relu", spectral_norm=True, name="d1")(x)
    discriminator = keras.Model(x, MaskedDense(1, name="d2")(h))
    return SparseGAN(generator, discriminator, latent_dim=4, n_dis=1, ema_decay=0.9)


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="target_density"):
        gmp.polynomial_schedule(target_density=0.0, begin_step=0, end_step=5, frequency=1)
    with pytest.raises(ValueError, match="begin_step < end_step"):
        gmp.polynomial_schedule(target_density=0.5, begin_step=5, end_step=5, frequency=1)
    with pytest.raises(ValueError, match="frequency"):
        gmp.polynomial_schedule(target_density=0.5, begin_step=0, end_step=5, frequency=0)


def test_pruning_steps_and_sparsity_follow_the_polynomial():
    callback = gmp.GradualMagnitudePruning("generator", target_density=0.2, begin_step=2,
                                           end_step=9, frequency=3)
    assert [s for s in range(12) if callback.is_pruning_step(s)] == [2, 5, 8, 9]
    for step in (2, 5, 8, 9):  # s(t) = s_f (1 - (1 - (t - t0) / (t1 - t0))^3)
        expected = 0.8 * (1.0 - (1.0 - (step - 2) / 7) ** 3)
        assert callback.sparsity(step) == pytest.approx(expected, abs=1e-6)


def test_prune_keeps_the_largest_magnitudes_per_layer_and_never_regrows():
    gan = _gan()
    callback = gmp.GradualMagnitudePruning("generator", target_density=0.25, begin_step=0,
                                           end_step=4, frequency=2)
    callback.set_model(gan)
    previous = [np.ones(layer.mask.shape) for layer in gan.masked_layers("generator")]
    for step in (2, 4):
        density = 1.0 - callback.sparsity(step)
        kernels = [layer.kernel.numpy() for layer in gan.masked_layers("generator")]
        callback.prune(step)
        for layer, kernel, before in zip(gan.masked_layers("generator"), kernels, previous):
            mask = layer.mask.numpy()
            keep = max(int(round(kernel.size * density)), 1)
            threshold = np.sort(np.abs(kernel).ravel())[::-1][keep - 1]
            np.testing.assert_array_equal(mask, (np.abs(kernel) >= threshold).astype(np.float32))
            assert mask.sum() == keep and np.all(mask <= before)
            assert np.all(layer.kernel.numpy()[mask == 0] == 0)
        previous = [layer.mask.numpy() for layer in gan.masked_layers("generator")]
    assert gan.density("discriminator") == 1.0  # the other network is untouched
    for ema_layer, layer in zip(masked_layers(gan.ema_generator), gan.masked_layers("generator")):
        np.testing.assert_array_equal(ema_layer.mask.numpy(), layer.mask.numpy())
    assert [event["step"] for event in callback.history] == [2, 4]


def test_gmp_method_starts_dense_and_prunes_both_networks():
    method = methods.method("gmp", g_density=0.3, g_interval=3, prune_end=0.75)
    assert (method.g_density, method.d_density) == (0.3, 0.3)
    assert method.initial_densities == (1.0, 1.0)
    callbacks = method.callbacks(total_steps=8)
    assert [c.network for c in callbacks] == ["generator", "discriminator"]
    assert all((c.begin_step, c.end_step, c.frequency, c.target_density) == (0, 6, 3, 0.3)
               for c in callbacks)
    with pytest.raises(ValueError, match="prune_begin < prune_end"):
        methods.method("gmp", g_density=0.3, prune_begin=0.5, prune_end=0.5)
    assert methods.method("adapt_relaxed", g_density=0.3).initial_densities == (0.3, 0.3)


def test_masked_layers_are_tfmot_prunable_layers():
    layer = MaskedDense(8, name="masked")
    assert isinstance(layer, tfmot.sparsity.keras.PrunableLayer)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layer(inputs))
    assert layer.get_prunable_weights() == [layer.kernel]
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.75, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 6), np.float32), np.zeros((4, 8), np.float32)
    pruned.fit(x, y, epochs=1, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    masked = masked_layers(stripped)
    assert len(masked) == 1 and np.count_nonzero(masked[0].kernel.numpy()) == 12
    plain = export.strip_masks(pruned)  # export strips tfmot wrappers too
    assert not masked_layers(plain)
    np.testing.assert_allclose(plain(x).numpy(), stripped(x).numpy(), atol=1e-6)


def test_gmp_run_of_tiny_config_reaches_its_target_density(tmp_path):
    gin.clear_config()
    configurables.parse_config([TINY_GIN], ["method.name = 'gmp'", "train.n_dis = 1",
                                            "train.g_width = 8", "train.d_width = 8",
                                            "train.log_every = 1", "train.sample_every = 100"])
    gan = configurables.train(workdir=str(tmp_path))
    with open(tmp_path / "metrics.csv") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}
    # tiny.gin: 8 iterations, pruning after iterations 3 and 6 (every method.g_interval up to
    # 0.75 * 8). A row logs the densities in force after its iteration, its pruning included.
    for network in ("g_density", "d_density"):
        assert [float(rows[step][network]) for step in (1, 2)] == [1.0, 1.0]
        assert 0.3 + 0.01 < float(rows[3][network]) == float(rows[5][network]) < 1.0
        for step in (6, 7, 8):
            assert float(rows[step][network]) == pytest.approx(0.3, abs=2e-3)
    for layer in masked_layers([gan.generator, gan.discriminator]):
        mask = layer.mask.numpy()
        assert abs(mask.sum() - 0.3 * mask.size) <= 1, layer.name
        assert np.all(layer.kernel.numpy()[mask == 0] == 0)
    # The export of a GMP run: plain layers whose kernels hold exactly the surviving weights.
    plain = export.strip_masks(gan.ema_generator)
    for layer in masked_layers(gan.ema_generator):
        kernel = plain.get_layer(layer.name).kernel.numpy()
        assert np.count_nonzero(kernel) <= layer.mask.numpy().sum()
        assert np.all(kernel[layer.mask.numpy() == 0] == 0)
    z = tf.random.stateless_normal([2, gan.latent_dim], seed=[0, 1])
    np.testing.assert_allclose(plain(z, training=False).numpy(),
                               gan.ema_generator(z, training=False).numpy(), atol=1e-5)
