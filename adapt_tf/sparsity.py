"""Dynamic sparse training during `fit`: the `DynamicSparsity` callback.

`DynamicSparsity` runs a `dst.SET` / `dst.RigL` rule on G (SDST, ADAPT) or D every ΔT
iterations, never at the last one (docs/ALGORITHM.md §5); sparse EMA as the official code
(pruned entries of the EMA generator are zeroed, §6). `reset_regrown_slots` zeroes the optimizer
moments of regrown weights when a rule asks for it.

The callback reads the iteration from `gan.iteration` (host side), so it works with any
`steps_per_epoch` / `initial_epoch` split of a run.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf import _compat, dst

__all__ = ["DynamicSparsity", "reset_regrown_slots"]


class DynamicSparsity(keras.callbacks.Callback):
    """Runs a drop-and-grow rule on one network of a `SparseGAN` during `fit`.

    Args:
      network: "generator" (SDST and ADAPT) or "discriminator".
      rule: a `dst.SET` or `dst.RigL` (interval, schedule, scope, seed live there).
      total_steps: iterations of the whole run: the drop fraction is scheduled over it and no
        update happens at its last iteration.

    At an update iteration (after `step` completed iterations, `rule.is_update_step`), the
    masks become `rule.update(kernels, masks, grads, ...)`, where grads is the dense gradient of
    that iteration's minibatch (requested from the train step one iteration ahead, so other
    iterations pay nothing). Kernels are multiplied by the new masks: regrown weights start at
    exactly 0. With `rule.reset_optimizer_slots`, the optimizer moments of regrown weights are
    zeroed too (off in the paper).
    """

    def __init__(self, network: str, rule: dst.DropGrowRule, *, total_steps: int):
        super().__init__()
        if network not in ("generator", "discriminator"):
            raise ValueError(f"network must be 'generator' or 'discriminator', got {network!r}.")
        if not isinstance(rule, dst.DropGrowRule):
            raise ValueError(f"rule must be a dst.SET or dst.RigL instance, got {rule!r}.")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}.")
        self.network = network
        self.rule = rule
        self.total_steps = total_steps
        self.history: list[dict[str, Any]] = []

    def on_train_batch_begin(self, batch, logs=None):
        if self.rule.growth == "gradient" and self.rule.is_update_step(
                self.model.iteration + 1, self.total_steps):
            self.model.request_gradients(self.network)

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if self.rule.is_update_step(step, self.total_steps):
            self.update(step)

    def update(self, step: int) -> dict[str, Any]:
        """Applies the rule as of `step` completed iterations; returns what changed."""
        gan = self.model
        layers = gan.masked_layers(self.network)
        old_masks = ([tf.identity(layer.mask) for layer in layers]
                     if self.rule.reset_optimizer_slots else None)
        dropped, grown = self._update(
            [layer.kernel for layer in layers], [layer.mask for layer in layers],
            gan.grad_buffers(self.network), tf.constant(step, tf.int64),
            tf.constant(self.total_steps, tf.int64))
        if old_masks is not None:
            optimizer = gan.g_optimizer if self.network == "generator" else gan.d_optimizer
            reset_regrown_slots(optimizer, layers, old_masks, [layer.mask for layer in layers])
        gan.refresh_densities()
        event = dict(step=step, network=self.network, dropped=int(dropped), grown=int(grown),
                     fraction=float(self.rule.fraction(step, self.total_steps)))
        self.history.append(event)
        logging.info("DST %s at step %d: dropped %d, grew %d (fraction %.4f)", self.network,
                     step, event["dropped"], event["grown"], event["fraction"])
        return event

    @tf.function
    def _update(self, kernels, masks, grads, step, total_steps):
        """One compiled update: the rule, the mask and kernel assigns, the changed counts.

        Regrown kernel entries start at exactly 0 (the kernel is multiplied by the new mask).
        Traced once per network: kernels, masks and grads are variables, step a tensor.
        """
        new_masks = self.rule.update(kernels, masks, grads, step=step, total_steps=total_steps)
        return dst.assign_masks(kernels, masks, new_masks)


def reset_regrown_slots(optimizer, layers, old_masks, new_masks) -> None:
    """Zeroes the optimizer slots (e.g. Adam m and v) of kernel entries that were regrown."""
    for layer, old, new in zip(layers, old_masks, new_masks):
        regrown = tf.logical_and(tf.equal(old, 0), tf.not_equal(new, 0))
        for slot in _compat.slot_variables(optimizer, layer.kernel):
            slot.assign(tf.where(regrown, tf.zeros_like(slot), slot))
