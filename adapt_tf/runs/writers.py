"""Run I/O callbacks: what a run writes into its workdir while `fit` runs.

* `MetricsLogger`: `metrics.csv` rows, TensorBoard scalars and progress lines. A row holds the
  train step's logs and the entries other callbacks add to the same Keras `logs` dict
  (`train_flops`, `fid`, ...): the callbacks that add them come before the logger.
* `SampleLogs`: `br.csv` (every BR sample; `ada.csv` under the ADA criterion) and `masks.csv`
  (every mask change, which the mask callbacks put into the logs: `log_mask_change`),
  appended as they happen.
* `SampleGrid`: `samples/step_N.png` from the EMA generator on a fixed z, and the same grid
  and the per-layer densities in TensorBoard.
* `Checkpointer`: checkpoints of everything a resumed run needs (models, both optimizers,
  masks, EMA, BR window, controller state), every K iterations and at the end.
* `TerminateOnNaN`: stops training after a non-finite loss, reading the model's
  device-side record of the first one at its cadence.

They read the iteration from `gan.iteration` (host side), so they work with any
`steps_per_epoch` / `initial_epoch` split of a run.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from adapt_tf import _compat, balance, checks
from adapt_tf.runs import distribution, storage, workdir as workdir_lib

__all__ = ["MetricsLogger", "SampleLogs", "SampleGrid", "Checkpointer", "TerminateOnNaN",
           "save_image_grid", "grid_pixels", "class_rows", "duration", "log_mask_change",
           "logged_mask_changes"]


class MetricsLogger(_compat.Callback):
    """Every `every` iterations: a `metrics.csv` row, TensorBoard scalars and a progress line.

    A row holds the iteration, d_loss / g_loss as the logs hold them (a `SparseGAN` built
    with `loss_mean_every` equal to `every` logs their means over the row's iterations; the
    logger changes no model state), the current BR window mean, both densities in
    force after the iteration (after its mask callbacks: a decision row shows the new d_D), and
    the `extra_fields` found in that iteration's Keras `logs`: callbacks placed before the
    logger add them (`FlopsLogger`: `train_flops`, `train_flops_ratio`; `PeriodicEvaluation`: `fid`,
    ...); a field absent from the logs stays empty. Resuming appends to the same file, dropping
    rows past the resumed iteration.
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
        # The progress line shows the window the run's criterion keeps: ADA's when its column
        # is logged (`extra_fields`), else BR's.
        self.window = balance.ADA if balance.ADA.window_key in self.fields else balance.BR
        self.path = workdir_lib.Workdir(workdir).metrics
        self._writer = (tf.summary.create_file_writer(workdir_lib.Workdir(workdir).tensorboard)
                        if tensorboard else None)
        self._start_time = self._last_time = 0.0
        self._last_step = 0
        self._densities: dict[str, float] = {}  # of the previous row, for "decisions"

    def on_train_begin(self, logs=None):
        os.makedirs(self.workdir, exist_ok=True)
        step = self.model.iteration
        _truncate_csv(self.path, self.fields, step)
        self._start_time = self._last_time = time.time()
        self._last_step = step

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            self.write_row(step, {**(logs or {}), **_densities_in_force(self.model)})

    def write_row(self, step: int, logs: Mapping[str, Any]) -> dict[str, Any]:
        """Writes the row of `step` from `logs` (tensors and arrays reduced to Python
        scalars); returns it."""
        row: dict[str, Any] = {"step": step}
        for key in self.fields[1:]:
            if key in logs:
                row[key] = _scalar(logs[key])
        _append_csv(self.path, self.fields, [_rounded(row)])
        if self._writer is not None:
            self._summarise(step, row)
        logging.info("step %d%s  d_loss %.4f  g_loss %.4f  %s %.3f  d_G %.3f  d_D %.3f  %s", step,
                     f"/{self.total_steps}" if self.total_steps else "",
                     row.get("d_loss", math.nan), row.get("g_loss", math.nan), self.window.label,
                     row.get(self.window.window_key, math.nan),
                     row.get("g_density", math.nan), row.get("d_density", math.nan),
                     self._progress(step))
        return row

    def _summarise(self, step: int, row: Mapping[str, Any]) -> None:
        """TensorBoard: the row's finite numbers as scalars, and a density change since the
        previous row (a controller decision, DST of D at its cap, GMP) as text "decisions"."""
        with self._writer.as_default(step=step):
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(key, value)
            changes = [f"{key} {self._densities[key]:.4f} -> {row[key]:.4f}"
                       for key in ("g_density", "d_density")
                       if key in row and self._densities.get(key, row[key]) != row[key]]
            if changes:
                tf.summary.text("decisions", f"iteration {step}: {', '.join(changes)} "
                                f"(window mean {_window_mean(row):.4f})")
        self._densities.update({k: row[k] for k in ("g_density", "d_density") if k in row})
        self._writer.flush()

    def _progress(self, step: int) -> str:
        """"elapsed H:MM:SS, R it/s, ETA H:MM:SS": R over the iterations since the previous
        line (the first one includes tracing), the ETA at that rate; no ETA without
        `total_steps`."""
        now = time.time()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        text = f"elapsed {duration(now - self._start_time)}, {rate:.2f} it/s"
        if self.total_steps and rate > 0:
            text += f", ETA {duration((self.total_steps - step) / rate)}"
        return text


def _window_mean(row: Mapping[str, Any]) -> float:
    """The row's window mean, under whichever criterion's column holds it (NaN if none)."""
    return next((row[c.window_key] for c in balance.CRITERIA.values() if c.window_key in row),
                math.nan)


def duration(seconds: float) -> str:
    """`seconds` as H:MM:SS (whole seconds, rounded), e.g. 3725.4 -> "1:02:05"."""
    minutes, secs = divmod(int(round(max(seconds, 0.0))), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


SIGNIFICANT_DIGITS = 6  # metrics.csv: float32 training values carry about 7


def _rounded(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with its floats as text of `SIGNIFICANT_DIGITS` significant digits."""
    return {key: f"{value:.{SIGNIFICANT_DIGITS}g}" if isinstance(value, float) else value
            for key, value in row.items()}


def _densities_in_force(model) -> dict[str, float]:
    """g_density / d_density after the iteration: the train step logs them as it ran, before
    the mask callbacks of that iteration (DST, the controller) changed them."""
    densities = getattr(getattr(model, "sparsity", None), "densities", None)
    if densities is None:
        return {}
    return {"g_density": float(densities["generator"].numpy()),
            "d_density": float(densities["discriminator"].numpy())}


def _scalar(value) -> Any:
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


def _truncate_csv(path: str, fields: Sequence[str], step: int, *,
                  text_fields: Sequence[str] = ()) -> None:
    """Keeps only well-formed rows with step <= `step` (a resumed run rewrites what came after;
    torn rows are dropped with a warning, `storage.read_csv_rows`)."""
    if not os.path.exists(path):
        return
    _, rows = storage.read_csv_rows(path, text_fields=text_fields)
    rows = [r for r in rows if int(r["step"]) <= step]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_atomic(path, buffer.getvalue())


class SampleLogs(_compat.Callback):
    """Appends every window sample to its criterion's CSV (`Criterion.log_name`: BR samples to
    `br.csv`, ADA-criterion samples to `ada.csv`) and every mask change to `masks.csv`.

    `br.csv`: step (iterations completed, as in metrics.csv, by the iteration that took the
    sample), gf, df, dr (the sample's mean D scores: G after, G before its update, reals), ratio
    (gf - df) / (dr - df) in float32 as the window computes it, and kept (0 when the window
    skipped it: near-zero denominator or not finite). `ada.csv`, with the ADA criterion
    (`SparseGAN.criterion`): step, share (the iteration's window sample: the mean over its D
    steps of the share of reals D scores above 0). `masks.csv`: step, network, dropped,
    grown, density after the change, for the mask changes the iteration's logs carry
    (`logged_mask_changes`: what DST, the controller and GMP put there through
    `Sparsity.update`). Place it after the callbacks that change masks. A resumed run drops the
    rows past the resumed iteration first, so both files read as one uninterrupted run.
    """

    logs_samples = True  # a `sparse_gan.LogsSamples`: sampling iterations log the sample's parts
    MASK_FIELDS = ("step", "network", "dropped", "grown", "density")

    def __init__(self, workdir: str):
        super().__init__()
        self.workdir = workdir
        self.mask_path = workdir_lib.Workdir(workdir).mask_log
        self.criterion = balance.BR  # the model's (`SparseGAN.criterion`), read at train begin

    def on_train_begin(self, logs=None):
        os.makedirs(self.workdir, exist_ok=True)
        step, self.criterion = self.model.iteration, self.model.criterion
        _truncate_csv(self.criterion.log_path(self.workdir), self.criterion.log_columns, step)
        _truncate_csv(self.mask_path, self.MASK_FIELDS, step, text_fields=("network",))

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        sample = self.criterion.log_row(step, logs)
        if sample is not None:
            _append_csv(self.criterion.log_path(self.workdir), self.criterion.log_columns,
                        [sample])
        _append_csv(self.mask_path, self.MASK_FIELDS,
                    [{"step": step, **change} for change in logged_mask_changes(logs)])


_MASK_NETWORKS = ("generator", "discriminator")  # in the order masks.csv lists an iteration's


def log_mask_change(logs: dict[str, Any], *, network: str, dropped: int, grown: int,
                    density: float) -> None:
    """Adds a mask change of `network` to an iteration's Keras `logs`: `g_mask_dropped`,
    `g_mask_grown` (for D `d_...`; summed over the iteration's changes of that network) and
    `g_density` / `d_density`, set to the density after it, so the logs hold the density in
    force. Scalars, as every logs entry, so that Keras' progress bar can show them."""
    prefix = network[0]
    for key, count in (("dropped", dropped), ("grown", grown)):
        logs[f"{prefix}_mask_{key}"] = int(logs.get(f"{prefix}_mask_{key}", 0)) + int(count)
    logs[f"{prefix}_density"] = float(density)


def logged_mask_changes(logs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The mask changes `log_mask_change` put into `logs`, G's first: [{network, dropped,
    grown, density}]."""
    logs = logs or {}
    return [{"network": network, "dropped": int(_scalar(logs[f"{network[0]}_mask_dropped"])),
             "grown": int(_scalar(logs[f"{network[0]}_mask_grown"])),
             "density": float(_scalar(logs[f"{network[0]}_density"]))}
            for network in _MASK_NETWORKS if f"{network[0]}_mask_dropped" in logs]


def _append_csv(path: str, fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Appends `rows` (writing the header first into a new file); nothing for no rows."""
    if not rows:
        return
    new_file = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        if new_file:
            writer.writeheader()
        writer.writerows(rows)


TILE_PIXELS = 64  # grids upscale each image to at least this many pixels a side


def save_image_grid(images, path: str, *, columns: int | None = None,
                    row_labels: Sequence[str] | None = None) -> str:
    """Writes images [N, H, W, C] in [-1, 1] as one PNG grid (`grid_pixels`); returns the
    path."""
    return _write_png(grid_pixels(images, columns=columns, row_labels=row_labels), path)


def _write_png(pixels: np.ndarray, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(pixels))
    return path


def grid_pixels(images, *, columns: int | None = None,
                row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Images [N, H, W, C] in [-1, 1], row by row in `columns` columns (default
    ceil(sqrt(N))), as uint8 pixels [rows * pitch + 2, ..., C] with a white 2-pixel border.
    Each image is upscaled by the smallest integer factor that makes it `TILE_PIXELS` a side
    or more (nearest neighbour, so pixels stay sharp squares); `row_labels`, one per row, are
    written in a white margin left of their rows (RGB then)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
    scale = -(-TILE_PIXELS // max(images.shape[1:3]))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    grid = np.ones((rows * (h + 2) + 2, columns * (w + 2) + 2, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = image
    pixels = np.clip(np.rint((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if row_labels is None:
        return pixels
    if len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} labels for {rows} rows.")
    return _labelled(pixels, row_labels, pitch=h + 2)


def _labelled(pixels: np.ndarray, labels: Sequence[str], *, pitch: int) -> np.ndarray:
    """RGB `pixels` with a white margin on the left holding label k centred on row k."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    width = 8 + int(max(font.getlength(label) for label in labels))
    canvas = Image.new("RGB", (width + pixels.shape[1], pixels.shape[0]), "white")
    canvas.paste(Image.fromarray(np.broadcast_to(
        pixels, pixels.shape[:2] + (3,)) if pixels.shape[2] == 1 else pixels), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(labels):
        draw.text((4, 2 + row * pitch + pitch // 2), label, fill="black", font=font,
                  anchor="lm")
    return np.asarray(canvas)


class SampleGrid(_compat.Callback):
    """Writes `samples/step_N.png` every `every` iterations and at the end, and with
    `tensorboard` the grid as an image and every masked layer's density as scalars
    (`layer_density/<network>/<layer>`) into `tensorboard/` at the same iterations.

    Samples come from the EMA generator (the generator if EMA is off) on a fixed z, so grids
    are comparable across steps. A conditional model's grid has one row per class (`class_rows`)
    and fixed labels; each row is labelled with its class's name from `class_names` (in label
    order, e.g. `data.dataset_info(...).class_names`), or "class k" without them.
    """

    def __init__(self, workdir: str, *, every: int = 1000, num_images: int = 64,
                 total_steps: int | None = None, seed: int = 1234, tensorboard: bool = True,
                 class_names: Sequence[str] | None = None):
        super().__init__()
        self.class_names = None if class_names is None else tuple(class_names)
        self.directory = workdir_lib.Workdir(workdir).samples
        self.every = every
        self.num_images = num_images
        self.total_steps = total_steps
        self.seed = seed
        self._writer = (tf.summary.create_file_writer(workdir_lib.Workdir(workdir).tensorboard)
                        if tensorboard else None)
        self.written: list[str] = []

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            self.write(step)

    def write(self, step: int) -> str:
        gan = self.model
        labels, columns, row_labels = None, None, None
        if gan.num_classes is not None:
            rows, columns = class_rows(self.num_images, gan.num_classes)
            labels = tf.repeat(tf.range(rows), columns)
            row_labels = self._row_labels(rows, gan.num_classes)
        images = gan.sample(len(labels) if labels is not None else self.num_images,
                            seed=self.seed, labels=labels)
        pixels = grid_pixels(images.numpy(), columns=columns, row_labels=row_labels)
        path = _write_png(pixels, os.path.join(self.directory, f"step_{step}.png"))
        self.written.append(path)
        if self._writer is not None:
            self._summarise(step, pixels)
        return path

    def _row_labels(self, rows: int, num_classes: int) -> list[str]:
        if self.class_names is None:
            return [f"class {k}" for k in range(rows)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"SampleGrid has {len(self.class_names)} class_names for a model of "
                             f"{num_classes} classes; pass the dataset's names in label order.")
        return list(self.class_names[:rows])

    def _summarise(self, step: int, pixels: np.ndarray) -> None:
        with self._writer.as_default(step=step):
            tf.summary.image("samples", pixels[None])
            for network, layers in self.model.sparsity.layers.items():
                for layer in layers:
                    tf.summary.scalar(f"layer_density/{network}/{layer.name}", layer.density)
        self._writer.flush()


def class_rows(num_images: int, num_classes: int) -> tuple[int, int]:
    """(rows, columns) of a conditional grid of at most `num_images`, a class per row: every
    class when that leaves 4 or more images per row (12 classes of 64 images: 12 x 5), at most
    2 sqrt(num_images) per row (1 class of 64: 1 x 16); otherwise the first sqrt(num_images)
    classes (200 classes of 64: 8 x 8)."""
    side = max(1, math.isqrt(num_images))
    if num_images // num_classes >= 4:
        return num_classes, min(num_images // num_classes, 2 * side)
    return min(side, num_classes), side


class Checkpointer(_compat.Callback):
    """Saves and restores everything a run needs to continue exactly.

    The checkpoint holds the `SparseGAN` (G, D, EMA generator, masks, SN vectors, BR window,
    iteration counter, both optimizers with their slots) and any extra trackables
    (e.g. `{"controller": controller.state}`; one with a `before_save()` method, such as
    `FlopsState`, has it called before every save), and the text `record` (the run's configuration,
    under `workdir.RECORD_ROOT`; the CLI checks a resumed run against it). Saved every `every`
    iterations and at the end of `fit`; `restore()` loads the latest one (returns the
    iteration, 0 if none) and keeps this run's `record` for later saves. Checkpoints saved
    before records existed restore too.
    Under multi-worker training only the chief writes to `directory`; the other workers write
    to a temporary directory they delete, as tf.distribute requires.
    """

    def __init__(self, directory: str, gan, *, every: int = 1000, max_to_keep: int = 3,
                 extra: Mapping[str, Any] | None = None, record: str | None = None):
        super().__init__()
        self.directory = directory
        self.every = every
        self.max_to_keep = max_to_keep
        self.record = record or ""
        self._trackables = dict(gan=gan, g_optimizer=gan.g_optimizer,
                                d_optimizer=gan.d_optimizer, **(extra or {}))
        self._record = storage.ConfigRecord(self.record)
        self.checkpoint = tf.train.Checkpoint(
            **self._trackables, **{workdir_lib.RECORD_ROOT: self._record})
        self.manager = self._new_manager()
        self._last_saved = None
        self.refused_step: int | None = None

    def _new_manager(self) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self.checkpoint, _writer_directory(self.directory), max_to_keep=self.max_to_keep,
            step_counter=self.checkpoint.gan.step)

    def restore(self, path: str | None = None) -> int:
        """Restores `path` (default: `storage.usable_checkpoint`, the newest checkpoint that
        reads back whole and finite; unusable newer ones are moved aside with a warning);
        returns the restored iteration, 0 if there is no checkpoint."""
        if path is None:
            # Only the chief moves unusable checkpoints aside; other workers just skip them.
            chief = distribution.is_chief()
            if chief:
                storage.remove_partial_saves(self.directory)
            path = storage.usable_checkpoint(self.directory, reject=chief)
            self.manager = self._new_manager()  # The index may have been rewritten.
        if path is None:
            return 0
        legacy = storage.checkpoint_record(path) is None  # saved before records existed
        checkpoint = tf.train.Checkpoint(**self._trackables) if legacy else self.checkpoint
        checkpoint.restore(path).assert_existing_objects_matched()
        self._record.text = self.record  # later saves record this run's configuration
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
        bad = storage.nonfinite_count(self._model_state())
        first = self.checkpoint.gan.first_nonfinite
        if bad or first is not None:
            logging.error("Not saving iteration %d: %d non-finite model values%s.", step, bad,
                          "" if first is None else f", a non-finite loss at iteration {first}")
            self.refused_step = step
            self.checkpoint.gan.stop_training = True
            return None
        for trackable in self._trackables.values():
            if callable(getattr(trackable, "before_save", None)):
                trackable.before_save()
        try:
            path = self.manager.save(checkpoint_number=step)
        except tf.errors.OpError as error:  # e.g. no space left on the device
            raise workdir_lib.WorkdirError(
                f"Cannot save the checkpoint of iteration {step} in {self.directory} "
                f"({type(error).__name__}: {' '.join(error.message.split())[:300]}); the "
                f"previous one ({self.manager.latest_checkpoint or 'none'}) is intact. Free "
                "space or fix the disk, then rerun to resume from it.") from None
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


class TerminateOnNaN(_compat.Callback):
    """Stops training after a non-finite d_loss or g_loss; `bad_step` is the first such
    iteration, `bad_logs` the losses logged at the check that found it.

    Every iteration records the first non-finite one on the device
    (`SparseGAN.first_nonfinite`). This callback reads that one scalar every `every`
    iterations and at the end of `fit`, so the other iterations pay no device-to-host read
    for it; `Checkpointer` reads it before every save and writes nothing after a non-finite
    loss. Training therefore stops at most `every - 1` iterations after the bad one, none of
    which is saved: pass the cadence at which the run reads the host anyway (its log
    interval), or 1 to stop at once.
    """

    def __init__(self, *, every: int = 1):
        super().__init__()
        self.every = checks.positive_int("every", every)
        self.bad_step: int | None = None
        self.bad_logs: dict[str, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        if self.model.iteration % self.every == 0:
            self.check(logs)

    def on_train_end(self, logs=None):
        self.check(logs)

    def check(self, logs=None) -> bool:
        """Reads the model's first non-finite iteration; if there is one, records it, logs an
        error and stops training. Returns whether training must stop."""
        if self.bad_step is None:
            self.bad_step = self.model.first_nonfinite
            if self.bad_step is None:
                return False
            self.bad_logs = {k: float(np.asarray(logs[k])) for k in ("d_loss", "g_loss")
                             if logs and k in logs}
            logging.error("Non-finite loss at iteration %d (found at iteration %d; losses "
                          "now %s). Stopping.", self.bad_step, self.model.iteration,
                          self.bad_logs)
        self.model.stop_training = True
        return True
