"""Tests of adapt_tf.layers: masked forward, straight-through gradients, SN, mask invariant."""
from __future__ import annotations

import numpy as np
import pytest

from adapt_tf import layers as L

import tensorflow as tf
import tf_keras as keras


def _random_mask(shape, density=0.4, seed=0):
    return (np.random.default_rng(seed).random(shape) < density).astype(np.float32)


def _dense_with_mask(units=5, in_dim=7, **kw):
    layer = L.MaskedDense(units, **kw)
    layer.build((None, in_dim))
    mask = _random_mask(layer.kernel.shape)
    layer.mask.assign(mask)
    L.apply_masks([layer])
    return layer, mask


def test_masked_dense_forward_equals_dense_with_masked_kernel():
    layer, mask = _dense_with_mask()
    x = tf.random.normal([3, 7], seed=1)
    expected = x.numpy() @ (layer.kernel.numpy() * mask) + layer.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_masked_conv_forward_equals_conv_with_masked_kernel():
    layer = L.MaskedConv2D(4, 3, strides=2, padding="same")
    layer.build((None, 8, 8, 3))
    mask = _random_mask(layer.kernel.shape, seed=2)
    layer.mask.assign(mask)
    x = tf.random.normal([2, 8, 8, 3], seed=3)
    expected = tf.nn.conv2d(x, layer.kernel * mask, 2, "SAME") + layer.bias
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_output_depends_on_kernel_only_through_the_mask():
    layer, mask = _dense_with_mask(units=4, in_dim=6)
    x = tf.random.normal([2, 6], seed=4)
    before = layer(x).numpy()
    layer.kernel.assign(layer.kernel + 100.0 * (1.0 - mask))  # move only inactive entries
    np.testing.assert_allclose(layer(x).numpy(), before, rtol=1e-6)


def test_kernel_gradient_is_the_dense_gradient_of_the_masked_kernel():
    """The straight-through mask: dL/dkernel == dL/d(kernel*mask) everywhere (official code)."""
    layer, mask = _dense_with_mask(units=3, in_dim=4, use_bias=False)
    x = tf.random.normal([5, 4], seed=5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grad = tape.gradient(loss, layer.kernel).numpy()
    w = tf.constant(layer.kernel.numpy() * mask)
    with tf.GradientTape() as tape:
        tape.watch(w)
        ref_loss = tf.reduce_sum(tf.matmul(x, w) ** 2)
    ref = tape.gradient(ref_loss, w).numpy()
    np.testing.assert_allclose(grad, ref, rtol=1e-5)
    assert np.abs(grad[mask == 0]).sum() > 0  # growth needs these


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_inactive_kernel_entries_stay_zero_after_optimizer_steps(optimizer):
    inputs = keras.Input((6,))
    hidden = L.MaskedDense(8, activation="relu")
    out = L.MaskedDense(1)
    model = keras.Model(inputs, out(hidden(inputs)))
    for i, layer in enumerate(L.masked_layers(model)):
        layer.mask.assign(_random_mask(layer.kernel.shape, seed=10 + i))
    model.compile(optimizer=keras.optimizers.get(optimizer), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    model.fit(x, x[:, :1], epochs=3, batch_size=8, verbose=0)
    for layer in L.masked_layers(model):
        kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
        assert np.all(kernel[mask == 0] == 0.0)
        assert np.count_nonzero(kernel[mask == 1]) == int(mask.sum())


def test_spectral_norm_of_masked_kernel_matches_svd():
    layer = L.MaskedConv2D(6, 3, spectral_norm=True)
    layer.build((None, 5, 5, 4))
    mask = _random_mask(layer.kernel.shape, density=0.5, seed=6)
    layer.mask.assign(mask)
    x = tf.zeros([1, 5, 5, 4])
    for _ in range(50):
        layer(x, training=True)
    matrix = (layer.kernel.numpy() * mask).reshape(-1, 6)
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    w = layer.effective_kernel(training=False).numpy().reshape(-1, 6)
    np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False)[0], 1.0, atol=1e-2)
    np.testing.assert_allclose(w * sigma, matrix, rtol=1e-2, atol=1e-5)


def test_spectral_norm_updates_u_only_in_training():
    layer = L.SNDense(3)
    layer.build((None, 4))
    u0 = layer.sn_u.numpy().copy()
    layer(tf.ones([1, 4]), training=False)
    np.testing.assert_array_equal(layer.sn_u.numpy(), u0)
    layer(tf.ones([1, 4]), training=True)
    assert not np.allclose(layer.sn_u.numpy(), u0)


def test_sn_embedding_is_normalised():
    layer = L.SNEmbedding(7, 5)
    layer.build(None)
    for _ in range(50):
        out = layer(tf.constant([0, 3]), training=True)
    table = layer.embeddings.numpy()
    sigma = np.linalg.svd(table, compute_uv=False)[0]
    np.testing.assert_allclose(out.numpy(), table[[0, 3]] / sigma, rtol=1e-3)


def test_masked_layers_finds_nested_layers_in_stable_order():
    inner = keras.Sequential([L.MaskedDense(4, name="a"), keras.layers.ReLU(),
                              L.MaskedDense(3, name="b")])
    inputs = keras.Input((5,))
    outer = keras.Model(inputs, L.MaskedDense(2, name="c")(inner(inputs)))
    names = [layer.name for layer in L.masked_layers(outer)]
    assert names == ["a", "b", "c"]
    assert [layer.name for layer in L.masked_layers([inner, inner])] == ["a", "b"]
    assert L.masked_layers(keras.Sequential([keras.layers.Dense(2)])) == []


def test_get_config_round_trip_keeps_user_constraint_and_sn():
    layer = L.MaskedConv2D(4, 3, spectral_norm=True, kernel_constraint="non_neg", padding="same")
    clone = L.MaskedConv2D.from_config(layer.get_config())
    assert clone.spectral_norm and clone.kernel_size == (3, 3) and clone.padding == "same"
    assert isinstance(clone._user_kernel_constraint, keras.constraints.NonNeg)
    model = keras.Sequential([keras.Input((4, 4, 2)), layer])
    cloned = keras.models.clone_model(model)
    assert len(L.masked_layers(cloned)) == 1


def test_user_constraint_composes_with_mask():
    # The mask removes positive entries (which NonNeg keeps) and NonNeg negative ones (which
    # the mask keeps): dropping either step changes the result.
    kernel = np.array([[1.0, 2.0, -1.0], [-3.0, 0.5, 4.0], [2.5, -0.5, 1.5]], np.float32)
    mask = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], np.float32)
    layer = L.MaskedDense(3, kernel_constraint=keras.constraints.NonNeg())
    layer.build((None, 3))
    layer.mask.assign(mask)
    layer.kernel.assign(kernel)
    constrained = layer.kernel.constraint(layer.kernel).numpy()
    np.testing.assert_array_equal(constrained, [[1.0, 0, 0], [0, 0.5, 0], [0, 0, 1.5]])


def test_user_constraint_runs_before_the_mask():
    # UnitNorm on columns does not commute with masking: the user constraint sees the whole
    # kernel and the mask comes last, so inactive entries end at exactly 0 whatever it does.
    kernel = np.array([[3.0, 1.0], [4.0, 1.0]], np.float32)
    mask = np.array([[1, 1], [0, 1]], np.float32)
    layer = L.MaskedDense(2, kernel_constraint=keras.constraints.UnitNorm(axis=0))
    layer.build((None, 2))
    layer.mask.assign(mask)
    layer.kernel.assign(kernel)
    constrained = layer.kernel.constraint(layer.kernel).numpy()
    s = 1.0 / np.sqrt(2.0)
    np.testing.assert_allclose(constrained, [[0.6, s], [0.0, s]], rtol=1e-6)


def test_bad_sn_eps_raises():
    with pytest.raises(ValueError, match="sn_eps"):
        L.MaskedDense(3, spectral_norm=True, sn_eps=0.0)
