"""Tests of adapt_tf.gan.schedules: the linear learning-rate decay of the official --lr-decay,
keyed to the GAN iteration (not the optimizers' step counts), exact on resume."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from adapt_tf.gan import schedules
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense

LATENT, FEATURES, TOTAL, BASE = 2, 3, 4, 0.05


def test_the_rate_of_iteration_i_is_initial_times_one_minus_i_over_total():
    step = tf.Variable(0, dtype=tf.int64)
    decay = schedules.LinearDecay(BASE, TOTAL, step)
    rates = []
    for i in range(TOTAL + 2):
        step.assign(i)
        rates.append(float(decay(optimizer_step=123)))  # the optimizer's count is ignored
    expected = [BASE * (1 - min(i / TOTAL, 1.0)) for i in range(TOTAL + 2)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=0)
    assert rates[TOTAL:] == [0.0, 0.0]  # 0 from total_steps on, never negative
    assert decay.get_config() == {"initial_learning_rate": BASE, "total_steps": TOTAL}


def test_with_linear_decay_keeps_the_optimizers_settings_and_refuses_a_schedule():
    step = tf.Variable(2, dtype=tf.int64)
    adam = keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9, epsilon=1e-8)
    decayed = schedules.with_linear_decay(adam, total_steps=8, step=step)
    assert type(decayed) is keras.optimizers.Adam
    config = decayed.get_config()
    assert (config["beta_1"], config["beta_2"], config["epsilon"]) == (0.0, 0.9, 1e-8)
    assert float(decayed.learning_rate) == pytest.approx(1e-3 * 6 / 8, rel=1e-6)
    with pytest.raises(ValueError, match=r"lr_decay needs an optimizer with a constant "
                                         r"learning rate, got .*LinearDecay"):
        schedules.with_linear_decay(decayed, total_steps=8, step=step)
    with pytest.raises(ValueError, match="total_steps must be a positive integer"):
        schedules.LinearDecay(1e-3, 0, step)


def _gan(seed=0):
    keras.utils.set_random_seed(seed)
    generator = keras.Sequential([keras.Input((LATENT,)), MaskedDense(FEATURES, name="g")])
    discriminator = keras.Sequential([keras.Input((FEATURES,)), MaskedDense(4, name="d1"),
                                      keras.layers.LeakyReLU(0.2), MaskedDense(1, name="d2")])
    return SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=2, br_interval=1,
                     br_window=4, seed=seed)


class _SetRates(keras.callbacks.Callback):
    """The reference: constant-rate SGD whose rate a callback sets before iteration i to
    BASE * (1 - i / TOTAL), the official LambdaLR stepped once per iteration."""

    def on_train_batch_begin(self, batch, logs=None):
        rate = BASE * (1 - self.model.iteration / TOTAL)
        for optimizer in (self.model.g_optimizer, self.model.d_optimizer):
            optimizer.learning_rate.assign(rate)


def _trained(decayed: bool):
    gan = _gan()
    make = lambda: keras.optimizers.SGD(BASE)  # noqa: E731
    g_opt, d_opt = make(), make()
    callbacks = [] if decayed else [_SetRates()]
    if decayed:
        g_opt, d_opt = (schedules.with_linear_decay(o, total_steps=TOTAL, step=gan.step)
                        for o in (g_opt, d_opt))
    gan.compile(g_optimizer=g_opt, d_optimizer=d_opt)
    images = np.random.default_rng(1).normal(size=(2 * 4 * TOTAL, FEATURES)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)
    gan.fit(data, epochs=1, verbose=0, callbacks=callbacks)
    return gan


def test_every_d_step_and_the_g_step_of_iteration_i_use_the_rate_of_i():
    # n_dis = 2: D's optimizer has stepped 2i times by iteration i. A schedule keyed to that
    # count would give D the rates of iterations 0, 2, 4, ... and the weights would differ
    # from the reference by lr * |grad| per step; float32 round-off of the two ways of
    # computing the same rate is below 1e-6 relative.
    decayed, reference = _trained(True), _trained(False)
    assert int(decayed.d_optimizer.iterations) == 2 * TOTAL
    for a, b in zip(decayed.generator.weights + decayed.discriminator.weights,
                    reference.generator.weights + reference.discriminator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    moved = _gan().discriminator.weights  # the untrained start: training did move D
    assert any(np.abs(a.numpy() - b.numpy()).max() > 1e-3
               for a, b in zip(decayed.discriminator.weights, moved))
