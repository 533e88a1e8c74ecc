"""Gradual magnitude pruning (GMP), the dense-to-sparse baseline, through tfmot.

Zhu & Gupta, "To prune, or not to prune" (2017), as tensorflow-model-optimization implements it:
every `frequency` iterations between `begin_step` and `end_step`, each masked layer keeps the
largest-magnitude fraction 1 - s(t) of its kernel, with tfmot's polynomial schedule
`PolynomialDecay(initial_sparsity=0, final_sparsity=1 - target_density, power=3)`. Sparsity is
per layer (uniform), as in tfmot. The run starts dense (method "gmp": d_G = d_D = 1) and each
network reaches `target_density` at `end_step` (pruned there even when `end_step - begin_step`
is not a multiple of `frequency`).

How tfmot is used. tfmot's `prune_low_magnitude` wraps layers in `PruneLowMagnitude`, whose own
mask and step counter advance on every `training=True` call: a discriminator called 2-3 times
per GAN iteration would run its schedule 2-3x too fast, and the wrapper's mask would shadow the
masked layer's (DST, densities, checkpoints and exports read the latter). So the schedule is
driven from the iteration count between iterations (a Keras callback), and tfmot's own pruning
(`pruning_impl.Pruning`, the object inside `PruneLowMagnitude`) updates the masked layers'
`mask` variables directly: (kernel, mask, threshold) are exactly the triples it expects.
Masked layers implement tfmot's `PrunableLayer` interface (`get_prunable_weights` returns the
kernel), so `prune_low_magnitude` also wraps them, e.g. to fine-tune an exported model; the
export (`adapt_tf.export.strip_masks`) is the `strip_pruning` of a GMP run: plain layers with
the pruned kernels.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
from absl import logging
# Private: the pruning object inside PruneLowMagnitude has no public route (module docstring).
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

from adapt_tf import _compat
from adapt_tf.sparse.layers import MaskedLayer
from adapt_tf.checks import positive_int

__all__ = ["GradualMagnitudePruning", "polynomial_schedule"]

tfmot.sparsity.keras.PrunableLayer.register(MaskedLayer)

_NETWORKS = ("generator", "discriminator")


def polynomial_schedule(*, target_density: float, begin_step: int, end_step: int,
                        frequency: int, power: float = 3.0
                        ) -> tfmot.sparsity.keras.PolynomialDecay:
    """tfmot's polynomial schedule from dense to `target_density` over [begin_step, end_step]."""
    if not 0.0 < target_density <= 1.0:
        raise ValueError(f"target_density={target_density!r} must be in (0, 1].")
    if not 0 <= begin_step < end_step:
        raise ValueError(f"Need 0 <= begin_step < end_step, got begin_step={begin_step!r}, "
                         f"end_step={end_step!r}.")
    positive_int("frequency", frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=1.0 - float(target_density),
        begin_step=int(begin_step), end_step=int(end_step), power=power, frequency=frequency)


class _AtIteration(tfmot.sparsity.keras.PruningSchedule):
    """A schedule that prunes when the callback says so, at the polynomial's sparsity."""

    def __init__(self, schedule: tfmot.sparsity.keras.PolynomialDecay):
        self.schedule = schedule
        self.prune_now = False

    def __call__(self, step):
        return tf.constant(self.prune_now), self.schedule(step)[1]

    def get_config(self):
        return {"class_name": type(self).__name__, "config": self.schedule.get_config()}


class GradualMagnitudePruning(_compat.Callback):
    """Prunes one network of a `SparseGAN` from its density to `target_density` during `fit`.

    Args:
      network: "generator" or "discriminator".
      target_density: density every masked layer reaches at `end_step`, in (0, 1].
      begin_step, end_step: first and last pruning iterations (completed iterations).
      frequency: iterations between pruning steps (tfmot's `frequency`).
      power: exponent of the polynomial schedule (tfmot's default 3).

    A pruning step after iteration t (begin_step <= t <= end_step, t - begin_step a multiple of
    `frequency`, or t = end_step) sets each masked layer's mask to its round((1 - s(t)) n)
    largest-magnitude kernel entries (tfmot keeps ties at the threshold) and zeroes the rest of
    the kernel; pruned weights never come back. Nothing to checkpoint: the schedule is a
    function of the iteration and the masks live in the model.
    """

    def __init__(self, network: str, *, target_density: float, begin_step: int,
                 end_step: int, frequency: int, power: float = 3.0):
        super().__init__()
        if network not in _NETWORKS:
            raise ValueError(f"network must be one of {_NETWORKS}, got {network!r}.")
        self.network = network
        self.target_density = float(target_density)
        self.schedule = polynomial_schedule(target_density=target_density,
                                            begin_step=begin_step, end_step=end_step,
                                            frequency=frequency, power=power)
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency
        self._trigger = _AtIteration(self.schedule)
        self._pruning = None
        self.history: list[dict] = []

    def is_pruning_step(self, step: int) -> bool:
        """Whether the masks are updated after `step` completed iterations."""
        if not self.begin_step <= step <= self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def sparsity(self, step: int) -> float:
        """The schedule's target sparsity (1 - density) after `step` iterations."""
        return float(self.schedule(tf.constant(step, tf.int64))[1])

    def _pruning_obj(self) -> pruning_impl.Pruning:
        if self._pruning is None:
            layers = self.model.masked_layers(self.network)
            self._thresholds = [tf.Variable(0.0, trainable=False, name=f"{layer.name}_threshold")
                                for layer in layers]
            self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self._pruning = pruning_impl.Pruning(
                training_step_fn=lambda: self._step,
                pruning_vars=[(layer.kernel, layer.mask, threshold)
                              for layer, threshold in zip(layers, self._thresholds)],
                pruning_schedule=self._trigger, block_size=(1, 1), block_pooling_type="AVG")
        return self._pruning

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if self.is_pruning_step(step):
            self.prune(step, logs=logs)

    def _tfmot_prune(self, kernels, masks, grads) -> None:
        """The mask update `gan.sparsity.update` runs: tfmot's pruning, built on these same
        (kernel, mask) variables, writes the masks and zeroes the pruned kernel entries."""
        pruning = self._pruning_obj()  # built by `prune`
        self._trigger.prune_now = True
        try:
            pruning.conditional_mask_update()
        finally:
            self._trigger.prune_now = False
        pruning.weight_mask_op()

    def prune(self, step: int, *, logs: dict | None = None) -> dict:
        """Applies the pruning step of iteration `step`; returns what it did (the mask change
        also goes into the iteration's Keras `logs` if given, `Sparsity.update`)."""
        gan = self.model
        self._pruning_obj()
        self._step.assign(step)
        gan.sparsity.update(self.network, self._tfmot_prune, logs=logs)
        event = dict(step=step, network=self.network, sparsity=self.sparsity(step),
                     density=gan.density(self.network))
        self.history.append(event)
        logging.info("GMP %s at step %d: target sparsity %.4f, density %.4f", self.network,
                     step, event["sparsity"], event["density"])
        return event
