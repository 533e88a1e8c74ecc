"""Who changes masks, and how: the `Sparsity` of a `SparseGAN` and the `DynamicSparsity` callback.

* `Sparsity` is the one path by which a mask changes once a `SparseGAN` wraps the networks
  (before that, `topology.sparsify` draws them): `update(network, fn, ...)` runs a compiled mask
  update, then keeps the logged densities and the EMA generator's masks in step. It also holds
  the dense kernel gradients (`grad_buffers`) that gradient growth ranks by.
* `DynamicSparsity` runs a `dst.SET` / `dst.RigL` rule on G (SDST, ADAPT) or D every ΔT
  iterations, never at the last one (docs/ALGORITHM.md §5); sparse EMA as the official code
  (pruned entries of the EMA generator are zeroed, §6). `reset_regrown_slots` zeroes the
  optimizer moments of regrown weights when a rule asks for it.

Callbacks that grow by gradient declare the iterations that must keep gradients with
`needs_gradients(step) -> networks` (they are `sparse_gan.NeedsGradients`); `SparseGAN.fit` asks
them before each iteration, so other iterations pay nothing. They read the iteration from
`gan.iteration` (host side), so they work with any `steps_per_epoch` / `initial_epoch` split
of a run.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf import _compat
from adapt_tf.sparse import dst, topology
from adapt_tf.runs import writers
from adapt_tf.sparse.layers import masked_layers

__all__ = ["Sparsity", "DynamicSparsity", "reset_regrown_slots", "NETWORKS"]

NETWORKS = ("generator", "discriminator")


def check_network(network: str) -> str:
    """`network` if it is "generator" or "discriminator", else ValueError."""
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {network!r}.")
    return network


class Sparsity:
    """The masked layers of a GAN's two networks and the one path by which their masks change.

    Args:
      networks: {"generator": G, "discriminator": D}, built Keras models.
      ema: the `ema.EMAGenerator` of G, or None; it takes G's masks whenever they change.
      ever_active: also keep, per network, which kernel entries have been active at least
        once since construction (RigL/ITOP's "fired" weights) and their share.

    Attributes:
      layers: {network: its masked layers (`layers.masked_layers`, stable order)}.
      grad_buffers: {network: one float32 variable per masked layer, kernel shape}: the dense
        gradients dL/d(kernel * mask) of the last iteration that kept them (`SparseGAN`
        writes them when a callback's `needs_gradients` asks).
      densities: {network: float32 variable}: the overall density the train step logs.
      updates: how many times `update` has run (a Python int, no device read).
      ever_active: with `ever_active`, {network: one float32 0/1 variable per masked layer}:
        the union of every mask the layer has had; `ever_active_shares[network]` is its
        active share over the network's masked entries (1.0 for a network without masks).
        Empty dicts otherwise.
    """

    def __init__(self, networks: Mapping[str, keras.Model], *, ema=None,
                 ever_active: bool = False):
        self.layers = {net: masked_layers(networks[net]) for net in NETWORKS}
        self.grad_buffers = {
            net: [tf.Variable(tf.zeros(layer.kernel.shape), trainable=False,
                              name=f"{net}_grad_{i}",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                  for i, layer in enumerate(self.layers[net])]
            for net in NETWORKS}
        self.ema = ema
        self.densities = {net: tf.Variable(1.0, trainable=False, name=f"{net}_density",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                          for net in NETWORKS}
        # Host-side count of `update` calls: readers of the masks re-read them only when it
        # moved, instead of copying them from the device every iteration.
        self.updates = 0
        nets = NETWORKS if ever_active else ()
        self.ever_active = {net: [_bookkeeping(tf.zeros(layer.mask.shape), f"{net}_fired_{i}")
                                  for i, layer in enumerate(self.layers[net])] for net in nets}
        self.ever_active_shares = {net: _bookkeeping(1.0, f"{net}_ever_active") for net in nets}
        for net in NETWORKS:
            self._follow(net)

    def density(self, network: str) -> float:
        """Overall kernel density (active / total over masked kernels) of the network."""
        layers = self.layers[check_network(network)]
        return topology.model_density(layers) if layers else 1.0

    def update(self, network: str, fn: Callable[..., Any], *args,
               logs: dict[str, Any] | None = None) -> Any:
        """Changes the network's masks with `fn(kernels, masks, grads, *args)` and returns its
        result; then the logged density (and, for G, the EMA generator's masks) follow.

        `fn` is typically a `tf.function` that computes new masks and writes them with
        `dst.assign_masks` (kernels multiplied by the new masks, so regrown weights start at
        0); kernels and masks are the layers' variables, grads `grad_buffers[network]`. Called
        between iterations, in cross-replica context. A callback passes its Keras `logs`: the
        change (entries dropped and grown, the density after it) then goes into them
        (`writers.log_mask_change`), for the loggers placed after it (`writers.SampleLogs`).
        """
        layers = self.layers[check_network(network)]
        before = None if logs is None else [tf.identity(layer.mask) for layer in layers]
        result = fn([layer.kernel for layer in layers], [layer.mask for layer in layers],
                    self.grad_buffers[network], *args)
        self.updates += 1
        self._follow(network)
        if logs is not None:
            writers.log_mask_change(logs, **self._change(network, before))
        return result

    def _change(self, network: str, before: Sequence[tf.Tensor]) -> dict[str, Any]:
        """What the last update changed against the masks `before` it."""
        was = [tf.not_equal(mask, 0) for mask in before]
        now = [tf.not_equal(layer.mask, 0) for layer in self.layers[network]]
        return {"network": network, "dropped": _only_in(was, now), "grown": _only_in(now, was),
                "density": float(self.densities[network].numpy())}

    def assign(self, network: str, new_masks: Sequence[Any], *,
               logs: dict[str, Any] | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Sets the network's masks to `new_masks` (one 0/1 array per masked layer) through
        `update` (and its `logs`); returns (dropped, grown) counts."""
        return self.update(network, lambda kernels, masks, grads: dst.assign_masks(
            kernels, masks, new_masks), logs=logs)

    def _follow(self, network: str) -> None:
        self.densities[network].assign(self.density(network))
        if network == "generator" and self.ema is not None:
            self.ema.apply_masks()
        if network in self.ever_active and self.layers[network]:
            fired = self.ever_active[network]
            for union, layer in zip(fired, self.layers[network]):
                union.assign(tf.maximum(union, tf.cast(tf.not_equal(layer.mask, 0), tf.float32)))
            active = sum(int(tf.math.count_nonzero(union)) for union in fired)
            total = sum(union.shape.num_elements() for union in fired)
            self.ever_active_shares[network].assign(active / total)


def _only_in(first: Sequence[tf.Tensor], second: Sequence[tf.Tensor]) -> int:
    """Entries true in `first` and false in `second`, over all layers."""
    return sum(int(tf.math.count_nonzero(a & ~b)) for a, b in zip(first, second))


def _bookkeeping(initial, name: str) -> tf.Variable:
    """A float32 variable no optimizer sees, written between iterations or by replica 0."""
    return tf.Variable(initial, dtype=tf.float32, trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class DynamicSparsity(_compat.Callback):
    """Runs a drop-and-grow rule on one network of a `SparseGAN` during `fit`.

    Args:
      network: "generator" (SDST and ADAPT) or "discriminator".
      rule: a `dst.SET` or `dst.RigL` (interval, schedule, scope, seed live there).
      total_steps: iterations of the whole run: the drop fraction is scheduled over it and no
        update happens at its last iteration.

    At an update iteration (after `step` completed iterations, `rule.is_update_step`), the
    masks become `rule.update(kernels, masks, grads, ...)`, where grads is the dense gradient of
    that iteration's minibatch (RigL declares those iterations with `needs_gradients`, so other
    iterations pay nothing). The masks change through `gan.sparsity.update`, which keeps the
    densities and the EMA generator in step. Kernels are multiplied by the new masks: regrown
    weights start at exactly 0. With `rule.reset_optimizer_slots`, the optimizer moments of
    regrown weights are zeroed too (off in the paper).
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

    def needs_gradients(self, step: int) -> tuple[str, ...]:
        """The network whose dense kernel gradients the iteration that completes `step` must
        keep: this one at gradient-growth update iterations, else none."""
        if self.rule.growth == "gradient" and self.rule.is_update_step(step, self.total_steps):
            return (self.network,)
        return ()

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if self.rule.is_update_step(step, self.total_steps):
            self.update(step, logs=logs)

    def update(self, step: int, *, logs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Applies the rule as of `step` completed iterations; returns what changed (also
        added to the iteration's Keras `logs` if given, `Sparsity.update`)."""
        gan = self.model
        layers = gan.masked_layers(self.network)
        old_masks = ([tf.identity(layer.mask) for layer in layers]
                     if self.rule.reset_optimizer_slots else None)
        dropped, grown = gan.sparsity.update(self.network, self._update,
                                             tf.constant(step, tf.int64),
                                             tf.constant(self.total_steps, tf.int64), logs=logs)
        if old_masks is not None:
            optimizer = gan.g_optimizer if self.network == "generator" else gan.d_optimizer
            reset_regrown_slots(optimizer, layers, old_masks, [layer.mask for layer in layers])
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
