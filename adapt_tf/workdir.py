"""A run directory's files and their integrity: one run per workdir, nothing saved or kept that
a resumed run cannot trust.

Layout of a workdir W (`python -m adapt_tf.train --workdir=W`):

| path | what |
|---|---|
| `W/operative_config.gin` | the run's configuration (written atomically) |
| `W/metrics.csv` | one row per logged iteration |
| `W/checkpoints/ckpt-N.*` | checkpoints; `checkpoints/rejected/` holds unusable ones moved aside |
| `W/.lock`, `W/.lock.pid` | held while a process trains in W, and that process's id |

This module holds the rules (see docs/RELIABILITY.md): `lock` lets one process at a time train
in a workdir; `check_writable` fails before training if W or W/checkpoints cannot be written;
`usable_checkpoint` picks the newest checkpoint that reads back completely with finite values,
moving unreadable or non-finite newer ones aside; `read_csv_rows` drops torn metrics rows.
"""
from __future__ import annotations

import contextlib
import csv
import glob
import os
import re
import tempfile
from typing import Iterator, Sequence

import filelock
import numpy as np
import tensorflow as tf
from absl import logging

__all__ = ["WorkdirError", "WorkdirInUseError", "lock", "check_writable", "write_atomic",
           "checkpoint_paths", "usable_checkpoint", "nonfinite_count", "read_csv_rows",
           "set_aside_orphan_metrics",
           "CONFIG_NAME", "METRICS_NAME", "CHECKPOINT_DIR", "REJECTED_DIR"]

CONFIG_NAME = "operative_config.gin"
METRICS_NAME = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
REJECTED_DIR = "rejected"
LOCK_NAME = ".lock"
# Root names of the checkpoint (`callbacks.Checkpointer`) whose float values must be finite;
# others may hold inf legitimately (the best FID before any evaluation).
MODEL_STATE_ROOTS = ("gan", "g_optimizer", "d_optimizer")


class WorkdirError(ValueError):
    """A workdir cannot be used as asked; the message names the file and the fix."""


class WorkdirInUseError(WorkdirError):
    """Another process holds the workdir's lock."""


# ---------------------------------------------------------------------------- lock, writes


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Holds `workdir/.lock` (an OS file lock, released when the process dies) for the block.

    Re-entrant within one process (the CLI and `train_lib.train` both take it). Raises
    `WorkdirInUseError` at once if another process holds it.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_NAME)
    file_lock = filelock.FileLock(path, timeout=0, is_singleton=True, thread_local=False)
    try:
        file_lock.acquire()
    except filelock.Timeout:
        raise WorkdirInUseError(
            f"workdir in use by pid {_holder(path)}: {workdir} (lock {path}). Wait for that "
            "run to finish or stop it, or choose another --workdir.") from None
    try:
        if file_lock.lock_counter == 1:
            write_atomic(path + ".pid", f"{os.getpid()}\n")
        yield
    finally:
        file_lock.release()


def _holder(lock_path: str) -> str:
    try:
        with open(lock_path + ".pid") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def check_writable(workdir: str) -> None:
    """Creates `workdir` and `workdir/checkpoints` if needed and proves both writable (a file is
    created and removed in each), so that no iteration is spent before a save would fail."""
    for directory in (workdir, os.path.join(workdir, CHECKPOINT_DIR)):
        try:
            os.makedirs(directory, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe"):
                pass
        except OSError as error:
            raise WorkdirError(
                f"{directory} is not a writable directory ({error.strerror or error}); fix its "
                "permissions (or remove what is in the way) or choose another --workdir.") \
                from None


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: readers see the old or
    the new content, never a part."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_paths(directory: str) -> list[str]:
    """Checkpoint prefixes (`directory/ckpt-N`) that the `checkpoint` index lists or that have
    files, newest (largest N) first. A listed checkpoint may have lost its files."""
    numbers = {int(m.group(1)) for name in os.listdir(directory)
               if (m := re.fullmatch(r"ckpt-(\d+)\.(index|data-\d+-of-\d+)", name))} \
        if os.path.isdir(directory) else set()
    for path in _indexed_paths(directory):
        if m := re.fullmatch(r"ckpt-(\d+)", os.path.basename(path)):
            numbers.add(int(m.group(1)))
    return [os.path.join(directory, f"ckpt-{n}") for n in sorted(numbers, reverse=True)]


def _indexed_paths(directory: str) -> list[str]:
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception as error:  # noqa: BLE001 - a garbled index is a text-proto parse error
        logging.warning("Ignoring the unreadable checkpoint index %s (%s); using the files.",
                        os.path.join(directory, "checkpoint"), _first_line(error))
        return []
    return list(state.all_model_checkpoint_paths) if state else []


def usable_checkpoint(directory: str, *, reject: bool = True) -> str | None:
    """The newest checkpoint of `directory` that reads back whole with finite model state.

    Newer ones that fail are named in a warning with the reason and, with `reject`, moved to
    `directory/rejected/` (kept for inspection) and dropped from the `checkpoint` index, so
    that later saves rotate only good checkpoints. Returns None when `directory` has no
    checkpoint; raises `WorkdirError` when it has some but none is usable.
    """
    candidates = checkpoint_paths(directory)
    for index, path in enumerate(candidates):
        problem = checkpoint_problem(path)
        if problem is None:
            if index and reject:
                _reindex(directory, candidates[index:])
            return path
        logging.warning("Checkpoint %s is unusable (%s); %s trying the previous one.", path,
                        problem, f"moving it to {REJECTED_DIR}/ and" if reject else "")
        if reject:
            _reject(path)
    if candidates:
        raise WorkdirError(
            f"No usable checkpoint in {directory}: {', '.join(map(os.path.basename, candidates))}"
            f" are unreadable or non-finite{f' (moved to {REJECTED_DIR}/)' if reject else ''}. "
            "Restore them from a backup, or start over in a new --workdir.")
    return None


def checkpoint_problem(path: str) -> str | None:
    """Why checkpoint `path` cannot be resumed from (missing files, unreadable or corrupt data,
    non-finite model values), or None if every tensor reads back and the model state is
    finite."""
    if not os.path.exists(path + ".index"):
        return "its files are missing"
    try:
        reader = tf.train.load_checkpoint(path)
        bad = 0
        for key, dtype in reader.get_variable_to_dtype_map().items():
            value = reader.get_tensor(key)
            if dtype.is_floating and key.split("/")[0] in MODEL_STATE_ROOTS:
                bad += int(np.size(value) - np.count_nonzero(np.isfinite(value)))
    except Exception as error:  # noqa: BLE001 - any read failure makes it unusable
        return f"unreadable: {type(error).__name__}: {_first_line(error)}"
    return f"{bad} non-finite values in the model state" if bad else None


def _reject(path: str) -> None:
    rejected = os.path.join(os.path.dirname(path), REJECTED_DIR)
    os.makedirs(rejected, exist_ok=True)
    for name in glob.glob(glob.escape(path) + ".*"):
        os.replace(name, os.path.join(rejected, os.path.basename(name)))


def _reindex(directory: str, paths: Sequence[str]) -> None:
    """Rewrites the `checkpoint` index to `paths` (newest first) so the manager keeps them."""
    kept = [os.path.basename(p) for p in reversed(paths) if os.path.exists(p + ".index")]
    tf.compat.v1.train.update_checkpoint_state(directory, kept[-1],
                                               all_model_checkpoint_paths=kept)


def nonfinite_count(variables: Sequence[tf.Variable]) -> int:
    """Number of NaN or infinite entries over the floating-point `variables`."""
    counts = [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(v)), tf.int64))
              for v in variables if v.dtype.is_floating]
    return int(tf.add_n(counts)) if counts else 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------- metrics.csv


def set_aside_orphan_metrics(workdir: str) -> str | None:
    """Before a run starts from iteration 1: a `metrics.csv` with rows has no checkpoint to
    resume them (e.g. killed before its first save), so it is renamed to
    `metrics.orphaned-K.csv` (first free K) with a warning instead of being emptied. Returns
    the new path, or None if there was nothing to keep."""
    path = os.path.join(workdir, METRICS_NAME)
    if not os.path.isfile(path) or not read_csv_rows(path)[1]:
        return None
    number = 1
    while os.path.exists(kept := os.path.join(workdir, f"metrics.orphaned-{number}.csv")):
        number += 1
    os.replace(path, kept)
    logging.warning("%s has rows but %s has no checkpoint to resume them: starting from "
                    "iteration 1 and keeping the old rows in %s.", path, CHECKPOINT_DIR, kept)
    return kept



def read_csv_rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a metrics CSV, without torn rows.

    A row is kept when it has exactly the header's fields, an integer `step` and numbers (or
    nothing) in the other cells, and ends with a newline; others (a process killed mid-write)
    are dropped with a warning naming the line. Raises `WorkdirError` if the file is not UTF-8.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise WorkdirError(
            f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); it is corrupt or "
            "not adapt_tf's. Move it away: a resumed run starts a new one.") from None
    lines = text.splitlines(keepends=True)
    if not lines:
        return [], []
    header = next(csv.reader(lines[:1]))
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        row = next(csv.reader([line]), [])
        if line.endswith("\n") and _well_formed(row, header):
            rows.append(dict(zip(header, row)))
        else:
            logging.warning("%s line %d is torn or malformed (%r); dropping it.", path, number,
                            line.rstrip("\r\n")[:80])
    return header, rows


def _well_formed(row: Sequence[str], header: Sequence[str]) -> bool:
    if len(row) != len(header) or "step" not in header:
        return False
    values = dict(zip(header, row))
    if not re.fullmatch(r"\d+", values["step"]):
        return False
    try:
        for key, value in values.items():
            if value and key != "step":
                float(value)
    except ValueError:
        return False
    return True
