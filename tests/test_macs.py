"""Tests of adapt_tf.flops.macs: per-layer MACs of Keras layers and models against hand counts,
repeated calls, the attention protocol, and layers it refuses to count."""
from __future__ import annotations

import re

import pytest

from adapt_tf import flops
from adapt_tf.flops import macs
from adapt_tf.sparse import layers as L

import tensorflow as tf
import tf_keras as keras


def _only(costs):
    assert len(costs) == 1
    return costs[0]


def test_dense_hand_count():
    cost = _only(macs.layer_macs(keras.layers.Dense(5), input_shape=[3]))
    assert (cost.kind, cost.weight_macs, cost.other_macs) == ("dense", 3 * 5, 5)
    assert cost.masked_params == 0 and cost.density == 1.0
    no_bias = _only(macs.layer_macs(keras.layers.Dense(5, use_bias=False), input_shape=[3]))
    assert (no_bias.weight_macs, no_bias.other_macs) == (15, 0)


@pytest.mark.parametrize("padding, out_hw", [("valid", 3), ("same", 4)])
def test_conv2d_with_stride_and_padding_hand_count(padding, out_hw):
    layer = keras.layers.Conv2D(4, 3, strides=2, padding=padding)
    cost = _only(macs.layer_macs(layer, input_shape=[7, 7, 3]))
    # cin * cout * kh * kw * Hout * Wout (+ cout * Hout * Wout bias); 7x7 stride 2: 3x3 or 4x4.
    assert cost.weight_macs == 3 * 4 * 3 * 3 * out_hw * out_hw
    assert cost.other_macs == 4 * out_hw * out_hw
    assert flops.forward_macs([cost]) == cost.weight_macs + cost.other_macs


def test_batch_norm_hand_count():
    bn = _only(macs.layer_macs(keras.layers.BatchNormalization(), input_shape=[4, 4, 3]))
    assert (bn.kind, bn.weight_macs, bn.other_macs) == ("batch_norm", 0, 2 * 3 * 16)
    plain = macs.layer_macs(keras.layers.BatchNormalization(center=False, scale=False),
                            input_shape=[4, 4, 3])
    assert flops.forward_macs(plain) == 0


@pytest.mark.parametrize("layer, input_shape", [
    (keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same"), [3, 3, 4]),
    (keras.layers.Conv1D(2, 3), [5, 3]),
    (keras.layers.EinsumDense("ab,bc->ac", output_shape=4), [3]),
], ids=["conv2d_transpose", "conv1d", "einsum_dense"])
def test_kernels_no_architecture_uses_are_refused_not_miscounted(layer, input_shape):
    with pytest.raises(ValueError, match="cannot count"):
        macs.layer_macs(layer, input_shape=input_shape)


class _AttentionMap(keras.layers.Layer):
    """([q [B, T, C], k [B, S, C], v [B, S, V]]) -> softmax(q k^T) v, with the flops protocol."""

    def call(self, inputs):
        q, k, v = inputs
        return tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True)), v)

    def attention_macs(self, input_shapes):
        (_, t, c), (_, s, _), (_, _, v) = input_shapes
        return t * s * (c + v)


def test_attention_macs_protocol_receives_nested_shapes():
    q, k, v = tf.zeros([2, 4, 3]), tf.zeros([2, 6, 3]), tf.zeros([2, 6, 5])
    cost = _only(macs.layer_macs(_AttentionMap(), [q, k, v]))
    assert (cost.kind, cost.weight_macs, cost.other_macs) == ("attention", 0, 4 * 6 * (3 + 5))
    assert flops.forward_macs([cost]) == 0  # the official counter skips attention matmuls
    assert flops.forward_macs([cost], convention="exact") == 4 * 6 * (3 + 5)


class _Reuse(keras.Model):
    """A subclassed model calling one layer twice."""

    def __init__(self):
        super().__init__()
        self.shared = keras.layers.Dense(3, name="shared")
        self.head = L.MaskedDense(1, name="head")

    def call(self, x, training=None):
        return self.head(self.shared(self.shared(x)))


def test_subclassed_model_and_repeated_calls():
    model = _Reuse()
    costs = macs.layer_macs(model, input_shape=[3])
    assert all("call" not in layer.__dict__ for layer in model.submodules)  # hooks removed
    assert [(c.name, c.call_index) for c in costs] == [("shared", 0), ("shared", 1), ("head", 0)]
    # The official hook keeps one entry per module; exact counts every call.
    assert flops.forward_macs(costs) == 12 + 4
    assert flops.forward_macs(costs, convention="exact") == 2 * 12 + 4


def test_inputs_or_input_shape_exactly_one():
    with pytest.raises(ValueError, match="exactly one"):
        macs.layer_macs(keras.layers.Dense(2))


def test_layers_that_own_their_call_keep_it():
    """A functional model with tf ops (TFOpLambda layers own an instance `call`, as BigGAN-64's
    tf.split of z does): counting leaves every op in place, so the model computes the same
    function afterwards, eagerly and traced."""
    z = keras.Input(shape=(6,))
    first, second = tf.split(z, 2, axis=1)
    model = keras.Model(z, keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(
        first) - tf.reduce_sum(second, axis=1, keepdims=True))
    owned = {layer.name for layer in model.layers if "call" in layer.__dict__}
    # Names only (Keras numbers a repeated op name: tf.split_5 if other tests made tf.split).
    assert {re.sub(r"_\d+$", "", name) for name in owned} == {
        "tf.split", "tf.math.reduce_sum", "tf.math.subtract"}
    assert flops.forward_macs(macs.layer_macs(model, input_shape=[6])) == 3
    assert {layer.name for layer in model.layers if "call" in layer.__dict__} == owned
    values = tf.constant([[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]])
    assert float(model(values)[0, 0]) == 6.0 - 60.0
    assert float(tf.function(model)(values)[0, 0]) == 6.0 - 60.0
