"""Tests of adapt_tf.gan.losses: per-example hinge and non-saturating values, the registry."""
from __future__ import annotations

import math

import numpy as np
import pytest

from adapt_tf.gan import losses

import tensorflow as tf

REAL = [2.0, 0.5, -1.0, 1.0]
FAKE = [-2.0, 0.3, 1.0, -0.5]


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hinge_discriminator_per_example_values():
    # relu(1 - real) + relu(1 + fake), pair by pair:
    # (0 + 0), (0.5 + 1.3), (2 + 2), (0 + 0.5)
    values = losses.HINGE.discriminator(tf.constant(REAL), tf.constant(FAKE))
    np.testing.assert_allclose(values.numpy(), [0.0, 1.8, 4.0, 0.5], rtol=1e-6)


def test_hinge_generator_is_minus_the_fake_logit():
    values = losses.HINGE.generator(tf.constant(FAKE))
    np.testing.assert_allclose(values.numpy(), [2.0, -0.3, -1.0, 0.5], rtol=1e-6)


def test_non_saturating_discriminator_per_example_values():
    expected = [_softplus(-r) + _softplus(f) for r, f in zip(REAL, FAKE)]
    values = losses.NON_SATURATING.discriminator(tf.constant(REAL), tf.constant(FAKE))
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-6)
    # softplus(-0) + softplus(0) = 2 log 2: D that outputs 0 everywhere.
    zero = losses.NON_SATURATING.discriminator(tf.zeros([1]), tf.zeros([1]))
    np.testing.assert_allclose(zero.numpy(), [2.0 * math.log(2.0)], rtol=1e-6)


def test_non_saturating_generator_per_example_values():
    expected = [_softplus(-f) for f in FAKE]
    values = losses.NON_SATURATING.generator(tf.constant(FAKE))
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("loss", [losses.HINGE, losses.NON_SATURATING])
def test_losses_return_float32_vectors_of_the_batch(loss):
    real = tf.constant(REAL, tf.float16)
    fake = tf.constant(FAKE, tf.float16)
    d_values = loss.discriminator(real, fake)
    g_values = loss.generator(fake)
    for values in (d_values, g_values):
        assert values.dtype == tf.float32
        assert values.shape == (len(REAL),)


def test_get_returns_the_registered_losses_and_passes_gan_losses_through():
    assert losses.get("hinge") is losses.HINGE
    assert losses.get("non_saturating") is losses.NON_SATURATING
    custom = losses.GANLoss("custom", lambda r, f: r - f, lambda f: -f)
    assert losses.get(custom) is custom
    assert set(losses.LOSSES) == {"hinge", "non_saturating"}


def test_get_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="wasserstein") as info:
        losses.get("wasserstein")
    message = str(info.value)
    assert "'hinge'" in message and "'non_saturating'" in message
    assert "or pass a GANLoss" in message  # the fix, not only the valid names
