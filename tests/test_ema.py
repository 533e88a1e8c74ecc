"""Tests of adapt_tf.gan.ema.EMAGenerator: a copy no optimizer sees, the decay rule on trainable
weights, the other state copied, and the sparse EMA (G's masks taken, pruned entries zeroed).

Toy: G is a 2 -> 3 masked Dense layer followed by BatchNormalization, so it has a trainable
kernel, bias, gamma and beta, a mask, and BatchNorm moving statistics.
"""
from __future__ import annotations

import numpy as np
import pytest

from adapt_tf.gan.ema import EMAGenerator
from adapt_tf.sparse.layers import MaskedDense, masked_layers

import tensorflow as tf
import tf_keras as keras


def _generator():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), MaskedDense(3, name="g1"),
                              keras.layers.BatchNormalization(name="bn")])
    layer = masked_layers(model)[0]
    layer.mask.assign([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    layer.kernel.assign(layer.kernel * layer.mask)
    return model


def _update_in_replica_context(ema):
    tf.distribute.get_strategy().run(ema.update)


def test_the_copy_starts_equal_is_not_trainable_and_samples_in_training_mode():
    generator = _generator()
    ema = EMAGenerator(generator, 0.9)
    assert ema.model.trainable_variables == []
    assert ema.model.get_layer("bn").trainable  # BatchNorm keeps batch statistics in training
    for a, b in zip(ema.model.weights, generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert {v.name.split("/")[-1] for v in ema.call_state} == {"moving_mean:0",
                                                               "moving_variance:0"}
    assert ema.model.name == f"{generator.name}_ema"  # not the generator's own name


def test_the_copy_keeps_each_layer_flag_of_the_generator():
    # A layer frozen in G (here the BatchNorm after the masked Dense) stays frozen in the copy,
    # layer by layer, so it normalises with its moving statistics exactly as G's does.
    generator = _generator()
    generator.get_layer("bn").trainable = False
    ema = EMAGenerator(generator, 0.9)
    assert [layer.trainable for layer in ema.model.layers] == [True, False]
    assert ema.model.trainable_variables == []


def test_update_averages_trainable_weights_and_copies_the_rest():
    generator = _generator()
    ema = EMAGenerator(generator, 0.75)
    before = [v.numpy().copy() for v in ema.model.weights]
    for variable in generator.weights:
        if "mask" not in variable.name:
            variable.assign(variable + 1.0)
    _update_in_replica_context(ema)
    for (target, source), old in zip(zip(ema.model.weights, generator.weights), before):
        if source.trainable:
            np.testing.assert_allclose(target.numpy(), 0.75 * old + 0.25 * source.numpy(),
                                       rtol=1e-6)
        elif "mask" in source.name:
            np.testing.assert_array_equal(target.numpy(), old)  # masks only via apply_masks
        else:
            np.testing.assert_array_equal(target.numpy(), source.numpy())


def test_apply_masks_takes_the_generators_masks_and_zeroes_pruned_entries():
    generator = _generator()
    ema = EMAGenerator(generator, 0.5)
    layer, ema_layer = masked_layers(generator)[0], masked_layers(ema.model)[0]
    ema_layer.kernel.assign(tf.ones_like(ema_layer.kernel))
    new_mask = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]], np.float32)
    layer.mask.assign(new_mask)
    ema.apply_masks()
    np.testing.assert_array_equal(ema_layer.mask.numpy(), new_mask)
    np.testing.assert_array_equal(ema_layer.kernel.numpy(), new_mask)


class _ConfigurableGenerator(keras.Model):
    """A subclassed model with get_config: clone_model rebuilds it from config, unbuilt, so
    the copy has no weights to take G's."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = MaskedDense(units, name="g1")

    def call(self, z):
        return self.dense(z)

    def get_config(self):
        return {"units": self.units}


def test_a_subclassed_generator_that_clones_unbuilt_is_refused_with_the_cause():
    generator = _ConfigurableGenerator()
    generator(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError) as caught:
        EMAGenerator(generator, decay=0.9)
    prefix = ("ema_decay needs a generator that keras.models.clone_model can copy (a "
              "functional or Sequential model with serialisable layers); cloning failed: ")
    assert str(caught.value).startswith(prefix)
    assert str(caught.value)[len(prefix):] == str(caught.value.__cause__)
