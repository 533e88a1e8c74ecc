"""Keras callbacks that drive a `SparseGAN` run between iterations.

* `DynamicSparsity`: a `dst.SET` / `dst.RigL` rule on G (SDST, ADAPT) or D, every ΔT
  iterations, never at the last one; sparse EMA as the official code (pruned entries of the
  EMA generator are zeroed).
* `MetricsLogger`: `metrics.csv` rows, TensorBoard scalars and progress lines.
* `SampleGrid`: `samples/step_N.png` from the EMA generator on a fixed z.
* `Checkpointer`: checkpoints of everything a resumed run needs (models, both optimizers,
  masks, EMA, BR window, controller state), every K iterations and at the end.
* `FlopsLogger`: cumulative training FLOPs as densities change, and their ratio to dense.
* `EvaluateFID`: periodic FID / IS of the EMA generator; keeps the best checkpoint.
  `EvaluateToyMetric`: the same with the offline toy_shapes metric (`adapt_tf.toy_metric`).

They read the iteration from `gan.iteration` (host side), so they work with any
`steps_per_epoch` / `initial_epoch` split of a run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf import (_compat, data, distribution, dst, flops, macs, metrics, toy_metric,
                      workdir as workdir_lib)
from adapt_tf.checks import positive_int
from adapt_tf.controller import ADAPTController

__all__ = ["DynamicSparsity", "MetricsLogger", "SampleGrid", "Checkpointer", "TerminateOnNaN",
           "save_image_grid", "FlopsState", "FlopsLogger", "training_schedule", "network_costs",
           "FIDState", "EvaluateFID", "EvaluateToyMetric", "EVALUATIONS", "evaluation_metric",
           "generator_scores", "toy_generator_scores", "fid_reference", "reference_cache_path"]


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


class MetricsLogger(keras.callbacks.Callback):
    """Every `every` iterations: a `metrics.csv` row, TensorBoard scalars and a progress line.

    A row holds the iteration, the mean d_loss / g_loss over the iterations since the last row
    (the trackers are reset after each row), the current BR window mean, both densities, and
    any extra values providers add (e.g. cumulative FLOPs, FID). Resuming appends to the same
    file, dropping rows past the resumed iteration.
    """

    FIELDS = ("step", "d_loss", "g_loss", "br", "br_skipped", "g_density", "d_density")

    def __init__(self, workdir: str, *, every: int = 100, total_steps: int | None = None,
                 extra_fields: Sequence[str] = (), tensorboard: bool = True):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}.")
        self.workdir = workdir
        self.every = every
        self.total_steps = total_steps
        self.fields = list(self.FIELDS) + [f for f in extra_fields if f not in self.FIELDS]
        self.path = os.path.join(workdir, "metrics.csv")
        self._writer = (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
                        if tensorboard else None)
        self.extra: dict[str, Any] = {}
        self._start_time = None
        self._start_step = 0

    def on_train_begin(self, logs=None):
        os.makedirs(self.workdir, exist_ok=True)
        step = self.model.iteration
        _truncate_csv(self.path, self.fields, step)
        self._start_time, self._start_step = time.time(), step

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            self.write_row(step, logs or {})

    def write_row(self, step: int, logs: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step}
        for key in self.FIELDS[1:]:
            if key in logs:
                row[key] = _scalar(logs[key])
        row.update({k: v for k, v in self.extra.items() if k in self.fields})
        self.extra = {}
        new_file = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        if self._writer is not None:
            with self._writer.as_default(step=step):
                for key, value in row.items():
                    if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                        tf.summary.scalar(key, value)
            self._writer.flush()
        self.model.reset_metrics()
        elapsed = time.time() - self._start_time
        rate = (step - self._start_step) / max(elapsed, 1e-9)
        of_total = f"/{self.total_steps}" if self.total_steps else ""
        logging.info("step %d%s  d_loss %.4f  g_loss %.4f  BR %.3f  d_G %.3f  d_D %.3f  "
                     "(%.2f it/s)", step, of_total, row.get("d_loss", float("nan")),
                     row.get("g_loss", float("nan")), row.get("br", float("nan")),
                     row.get("g_density", float("nan")), row.get("d_density", float("nan")),
                     rate)
        return row


def _scalar(value) -> Any:
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


def _truncate_csv(path: str, fields: Sequence[str], step: int) -> None:
    """Keeps only well-formed rows with step <= `step` (a resumed run rewrites what came after;
    torn rows are dropped with a warning, `workdir.read_csv_rows`)."""
    if not os.path.exists(path):
        return
    _, rows = workdir_lib.read_csv_rows(path)
    rows = [r for r in rows if int(r["step"]) <= step]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    workdir_lib.write_atomic(path, buffer.getvalue())


def save_image_grid(images, path: str, *, columns: int | None = None) -> str:
    """Writes images [N, H, W, C] in [-1, 1] as one PNG grid; returns the path."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
    n, h, w, c = images.shape
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    grid = np.ones((rows * (h + 2) + 2, columns * (w + 2) + 2, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = image
    pixels = np.clip(np.rint((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(pixels))
    return path


class SampleGrid(keras.callbacks.Callback):
    """Writes `samples/step_N.png` every `every` iterations and at the end.

    Samples come from the EMA generator (the generator if EMA is off) on a fixed z (and fixed
    labels, cycling through the classes, for conditional models), so grids are comparable
    across steps.
    """

    def __init__(self, workdir: str, *, every: int = 1000, num_images: int = 64,
                 total_steps: int | None = None, seed: int = 1234):
        super().__init__()
        self.directory = os.path.join(workdir, "samples")
        self.every = every
        self.num_images = num_images
        self.total_steps = total_steps
        self.seed = seed
        self.written: list[str] = []

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            self.write(step)

    def write(self, step: int) -> str:
        gan = self.model
        labels = None
        if gan.num_classes is not None:
            labels = tf.range(self.num_images) % gan.num_classes
        images = gan.sample(self.num_images, seed=self.seed, labels=labels)
        path = save_image_grid(images.numpy(), os.path.join(self.directory, f"step_{step}.png"))
        self.written.append(path)
        return path


class Checkpointer(keras.callbacks.Callback):
    """Saves and restores everything a run needs to continue exactly.

    The checkpoint holds the `SparseGAN` (G, D, EMA generator, masks, SN vectors, BR window,
    iteration counter, both optimizers with their slots) and any extra trackables
    (e.g. `{"controller": controller.state}`). Saved every `every` iterations and at the end
    of `fit`; `restore()` loads the latest one (returns the iteration, 0 if none).
    Under multi-worker training only the chief writes to `directory`; the other workers write
    to a temporary directory they delete, as tf.distribute requires.
    """

    def __init__(self, directory: str, gan, *, every: int = 1000, max_to_keep: int = 3,
                 extra: Mapping[str, Any] | None = None):
        super().__init__()
        self.directory = directory
        self.every = every
        self.max_to_keep = max_to_keep
        self.checkpoint = tf.train.Checkpoint(gan=gan, g_optimizer=gan.g_optimizer,
                                              d_optimizer=gan.d_optimizer, **(extra or {}))
        self.manager = self._new_manager()
        self._last_saved = None
        self.refused_step: int | None = None

    def _new_manager(self) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self.checkpoint, _writer_directory(self.directory), max_to_keep=self.max_to_keep,
            step_counter=self.checkpoint.gan.step)

    def restore(self, path: str | None = None) -> int:
        """Restores `path` (default: `workdir.usable_checkpoint`, the newest checkpoint that
        reads back whole and finite; unusable newer ones are moved aside with a warning);
        returns the restored iteration, 0 if there is no checkpoint."""
        if path is None:
            # Only the chief moves unusable checkpoints aside; other workers just skip them.
            path = workdir_lib.usable_checkpoint(self.directory,
                                                 reject=distribution.is_chief())
            self.manager = self._new_manager()  # The index may have been rewritten.
        if path is None:
            return 0
        self.checkpoint.restore(path).assert_existing_objects_matched()
        step = int(self.checkpoint.gan.step.numpy())
        logging.info("Restored %s (iteration %d).", path, step)
        self._last_saved = step
        return step

    def save(self) -> str | None:
        """Saves the current state unless it was saved at this iteration or holds NaN or
        infinite model values (then nothing is written, `refused_step` is set and training
        stops): a diverged run never rotates its good checkpoints away."""
        step = int(self.checkpoint.gan.step.numpy())
        if step == self._last_saved or self.refused_step is not None:
            return None
        bad = workdir_lib.nonfinite_count(self._model_state())
        if bad:
            logging.error("Not saving iteration %d: %d non-finite model values.", step, bad)
            self.refused_step = step
            self.checkpoint.gan.stop_training = True
            return None
        path = self.manager.save(checkpoint_number=step)
        self._last_saved = step
        distribution.remove_writer_directory(self.manager.directory, self.directory)
        return path

    def _model_state(self) -> list:
        return [*self.checkpoint.gan.variables, *self.checkpoint.g_optimizer.variables,
                *self.checkpoint.d_optimizer.variables]

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        self.save()


def _writer_directory(directory: str) -> str:
    """The chief writes to `directory`; other multi-worker workers to a private temp dir."""
    return distribution.writer_directory(directory)


class TerminateOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite d_loss or g_loss; `bad_step` says where."""

    def __init__(self):
        super().__init__()
        self.bad_step: int | None = None
        self.bad_logs: dict[str, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        values = {k: float(np.asarray(logs[k])) for k in ("d_loss", "g_loss")
                  if logs and k in logs}
        if any(not math.isfinite(v) for v in values.values()):
            self.bad_step, self.bad_logs = self.model.iteration, values
            logging.error("Non-finite loss at iteration %d: %s. Stopping.", self.bad_step,
                          values)
            self.model.stop_training = True


# ------------------------------------------------------------------------- training FLOPs


class FlopsState(tf.Module):
    """Checkpointable totals of a `flops.FlopsAccumulator` (its `state()`), so that a resumed
    run continues the cumulative count."""

    def __init__(self):
        super().__init__(name="flops_state")
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.total = tf.Variable(0.0, dtype=tf.float64, name="total", **kw)
        self.dense_total = tf.Variable(0.0, dtype=tf.float64, name="dense_total", **kw)
        self.iterations = tf.Variable(0, dtype=tf.int64, name="iterations", **kw)

    def read(self) -> dict[str, float]:
        return {"total": float(self.total.numpy()),
                "dense_total": float(self.dense_total.numpy()),
                "iterations": int(self.iterations.numpy())}

    def write(self, state: Mapping[str, float]) -> None:
        self.total.assign(state["total"])
        self.dense_total.assign(state["dense_total"])
        self.iterations.assign(int(state["iterations"]))


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


class FlopsLogger(keras.callbacks.Callback):
    """Cumulative training FLOPs of a `SparseGAN` run whose mask densities change.

    At the start of `fit` it measures G's and D's per-sample MACs (`network_costs`) and builds a
    `flops.FlopsAccumulator` for `schedule` under `convention` ("paper" reproduces the
    official counter, docs/ALGORITHM.md §10), continued from `state`. After every iteration it adds
    that iteration at the per-layer mask densities in effect during it, then reads them again
    (one reduction over the masks), so that mask changes made by the DST and ADAPT callbacks
    placed *before* it in the callback list count from the next iteration on: the total is
    exact whenever masks change. `logger.extra` gets `train_flops` (cumulative MACs, as the
    paper's Table 3 counts them) and `train_flops_ratio` (over the same schedule with dense
    masks), which go into the next metrics.csv row and TensorBoard.

    Args:
      schedule: the run's `flops.Schedule` (see `training_schedule`).
      convention: "paper", "exact" or "exact_sparse" (see `adapt_tf.flops`).
      logger: the run's `MetricsLogger`, or None.
      state: a `FlopsState` the run's checkpoint holds (so resuming continues the count);
        default a new one.

    Place it after the callbacks that change masks and before the `MetricsLogger` and the
    `Checkpointer`.
    """

    FIELDS = ("train_flops", "train_flops_ratio")

    def __init__(self, schedule: flops.Schedule, *, convention: str = "paper",
                 logger: MetricsLogger | None = None, state: FlopsState | None = None):
        super().__init__()
        if convention not in flops.CONVENTIONS:
            raise ValueError(f"convention must be one of {sorted(flops.CONVENTIONS)}, got "
                             f"{convention!r}.")
        if not isinstance(schedule, flops.Schedule):
            raise ValueError(f"schedule must be a flops.Schedule, got {schedule!r}; build it "
                             "with training_schedule(...).")
        self.schedule = schedule
        self.convention = convention
        self.logger = logger
        self.state = state if state is not None else FlopsState()
        self.accumulator: flops.FlopsAccumulator | None = None
        self._layers: dict[str, list] = {}
        self._densities: tuple[dict[str, float], dict[str, float]] | None = None

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
        counts = iter(self._count_fn().numpy().tolist())
        return tuple({layer.name: next(counts) / layer.mask.shape.num_elements()
                      for layer in self._layers[net]} for net in ("generator", "discriminator"))

    def _add(self, iterations: int) -> None:
        self.accumulator.add(iterations, *self._densities)
        self.state.write(self.accumulator.state())
        if self.logger is not None:
            self.logger.extra.update(train_flops=self.accumulator.total,
                                     train_flops_ratio=self.accumulator.ratio)

    def on_train_batch_end(self, batch, logs=None):
        self._add(1)
        self._densities = self.densities()


# ----------------------------------------------------------------------------- FID and IS


class FIDState(tf.Module):
    """Checkpointable best score so far and its iteration (inf and -1 before any evaluation):
    the FID, or the toy FID when the run is scored with the toy metric."""

    def __init__(self):
        super().__init__(name="fid_state")
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.best_fid = tf.Variable(math.inf, dtype=tf.float64, name="best_fid", **kw)
        self.best_step = tf.Variable(-1, dtype=tf.int64, name="best_step", **kw)


def _generated_images(gan, *, seed: int, batch_size: int):
    """n -> images of the EMA generator (the generator if EMA is off) in train mode, with
    uniformly random labels if conditional; call number i uses `gan.sample(n, seed=seed + i)`,
    so a given seed gives the same images for the same weights."""
    batch_index = itertools.count(seed)

    def sample(n: int) -> tf.Tensor:
        return gan.sample(n, seed=next(batch_index), training=True, batch_size=batch_size)

    return sample


def generator_scores(gan, *, inception: metrics.InceptionModel, reference: metrics.Reference,
                     num_samples: int, batch_size: int = 100, seed: int = 0) -> dict[str, float]:
    """FID and Inception Score of `num_samples` images of a `SparseGAN`, as the paper evaluates.

    Images come from the EMA generator (the generator if EMA is off) in train mode (BatchNorm
    on batch statistics), with uniformly random labels if conditional (docs/ALGORITHM.md §9);
    batch i is `gan.sample(n, seed=seed + i)`, so a given seed gives the same images for the
    same weights. They go through `metrics.compute_fid_and_is` (uint8 quantisation, one
    Inception pass for both scores).

    Returns:
      {"fid", "is_mean", "is_std"}.
    """
    positive_int("num_samples", num_samples)
    if num_samples < 10:
        raise ValueError(f"num_samples={num_samples} is too few: the Inception Score uses 10 "
                         "splits; use at least 10 (the paper uses 50000).")
    return metrics.compute_fid_and_is(_generated_images(gan, seed=seed, batch_size=batch_size),
                                      reference, model=inception, num_samples=num_samples,
                                      batch_size=batch_size)


def toy_generator_scores(gan, *, classifier: metrics.FeatureModel,
                         reference: metrics.Reference, num_samples: int,
                         batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """Toy FID, confident share and class coverage (`toy_metric.toy_scores`) of `num_samples`
    images of a `SparseGAN` trained on toy_shapes, sampled as `generator_scores` does.

    Args:
      classifier: from `toy_metric.load_classifier`.
      reference: the test split's (mu, sigma) (`ToyReference.mu`, `.sigma`).

    Returns:
      {"toy_fid", "confident_share", "class_coverage", "class_counts"}.
    """
    positive_int("num_samples", num_samples)
    if num_samples < 2:
        raise ValueError(f"num_samples={num_samples} is too few for a covariance; use at least "
                         "2 (1000 or more for a stable toy FID).")
    return toy_metric.toy_scores(_generated_images(gan, seed=seed, batch_size=batch_size),
                                 classifier=classifier, reference=reference,
                                 num_samples=num_samples, batch_size=batch_size)


def reference_cache_path(dataset: str, inception_source: str, *,
                         cache_dir: str | None = None) -> str:
    """Where `fid_reference` caches a dataset's statistics: `<cache_dir>/<dataset>_<split>_
    <image size>px_<sha1 of the Inception source, 10 hex digits>.npz`, cache_dir defaulting to
    $ADAPT_TF_CACHE_DIR/fid_stats, else ~/.cache/adapt_tf/fid_stats."""
    spec = data.dataset_info(dataset)
    if cache_dir is None:
        root = os.environ.get("ADAPT_TF_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "adapt_tf")
        cache_dir = os.path.join(root, "fid_stats")
    source = inception_source if "://" in inception_source else os.path.abspath(
        inception_source)
    digest = hashlib.sha1(source.encode("utf8")).hexdigest()[:10]
    return os.path.join(cache_dir, f"{dataset}_{spec.split}_{spec.image_size}px_{digest}.npz")


def fid_reference(dataset: str, *, inception: metrics.InceptionModel | None,
                  reference_stats: str | None = None, cache_dir: str | None = None,
                  data_dir: str | None = None) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """Reference statistics for FID against `dataset`, and the .npz they came from.

    `reference_stats` (e.g. the official fid_stats_cifar10_train.npz) wins. Otherwise the
    statistics of the dataset's training split (the paper's reference) are computed once with
    `metrics.reference_statistics` and cached at `reference_cache_path(dataset,
    inception.source, cache_dir=cache_dir)`.

    Returns:
      ((mu [F], sigma [F, F]) float64, path of the .npz).
    """
    if reference_stats is not None:
        return metrics.load_statistics(reference_stats), os.fspath(reference_stats)
    if inception is None:
        raise ValueError("Without reference_stats the statistics are computed from the "
                         f"dataset {dataset!r}, which needs inception=load_inception(...).")
    path = reference_cache_path(dataset, inception.source, cache_dir=cache_dir)
    if not os.path.isfile(path):
        logging.info("Computing FID reference statistics of %s into %s.", dataset, path)
    stats = metrics.reference_statistics(dataset, model=inception, cache_path=path,
                                         data_dir=data_dir)
    return stats, path


class EvaluateFID(keras.callbacks.Callback):
    """Every `every` iterations and at the last one: FID and IS of the EMA generator; keeps the
    best checkpoint.

    Args:
      inception: from `metrics.load_inception`.
      reference: reference statistics, (mu, sigma) or an .npz path (see `fid_reference`).
      every: iterations between evaluations (official `--val-freq` 5000).
      num_samples: images per evaluation (official default 10000; the paper's tables 50000).
      total_steps: the run's last iteration, always evaluated; None for none.
      checkpoint: the run's `tf.train.Checkpoint` (`Checkpointer.checkpoint`); a new best FID
        saves it to `best_directory`, which keeps that one checkpoint only.
      best_directory: e.g. workdir/checkpoints_best; required with `checkpoint`.
      state: the `FIDState` holding best_fid / best_step; put it in the Checkpointer's extra so
        that a resumed run keeps its best. Default a new one.
      logger: a `MetricsLogger` whose next row gets `fid`, `inception_score` and `best_fid`
        (evaluate at multiples of its `every` to land on the evaluated iteration's row).
      batch_size, seed: of sampling and Inception calls (see `generator_scores`).

    `history` lists {"step", "fid", "is_mean", "is_std"} of the evaluations of this `fit`.
    Subclasses score with another metric by overriding `KEY` (the score minimised), `FIELDS`,
    `score` and `row` (`EvaluateToyMetric`).
    """

    KEY = "fid"
    FIELDS = ("fid", "inception_score", "best_fid")

    def __init__(self, inception: metrics.FeatureModel, reference: metrics.Reference, *,
                 every: int, num_samples: int = 10000, total_steps: int | None = None,
                 checkpoint: tf.train.Checkpoint | None = None,
                 best_directory: str | None = None, state: FIDState | None = None,
                 logger: MetricsLogger | None = None, batch_size: int = 100, seed: int = 0):
        super().__init__()
        self.every = positive_int("every", every)
        positive_int("num_samples", num_samples)
        if (checkpoint is None) != (best_directory is None):
            raise ValueError("Pass both checkpoint and best_directory to keep the best "
                             f"checkpoint, or neither; got best_directory={best_directory!r}.")
        self.feature_model = inception  # the Inception model, or the toy classifier
        self.reference = reference
        self.num_samples = num_samples
        self.total_steps = total_steps
        self.best_directory = best_directory
        self.state = state if state is not None else FIDState()
        self.logger = logger
        self.batch_size = batch_size
        self.seed = seed
        self.history: list[dict[str, float]] = []
        self._manager = None if checkpoint is None else tf.train.CheckpointManager(
            checkpoint, _writer_directory(best_directory), max_to_keep=1)

    @property
    def best_fid(self) -> float:
        """The best (lowest) `KEY` score so far: FID here, toy FID in `EvaluateToyMetric`."""
        return float(self.state.best_fid.numpy())

    @property
    def best_step(self) -> int:
        return int(self.state.best_step.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            self.evaluate(step)

    def score(self) -> dict[str, Any]:
        """The current EMA generator's scores: {"fid", "is_mean", "is_std"}."""
        return generator_scores(self.model, inception=self.feature_model,
                                reference=self.reference, num_samples=self.num_samples,
                                batch_size=self.batch_size, seed=self.seed)

    def row(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        """The metrics.csv / TensorBoard values of `scores` (after the best is updated)."""
        return {"fid": scores["fid"], "inception_score": scores["is_mean"],
                "best_fid": self.best_fid}

    def evaluate(self, step: int) -> dict[str, Any]:
        """Scores the current EMA generator; records a new best (and saves it)."""
        scores = self.score()
        if scores[self.KEY] < self.best_fid:
            self.state.best_fid.assign(scores[self.KEY])
            self.state.best_step.assign(step)
            if self._manager is not None:
                self._manager.save(checkpoint_number=step)
                distribution.remove_writer_directory(self._manager.directory,
                                                     self.best_directory)
        record = {"step": step, **scores}
        self.history.append(record)
        row = self.row(scores)
        if self.logger is not None:
            self.logger.extra.update(row)
        logging.info("Evaluation at iteration %d: %s (best %s %.4f at %d)", step,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items()), self.KEY,
                     self.best_fid, self.best_step)
        return record


class EvaluateToyMetric(EvaluateFID):
    """`EvaluateFID` with the offline toy_shapes metric instead of Inception: every `every`
    iterations and at the last one, toy FID, class coverage and confident share of the EMA
    generator (`toy_generator_scores`); the best checkpoint is the lowest toy FID.

    Args:
      classifier, reference: from `toy_metric.load_classifier()`.
      Others: as `EvaluateFID`.

    The logger's row gets `toy_fid`, `toy_fid_floor` (the real test vs train value, constant:
    the best a generator can be expected to reach), `class_coverage` (of 12),
    `confident_share` and `best_toy_fid`.
    """

    KEY = "toy_fid"
    FIELDS = ("toy_fid", "toy_fid_floor", "class_coverage", "confident_share", "best_toy_fid")

    def __init__(self, classifier: metrics.FeatureModel, reference: toy_metric.ToyReference,
                 **kwargs):
        super().__init__(classifier, reference, **kwargs)

    def score(self) -> dict[str, Any]:
        """{"toy_fid", "confident_share", "class_coverage", "class_counts"}."""
        return toy_generator_scores(self.model, classifier=self.feature_model,
                                    reference=(self.reference.mu, self.reference.sigma),
                                    num_samples=self.num_samples, batch_size=self.batch_size,
                                    seed=self.seed)

    def row(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        return {"toy_fid": scores["toy_fid"], "toy_fid_floor": self.reference.floor,
                "class_coverage": scores["class_coverage"],
                "confident_share": scores["confident_share"], "best_toy_fid": self.best_fid}


EVALUATIONS = {"fid": EvaluateFID, "toy": EvaluateToyMetric}


def evaluation_metric(metric: str | None, dataset: str) -> str:
    """The metric a run is scored with: `metric` ("fid": Inception FID and IS; "toy": the
    toy_shapes classifier), or by default "toy" for toy_shapes (offline, no Inception) and
    "fid" for every other dataset."""
    if metric is None:
        return "toy" if dataset == "toy_shapes" else "fid"
    if metric not in EVALUATIONS:
        raise ValueError(f"Unknown evaluation metric {metric!r}; choose one of "
                         f"{sorted(EVALUATIONS)} or None (toy for toy_shapes, else fid).")
    if metric == "toy" and dataset != "toy_shapes":
        raise ValueError(f"The toy metric scores toy_shapes samples only, not {dataset!r}; use "
                         "metric 'fid' (or None).")
    return metric
