"""`EMAGenerator`: the exponential moving average of a generator (docs/ALGORITHM.md §6).

It owns the copy's creation (a clone of G that no optimizer sees), its update after every
iteration (ema <- decay * ema + (1 - decay) * w for G's trainable weights; BatchNorm moving
statistics and spectral-norm vectors copied, as the official code's EMA shares G's buffers) and
its masking (the copy takes G's masks and zeroes its pruned kernel entries: the sparse EMA).
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from adapt_tf import _compat
from adapt_tf.sparse.layers import masked_layers

__all__ = ["EMAGenerator"]


def _replica_update(pairs, update_fn) -> None:
    """Assigns update_fn(target, source) to each target from replica context, any strategy."""
    pairs = list(pairs)
    if not pairs:
        return

    def merge_fn(strategy):
        for target, source in pairs:
            strategy.extended.update(target, update_fn, args=(source,), group=False)

    tf.distribute.get_replica_context().merge_call(merge_fn)


def _clone(generator: keras.Model) -> keras.Model:
    """A copy of `generator` with its weights, that no optimizer sees but that samples (and
    normalises) exactly as G does in training mode."""
    try:
        ema = keras.models.clone_model(generator)
        # A subclassed model with get_config clones unbuilt: it cannot take G's weights.
        ema.set_weights(generator.get_weights())
    except Exception as error:  # subclassed models cannot be cloned from config
        raise ValueError("ema_decay needs a generator that keras.models.clone_model can "
                         "copy (a functional or Sequential model with serialisable layers); "
                         f"cloning failed: {error}") from error
    ema._name = f"{generator.name}_ema"
    # No optimizer may see the copy: its trainable_variables are empty. But tf_keras
    # BatchNormalization ignores training=True when the layer itself is not trainable, so
    # the layers keep the generator's flags and sample with batch statistics, as the
    # official code's EMA generator does (docs/ALGORITHM.md §6).
    ema.trainable = False
    for ema_layer, layer in zip(_compat.flatten_layers(ema, include_self=False),
                                _compat.flatten_layers(generator, include_self=False)):
        ema_layer.trainable = layer.trainable
    return ema


class EMAGenerator:
    """The EMA copy of `generator` with `decay` in [0, 1).

    `model` is the copy (a Keras model with empty `trainable_variables`). `update()` runs in
    the train step's replica context after the optimizer steps; `apply_masks()` after G's masks
    change (`sparsity.Sparsity.update` calls it). Called with training=True the copy uses batch
    statistics exactly as G does; with training=False it would apply G's moving statistics to
    the EMA's weights, which the official code never does.
    """

    def __init__(self, generator: keras.Model, decay: float):
        self.decay = decay
        self.model = _clone(generator)
        masks = {layer.mask.ref() for layer in masked_layers(generator)}
        pairs = list(zip(self.model.weights, generator.weights))
        self.averaged = [(ema, w) for ema, w in pairs if w.trainable]
        self.copied = [(ema, w) for ema, w in pairs
                       if not w.trainable and w.ref() not in masks]
        self._masked = list(zip(masked_layers(self.model), masked_layers(generator)))

    @property
    def call_state(self) -> list[tf.Variable]:
        """The variables a training-mode call of `model` updates (BatchNorm moving statistics,
        spectral-norm vectors): the copied ones."""
        return [ema for ema, _ in self.copied]

    def update(self) -> None:
        """ema <- decay * ema + (1 - decay) * w for G's trainable weights; the rest copied."""
        decay = self.decay
        _replica_update(self.averaged,
                        lambda ema, w: ema.assign(decay * ema + (1.0 - decay) * tf.cast(
                            w, ema.dtype)))
        _replica_update(self.copied, lambda ema, w: ema.assign(w))

    def apply_masks(self) -> None:
        """Takes G's masks and zeroes the copy's kernel entries outside them (sparse EMA)."""
        for ema_layer, layer in self._masked:
            ema_layer.mask.assign(layer.mask)
            ema_layer.kernel.assign(ema_layer.kernel * ema_layer.mask)
