"""Keras callbacks that drive a `SparseGAN` run between iterations.

* `DynamicSparsity`: a `dst.SET` / `dst.RigL` rule on G (SDST, ADAPT) or D, every ΔT
  iterations, never at the last one; sparse EMA as the official code (pruned entries of the
  EMA generator are zeroed).
* `MetricsLogger`: `metrics.csv` rows, TensorBoard scalars and progress lines.
* `SampleGrid`: `samples/step_N.png` from the EMA generator on a fixed z.
* `Checkpointer`: checkpoints of everything a resumed run needs (models, both optimizers,
  masks, EMA, BR window, controller state), every K iterations and at the end.

They read the iteration from `gan.iteration` (host side), so they work with any
`steps_per_epoch` / `initial_epoch` split of a run.
"""
from __future__ import annotations

import csv
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf import dst

__all__ = ["DynamicSparsity", "MetricsLogger", "SampleGrid", "Checkpointer", "TerminateOnNaN",
           "save_image_grid"]


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
        old_masks = [tf.identity(layer.mask) for layer in layers]
        new_masks = self._update(
            [layer.kernel for layer in layers], [layer.mask for layer in layers],
            gan.grad_buffers(self.network), tf.constant(step, tf.int64),
            tf.constant(self.total_steps, tf.int64))
        for layer, mask in zip(layers, new_masks):
            layer.mask.assign(mask)
            layer.kernel.assign(layer.kernel * tf.cast(mask, layer.kernel.dtype))
        if self.rule.reset_optimizer_slots:
            optimizer = gan.g_optimizer if self.network == "generator" else gan.d_optimizer
            reset_regrown_slots(optimizer, layers, old_masks, new_masks)
        gan.refresh_densities()
        dropped, grown = dst.changed(old_masks, new_masks)
        event = dict(step=step, network=self.network, dropped=int(dropped), grown=int(grown),
                     fraction=float(self.rule.fraction(step, self.total_steps)))
        self.history.append(event)
        logging.info("DST %s at step %d: dropped %d, grew %d (fraction %.4f)", self.network,
                     step, event["dropped"], event["grown"], event["fraction"])
        return event

    @tf.function
    def _update(self, kernels, masks, grads, step, total_steps):
        return self.rule.update(kernels, masks, grads, step=step, total_steps=total_steps)


def reset_regrown_slots(optimizer, layers, old_masks, new_masks) -> None:
    """Zeroes the optimizer slots (e.g. Adam m and v) of kernel entries that were regrown."""
    slot_lists = [getattr(optimizer, name) for name in ("_momentums", "_velocities",
                                                         "_velocity_hats")
                  if getattr(optimizer, name, None)]
    for layer, old, new in zip(layers, old_masks, new_masks):
        regrown = tf.logical_and(tf.equal(old, 0), tf.not_equal(new, 0))
        index = optimizer._index_dict[optimizer._var_key(layer.kernel)]
        for slots in slot_lists:
            slot = slots[index]
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
    """Keeps only rows with step <= `step` (a resumed run rewrites what came after)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


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
        self.checkpoint = tf.train.Checkpoint(gan=gan, g_optimizer=gan.g_optimizer,
                                              d_optimizer=gan.d_optimizer, **(extra or {}))
        self.manager = tf.train.CheckpointManager(self.checkpoint, _writer_directory(
            directory), max_to_keep=max_to_keep, step_counter=gan.step)
        self._last_saved = None

    def restore(self, path: str | None = None) -> int:
        """Restores `path` (default: the latest checkpoint); returns the restored iteration."""
        path = path or tf.train.latest_checkpoint(self.directory)
        if path is None:
            return 0
        self.checkpoint.restore(path).assert_existing_objects_matched()
        step = int(self.checkpoint.gan.step.numpy())
        logging.info("Restored %s (iteration %d).", path, step)
        self._last_saved = step
        return step

    def save(self) -> str | None:
        step = int(self.checkpoint.gan.step.numpy())
        if step == self._last_saved:
            return None
        path = self.manager.save(checkpoint_number=step)
        self._last_saved = step
        return path

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        self.save()


def _writer_directory(directory: str) -> str:
    """The chief writes to `directory`; other multi-worker workers to a private temp dir."""
    strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or resolver.task_type == "chief" or (
            resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict()):
        return directory
    return os.path.join(directory, "..", f".worker_{resolver.task_type}_{resolver.task_id}_tmp")


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
