"""Tests of adapt_tf.gan.sparse_gan.SparseGAN: BR against a hand computation, the BR window cadence,
sparsity invariants under Adam, gradient requests, the EMA generator, conditional models,
argument validation, and (in a subprocess) MirroredStrategy against one device.

The hand-checked toy is linear: G(z) = z @ Wg (MaskedDense, no bias), D(x) = x @ Wd
(MaskedDense to one logit, no bias), trained by SGD on the hinge loss, so every number of an
iteration (D update, DF, G update, GF, DR) has a closed form that `_reference` computes in NumPy.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from adapt_tf import _compat
from adapt_tf.runs import writers
from adapt_tf.sparse import topology
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense, masked_layers

import tensorflow as tf
import tf_keras as keras
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.eager import context

LATENT = 2
FEATURES = 3
LR = 0.1
LOG_KEYS = {"d_loss", "g_loss", "br", "br_skipped", "g_density", "d_density"}

# Toy weights, chosen by hand; the masks leave both nets sparse.
WG = np.array([[0.6, -0.4, 0.8], [0.3, 0.9, -0.5]], np.float32)
MG = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32)
WD = np.array([[0.5], [-0.7], [0.4]], np.float32)
MD = np.array([[1.0], [1.0], [1.0]], np.float32)


# ------------------------------------------------------------------------------- helpers


def _linear_toy(*, wg=WG, mg=MG, wd=WD, md=MD):
    generator = keras.Sequential([keras.Input((LATENT,)),
                                  MaskedDense(FEATURES, use_bias=False, name="g_dense")])
    discriminator = keras.Sequential([keras.Input((FEATURES,)),
                                      MaskedDense(1, use_bias=False, name="d_dense")])
    for model, kernel, mask in ((generator, wg, mg), (discriminator, wd, md)):
        layer = masked_layers(model)[0]
        layer.mask.assign(mask)
        layer.kernel.assign(kernel * mask)
    return generator, discriminator


def _mlp_toy(*, conditional: bool = False, num_classes: int = 3):
    """Two-layer G and D with biases, for sparsity invariants; `conditional` adds labels."""
    z = keras.Input((LATENT,))
    h = z
    g_inputs = [z]
    if conditional:
        y = keras.Input((), dtype="int32")
        g_inputs.append(y)
        h = keras.layers.Concatenate()([z, keras.layers.Embedding(num_classes, 2)(y)])
    h = MaskedDense(8, activation="relu", name="g1")(h)
    out = MaskedDense(FEATURES, activation="tanh", name="g2")(h)
    generator = keras.Model(g_inputs if conditional else z, out)

    x = keras.Input((FEATURES,))
    h = MaskedDense(8, name="d1", spectral_norm=True)(x)
    h = keras.layers.LeakyReLU(0.1)(h)
    logit = MaskedDense(1, name="d2")(h)
    d_inputs = x
    if conditional:
        y = keras.Input((), dtype="int32")
        d_inputs = [x, y]
        projection = keras.layers.Dot(axes=1)([h, keras.layers.Embedding(num_classes, 8)(y)])
        logit = keras.layers.Add()([logit, projection])
    discriminator = keras.Model(d_inputs, logit)
    topology.sparsify(generator, 0.5, distribution="uniform", seed=1)
    topology.sparsify(discriminator, 0.5, distribution="uniform", seed=2)
    return generator, discriminator


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)


def _dataset(images, batch, labels=None):
    elements = images if labels is None else (images, labels)
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch, drop_remainder=True)


def _compiled(gan, optimizer="sgd", lr=LR, **compile_kwargs):
    make = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[optimizer]
    gan.compile(g_optimizer=make(learning_rate=lr), d_optimizer=make(learning_rate=lr),
                **compile_kwargs)
    return gan


def _z(seed: int, base: int, batch: int) -> np.ndarray:
    """z of `_Sampler`: stateless normal seeded by (seed, iteration * (n_dis + 1) + phase)."""
    return tf.random.stateless_normal(
        [batch, LATENT], seed=tf.constant([seed, base], tf.int64)).numpy().astype(np.float64)


def _reference(images, *, iterations, n_dis, d_batch, seed, g_batch=None, wg=WG, mg=MG, wd=WD,
               md=MD):
    """NumPy run of the linear toy: per iteration (d_loss, g_loss, GF, DF, DR, Wg, Wd).

    The G step (and its BR sample) uses `g_batch` z (default: the D batch); DR is the mean over
    the last D step's `d_batch` real images.
    """
    g_batch = g_batch or d_batch
    wg, wd = (wg * mg).astype(np.float64), (wd * md).astype(np.float64)
    records = []
    for it in range(iterations):
        batch = images[it * n_dis * d_batch:(it + 1) * n_dis * d_batch].astype(np.float64)
        for k in range(n_dis):
            real = batch[k::n_dis]
            fake = _z(seed, it * (n_dis + 1) + k, d_batch) @ wg
            r, f = real @ wd, fake @ wd
            d_loss = np.mean(np.maximum(0, 1 - r) + np.maximum(0, 1 + f))
            grad = (-real.T @ (r < 1).astype(float) + fake.T @ (f > -1).astype(float)) / d_batch
            wd = (wd - LR * grad) * md
        z = _z(seed, it * (n_dis + 1) + n_dis, g_batch)
        df = np.mean(z @ wg @ wd)
        g_grad = -np.mean(z, axis=0)[:, None] @ wd.T  # d(-mean z Wg Wd)/dWg, dense
        wg = (wg - LR * g_grad) * mg
        gf = np.mean(z @ wg @ wd)
        dr = np.mean(real @ wd)
        records.append(dict(d_loss=d_loss, g_loss=-df, gf=gf, df=df, dr=dr, wg=wg, wd=wd,
                            g_grad=g_grad, d_grad=grad))
    return records


class _Recorder(keras.callbacks.Callback):
    """Per-iteration logs and BR-window state; optionally declares gradients by batch."""

    def __init__(self, gan, requests=None):
        super().__init__()
        self.gan = gan
        self.requests = requests or {}
        # pushes: the window's (count, position) after each iteration.
        self.logs, self.windows, self.pushes, self.buffers = [], [], [], []

    def on_train_begin(self, logs=None):
        self.start = self.gan.iteration

    def needs_gradients(self, step):
        return self.requests.get(step - 1 - self.start, ())  # keyed by this fit's batch

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append({key: float(value) for key, value in logs.items()})
        window = self.gan.balance
        self.windows.append(window.values())
        self.pushes.append((int(window.count.numpy()), int(window.position.numpy())))
        self.buffers.append({net: [b.numpy().copy() for b in self.gan.grad_buffers(net)]
                             for net in ("generator", "discriminator")})


# ------------------------------------------------------------------- BR hand computation


@pytest.mark.parametrize("n_dis, g_batch, jit_compile", [
    (1, None, False), (2, None, False), (1, None, True),
    # The paper's SNGAN runs use G batch = 2 x D batch: GF/DF average over g_batch, DR over
    # the D batch.
    (2, 8, False), (2, 8, True)])
def test_br_and_losses_equal_a_hand_computation(n_dis, g_batch, jit_compile):
    d_batch, iterations, seed = 4, 2, 3
    images = _images(n_dis * d_batch * iterations, seed=1)
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=n_dis, br_interval=1,
                              br_window=5, g_batch_size=g_batch, seed=seed),
                    jit_compile=jit_compile)
    recorder = _Recorder(gan)
    gan.fit(_dataset(images, n_dis * d_batch), epochs=1, verbose=0, callbacks=[recorder])

    ref = _reference(images, iterations=iterations, n_dis=n_dis, d_batch=d_batch, seed=seed,
                     g_batch=g_batch)
    ratios = [(r["gf"] - r["df"]) / (r["dr"] - r["df"]) for r in ref]
    np.testing.assert_allclose(gan.balance.values(), ratios, rtol=1e-4)
    for i, logs in enumerate(recorder.logs):
        # The logged BR is the mean of per-sample ratios; losses are epoch means.
        np.testing.assert_allclose(logs["br"], np.mean(ratios[:i + 1]), rtol=1e-4)
        np.testing.assert_allclose(logs["d_loss"], np.mean([r["d_loss"] for r in ref[:i + 1]]),
                                   rtol=1e-4)
        np.testing.assert_allclose(logs["g_loss"], np.mean([r["g_loss"] for r in ref[:i + 1]]),
                                   rtol=1e-4)
    g_layer, d_layer = gan.masked_layers("generator")[0], gan.masked_layers("discriminator")[0]
    np.testing.assert_allclose(g_layer.kernel.numpy(), ref[-1]["wg"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d_layer.kernel.numpy(), ref[-1]["wd"], rtol=1e-4, atol=1e-6)
    assert int(gan.step.numpy()) == iterations


def _xla_flags(gan) -> dict:
    """{step function name: XLA's must-compile flag of each of its traces} over the one-device
    route's step functions made for the model's current `jit_compile`."""
    return {name: [concrete.function_def.attr["_XlaMustCompile"].b
                   if "_XlaMustCompile" in concrete.function_def.attr else False
                   for concrete in function._list_all_concrete_functions()]
            for (name, jit), function in gan._compiled.steps.items()
            if jit == (bool(gan.jit_compile) and name != "_begin")}


def _marked(jit_compile: bool) -> dict:
    return {"_begin": [False], "_discriminator_step": [jit_compile],
            "_generator_step": [jit_compile], "_window_sample": [jit_compile],
            "_finish": [jit_compile]}


@pytest.mark.parametrize("jit_compile", [True, False])
def test_jit_compile_marks_the_step_functions_for_xla(jit_compile):
    # XLA gives the toy the same numbers, so the hand computation above cannot tell whether
    # compile(jit_compile=True) reached the steps: every step function of the one-device
    # iteration must carry XLA's must-compile flag exactly when asked, except the one that
    # draws the latents (XLA's stateless RNG gives other numbers).
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=1),
                    jit_compile=jit_compile)
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    assert _xla_flags(gan) == _marked(jit_compile)


def test_a_change_of_jit_compile_between_fits_reaches_the_step_functions():
    # Recompiling with XLA, or setting Keras' `jit_compile` property (which keeps the
    # optimizers and the step functions' cache), must not reuse the steps traced without it.
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=1),
                    jit_compile=False)
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    gan.compile(g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer, jit_compile=True)
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    assert _xla_flags(gan) == _marked(True)
    gan.jit_compile = False
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    assert _xla_flags(gan) == _marked(False)
    gan.jit_compile = True
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    assert _xla_flags(gan) == _marked(True) and int(gan.step.numpy()) == 4


def test_loss_scaled_optimizers_train_like_plain_ones():
    # Mixed precision wraps the optimizers in LossScaleOptimizer: the steps scale the loss and
    # unscale the gradients. A fixed power-of-two scale is exact in float32, so the toy must
    # follow the plain SGD hand computation (a missing scale or unscale moves the gradients
    # by 2**10).
    d_batch, iterations, seed = 4, 2, 3
    images = _images(d_batch * iterations, seed=1)
    gan = SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=1, br_window=5, seed=seed)

    def scaled():
        return keras.mixed_precision.LossScaleOptimizer(
            keras.optimizers.SGD(learning_rate=LR), dynamic=False, initial_scale=2.0 ** 10)

    gan.compile(g_optimizer=scaled(), d_optimizer=scaled())
    gan.fit(_dataset(images, d_batch), epochs=1, verbose=0)
    ref = _reference(images, iterations=iterations, n_dis=1, d_batch=d_batch, seed=seed)
    g_layer, d_layer = gan.masked_layers("generator")[0], gan.masked_layers("discriminator")[0]
    np.testing.assert_allclose(g_layer.kernel.numpy(), ref[-1]["wg"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d_layer.kernel.numpy(), ref[-1]["wd"], rtol=1e-4, atol=1e-6)


def test_train_step_called_directly_draws_its_own_latents():
    # Outside fit, train_step draws z itself (fit draws them before the replicated step); the
    # iteration must be the same as the hand computation's.
    d_batch, seed = 4, 3
    images = _images(2 * d_batch, seed=1)
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=2, br_interval=1,
                              br_window=5, seed=seed))
    gan.train_step(tf.constant(images))
    ref = _reference(images, iterations=1, n_dis=2, d_batch=d_batch, seed=seed)
    g_layer, d_layer = gan.masked_layers("generator")[0], gan.masked_layers("discriminator")[0]
    np.testing.assert_allclose(g_layer.kernel.numpy(), ref[0]["wg"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d_layer.kernel.numpy(), ref[0]["wd"], rtol=1e-4, atol=1e-6)
    ratio = (ref[0]["gf"] - ref[0]["df"]) / (ref[0]["dr"] - ref[0]["df"])
    np.testing.assert_allclose(gan.balance.values(), [ratio], rtol=1e-4)
    assert int(gan.step.numpy()) == 1


def test_train_step_samples_br_every_interval_and_copies_the_declared_gradients():
    # Outside fit, train_step reads the iteration from `step`: with br_interval 2 it samples
    # BR at the second iteration only (the official (iteration + 1) % 2 == 0). Inside fit,
    # the iterations a callback declares with `needs_gradients` (G at the first, D at the
    # third) copy those dense gradients.
    seed = 3
    images = _images(12, seed=1)
    ref = _reference(images, iterations=3, n_dis=1, d_batch=4, seed=seed)
    ratios = [(r["gf"] - r["df"]) / (r["dr"] - r["df"]) for r in ref]
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=2, br_window=6,
                              seed=seed))
    for start in (0, 4, 8):
        gan.train_step(tf.constant(images[start:start + 4]))
        assert int(gan.balance.count.numpy()) == (start >= 4)
    np.testing.assert_allclose(gan.balance.values(), ratios[1::2], rtol=1e-4)
    assert not any(np.any(b.numpy()) for net in ("generator", "discriminator")
                   for b in gan.grad_buffers(net))  # nobody declared gradients
    assert gan.iteration == 3

    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=2, br_window=6,
                              seed=seed))
    recorder = _Recorder(gan, requests={0: ("generator",), 2: ("discriminator",)})
    gan.fit(_dataset(images, 4), epochs=1, verbose=0, callbacks=[recorder])
    np.testing.assert_allclose(recorder.buffers[0]["generator"][0], ref[0]["g_grad"],
                               rtol=1e-4, atol=1e-7)
    assert not np.any(recorder.buffers[0]["discriminator"][0])
    np.testing.assert_allclose(recorder.buffers[2]["discriminator"][0], ref[2]["d_grad"],
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(recorder.buffers[2]["generator"][0],
                                  recorder.buffers[0]["generator"][0])  # not rewritten
    np.testing.assert_allclose(gan.balance.values(), ratios[1::2], rtol=1e-4)


def test_variant_names_the_window_sample_and_the_gradients_the_callbacks_declare():
    # The variant of the iteration after `step` completed ones: the window sample at
    # (step + 1) % br_interval == 0, the gradients that fit's NeedsGradients callbacks name
    # for step + 1, none outside fit.
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=2, br_window=6))
    assert gan.variant(1)._fields == ("sample_window", "keep_g_grads", "keep_d_grads")
    assert [gan.variant(step) for step in range(4)] == [(False, False, False),
                                                        (True, False, False)] * 2
    recorder = _Recorder(gan, requests={0: ("generator",), 1: ("discriminator",),
                                        2: ("generator", "discriminator")})
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(gan.variant(gan.iteration)))
    gan.fit(_dataset(_images(12), 4), epochs=1, verbose=0, callbacks=[recorder, probe])
    assert seen == [(False, True, False), (True, False, True), (False, True, True)]
    assert gan.variant(3) == (True, False, False) and gan.variant(3).sample_window


def test_fit_takes_callbacks_where_keras_does_and_honours_their_declared_gradients():
    # `fit` has keras.Model.fit's signature, so callbacks passed positionally (the sixth
    # argument, after x, y, batch_size, epochs, verbose) declare their gradients too.
    assert list(inspect.signature(SparseGAN.fit).parameters.items()) == list(
        inspect.signature(keras.Model.fit).parameters.items())
    images = _images(8, seed=1)
    ref = _reference(images, iterations=2, n_dis=1, d_batch=4, seed=0)
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=2, br_window=6))
    recorder = _Recorder(gan, requests={1: ("discriminator",)})
    gan.fit(_dataset(images, 4), None, None, 1, 0, [recorder])
    assert not np.any(recorder.buffers[0]["discriminator"][0])
    np.testing.assert_allclose(recorder.buffers[1]["discriminator"][0], ref[1]["d_grad"],
                               rtol=1e-4, atol=1e-7)
    assert "br_gf" not in recorder.logs[1]  # the recorder is no LogsSamples
    recorder.logs_samples = True
    gan.fit(_dataset(images, 4), None, None, 1, 0, keras.callbacks.CallbackList([recorder]))
    assert "br_gf" in recorder.logs[-1] and "br_gf" not in recorder.logs[-2]


def test_logged_losses_are_means_since_the_last_multiple_of_loss_mean_every():
    # loss_mean_every 2: iterations 1, 2 average (1, 2); 3 logs its own; 4 averages (3, 4); 5
    # its own again. Without it, the means run over the whole fit (Keras).
    images = _images(20, seed=4)
    ref = _reference(images, iterations=5, n_dis=1, d_batch=4, seed=0)
    expected = {2: [[0], [0, 1], [2], [2, 3], [4]], None: [list(range(i + 1)) for i in range(5)]}
    for every, windows in expected.items():
        gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, loss_mean_every=every))
        recorder = _Recorder(gan)
        gan.fit(_dataset(images, 4), epochs=1, verbose=0, callbacks=[recorder])
        for logs, window in zip(recorder.logs, windows, strict=True):
            for key in ("d_loss", "g_loss"):
                np.testing.assert_allclose(logs[key], np.mean([ref[i][key] for i in window]),
                                           rtol=1e-4)
    with pytest.raises(ValueError, match="loss_mean_every"):
        SparseGAN(*_linear_toy(), latent_dim=LATENT, loss_mean_every=0)


def test_loss_means_continue_across_fit_calls_and_a_resumed_checkpoint(tmp_path):
    # loss_mean_every 4 over 8 iterations: iteration 8 logs the mean of iterations 5..8, also
    # when the run stops after iteration 6 and goes on in a second fit, or in a new model
    # restored from a checkpoint of iteration 6 (Keras' epoch-start reset would keep 7..8).
    data = _dataset(_images(32, seed=5), 4)

    def new_gan():
        return _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, loss_mean_every=4))

    def checkpoint(gan):
        return tf.train.Checkpoint(gan=gan, g=gan.g_optimizer, d=gan.d_optimizer)

    def last_logs(gan, dataset):
        recorder = _Recorder(gan)
        gan.fit(dataset, epochs=1, verbose=0, callbacks=[recorder])
        return recorder.logs[-1]

    whole = last_logs(new_gan(), data)
    split = new_gan()
    last_logs(split, data.take(6))
    path = checkpoint(split).save(str(tmp_path / "ckpt"))
    continued = last_logs(split, data.skip(6))
    resumed = new_gan()
    checkpoint(resumed).restore(path).assert_consumed()
    after_resume = last_logs(resumed, data.skip(6))
    for logs in (continued, after_resume):
        for key in ("d_loss", "g_loss"):
            assert float(logs[key]) == float(whole[key]), key
    outside_fit = new_gan()
    outside_fit.d_loss_tracker.update_state(1.0)
    outside_fit.reset_metrics()  # called by the user, outside fit: a reset
    assert float(outside_fit.d_loss_tracker.count.numpy()) == 0.0


def test_callbacks_declare_gradients_and_sample_logs_through_the_protocols(tmp_path):
    from adapt_tf.sparse import dst
    from adapt_tf.balance.controller import ADAPTController
    from adapt_tf.gan.sparse_gan import LogsSamples, NeedsGradients
    from adapt_tf.runs.writers import MetricsLogger, SampleLogs
    from adapt_tf.sparse.sparsity import DynamicSparsity

    rigl = DynamicSparsity("generator", dst.RigL(interval=2), total_steps=10)
    assert isinstance(rigl, NeedsGradients) and not isinstance(rigl, LogsSamples)
    assert isinstance(ADAPTController(total_steps=10), NeedsGradients)
    assert isinstance(SampleLogs(str(tmp_path)), LogsSamples)
    logger = MetricsLogger(str(tmp_path), tensorboard=False)
    assert not isinstance(logger, (NeedsGradients, LogsSamples))

    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT))
    switched_off = keras.callbacks.Callback()
    switched_off.logs_samples = False
    with pytest.raises(ValueError, match="logs_samples=False: a callback that reads"):
        gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0, callbacks=[switched_off])
    not_a_method = keras.callbacks.Callback()
    not_a_method.needs_gradients = ("generator",)
    with pytest.raises(ValueError, match="needs_gradients must be a method"):
        gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0, callbacks=[not_a_method])
    assert gan.iteration == 0


# ------------------------------------------------------------------------ BR window cadence


def test_br_window_samples_when_an_interval_of_iterations_completes_and_keeps_window_samples():
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=2, br_window=6))
    assert gan.balance.capacity == 3
    assert math.isnan(float(gan.balance.mean()))  # NaN before the first sample
    recorder = _Recorder(gan)
    iterations = 11
    images = _images(4 * iterations)
    gan.fit(_dataset(images, 4), epochs=1, verbose=0, callbacks=[recorder])
    ref = _reference(images, iterations=iterations, n_dis=1, d_batch=4, seed=0)
    ratios = [(r["gf"] - r["df"]) / (r["dr"] - r["df"]) for r in ref]

    # Iteration i (from 0) pushes iff (i + 1) % 2 == 0, as the official (iter + 1) % br_freq:
    # after iteration i, (i + 1) // 2 pushes into the ring.
    assert recorder.pushes == [(min(3, (i + 1) // 2), (i + 1) // 2 % 3)
                               for i in range(iterations)]
    assert all(logs["br_skipped"] == 0 for logs in recorder.logs)
    for i, values in enumerate(recorder.windows):
        sampled = ratios[1:i + 1:2][-3:]  # the newest 3 samples, oldest first
        # atol: float32 cancellation in GF - DF once the toy's G steps get small.
        np.testing.assert_allclose(values, sampled, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(recorder.logs[i]["br"], np.mean(sampled), rtol=1e-4,
                                   atol=1e-5)
    assert len(gan.balance.values()) == 3 and bool(gan.balance.is_full())


def test_degenerate_balance_samples_are_skipped_inside_fit():
    # D with an all-zero mask outputs 0 for real and fake: DR == DF, no ratio.
    gan = _compiled(SparseGAN(*_linear_toy(md=np.zeros_like(MD)), latent_dim=LATENT,
                              br_interval=1, br_window=4))
    history = gan.fit(_dataset(_images(12), 4), epochs=1, verbose=0)
    assert history.history["br_skipped"][-1] == 3
    assert math.isnan(history.history["br"][-1])
    assert history.history["d_density"][-1] == 0.0
    assert int(gan.balance.count.numpy()) == 0


# ---------------------------------------------------------------------- sparsity invariants


def test_kernels_stay_zero_outside_masks_and_counts_unchanged_under_adam():
    generator, discriminator = _mlp_toy()
    gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=2,
                              br_interval=1, br_window=4), optimizer="adam", lr=0.05)
    layers = gan.masked_layers("generator") + gan.masked_layers("discriminator")
    masks = [layer.mask.numpy().copy() for layer in layers]
    kernels = [layer.kernel.numpy().copy() for layer in layers]
    counts = (topology.count_active(generator), topology.count_active(discriminator))

    history = gan.fit(_dataset(_images(48), 8), epochs=1, verbose=0)

    assert set(history.history) == LOG_KEYS
    for layer, mask, kernel in zip(layers, masks, kernels):
        np.testing.assert_array_equal(layer.mask.numpy(), mask)
        assert np.all(layer.kernel.numpy()[mask == 0] == 0.0), layer.name
        assert not np.allclose(layer.kernel.numpy()[mask == 1], kernel[mask == 1]), layer.name
    assert (topology.count_active(generator), topology.count_active(discriminator)) == counts
    assert history.history["g_density"][-1] == pytest.approx(topology.model_density(generator))
    assert history.history["d_density"][-1] == pytest.approx(
        topology.model_density(discriminator))
    assert all(np.isfinite(history.history[key][-1]) for key in ("d_loss", "g_loss", "br"))


def test_declared_gradients_fill_buffers_with_dense_gradients_on_that_iteration_only():
    """G: the G step's gradient; D: the last of the n_dis D steps' (official code)."""
    d_batch, n_dis, seed = 4, 2, 5
    images = _images(6 * n_dis * d_batch, seed=2)
    md = np.array([[0.0], [1.0], [1.0]], np.float32)
    gan = _compiled(SparseGAN(*_linear_toy(md=md), latent_dim=LATENT, n_dis=n_dis,
                              br_interval=3, br_window=6, seed=seed))
    requests = {2: ("generator",), 4: ("discriminator",)}
    recorder = _Recorder(gan, requests)
    gan.fit(_dataset(images, n_dis * d_batch), epochs=1, verbose=0, callbacks=[recorder])
    ref = _reference(images, iterations=6, n_dis=n_dis, d_batch=d_batch, seed=seed, md=md)

    g_buffers = [b["generator"][0] for b in recorder.buffers]
    d_buffers = [b["discriminator"][0] for b in recorder.buffers]
    for i in range(6):
        np.testing.assert_array_equal(g_buffers[i], 0.0 if i < 2 else g_buffers[2])
        np.testing.assert_array_equal(d_buffers[i], 0.0 if i < 4 else d_buffers[4])
    np.testing.assert_allclose(g_buffers[2], ref[2]["g_grad"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(d_buffers[4], ref[4]["d_grad"], rtol=1e-4, atol=1e-7)
    # Dense: nonzero where the masks are 0 (G's pruned entries; D's pruned input).
    assert np.all(g_buffers[2][MG == 0] != 0)
    assert d_buffers[4][0, 0] != 0
    # The four variants of the iteration (BR samples at iterations 2 and 5, counted from 0:
    # (i + 1) % 3 == 0; G's gradients kept at 2, D's at 4) call the same step functions, each
    # traced once however often and in whichever variant it runs, across fits.
    traced_once = {"_begin": 1, "_discriminator_step": 1, "_generator_step": 1,
                   "_window_sample": 1, "_finish": 1}
    assert gan.trace_counts == traced_once
    recorder = _Recorder(gan, {2: ("generator",), 4: ("discriminator",)})  # iterations 8, 10
    gan.fit(_dataset(images, n_dis * d_batch), epochs=1, verbose=0, callbacks=[recorder])
    assert int(gan.step.numpy()) == 12
    assert gan.trace_counts == traced_once
    assert not np.array_equal(recorder.buffers[-1]["generator"][0], g_buffers[2])


def test_the_one_device_route_equals_the_replicated_variants_bit_for_bit(monkeypatch):
    # The one-device route (step functions called from the host, kept gradients a tensor)
    # against the route multi-replica strategies take (one compiled function per variant),
    # forced here on one device: same BR samples, gradient copies, weights, exactly.
    from adapt_tf.gan import sparse_gan as gan_module

    def run(composed: bool):
        gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=2, br_interval=2,
                                  br_window=6, seed=5, ema_decay=0.5), optimizer="adam")
        if not composed:
            monkeypatch.setattr(gan_module, "_one_device", lambda strategy: False)
        recorder = _Recorder(gan, {2: ("generator",), 3: ("discriminator",),
                                   4: ("generator", "discriminator")})
        gan.fit(_dataset(_images(40, seed=3), 8), epochs=1, verbose=0, callbacks=[recorder])
        monkeypatch.undo()
        return gan, recorder

    (composed, seen), (compiled, reference) = run(True), run(False)
    assert "_finish" in composed.trace_counts and (True, False, False) in compiled.trace_counts
    state = [lambda gan: gan.generator.weights + gan.discriminator.weights,
             lambda gan: gan.ema_generator.weights + gan.g_optimizer.variables
             + gan.d_optimizer.variables, lambda gan: [gan.balance.samples, gan.step]]
    for variables in state:
        for a, b in zip(variables(composed), variables(compiled), strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert seen.buffers and len(seen.buffers) == len(reference.buffers) == 5
    for ours, theirs in zip(seen.buffers, reference.buffers):
        for network in ("generator", "discriminator"):
            for a, b in zip(ours[network], theirs[network], strict=True):
                np.testing.assert_array_equal(a, b)


class _PoisonD(keras.callbacks.Callback):
    """Makes D's kernel NaN after iteration `after`, so the next iteration's losses are NaN."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration == self.after:
            kernel = self.model.masked_layers("discriminator")[0].kernel
            kernel.assign(tf.fill(kernel.shape, float("nan")))


def test_the_first_nonfinite_loss_is_recorded_on_device_and_read_at_the_guards_cadence(
        monkeypatch):
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT))
    reads = []
    recorded = SparseGAN.first_nonfinite.fget
    monkeypatch.setattr(SparseGAN, "first_nonfinite",
                        property(lambda self: reads.append(self.iteration) or recorded(self)))
    guard = writers.TerminateOnNaN(every=4)
    gan.fit(_dataset(_images(40), 4), epochs=1, verbose=0, callbacks=[_PoisonD(5), guard])
    # Iteration 6 is the first with NaN losses; the guard reads the record at 4 and 8 only
    # (not every iteration) and stops there, naming iteration 6.
    assert reads == [4, 8] and guard.bad_step == 6 and gan.iteration == 8
    assert math.isnan(guard.bad_logs["d_loss"])
    assert recorded(gan) == 6  # the first one: later NaN iterations do not overwrite it
    seen = []  # a new fit starts with no record
    probe = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: seen.append(recorded(gan)))
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0, callbacks=[probe])
    assert seen == [None] and recorded(gan) == 9


def test_iteration_follows_the_step_variable_outside_fit():
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT))
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    assert gan.iteration == 1
    gan.step.assign(7)  # e.g. tf.train.Checkpoint.restore between two fits
    assert gan.iteration == 7
    # During fit, callbacks (DST, ADAPT) schedule on `iteration`, counted on the host.
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(gan.iteration))
    gan.fit(_dataset(_images(12), 4), epochs=1, verbose=0, callbacks=[probe])
    assert seen == [7, 8, 9] and gan.iteration == 10


def test_a_new_gan_has_the_documented_defaults_and_trains_only_the_networks_weights():
    generator, discriminator = _linear_toy()
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT)
    assert gan.name == "sparse_gan"
    assert gan.get_config() == {"latent_dim": LATENT, "n_dis": 1, "g_batch_size": None,
                                "num_classes": None, "br_interval": 10, "br_window": 1000,
                                "ema_decay": None, "seed": 0, "ever_active": False,
                                "criterion": "br", "diff_aug": None, "window_sampling": True,
                                "loss_mean_every": None}
    assert gan.balance.capacity == 100  # br_window // br_interval samples
    assert gan.iteration == 0 and gan.step.dtype == tf.int64 and int(gan.step.numpy()) == 0
    assert gan.ema_generator is None and gan.trace_counts == {}
    assert gan.metrics_names == ["d_loss", "g_loss"]
    # The step, densities and gradient buffers are state, not weights an optimizer may see.
    weights = generator.trainable_variables + discriminator.trainable_variables
    assert {v.ref() for v in gan.trainable_variables} == {v.ref() for v in weights}
    for network, model in (("generator", generator), ("discriminator", discriminator)):
        kernels = [layer.kernel for layer in masked_layers(model)]
        buffers = gan.grad_buffers(network)
        assert [b.shape for b in buffers] == [k.shape for k in kernels]
        assert all(not np.any(b.numpy()) for b in buffers)
    assert gan.density("generator") == pytest.approx(MG.mean())
    # Keyword arguments go to keras.Model.
    named = SparseGAN(generator, discriminator, latent_dim=LATENT, name="toy", dtype="float64")
    assert (named.name, named.dtype) == ("toy", "float64")
    custom = SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=3, g_batch_size=6,
                       num_classes=None, br_interval=5, br_window=20, ema_decay=0.5, seed=9,
                       ever_active=True, criterion="ada", diff_aug="translation, color",
                       window_sampling=False, loss_mean_every=7)
    assert custom.get_config() == {"latent_dim": LATENT, "n_dis": 3, "g_batch_size": 6,
                                   "num_classes": None, "br_interval": 5, "br_window": 20,
                                   "ema_decay": 0.5, "seed": 9, "ever_active": True,
                                   "criterion": "ada", "diff_aug": "translation,color",
                                   "window_sampling": False, "loss_mean_every": 7}
    assert custom.balance.capacity == 4
    assert [custom.samples_window(step) for step in (4, 9)] == [False, False]
    assert [gan.samples_window(step) for step in (0, 8, 9, 10, 19)] == [
        False, False, True, False, True]


def test_network_names_are_checked_and_a_network_without_masks_is_dense():
    dense_d = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1)])
    gan = SparseGAN(_linear_toy()[0], dense_d, latent_dim=LATENT)
    assert gan.masked_layers("discriminator") == [] and gan.grad_buffers("discriminator") == []
    assert gan.density("discriminator") == 1.0
    message = _exactly("network must be one of ('generator', 'discriminator'), got 'critic'.")
    for method in (gan.masked_layers, gan.grad_buffers, gan.density):
        with pytest.raises(ValueError, match=message):
            method("critic")


# ------------------------------------------------------------------------- EMA generator


def test_ema_generator_follows_the_decay_rule_and_refresh_syncs_masks():
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, ema_decay=0.5))
    kernel = gan.masked_layers("generator")[0].kernel
    ema_layer = masked_layers(gan.ema_generator)[0]
    np.testing.assert_array_equal(ema_layer.kernel.numpy(), WG * MG)
    np.testing.assert_array_equal(ema_layer.mask.numpy(), MG)

    ema_before, w_before = ema_layer.kernel.numpy().copy(), kernel.numpy().copy()
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    w_after = kernel.numpy()
    assert not np.allclose(w_after, w_before)
    np.testing.assert_allclose(ema_layer.kernel.numpy(), 0.5 * ema_before + 0.5 * w_after,
                               rtol=1e-6)
    ema_before = ema_layer.kernel.numpy().copy()
    gan.fit(_dataset(_images(4, seed=1), 4), epochs=1, verbose=0)
    np.testing.assert_allclose(ema_layer.kernel.numpy(),
                               0.5 * ema_before + 0.5 * kernel.numpy(), rtol=1e-6)

    # A mask change from outside: prune (0, 0), grow (0, 1).
    new_mask = MG.copy()
    new_mask[0, 0], new_mask[0, 1] = 0.0, 1.0
    ema_before = ema_layer.kernel.numpy().copy()
    gan.sparsity.assign("generator", [new_mask])
    np.testing.assert_array_equal(ema_layer.mask.numpy(), new_mask)
    np.testing.assert_array_equal(ema_layer.kernel.numpy(), ema_before * new_mask)
    assert ema_layer.kernel.numpy()[0, 0] == 0.0
    assert gan.density("generator") == pytest.approx(new_mask.mean())
    history = gan.fit(_dataset(_images(4, seed=2), 4), epochs=1, verbose=0)
    assert history.history["g_density"][-1] == pytest.approx(new_mask.mean())
    assert np.all(ema_layer.kernel.numpy()[new_mask == 0] == 0.0)


class _SubclassedGenerator(keras.Model):
    """Takes a layer object: its config cannot be serialised, so clone_model fails."""

    def __init__(self, dense):
        super().__init__()
        self.dense = dense

    def call(self, z):
        return self.dense(z)


def test_ema_of_a_generator_clone_model_cannot_copy_is_refused_with_the_cause():
    generator = _SubclassedGenerator(MaskedDense(FEATURES, use_bias=False))
    generator(np.zeros((1, LATENT), np.float32))  # built
    discriminator = _linear_toy()[1]
    with pytest.raises(ValueError) as caught:
        SparseGAN(generator, discriminator, latent_dim=LATENT, ema_decay=0.9)
    prefix = ("ema_decay needs a generator that keras.models.clone_model can copy (a "
              "functional or Sequential model with serialisable layers); cloning failed: ")
    message = str(caught.value)
    assert message.startswith(prefix)
    assert caught.value.__cause__ is not None
    assert message[len(prefix):] == str(caught.value.__cause__)
    SparseGAN(generator, discriminator, latent_dim=LATENT)  # without EMA: no copy needed


def test_ema_copy_is_frozen_but_keeps_each_layer_flag_of_the_generator():
    # A frozen BatchNorm in G normalises with its moving statistics even in training mode;
    # the EMA copy must keep that layer frozen (and the others trainable), so an EMA of an
    # untrained G samples exactly G's images. The copy itself is frozen: no optimizer sees it.
    z = keras.Input((LATENT,))
    h = MaskedDense(FEATURES, use_bias=False, name="g_dense")(z)
    h = keras.layers.Reshape((1, 1, FEATURES))(h)
    frozen = keras.layers.BatchNormalization(name="g_bn")
    out = frozen(h)
    generator = keras.Model(z, out)
    frozen.trainable = False
    frozen.moving_mean.assign([0.5, -0.5, 0.25])
    frozen.moving_variance.assign([4.0, 0.25, 1.0])
    discriminator = keras.Sequential([keras.Input((1, 1, FEATURES)), keras.layers.Flatten(),
                                      MaskedDense(1, use_bias=False)])
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, ema_decay=0.9)
    ema = gan.ema_generator
    assert ema.trainable is False and ema.trainable_variables == []
    flags = [layer.trainable for layer in ema.layers]
    assert flags == [layer.trainable for layer in generator.layers]
    assert flags[-1] is False and flags[1] is True  # g_bn frozen, g_dense not
    z = np.random.default_rng(0).normal(size=(4, LATENT)).astype(np.float32)
    np.testing.assert_array_equal(ema(z, training=True).numpy(),
                                  generator(z, training=True).numpy())
    np.testing.assert_array_equal(gan.sample(4, seed=1).numpy(),
                                  gan.sample(4, seed=1, use_ema=False).numpy())


def _batch_norm_toy():
    """G: z -> MaskedDense -> [B, 1, 1, 3] -> BatchNorm (the fused 4-D kernel of the real
    generators); D: flatten -> MaskedDense to one logit."""
    z = keras.Input((LATENT,))
    h = MaskedDense(FEATURES, use_bias=False, name="g_dense")(z)
    h = keras.layers.Reshape((1, 1, FEATURES))(h)
    g_out = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="g_bn")(h)
    x = keras.Input((1, 1, FEATURES))
    d_out = MaskedDense(1, use_bias=False, name="d_dense")(keras.layers.Flatten()(x))
    generator, discriminator = keras.Model(z, g_out), keras.Model(x, d_out)
    for model, kernel, mask in ((generator, WG, MG), (discriminator, WD, MD)):
        layer = masked_layers(model)[0]
        layer.mask.assign(mask)
        layer.kernel.assign(kernel * mask)
    return generator, discriminator


def _bn_variables(model):
    bn = model.get_layer("g_bn")
    return {"gamma": bn.gamma, "beta": bn.beta, "moving_mean": bn.moving_mean,
            "moving_variance": bn.moving_variance}


def test_ema_generator_samples_with_batch_statistics_and_no_optimizer_updates_it():
    generator, discriminator = _batch_norm_toy()
    gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, ema_decay=0.5),
                    optimizer="adam", lr=0.05)
    images = _images(8).reshape(8, 1, 1, FEATURES)
    gan.fit(_dataset(images, 4), epochs=1, verbose=0)  # 2 iterations
    ema = gan.ema_generator
    ema_vars = {v.ref() for v in ema.weights}
    assert ema.trainable_variables == []
    # What the optimizers update (the train step passes these lists) excludes the copy.
    for network in (generator, discriminator):
        assert not any(v.ref() in ema_vars for v in network.trainable_variables)
    ema_bn, g_bn = _bn_variables(ema), _bn_variables(generator)
    # Trainable BN weights are averaged, moving statistics copied from G.
    assert not np.allclose(ema_bn["gamma"].numpy(), g_bn["gamma"].numpy())
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_array_equal(ema_bn[name].numpy(), g_bn[name].numpy())

    z = np.random.default_rng(3).normal(size=(6, LATENT)).astype(np.float32)
    kernel = masked_layers(ema)[0].kernel.numpy().astype(np.float64)
    h = z.astype(np.float64) @ kernel
    gamma, beta = (ema_bn[k].numpy().astype(np.float64) for k in ("gamma", "beta"))
    batch = gamma * (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) + beta
    moving = gamma * (h - ema_bn["moving_mean"].numpy()) / np.sqrt(
        ema_bn["moving_variance"].numpy() + 1e-5) + beta
    # Normalised outputs are O(1): float32 rounding stays far below 1e-5. (Inference first:
    # a direct training-mode call moves the copy's moving statistics until the next copy.)
    np.testing.assert_allclose(ema(z, training=False).numpy().reshape(6, -1), moving,
                               atol=1e-5)
    np.testing.assert_allclose(ema(z, training=True).numpy().reshape(6, -1), batch, atol=1e-5)
    assert np.abs(batch - moving).max() > 0.1

    # sample() is ema(z, training=True) on its documented z and changes no variable.
    before = [v.numpy().copy() for v in ema.weights + generator.weights]
    sampled = gan.sample(6, seed=4)
    gan.sample(6, seed=5, use_ema=False)
    for value, variable in zip(before, ema.weights + generator.weights):
        np.testing.assert_array_equal(variable.numpy(), value)
    z4 = tf.random.stateless_normal([6, LATENT], seed=[4, 7919])
    np.testing.assert_array_equal(sampled.numpy(), ema(z4, training=True).numpy())

    # With the EMA's weights, the raw generator gives exactly the EMA's images.
    generator.set_weights(ema.get_weights())
    np.testing.assert_array_equal(generator(z, training=True).numpy(),
                                  ema(z, training=True).numpy())


def test_sample_calls_the_chosen_generator_on_its_documented_z_in_batches_of_batch_size():
    # G's BatchNorm normalises with batch statistics in training mode, so every image depends
    # on the batch it is generated in: rows [k * batch_size, (k + 1) * batch_size).
    generator, discriminator = _batch_norm_toy()
    gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, ema_decay=0.5))
    gan.fit(_dataset(_images(4).reshape(4, 1, 1, FEATURES), 4), epochs=1, verbose=0)
    ema = gan.ema_generator

    def batched(model, z, size, training=True):
        return np.concatenate([model(z[i:i + size], training=training).numpy()
                               for i in range(0, len(z), size)])

    z = tf.random.stateless_normal([300, LATENT], seed=[1, 7919])
    np.testing.assert_array_equal(gan.sample(300, seed=1).numpy(), batched(ema, z, 256))
    z0 = tf.random.stateless_normal([5, LATENT], seed=[0, 7919])  # the default seed is 0
    np.testing.assert_array_equal(gan.sample(5).numpy(), batched(ema, z0, 5))
    z6 = tf.random.stateless_normal([6, LATENT], seed=[2, 7919])
    by_four = gan.sample(6, seed=2, batch_size=4).numpy()
    np.testing.assert_array_equal(by_four, batched(ema, z6, 4))
    assert np.abs(by_four - batched(ema, z6, 6)).max() > 1e-3  # the batches are visible
    # use_ema=False: the trained G, whose weights differ from the average.
    from_g = gan.sample(6, seed=2, use_ema=False).numpy()
    np.testing.assert_array_equal(from_g, batched(generator, z6, 6))
    assert np.abs(from_g - batched(ema, z6, 6)).max() > 1e-3
    # training=False: the moving statistics.
    np.testing.assert_array_equal(gan.sample(6, seed=2, training=False).numpy(),
                                  batched(ema, z6, 6, training=False))
    assert np.abs(batched(ema, z6, 6, training=False) - batched(ema, z6, 6)).max() > 1e-3


def test_conditional_sample_draws_the_documented_labels_or_uses_the_given_ones():
    generator, discriminator = _mlp_toy(conditional=True)
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, num_classes=3)
    z = tf.random.stateless_normal([40, LATENT], seed=[3, 7919])
    labels = tf.random.stateless_uniform([40], seed=[3, 104729], minval=0, maxval=3,
                                         dtype=tf.int32)
    assert set(np.unique(labels.numpy())) == {0, 1, 2}
    # No EMA: use_ema (default True) falls back to G.
    np.testing.assert_array_equal(gan.sample(40, seed=3).numpy(),
                                  generator([z, labels], training=True).numpy())
    given = np.array([2, 0, 1, 1], np.int64)
    np.testing.assert_array_equal(gan.sample(4, seed=3, labels=given, batch_size=3).numpy(),
                                  np.concatenate([generator([z[:3], given[:3]]).numpy(),
                                                  generator([z[3:4], given[3:]]).numpy()]))


def test_the_generator_runs_in_training_mode_in_every_phase_of_an_iteration():
    # The official code calls G in train mode for the D step's fakes, the G step and the BR
    # sample: each call moves G's BatchNorm moving mean by 0.1 x its batch mean (momentum
    # 0.9). G's learning rate 0 keeps Wg, so the three batch means are those of z0 @ Wg
    # (D step, phase 0) and twice z1 @ Wg (G step and BR sample, phase 1).
    generator, discriminator = _batch_norm_toy()
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, br_interval=1, seed=3)
    gan.compile(g_optimizer=keras.optimizers.SGD(learning_rate=0.0),
                d_optimizer=keras.optimizers.SGD(learning_rate=LR))
    gan.fit(_dataset(_images(4).reshape(4, 1, 1, FEATURES), 4), epochs=1, verbose=0)
    wg = (WG * MG).astype(np.float64)
    a, b = (np.mean(_z(3, phase, 4) @ wg, axis=0) for phase in (0, 1))
    expected = 0.9 * 0.9 * 0.1 * a + 0.9 * 0.1 * b + 0.1 * b
    # float32 means of 4 products of O(1) numbers: errors ~1e-7, far below 1e-5.
    np.testing.assert_allclose(generator.get_layer("g_bn").moving_mean.numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    assert np.abs(0.081 * a).min() > 1e-3  # the D step's share is visible at that tolerance


def test_the_discriminator_runs_in_training_mode_so_its_power_iteration_advances():
    # D is called in train mode (official code): every call of its spectrally normalised
    # layer runs one power iteration and stores the new u; an inference call would keep u.
    generator, discriminator = _mlp_toy()
    gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, br_interval=1))
    sn_layer = discriminator.get_layer("d1")
    u0 = sn_layer.sn_u.numpy().copy()
    gan.fit(_dataset(_images(8), 8), epochs=1, verbose=0)
    u1 = sn_layer.sn_u.numpy()
    assert not np.allclose(u1, u0, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(u1), 1.0, rtol=1e-5)  # a power-iteration result


def test_conditional_latents_are_the_documented_z_and_uniform_int_labels_of_every_class():
    from adapt_tf.gan import sparse_gan as gan_module

    generator, discriminator = _mlp_toy(conditional=True)
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=2, num_classes=3, seed=5)
    z, labels = gan_module._global_latents(gan, tf.constant(4, tf.int64), 1, 300)
    np.testing.assert_array_equal(z.numpy(), _z(5, 4 * 3 + 1, 300).astype(np.float32))
    assert labels.dtype == tf.int32
    assert set(np.unique(labels.numpy())) == {0, 1, 2}  # 300 draws: every class, seeded
    # The fake labels have a stream of their own, keyed (seed + 1, iteration * (n_dis + 1) +
    # phase) as z's is keyed (seed, ...): a run's labels are a function of its seed, and
    # another key (seed - 1, seed + 2, ...) would change every conditional run's results.
    expected = tf.random.stateless_uniform([300], seed=tf.constant([6, 4 * 3 + 1], tf.int64),
                                           minval=0, maxval=3, dtype=tf.int32)
    np.testing.assert_array_equal(labels.numpy(), expected.numpy())

# ------------------------------------------------------------------------ conditional GAN


def test_conditional_toy_trains_on_image_label_pairs():
    generator, discriminator = _mlp_toy(conditional=True)
    gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=2,
                              num_classes=3, br_interval=1, br_window=3, ema_decay=0.9),
                    optimizer="adam", lr=0.01)
    labels = np.random.default_rng(0).integers(0, 3, size=32).astype(np.int32)
    history = gan.fit(_dataset(_images(32), 8, labels), epochs=1, verbose=0)
    assert set(history.history) == LOG_KEYS
    assert all(np.isfinite(history.history[key][-1]) for key in ("d_loss", "g_loss", "br"))
    assert int(gan.step.numpy()) == 4
    assert gan.balance.values().shape == (3,)
    images = gan.sample(5, labels=tf.constant([0, 1, 2, 0, 1]))
    assert images.shape == (5, FEATURES)


# ----------------------------------------------------------------------------- bad input


def test_constructor_rejects_bad_arguments():
    generator, discriminator = _linear_toy()
    with pytest.raises(ValueError, match="n_dis"):
        SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=0)
    with pytest.raises(ValueError, match="ema_decay"):
        SparseGAN(generator, discriminator, latent_dim=LATENT, ema_decay=1.0)
    with pytest.raises(ValueError, match="br_window"):
        SparseGAN(generator, discriminator, latent_dim=LATENT, br_interval=10, br_window=5)
    unbuilt = keras.Sequential([MaskedDense(1)])
    with pytest.raises(ValueError, match="discriminator must be built"):
        SparseGAN(generator, unbuilt, latent_dim=LATENT)
    with pytest.raises(ValueError, match="network must be one of"):
        SparseGAN(generator, discriminator, latent_dim=LATENT).grad_buffers("critic")


def _exactly(message: str) -> str:
    """A pytest.raises `match` pattern for exactly `message`."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize("argument, value, message", [
    ("latent_dim", 0, "latent_dim must be a positive integer, got 0."),
    ("n_dis", 0, "n_dis must be a positive integer, got 0."),
    ("n_dis", 2.0, "n_dis must be a positive integer, got 2.0."),
    ("br_interval", 0, "br_interval must be a positive integer, got 0."),
    ("br_window", 0, "br_window must be a positive integer, got 0."),
    ("g_batch_size", 0, "g_batch_size must be a positive integer, got 0."),
    ("num_classes", 0, "num_classes must be a positive integer, got 0."),
    ("br_window", 9, "br_window (9) must be >= br_interval (10)."),
    ("ema_decay", 1.0, "ema_decay must be in [0, 1) or None, got 1.0."),
    ("ema_decay", -0.5, "ema_decay must be in [0, 1) or None, got -0.5.")])
def test_each_bad_argument_is_named_with_its_value(argument, value, message):
    arguments = dict(latent_dim=LATENT, n_dis=1, br_interval=10, br_window=1000)
    arguments[argument] = value
    with pytest.raises(ValueError, match=_exactly(message)):
        SparseGAN(*_linear_toy(), **arguments)


def test_boundary_arguments_are_accepted():
    # The smallest valid values: a window of one sample, EMA decay 0, one class, G batch 1.
    gan = SparseGAN(*_linear_toy(), latent_dim=LATENT, br_interval=4, br_window=4,
                    ema_decay=0.0, num_classes=1, g_batch_size=1)
    assert gan.balance.capacity == 1
    assert (gan.ema_decay, gan.num_classes, gan.g_batch_size) == (0.0, 1, 1)


@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_an_unbuilt_network_is_named(network):
    models = dict(zip(("generator", "discriminator"), _linear_toy()))
    models[network] = keras.Sequential([MaskedDense(1)])
    with pytest.raises(ValueError, match=_exactly(
            f"The {network} must be built (call it once, or build it from keras.Input) "
            "before SparseGAN wraps it.")):
        SparseGAN(models["generator"], models["discriminator"], latent_dim=LATENT)


class _RecordsGrappler(SparseGAN):
    """Records, when `_finish` is traced (inside its first call), how the calls running it
    set Grappler."""

    def _finish(self, d_loss, g_loss):
        self.grappler = _grappler()
        return super()._finish(d_loss, g_loss)


def _grappler() -> str:
    """"off", "trimmed" (the passes idle on a CPU off) or "full", from this thread's
    function-call options."""
    options = context.context().function_call_options
    rewrite = tf.compat.v1.ConfigProto.FromString(
        options.config_proto_serialized).graph_options.rewrite_options
    if rewrite.disable_meta_optimizer:
        return "off"
    off = rewriter_config_pb2.RewriterConfig.OFF
    idle = [getattr(rewrite, name) for name in _compat.CallOptions.CPU_IDLE_PASSES]
    if idle == [off] * len(idle) and \
            rewrite.memory_optimization == rewriter_config_pb2.RewriterConfig.NO_MEM_OPT:
        return "trimmed"
    assert not any(value == off for value in idle), idle
    return "full"


@pytest.mark.parametrize("graph_optimizer", [None, True, False])
def test_graph_optimizer_reaches_the_step_calls_and_nothing_else(graph_optimizer):
    cpu_only = not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    expected = {None: "trimmed" if cpu_only else "full", True: "full", False: "off"}
    before = context.context().function_call_options.config_proto_serialized
    gan = _compiled(_RecordsGrappler(*_linear_toy(), latent_dim=LATENT, br_interval=1),
                    graph_optimizer=graph_optimizer)
    gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
    assert gan.grappler == expected[graph_optimizer]
    assert context.context().function_call_options.config_proto_serialized == before
    assert _grappler() == "full"  # the user's own functions keep the full Grappler


def test_compile_rejects_a_graph_optimizer_that_is_not_a_bool_or_none():
    with pytest.raises(ValueError, match=_exactly(
            "graph_optimizer must be True, False or None (without the passes idle on a "
            "CPU-only host), got 'off'.")):
        _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT), graph_optimizer="off")


def test_compile_rejects_steps_per_execution_above_one():
    gan = SparseGAN(*_linear_toy(), latent_dim=LATENT)
    with pytest.raises(ValueError, match=_exactly(
            "SparseGAN needs steps_per_execution=1 (one GAN iteration per step, callbacks "
            "between them); got 2.")):
        _compiled(gan, steps_per_execution=2)


def test_dataset_elements_must_match_conditioning():
    generator, discriminator = _mlp_toy(conditional=True)
    gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, num_classes=3))
    need = ("Conditional models (num_classes set) need `(images, labels)` elements and "
            "unconditional ones plain `images`; got ")
    # The message is raised while fit traces the step, so it comes wrapped: re.search.
    with pytest.raises(ValueError, match=re.escape(need + "num_classes=3 and no labels.")):
        gan.fit(_dataset(_images(8), 4), epochs=1, verbose=0)
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT))
    labels = np.zeros(8, np.int32)
    with pytest.raises(ValueError, match=re.escape(need + "num_classes=None and labels.")):
        gan.fit(_dataset(_images(8), 4, labels), epochs=1, verbose=0)
    triples = tf.data.Dataset.from_tensor_slices((_images(8), labels, labels)).batch(
        4, drop_remainder=True)
    with pytest.raises(ValueError, match=re.escape(
            "Expected dataset elements `images` or `(images, labels)`, got a tuple of 3.")):
        gan.fit(triples, epochs=1, verbose=0)


def test_batch_must_be_a_static_multiple_of_n_dis():
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=2))
    with pytest.raises(ValueError, match="multiple of n_dis=2"):
        gan.fit(_dataset(_images(6), 3), epochs=1, verbose=0)
    unbatched = tf.data.Dataset.from_tensor_slices(_images(8)).batch(4)  # batch dim None
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=2))
    with pytest.raises(ValueError, match="drop_remainder=True"):
        gan.fit(unbatched, epochs=1, verbose=0)


# ---------------------------------------------------------------------- MirroredStrategy


# The linear toy on 2 replicas at the paper's SNGAN proportions: G batch 8 = 2 x D batch 4,
# n_dis 2, so each replica holds 2 of each D step's reals and 4 of the G step's z.
MIRRORED_TOY = dict(n_dis=2, d_batch=4, g_batch=8, iterations=3, seed=6)


def test_mirrored_strategy_matches_one_device_and_replicas_agree():
    toy = MIRRORED_TOY
    images = _images(toy["n_dis"] * toy["d_batch"] * toy["iterations"], seed=4)
    spec = dict(toy, lr=LR, images=images.tolist(),
                **{name: value.tolist() for name, value in
                   (("wg", WG), ("mg", MG), ("wd", WD), ("md", MD))})
    script = os.path.join(os.path.dirname(__file__), "_mirrored_check.py")
    result = subprocess.run([sys.executable, script, json.dumps(spec)], capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    _check_mirrored_linear_toy(report["linear_toy"], images)
    phases = ("one_iteration", "two_iterations", "after_mask_change", "mask_change_in_callback")
    for phase in phases:
        single, mirrored = report[phase]["single"], report[phase]["mirrored"]
        for key in ("d_loss", "g_loss", "br"):
            np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-4, err_msg=phase)
        np.testing.assert_allclose(mirrored["br_values"], single["br_values"], rtol=1e-4,
                                   err_msg=phase)
        np.testing.assert_allclose(mirrored["g_density"], single["g_density"], rtol=1e-6)
        np.testing.assert_allclose(mirrored["d_density"], single["d_density"], rtol=1e-6)
        assert report[phase]["max_weight_difference"] < 1e-4, phase
        assert report[phase]["replica_disagreements"] == [], phase
    for phase in ("after_mask_change", "mask_change_in_callback"):
        assert report[phase]["kernel_outside_mask"] == 0.0, phase
    assert report["after_mask_change"]["single"]["g_density"] == pytest.approx(0.3, abs=0.02)
    assert report["mask_change_in_callback"]["single"]["g_density"] == pytest.approx(0.6,
                                                                                     abs=0.02)
    assert all(norm > 0 for norm in report["grad_buffer_norms"])
    # Traced when first run and never again: on one device the five step functions, mirrored
    # the one variant (once per replica's device).
    for phase in phases:
        assert report[phase]["trace_counts"] == {"single": [1] * 5, "mirrored": [2]}, phase


def _check_mirrored_linear_toy(run, images):
    """The mirrored BR samples and kernels equal the one-device hand computation."""
    toy = MIRRORED_TOY
    ref = _reference(images, iterations=toy["iterations"], n_dis=toy["n_dis"],
                     d_batch=toy["d_batch"], g_batch=toy["g_batch"], seed=toy["seed"])
    ratios = [(r["gf"] - r["df"]) / (r["dr"] - r["df"]) for r in ref]
    assert run["step"] == toy["iterations"]
    np.testing.assert_allclose(run["br_values"], ratios, rtol=1e-4)
    np.testing.assert_allclose(run["wg"], ref[-1]["wg"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(run["wd"], ref[-1]["wd"], rtol=1e-4, atol=1e-6)


# What the mirrored check above does not train: the default G batch (no g_batch_size: the
# global D batch), a G batch the replicas do not divide, and a conditional model (the fake
# labels are sliced per replica like z). `_mirrored_cases` runs in a subprocess (this file run
# as a script, below), which splits the CPU into 2 logical devices before TensorFlow starts.
MIRRORED_DEFAULT_G = dict(n_dis=2, d_batch=4, iterations=2, seed=6)


def test_mirrored_default_g_batch_odd_g_batch_and_conditional_model():
    # The timeout only guards against a hang: 2 tracings per case take minutes on a loaded
    # 2-core machine.
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--mirrored-cases"],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2

    # Default G batch = the global D batch (4), not the per-replica one: the hand computation
    # with g_batch = d_batch, each replica holding 2 reals per D step and 2 z of the G step.
    toy, run = MIRRORED_DEFAULT_G, report["default_g_batch"]
    images = _images(toy["n_dis"] * toy["d_batch"] * toy["iterations"], seed=4)
    ref = _reference(images, iterations=toy["iterations"], n_dis=toy["n_dis"],
                     d_batch=toy["d_batch"], seed=toy["seed"])
    ratios = [(r["gf"] - r["df"]) / (r["dr"] - r["df"]) for r in ref]
    assert run["step"] == toy["iterations"]
    np.testing.assert_allclose(run["br_values"], ratios, rtol=1e-4)
    np.testing.assert_allclose(run["d_loss"], np.mean([r["d_loss"] for r in ref]), rtol=1e-4)
    np.testing.assert_allclose(run["g_loss"], np.mean([r["g_loss"] for r in ref]), rtol=1e-4)
    np.testing.assert_allclose(run["wg"], ref[-1]["wg"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(run["wd"], ref[-1]["wd"], rtol=1e-4, atol=1e-6)

    assert "g_batch_size=3 must be divisible by the number of replicas (2)" in (
        report["odd_g_batch"])

    # The conditional MLP toy: the mirrored run equals the one-device run (plain SGD: the
    # two summation orders' round-off reaches the weights linearly, far below 1e-4).
    single, mirrored = report["conditional"]["single"], report["conditional"]["mirrored"]
    assert mirrored["step"] == single["step"] == 2
    for key in ("d_loss", "g_loss", "br_values"):
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-4, err_msg=key)
    assert len(mirrored["weights"]) == len(single["weights"])
    for a, b in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def _mirrored_cases() -> dict:
    """The cases of the test above, on 2 logical CPUs; a JSON-able report."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": strategy.num_replicas_in_sync}

    toy = MIRRORED_DEFAULT_G
    images = _images(toy["n_dis"] * toy["d_batch"] * toy["iterations"], seed=4)
    with strategy.scope():
        gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=toy["n_dis"],
                                  br_interval=1, br_window=toy["iterations"], seed=toy["seed"]))
    history = gan.fit(_dataset(images, toy["n_dis"] * toy["d_batch"]), epochs=1, verbose=0)
    report["default_g_batch"] = {
        "step": int(gan.step.numpy()), "br_values": gan.balance.values().tolist(),
        "d_loss": history.history["d_loss"][-1], "g_loss": history.history["g_loss"][-1],
        "wg": gan.masked_layers("generator")[0].kernel.numpy().tolist(),
        "wd": gan.masked_layers("discriminator")[0].kernel.numpy().tolist()}

    with strategy.scope():
        gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, g_batch_size=3))
    try:
        gan.fit(_dataset(_images(4), 4), epochs=1, verbose=0)
        report["odd_g_batch"] = "no error"
    except ValueError as error:
        report["odd_g_batch"] = str(error)

    generator, discriminator = _mlp_toy(conditional=True)
    # Biases away from 0: with zero biases, a G output unit whose inputs are all masked emits
    # exactly 0, a one-input D unit fed by it sits on LeakyReLU's kink with pre-activation =
    # its bias, and after a D step that bias can be +-1 ulp of 0 depending on the summation
    # order, so the two runs take different derivatives (0.1 vs 1) in the next D step: a
    # divergence of round-off, not of distribution, seen in a few percent of random inits.
    rng = np.random.default_rng(11)
    for weight in generator.weights + discriminator.weights:
        if "bias" in weight.name:
            weight.assign(rng.normal(scale=0.1, size=weight.shape).astype(np.float32))
    weights = generator.get_weights(), discriminator.get_weights()
    labels = np.random.default_rng(0).integers(0, 3, size=16).astype(np.int32)
    images = _images(16, seed=5)
    report["conditional"] = {}
    for name, scope in (("single", contextlib.nullcontext()), ("mirrored", strategy.scope())):
        with scope:
            generator, discriminator = _mlp_toy(conditional=True)
            generator.set_weights(weights[0])
            discriminator.set_weights(weights[1])
            gan = _compiled(SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=2,
                                      num_classes=3, br_interval=1, br_window=2, seed=7))
        history = gan.fit(_dataset(images, 8, labels), epochs=1, verbose=0)
        report["conditional"][name] = {
            "step": int(gan.step.numpy()), "br_values": gan.balance.values().tolist(),
            "d_loss": history.history["d_loss"][-1], "g_loss": history.history["g_loss"][-1],
            "weights": [w.tolist() for w in generator.get_weights() + discriminator.get_weights()]}
    return report


if __name__ == "__main__" and sys.argv[1:] == ["--mirrored-cases"]:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    sys.stdout.write(json.dumps(_mirrored_cases()) + "\n")


# ------------------------------------------------------------------- the ADA-style criterion


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_ada_criterion_samples_the_mean_share_of_reals_d_scores_above_zero(jit_compile):
    # lr 0 keeps D at WD, so each D step's real scores are its chunk images[k::2] @ WD: the
    # window sample of an iteration is the mean over its two D steps of the share above 0.
    n_dis, d_batch, iterations = 2, 4, 3
    images = _images(n_dis * d_batch * iterations, seed=5)
    gan = _compiled(SparseGAN(*_linear_toy(), latent_dim=LATENT, n_dis=n_dis, br_interval=1,
                              br_window=iterations, criterion="ada"),
                    lr=0.0, jit_compile=jit_compile)
    recorder = _Recorder(gan)
    recorder.logs_samples = True  # the sampling iterations log the sample (writers.SampleLogs)
    gan.fit(_dataset(images, n_dis * d_batch), epochs=1, verbose=0, callbacks=[recorder])
    expected = []
    for i in range(iterations):
        batch = images[i * n_dis * d_batch:(i + 1) * n_dis * d_batch]
        shares = [np.mean(batch[k::n_dis] @ WD[:, 0] > 0) for k in range(n_dis)]
        expected.append(np.mean(shares))
    assert len(set(expected)) > 1  # the iterations differ
    np.testing.assert_allclose(gan.balance.values(), expected, rtol=0, atol=1e-7)
    for i, logs in enumerate(recorder.logs):
        assert "br" not in logs and "br_gf" not in logs
        assert logs["ada_sample"] == pytest.approx(expected[i], abs=1e-7)
        assert logs["ada_rt"] == pytest.approx(np.mean(expected[:i + 1]), abs=1e-6)
    with pytest.raises(ValueError, match="criterion='fake': choose 'br'"):
        SparseGAN(*_linear_toy(), latent_dim=LATENT, criterion="fake")


# --------------------------------------------------------------------------- DiffAugment


def _image_toy(size=4, channels=3):
    """G: z -> Dense -> [size, size, channels]; D: Flatten -> masked Dense(1); seeded."""
    keras.utils.set_random_seed(3)
    generator = keras.Sequential([keras.Input((LATENT,)),
                                  MaskedDense(size * size * channels, name="g"),
                                  keras.layers.Reshape((size, size, channels))])
    discriminator = keras.Sequential([keras.Input((size, size, channels)),
                                      keras.layers.Flatten(),
                                      MaskedDense(1, name="d")])
    return generator, discriminator


@pytest.mark.parametrize("jit_compile", [False, True])
def test_diff_aug_augments_reals_and_fakes_where_the_official_loop_does(jit_compile):
    # lr 0 keeps both networks fixed, so the logged losses and the BR sample can be computed
    # from the drawn z and augmentation parameters of each phase: D step k augments its reals
    # and fakes with phase k's parameters, the G step and the BR sample's fakes use phase
    # n_dis's, and DR scores the last D step's augmented reals. G batch 6, D batch 4.
    from adapt_tf.gan import augment, sparse_gan as gan_module

    n_dis, d_batch, g_batch = 2, 4, 6
    images = np.random.default_rng(2).uniform(-1, 1, (n_dis * d_batch, 4, 4, 3)).astype(
        np.float32)
    gan = _compiled(SparseGAN(*_image_toy(), latent_dim=LATENT, n_dis=n_dis, g_batch_size=g_batch,
                              br_interval=1, br_window=1, diff_aug=augment.POLICY),
                    lr=0.0, jit_compile=jit_compile)
    recorder = _Recorder(gan)
    recorder.logs_samples = True
    gan.fit(_dataset(images, n_dis * d_batch), epochs=1, verbose=0, callbacks=[recorder])
    drawn = gan_module._draw_latents(gan, 0, d_batch, (4, 4))
    assert all(set(params) == {"brightness", "saturation", "contrast", "shift_h", "shift_w",
                               "cut_h", "cut_w"} for *_, params in drawn)

    def score(x):
        return gan.discriminator(x, training=True).numpy()[:, 0]

    def fake(phase):
        return augment.apply(gan.generator(drawn[phase][0]), drawn[phase][2])

    real_last = augment.apply(images[n_dis - 1::n_dis], drawn[n_dis - 1][2])
    d_loss = (np.mean(np.maximum(0, 1 - score(real_last)))
              + np.mean(np.maximum(0, 1 + score(fake(n_dis - 1)))))
    g_scores = score(fake(n_dis))
    logs = recorder.logs[0]
    assert logs["d_loss"] == pytest.approx(d_loss, rel=1e-5)
    assert logs["g_loss"] == pytest.approx(-g_scores.mean(), rel=1e-5)
    assert logs["br_df"] == logs["br_gf"] == pytest.approx(g_scores.mean(), rel=1e-5)
    assert logs["br_dr"] == pytest.approx(score(real_last).mean(), rel=1e-5)
    # Without augmentation the scores differ: the parameters did act.
    assert abs(logs["br_dr"] - score(images[n_dis - 1::n_dis]).mean()) > 1e-3
