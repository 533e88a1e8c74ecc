"""Training FLOPs during `fit`: the `FlopsLogger` callback and its checkpointed `FlopsState`.

`flops` does the accounting (plain Python on per-layer costs) and `macs` measures the costs;
this module applies them to a running `SparseGAN` whose mask densities change
(docs/ALGORITHM.md §10).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf import _compat, flops
from adapt_tf.flops import macs
from adapt_tf.balance.controller import ADAPTController
from adapt_tf.sparse.sparsity import DynamicSparsity

__all__ = ["FlopsState", "FlopsLogger", "training_schedule", "network_costs"]


class FlopsState(tf.Module):
    """Checkpointable totals of a `flops.FlopsAccumulator` (its `state()`), so that a resumed
    run continues the cumulative count.

    `stage` keeps the newest totals on the host and `before_save` (which `writers.Checkpointer`
    calls before every save) writes them into the variables, so an iteration pays no
    host-to-device write; `read` and `write` act at once."""

    def __init__(self):
        super().__init__(name="flops_state")
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.total = tf.Variable(0.0, dtype=tf.float64, name="total", **kw)
        self.dense_total = tf.Variable(0.0, dtype=tf.float64, name="dense_total", **kw)
        self.iterations = tf.Variable(0, dtype=tf.int64, name="iterations", **kw)
        self._staged: Mapping[str, float] | None = None

    def read(self) -> dict[str, float]:
        self.before_save()
        return {"total": float(self.total.numpy()),
                "dense_total": float(self.dense_total.numpy()),
                "iterations": int(self.iterations.numpy())}

    def write(self, state: Mapping[str, float]) -> None:
        self._staged = None
        self.total.assign(state["total"])
        self.dense_total.assign(state["dense_total"])
        self.iterations.assign(int(state["iterations"]))

    def stage(self, state: Mapping[str, float]) -> None:
        """Keeps `state` to be written at the next `before_save` (or `read`)."""
        self._staged = dict(state)

    def before_save(self) -> None:
        """Writes the staged totals, if any, into the variables."""
        if self._staged is not None:
            self.write(self._staged)


def training_schedule(method_callbacks: Sequence[keras.callbacks.Callback], *, d_batch: int,
                      g_batch: int, n_dis: int, br_interval: int | None) -> flops.Schedule:
    """The `flops.Schedule` of a run: its global batch sizes, n_dis and BR cadence, and the
    mask-update intervals and growth kinds of its `DynamicSparsity` and `ADAPTController`
    callbacks (only the "exact" conventions use the latter)."""
    intervals = {"generator": None, "discriminator": None}
    gradient = {"generator": True, "discriminator": True}
    for callback in method_callbacks:
        if isinstance(callback, DynamicSparsity):
            network, interval, growth = callback.network, callback.rule.interval, \
                callback.rule.growth
        elif isinstance(callback, ADAPTController):
            network, interval, growth = "discriminator", callback.interval, callback.growth
        else:
            continue
        previous = intervals[network]
        intervals[network] = interval if previous is None else math.gcd(previous, interval)
        gradient[network] = gradient[network] and growth == "gradient"
    return flops.Schedule(d_batch=d_batch, g_batch=g_batch, n_dis=n_dis,
                          br_interval=br_interval,
                          g_update_interval=intervals["generator"],
                          d_update_interval=intervals["discriminator"],
                          g_gradient_growth=gradient["generator"],
                          d_gradient_growth=gradient["discriminator"])


def network_costs(generator: keras.Model, discriminator: keras.Model, *, latent_dim: int,
                  num_classes: int | None) -> tuple[list[flops.LayerCost], list[flops.LayerCost]]:
    """Per-sample forward costs (`macs.layer_macs`) of a GAN's G and D, from one batch-1
    forward pass each in inference mode (no variable changes). G takes z [B, latent_dim] (and
    labels [B] int32 if `num_classes`), D G's output shape (and labels)."""
    z = tf.zeros([1, latent_dim])
    images = tf.zeros([1, *generator.output_shape[1:]])
    if num_classes is None:
        return macs.layer_macs(generator, z), macs.layer_macs(discriminator, images)
    labels = tf.zeros([1], tf.int32)
    return (macs.layer_macs(generator, [z, labels]),
            macs.layer_macs(discriminator, [images, labels]))


class FlopsLogger(_compat.Callback):
    """Cumulative training FLOPs of a `SparseGAN` run whose mask densities change.

    At the start of `fit` it measures G's and D's per-sample MACs (`network_costs`) and builds a
    `flops.FlopsAccumulator` for `schedule` under `convention` ("paper" reproduces the
    official counter, docs/ALGORITHM.md §10), continued from `state`. After every iteration it adds
    that iteration at the per-layer mask densities in effect during it, then reads them again
    (one reduction over the masks), so that mask changes made by the DST and ADAPT callbacks
    placed *before* it in the callback list count from the next iteration on: the total is
    exact whenever masks change. Each iteration's Keras `logs` get `train_flops` (cumulative
    MACs, as the paper's Table 3 counts them) and `train_flops_ratio` (over the same schedule
    with dense masks), which a `writers.MetricsLogger` placed after it writes to metrics.csv and
    TensorBoard.

    Args:
      schedule: the run's `flops.Schedule` (see `training_schedule`).
      convention: "paper", "exact" or "exact_sparse" (see `adapt_tf.flops`).
      state: a `FlopsState` the run's checkpoint holds (so resuming continues the count);
        default a new one.

    Place it after the callbacks that change masks and before the `MetricsLogger` and the
    `Checkpointer`.
    """

    FIELDS = ("train_flops", "train_flops_ratio")

    def __init__(self, schedule: flops.Schedule, *, convention: str = "paper",
                 state: FlopsState | None = None):
        super().__init__()
        if convention not in flops.CONVENTIONS:
            raise ValueError(f"convention must be one of {sorted(flops.CONVENTIONS)}, got "
                             f"{convention!r}.")
        if not isinstance(schedule, flops.Schedule):
            raise ValueError(f"schedule must be a flops.Schedule, got {schedule!r}; build it "
                             "with training_schedule(...).")
        self.schedule = schedule
        self.convention = convention
        self.state = state if state is not None else FlopsState()
        self.accumulator: flops.FlopsAccumulator | None = None
        self._layers: dict[str, list] = {}
        self._densities: tuple[dict[str, float], dict[str, float]] | None = None
        self._read_at = -1  # `sparsity.updates` when `_densities` were read

    def on_train_begin(self, logs=None):
        gan = self.model
        g_costs, d_costs = network_costs(gan.generator, gan.discriminator,
                                         latent_dim=gan.latent_dim, num_classes=gan.num_classes)
        self.accumulator = flops.FlopsAccumulator(g_costs, d_costs, self.schedule,
                                                  convention=self.convention)
        self.accumulator.restore(self.state.read())
        self._layers = {net: gan.masked_layers(net) for net in ("generator", "discriminator")}
        self._count_fn = tf.function(self._active_counts)
        self._densities = self.densities()
        gap = gan.iteration - self.accumulator.iterations
        if gap < 0:
            raise ValueError(f"The FLOPs state counts {self.accumulator.iterations} iterations "
                             f"but the model has done {gan.iteration}; give this FlopsLogger "
                             "the FlopsState restored with the model's checkpoint.")
        if gap:
            logging.warning("FLOPs of iterations %d..%d were not logged; charging them at the "
                            "current densities.", self.accumulator.iterations + 1,
                            gan.iteration)
            self._add(gap)

    def _active_counts(self):
        return tf.stack([tf.math.count_nonzero(layer.mask)
                         for net in ("generator", "discriminator")
                         for layer in self._layers[net]])

    def densities(self) -> tuple[dict[str, float], dict[str, float]]:
        """({G layer name: mask density}, {D layer name: mask density}) right now."""
        self._read_at = self.model.sparsity.updates
        counts = iter(self._count_fn().numpy().tolist())
        return tuple({layer.name: next(counts) / layer.mask.shape.num_elements()
                      for layer in self._layers[net]} for net in ("generator", "discriminator"))

    def _add(self, iterations: int) -> None:
        self.accumulator.add(iterations, *self._densities)
        self.state.stage(self.accumulator.state())  # written when a checkpoint is saved

    def on_train_end(self, logs=None):
        self.state.before_save()

    def on_train_batch_end(self, batch, logs=None):
        self._add(1)
        if self.model.sparsity.updates != self._read_at:  # masks changed since the last read
            self._densities = self.densities()
        if logs is not None:
            logs.update(train_flops=self.accumulator.total,
                        train_flops_ratio=self.accumulator.ratio)
