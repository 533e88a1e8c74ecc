"""How a run's files are read and written safely: one process per workdir, nothing saved or
kept that a resumed run cannot trust (docs/RELIABILITY.md). The names of those files are
`adapt_tf.runs.workdir`'s.

`lock` lets one process at a time train in a workdir; `check_writable` fails before training
if W or W/checkpoints cannot be written; `usable_checkpoint` picks the newest checkpoint that
reads back completely with finite values, moving unreadable or non-finite newer ones aside;
`read_csv_rows` drops torn metrics rows; `update_json` changes a JSON record (eval.json) that
two processes may write; `checkpoint_record` reads the configuration text saved inside a
checkpoint (`RECORD_ROOT`); `set_aside_previous_run` moves an unresumable run's files out of
the way of a new one.
"""
from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Iterator, Sequence

import filelock
import numpy as np
import tensorflow as tf
from absl import logging

from adapt_tf.runs.workdir import (CHECKPOINT_KINDS, MODEL_STATE_ROOTS, RECORD_ROOT,
                                   REJECTED_DIR, RUN_FILES, Workdir, WorkdirError,
                                   WorkdirInUseError)

__all__ = ["lock", "check_writable", "write_atomic", "read_json", "update_json",
           "checkpoint_paths", "usable_checkpoint", "nonfinite_count", "read_csv_rows",
           "remove_partial_saves", "set_aside_previous_run", "ConfigRecord", "checkpoint_record",
           "newest_record", "find_checkpoint", "checkpoint_problem"]


# ---------------------------------------------------------------------------- lock, writes


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Holds `workdir/.lock` (an OS file lock, released when the process dies) for the block.

    Re-entrant within one process (the CLI and `train_lib.train` both take it). Raises
    `WorkdirInUseError` at once if another process holds it.
    """
    os.makedirs(workdir, exist_ok=True)
    path = Workdir(workdir).lock_file
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
    for directory in (workdir, Workdir(workdir).checkpoints):
        try:
            os.makedirs(directory, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe"):
                pass
        except OSError as error:
            if os.path.islink(directory) and not os.path.exists(directory):
                raise WorkdirError(
                    f"{directory} is a symbolic link to {os.readlink(directory)}, which does "
                    "not exist; create its target, remove the link, or choose another "
                    "--workdir.") from None
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


def read_json(path: str) -> dict[str, Any]:
    """The JSON object at `path`, {} if there is no file."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise WorkdirError(
            f"{path} is not valid JSON ({error}; a process killed mid-write, or edited by "
            "hand?). Move it away and rerun `python -m adapt_tf.evaluate` to rewrite it.") \
            from None


def update_json(path: str, change: Callable[[dict[str, Any]], dict[str, Any]]
                ) -> dict[str, Any]:
    """Replaces the JSON object at `path` ({} if there is none) by `change(object)`, written
    atomically under a file lock (`.<name>.lock` beside it), so that two processes updating it at
    once (an end-of-run test evaluation and `python -m adapt_tf.evaluate`) each see the other's
    keys. Returns the new object."""
    directory, name = os.path.split(path)
    with filelock.FileLock(os.path.join(directory, f".{name}.lock")):
        record = change(read_json(path))
        write_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


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


def find_checkpoint(workdir: str, checkpoint: str | None = None) -> str:
    """The checkpoint prefix `checkpoint` names in `workdir`, for reading a finished run back
    (evaluation, export): the newest usable one of a directory, a bad newer one skipped with a
    warning naming it and left where it is, since reading must not change the run.

    Args:
      checkpoint: "best" (latest in `W/checkpoints_best/`), "last" (latest in
        `W/checkpoints/`), a checkpoint prefix (e.g. `W/checkpoints/ckpt-8`) or a directory
        of checkpoints; None = "best" if the run kept one, else "last".
    Raises:
      ValueError: no such workdir or checkpoint, with what was looked for.
    """
    if not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} does not exist; pass the --workdir of a "
                         "training run.")
    files = Workdir(workdir)
    if checkpoint is None:
        for kind in CHECKPOINT_KINDS:
            path = usable_checkpoint(files.checkpoint_directory(kind), reject=False)
            if path:
                return path
        raise ValueError(f"{workdir!r} holds no checkpoint (looked in "
                         f"{[files.checkpoint_directory(kind) for kind in CHECKPOINT_KINDS]}); "
                         "train the run first, or pass --checkpoint=PATH.")
    if checkpoint in CHECKPOINT_KINDS:
        directory = files.checkpoint_directory(checkpoint)
        path = usable_checkpoint(directory, reject=False)
        if path is None:
            hint = ("the run kept no best checkpoint (it needs FID evaluation, "
                    "train.eval_every); use --checkpoint=last" if checkpoint == "best"
                    else "train the run first")
            raise ValueError(f"No {checkpoint!r} checkpoint: {directory!r} holds none; {hint}.")
        return path
    if os.path.isdir(checkpoint):
        path = usable_checkpoint(checkpoint, reject=False)
        if path is None:
            raise ValueError(f"Directory {checkpoint!r} holds no checkpoint (no 'checkpoint' "
                             "state file); give a checkpoint prefix such as "
                             f"{os.path.join(files.checkpoints, 'ckpt-N')}.")
        return path
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise ValueError(f"No checkpoint at {checkpoint!r} (no {checkpoint}.index): give "
                         "'best', 'last', a checkpoint prefix such as "
                         f"{os.path.join(files.checkpoints, 'ckpt-N')}, or a directory.")
    return checkpoint


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
    """Rewrites the `checkpoint` index to `paths` (newest first), with their files' times, so
    that the manager keeps them and rotates them as usual (an index without times makes
    `tf.train.CheckpointManager` treat them as preserved forever)."""
    kept = [p for p in reversed(paths) if os.path.exists(p + ".index")]
    times = [os.path.getmtime(p + ".index") for p in kept]
    tf.compat.v1.train.update_checkpoint_state(
        directory, os.path.basename(kept[-1]),
        all_model_checkpoint_paths=[os.path.basename(p) for p in kept],
        all_model_checkpoint_timestamps=times, last_preserved_timestamp=min(times) - 1.0)


def remove_partial_saves(directory: str) -> list[str]:
    """Deletes the `ckpt-N_temp/` folders a save killed mid-write leaves in `directory` (TF
    writes a checkpoint there, then renames it into place), with a log line naming each;
    returns them. Only the process that holds the workdir's lock may call it."""
    partial = sorted(glob.glob(os.path.join(glob.escape(directory), "ckpt-*_temp")))
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
        logging.warning("Deleted %s, left by a checkpoint save that did not finish.", path)
    return partial


def newest_record(directory: str) -> str | None:
    """The configuration recorded in the newest checkpoint of `directory` whose record reads
    (one tensor, not a full check), or None if that checkpoint has no record or there is
    none. For reading a run back; resuming uses `usable_checkpoint`."""
    for path in checkpoint_paths(directory):
        try:
            return checkpoint_record(path) or None
        except (tf.errors.OpError, ValueError):  # files missing or garbled: the previous one
            continue
    return None


class ConfigRecord(tf.train.experimental.PythonState):
    """The run's configuration text as a checkpoint entry (`RECORD_ROOT`). Host-side Python
    state, not a tf.Variable: under a multi-worker strategy a string variable is broadcast at
    creation, and the collectives carry no strings."""

    def __init__(self, text: str):
        self.text = text

    def serialize(self) -> str:
        return self.text

    def deserialize(self, string_value) -> None:
        self.text = (string_value.decode("utf-8") if isinstance(string_value, bytes)
                     else str(string_value))


def checkpoint_record(path: str) -> str | None:
    """The configuration text saved inside checkpoint `path` (`RECORD_ROOT`; "" from a library
    run that gave none), or None for a checkpoint saved before records existed."""
    key = f"{RECORD_ROOT}/.ATTRIBUTES/py_state"  # as `ConfigRecord` saves it
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor(key):
        return None
    text = reader.get_tensor(key)
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def nonfinite_count(variables: Sequence[tf.Variable]) -> int:
    """Number of NaN or infinite entries over the floating-point `variables`."""
    counts = [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(v)), tf.int64))
              for v in variables if v.dtype.is_floating]
    return int(tf.add_n(counts)) if counts else 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -------------------------------------------------------- a previous run's files, metrics.csv


def set_aside_previous_run(workdir: str) -> str | None:
    """Before a run starts from iteration 1: the files of a previous run in `workdir` (its
    config, metrics, eval.json, TensorBoard events, samples, best checkpoints, sample logs,
    plot, export, report: `RUN_FILES`), which no checkpoint lets the new run resume, are moved
    together into `W/orphaned/n/` (first free n) with a warning naming it, so that nothing of
    the old run is read as the new one's, and nothing is emptied. Returns that folder, or None
    if there was nothing to move."""
    found = [name for name in RUN_FILES if os.path.lexists(os.path.join(workdir, name))]
    if not found:
        return None
    number = 1
    while os.path.lexists(kept := Workdir(workdir).orphaned(number)):
        number += 1
    for name in found:
        os.makedirs(os.path.dirname(os.path.join(kept, name)), exist_ok=True)
        os.replace(os.path.join(workdir, name), os.path.join(kept, name))
    logging.warning("%s holds files of a previous run but no checkpoint to resume it: starting "
                    "from iteration 1 and moving that run's %s to %s.", workdir,
                    ", ".join(found), kept)
    return kept


def read_csv_rows(path: str, *, text_fields: Sequence[str] = ()
                  ) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a metrics CSV, without torn rows.

    A row is kept when it has exactly the header's fields, an integer `step` and numbers (or
    nothing) in the other cells but `text_fields`, and ends with a newline; others (a process
    killed mid-write) are dropped with a warning naming the line.
    Raises `WorkdirError` if the file is not UTF-8.
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
        if line.endswith("\n") and _well_formed(row, header, text_fields):
            rows.append(dict(zip(header, row)))
        else:
            logging.warning("%s line %d is torn or malformed (%r); dropping it.", path, number,
                            line.rstrip("\r\n")[:80])
    return header, rows


def _well_formed(row: Sequence[str], header: Sequence[str], text_fields: Sequence[str]) -> bool:
    if len(row) != len(header) or "step" not in header:
        return False
    values = dict(zip(header, row))
    if not re.fullmatch(r"\d+", values["step"]):
        return False
    try:
        for key, value in values.items():
            if value and key != "step" and key not in text_fields:
                float(value)
    except ValueError:
        return False
    return True
