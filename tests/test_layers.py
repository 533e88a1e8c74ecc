"""Tests of adapt_tf.sparse.layers: masked forward, straight-through gradients, SN, mask
invariant."""
from __future__ import annotations

import numpy as np
import pytest

from adapt_tf.sparse import layers as L

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


def test_masked_dense_on_rank3_inputs_uses_the_masked_kernel_bias_and_activation():
    # Rank > 2 inputs go through tensordot over the last axis. The kernel is not zeroed
    # outside the mask, so a forward pass with the raw kernel gives other numbers.
    kernel = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0], [-7.0, 8.0, 9.0],
                       [2.0, -1.0, 0.5]], np.float32)
    mask = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], np.float32)
    layer = L.MaskedDense(3, activation="relu")
    layer.build((None, 2, 4))
    layer.kernel.assign(kernel)
    layer.mask.assign(mask)
    layer.bias.assign([0.5, -1.0, 2.0])
    x = np.array([[[1.0, 2.0, 0.0, -1.0], [0.0, -1.0, 1.0, 2.0]]], np.float32)
    # Small integers and halves: every product and sum is exact in float32.
    expected = np.maximum(np.einsum("bti,io->bto", x, kernel * mask) + [0.5, -1.0, 2.0], 0.0)
    out = layer(x).numpy()
    assert out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out, expected)
    assert np.any(expected == 0.0) and np.any(expected > 0.0)  # relu cuts some, keeps some


def test_masked_dense_without_bias_applies_only_the_masked_kernel():
    kernel = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)
    mask = np.array([[0, 1], [1, 0]], np.float32)
    layer = L.MaskedDense(2, use_bias=False, activation="linear")
    layer.build((None, 2))
    layer.kernel.assign(kernel)
    layer.mask.assign(mask)
    np.testing.assert_array_equal(layer(np.array([[2.0, -1.0]], np.float32)).numpy(),
                                  [[-3.0, -4.0]])  # [2, -1] @ [[0, -2], [3, 0]]


def test_a_new_layer_has_a_full_non_trainable_mask_and_sn_vector():
    layer = L.MaskedConv2D(3, 2, spectral_norm=True)
    layer.build((None, 4, 4, 2))
    np.testing.assert_array_equal(layer.mask.numpy(), np.ones((2, 2, 2, 3), np.float32))
    assert layer.density == 1.0
    assert layer.sn_u.shape == (1, 3)
    assert {id(w) for w in layer.trainable_weights} == {id(layer.kernel), id(layer.bias)}
    assert {id(w) for w in layer.non_trainable_weights} == {id(layer.mask), id(layer.sn_u)}
    plain = L.MaskedDense(2)
    plain.build((None, 3))
    assert plain.sn_u is None and plain.non_trainable_weights == [plain.mask]
    # u starts from a seeded draw: two layers built alike start their power iteration alike.
    twin = L.MaskedConv2D(3, 2, spectral_norm=True)
    twin.build((None, 4, 4, 2))
    np.testing.assert_array_equal(twin.sn_u.numpy(), layer.sn_u.numpy())


def _l2_normalize(x, eps):
    """tf.math.l2_normalize: x / sqrt(max(sum(x ** 2), eps)), in float64."""
    return x / np.sqrt(max(float(np.sum(x ** 2)), eps))


def _power_iteration(matrix, u, eps, *, iterate):
    """(sigma, new u) of one training call (iterate=True) or an inference call, in float64."""
    u = _l2_normalize(u, eps)
    v = _l2_normalize(u @ matrix.T, eps)
    if iterate:
        u = _l2_normalize(v @ matrix, eps)
    return float(np.sum((v @ matrix) * u)), u


@pytest.mark.parametrize("sn_eps", [1e-12, 4.0])
def test_spectral_norm_equals_a_hand_power_iteration(sn_eps):
    # One power iteration from the stored u in a training call (which stores the new u), none
    # in an inference call. With sn_eps = 4 every vector here has a norm below 2, so each of
    # the three normalisations divides by sqrt(eps) = 2 instead of the norm.
    kernel = np.array([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.25]], np.float32)
    mask = np.array([[1, 1], [0, 1], [1, 0]], np.float32)
    u0 = np.array([[0.6, -0.3]], np.float32)
    layer = L.MaskedDense(2, spectral_norm=True, sn_eps=sn_eps, use_bias=False)
    layer.build((None, 3))
    layer.kernel.assign(kernel)
    layer.mask.assign(mask)
    layer.sn_u.assign(u0)
    matrix = kernel.astype(np.float64) * mask
    eye = np.eye(3, dtype=np.float32)
    # float32 against float64: each entry passes through fewer than 30 roundings of relative
    # size 2**-24 (~6e-8), and no step cancels badly here: rtol 1e-5 is a wide bound.
    sigma, u1 = _power_iteration(matrix, u0.astype(np.float64), sn_eps, iterate=True)
    np.testing.assert_allclose(layer(eye, training=True).numpy(), matrix / sigma, rtol=1e-5)
    np.testing.assert_allclose(layer.sn_u.numpy(), u1, rtol=1e-5)
    sigma2, _ = _power_iteration(matrix, u1, sn_eps, iterate=False)
    np.testing.assert_allclose(layer(eye, training=False).numpy(), matrix / sigma2, rtol=1e-5)
    np.testing.assert_allclose(layer.sn_u.numpy(), u1, rtol=1e-5)  # inference keeps u
    assert abs(sigma2 - sigma) > 1e-4 * abs(sigma)  # 10x rtol: the two calls differ


def test_sn_conv_is_a_conv_with_the_kernel_divided_by_the_hand_sigma():
    layer = L.SNConv2D(2, 2, strides=2, padding="same", use_bias=False)
    assert layer.spectral_norm and layer.sn_eps == 1e-12  # PyTorch's defaults
    layer.build((None, 4, 4, 3))
    u0 = layer.sn_u.numpy().astype(np.float64)
    kernel = layer.kernel.numpy()
    x = tf.random.normal([1, 4, 4, 3], seed=7)
    out = layer(x, training=True).numpy()
    sigma, u1 = _power_iteration(kernel.reshape(-1, 2).astype(np.float64), u0, 1e-12,
                                 iterate=True)
    expected = tf.nn.conv2d(x, kernel / np.float32(sigma), 2, "SAME").numpy()
    assert out.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.sn_u.numpy(), u1, rtol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: L.MaskedDense(3, spectral_norm=True, sn_eps=1e-6, activation="tanh",
                          use_bias=False, kernel_constraint="non_neg", name="md"),
    lambda: L.MaskedConv2D(4, (3, 1), spectral_norm=True, sn_eps=1e-6, strides=2,
                           padding="same", kernel_constraint="non_neg", name="mc"),
    lambda: L.SNDense(3, spectral_norm=False, sn_eps=1e-6, activation="tanh", name="sd"),
    lambda: L.SNConv2D(4, (3, 1), spectral_norm=False, sn_eps=1e-6, strides=2,
                       padding="same", name="sc"),
    lambda: L.SNEmbedding(7, 5, spectral_norm=False, sn_eps=1e-6, name="se"),
], ids=["MaskedDense", "MaskedConv2D", "SNDense", "SNConv2D", "SNEmbedding"])
def test_get_config_round_trip_keeps_every_argument(make):
    # Non-default values everywhere: an argument that get_config drops or from_config ignores
    # comes back at its default.
    layer = make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert (clone.spectral_norm, clone.sn_eps) == (layer.spectral_norm, 1e-6)
    assert config["spectral_norm"] == layer.spectral_norm and config["sn_eps"] == 1e-6


def test_mixed_float16_layer_keeps_mask_and_u_in_float32_and_matches_float32():
    layers = [L.MaskedDense(3, spectral_norm=True, dtype=policy)
              for policy in ("mixed_float16", "float32")]
    for layer in layers:
        layer.build((None, 4))
        layer.kernel.assign(np.arange(12, dtype=np.float32).reshape(4, 3) / 8.0 - 0.7)
        layer.mask.assign(_random_mask((4, 3), density=0.6, seed=8))
    half, full = layers
    assert half.mask.dtype == half.sn_u.dtype == tf.float32
    x = np.array([[1.0, -0.5, 2.0, 0.25]], np.float32)
    # The kernel a training call uses (normalized_weight does not assign u).
    kernel = full.normalized_weight(full.masked_kernel(), power_iteration=True)[0].numpy()
    out_half, out_full = half(x, training=True), full(x, training=True)
    assert out_half.dtype == tf.float16
    np.testing.assert_array_equal(half.sn_u.numpy(), full.sn_u.numpy())  # SN ran in float32
    # x is exact in float16; a term's path rounds at most 6 times by 2**-11 relative (the
    # kernel's cast, the product, 3 additions, the output's cast if the sum is float32):
    # |error| <= ((1 + 2**-11)**6 - 1) * sum |terms|, plus the float32 run's own 6 roundings
    # by 2**-24.
    bound = ((1 + 2.0 ** -11) ** 6 - 1 + 6 * 2.0 ** -24) * (np.abs(x) @ np.abs(kernel))
    assert np.all(np.abs(out_half.numpy().astype(np.float64) - out_full.numpy()) <= bound)


def test_masked_conv_applies_activation_and_channels_first_bias():
    layer = L.MaskedConv2D(2, 1, activation="relu", data_format="channels_first")
    layer.build((None, 3, 2, 2))
    kernel = np.array([[1.0, -1.0], [2.0, 0.5], [-1.0, 1.0]], np.float32)  # [in, out]
    mask = np.array([[1, 1], [0, 1], [1, 0]], np.float32)
    layer.kernel.assign(kernel.reshape(1, 1, 3, 2))
    layer.mask.assign(mask.reshape(1, 1, 3, 2))
    layer.bias.assign([0.5, -4.0])
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2) - 5.0  # [batch, channels, h, w]
    # A 1x1 convolution is a matmul over channels; bias per output channel (axis 1). Exact.
    pre = np.einsum("bchw,co->bohw", x, kernel * mask) + np.array([0.5, -4.0])[:, None, None]
    np.testing.assert_array_equal(layer(x).numpy(), np.maximum(pre, 0.0))
    assert np.any(pre < 0) and np.any(pre > 0)


def test_default_spectral_norm_settings():
    # Masked layers are plain unless asked; SN layers normalise; eps is PyTorch's 1e-12.
    made = [L.MaskedDense(2), L.MaskedConv2D(2, 1), L.SNDense(2), L.SNConv2D(2, 1),
            L.SNEmbedding(3, 2)]
    assert [(layer.spectral_norm, layer.sn_eps) for layer in made] == \
        [(False, 1e-12)] * 2 + [(True, 1e-12)] * 3


def test_mask_constraint_config_is_the_user_constraints():
    user = L.MaskedDense(2, kernel_constraint="non_neg")
    assert user.kernel_constraint.get_config() == \
        keras.constraints.serialize(keras.constraints.NonNeg())
    assert L.MaskedDense(2).kernel_constraint.get_config() == {}


def test_masked_layers_of_a_single_layer_is_that_layer():
    layer = L.MaskedDense(2)
    assert L.masked_layers(layer) == [layer]
    bare = L.MaskedLayer()  # the mixin alone, not a Keras layer
    assert L.masked_layers([bare, layer]) == [bare, layer]
