"""The workdir's integrity rules: lock, writability, atomic writes, usable checkpoints, torn
metrics rows (docs/RELIABILITY.md)."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from adapt_tf.runs import writers, storage, workdir


def test_workdir_names_every_file_of_a_run():
    files = workdir.Workdir("W")
    assert (files.config, files.metrics, files.tensorboard, files.samples) == (
        "W/operative_config.gin", "W/metrics.csv", "W/tensorboard", "W/samples")
    assert (files.checkpoints, files.best_checkpoints, files.eval, files.training_plot) == (
        "W/checkpoints", "W/checkpoints_best", "W/eval.json", "W/training.png")
    assert (files.export, files.report, files.lock_file) == ("W/export", "W/report", "W/.lock")
    assert [files.checkpoint_directory(kind) for kind in workdir.CHECKPOINT_KINDS] == [
        files.best_checkpoints, files.checkpoints]
    assert files.orphaned(2) == "W/orphaned/2"


def _save_checkpoints(directory, values_per_step):
    """Checkpoints ckpt-N of a `gan` root holding one variable, for N, value in the mapping,
    through a CheckpointManager keeping them all (as the Checkpointer writes them)."""
    module = tf.Module()
    module.weight = tf.Variable(np.zeros(4, np.float32))
    fid = tf.Module()
    fid.best = tf.Variable(np.inf)  # Not model state: inf is legitimate here.
    checkpoint = tf.train.Checkpoint(gan=module, fid=fid)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=10)
    for step, value in values_per_step.items():
        module.weight.assign(np.full(4, value, np.float32))
        manager.save(checkpoint_number=step)


def _value(path):
    return tf.train.load_checkpoint(path).get_tensor("gan/weight/.ATTRIBUTES/VARIABLE_VALUE")


def test_usable_checkpoint_is_the_newest_when_all_are_good(tmp_path):
    _save_checkpoints(tmp_path, {2: 1.0, 4: 2.0, 6: 3.0})
    assert storage.usable_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-6")
    assert not (tmp_path / "rejected").exists()


@pytest.mark.parametrize("fault", ["deleted", "truncated", "garbled", "nonfinite"])
def test_bad_newest_checkpoint_falls_back_and_is_moved_aside(tmp_path, caplog, fault):
    _save_checkpoints(tmp_path, {2: 1.0, 4: 2.0, 6: np.nan if fault == "nonfinite" else 3.0})
    data = tmp_path / "ckpt-6.data-00000-of-00001"
    if fault == "deleted":
        for name in tmp_path.glob("ckpt-6.*"):
            name.unlink()
    elif fault == "truncated":
        data.write_bytes(data.read_bytes()[:5])
    elif fault == "garbled":
        raw = bytearray(data.read_bytes())
        raw[:8] = b"\xff" * 8
        data.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        path = storage.usable_checkpoint(str(tmp_path))
    assert path == str(tmp_path / "ckpt-4")
    np.testing.assert_array_equal(_value(path), np.full(4, 2.0, np.float32))
    assert "ckpt-6" in caplog.text and "unusable" in caplog.text
    # The index now lists only the good ones, so later saves rotate only good checkpoints.
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2",
                                                                               "ckpt-4"]
    assert not list(tmp_path.glob("ckpt-6.*"))
    if fault != "deleted":
        assert (tmp_path / "rejected" / "ckpt-6.index").exists()


def test_no_usable_checkpoint_is_refused_naming_them(tmp_path):
    _save_checkpoints(tmp_path, {2: np.inf, 4: np.nan})
    with pytest.raises(workdir.WorkdirError, match=r"ckpt-4, ckpt-2"):
        storage.usable_checkpoint(str(tmp_path))
    assert storage.usable_checkpoint(str(tmp_path / "empty")) is None


def test_nonfinite_count_counts_nan_and_inf_entries():
    variables = [tf.Variable([1.0, np.nan, np.inf]), tf.Variable([[-np.inf, 0.0]]),
                 tf.Variable([3], dtype=tf.int64)]
    assert storage.nonfinite_count(variables) == 3
    assert storage.nonfinite_count(variables[2:]) == 0


def test_check_writable_fails_before_training_when_checkpoints_cannot_be_written(tmp_path):
    storage.check_writable(str(tmp_path / "fresh"))
    assert (tmp_path / "fresh" / "checkpoints").is_dir()
    assert os.listdir(tmp_path / "fresh" / "checkpoints") == []  # The probe is removed.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "checkpoints").write_text("not a directory")
    with pytest.raises(workdir.WorkdirError, match=r"taken/checkpoints is not a writable"):
        storage.check_writable(str(tmp_path / "taken"))


def test_check_writable_names_a_dangling_symlink_and_its_target(tmp_path):
    (tmp_path / "run").symlink_to(tmp_path / "gone" / "run")
    with pytest.raises(workdir.WorkdirError, match=re.escape(
            f"{tmp_path / 'run'} is a symbolic link to {tmp_path / 'gone' / 'run'}, which does "
            "not exist; create its target, remove the link, or choose another --workdir.")):
        storage.check_writable(str(tmp_path / "run"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_writable_names_a_read_only_checkpoints_dir(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints").chmod(0o555)
    with pytest.raises(workdir.WorkdirError, match="checkpoints is not a writable"):
        storage.check_writable(str(tmp_path))


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "operative_config.gin"
    path.write_text("old")
    storage.write_atomic(str(path), "new = 1\n")
    assert path.read_text() == "new = 1\n"
    assert os.listdir(tmp_path) == ["operative_config.gin"]


def test_lock_is_reentrant_here_and_refuses_another_process(tmp_path):
    with storage.lock(str(tmp_path)):
        with storage.lock(str(tmp_path)):  # The CLI and train() both take it.
            pass
        other = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                from adapt_tf.runs import storage
                with storage.lock({str(tmp_path)!r}):
                    pass
             """)], capture_output=True, text=True, timeout=300,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert other.returncode != 0
        assert f"workdir in use by pid {os.getpid()}" in other.stderr
    with storage.lock(str(tmp_path)):  # Released: free again.
        pass


HEADER = "step,d_loss,g_loss,br,br_skipped,g_density,d_density\r\n"


def test_torn_and_malformed_metrics_rows_are_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.csv"
    path.write_bytes((HEADER + "10,1.0,2.0,0.5,0,0.3,0.3\r\n"
                      + "21\r\n"                            # torn: one field
                      + "20,1.5,x,0.5,0,0.3,0.3\r\n"        # garbled value
                      + "30,1.0,2.0,0.5,0,0.3,0.3\r\n"
                      + "40,1.0,2.0,0.5,0,0.3,0.").encode())  # cut mid-row: no newline
    with caplog.at_level(logging.WARNING):
        header, rows = storage.read_csv_rows(str(path))
    assert header[:2] == ["step", "d_loss"]
    assert [r["step"] for r in rows] == ["10", "30"]
    assert [line in caplog.text for line in ("line 3", "line 4", "line 6")] == [True] * 3
    # A resumed run rewrites the file without them.
    writers._truncate_csv(str(path), writers.MetricsLogger.FIELDS, 30)
    assert path.read_text().splitlines()[1:] == ["10,1.0,2.0,0.5,0,0.3,0.3",
                                                 "30,1.0,2.0,0.5,0,0.3,0.3"]


def test_text_fields_are_kept_only_where_declared(tmp_path):
    path = tmp_path / "masks.csv"
    path.write_text("step,network,dropped,grown,density\n3,generator,4,4,0.3\n"
                    "4,discriminator,8,0,0.2\n6,generator,x,4,0.3\n")
    assert [r["step"] for r in storage.read_csv_rows(str(path))[1]] == []
    rows = storage.read_csv_rows(str(path), text_fields=("network",))[1]
    assert [(r["step"], r["network"]) for r in rows] == [("3", "generator"),
                                                         ("4", "discriminator")]
    writers._truncate_csv(str(path), writers.SampleLogs.MASK_FIELDS, 3, text_fields=("network",))
    assert path.read_text().splitlines() == ["step,network,dropped,grown,density",
                                             "3,generator,4,4,0.3"]


def test_non_utf8_metrics_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(HEADER.encode() + b"10,\xff\xfe,2.0\r\n")
    with pytest.raises(workdir.WorkdirError, match=r"metrics.csv is not UTF-8"):
        storage.read_csv_rows(str(path))


def test_a_previous_runs_files_are_set_aside_together_not_emptied(tmp_path, caplog):
    old_files = {"metrics.csv": HEADER + "10,1.0,2.0,0.5,0,0.3,0.3\r\n", "eval.json": "{}",
                 "operative_config.gin": "DENSITY = 0.3\n", "br.csv": "step\n",
                 "tensorboard/events.out": "e", "samples/step_10.png": "p",
                 "checkpoints_best/ckpt-10.index": "i", "checkpoints/rejected/ckpt-12.index": "r"}
    for name, text in old_files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(text.encode())
    (tmp_path / "notes.txt").write_text("mine")  # not a run file: stays
    with caplog.at_level(logging.WARNING):
        kept = storage.set_aside_previous_run(str(tmp_path))
    assert kept == str(tmp_path / "orphaned" / "1") and str(kept) in caplog.text
    for name, text in old_files.items():
        assert not (tmp_path / name).exists()
        assert (tmp_path / "orphaned" / "1" / name).read_bytes() == text.encode()
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "checkpoints").is_dir()
    assert storage.set_aside_previous_run(str(tmp_path)) is None  # nothing left to move
    (tmp_path / "eval.json").write_text("{}")  # A second orphaned run gets its own folder.
    assert storage.set_aside_previous_run(str(tmp_path)) == str(tmp_path / "orphaned" / "2")
    assert sorted(os.listdir(tmp_path / "orphaned" / "2")) == ["eval.json"]


def test_a_torn_json_record_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"workdir": "W", "fid": ')
    with pytest.raises(workdir.WorkdirError, match=rf"{path} is not valid JSON"):
        storage.read_json(str(path))


def test_fallback_index_keeps_older_checkpoints_in_rotation(tmp_path):
    _save_checkpoints(tmp_path, {1: 1.0, 2: 2.0, 3: 3.0})
    for name in tmp_path.glob("ckpt-3.*"):
        name.unlink()
    assert storage.usable_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-2")
    variable = tf.Module()
    variable.weight = tf.Variable(np.zeros(4, np.float32))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(gan=variable), str(tmp_path),
                                         max_to_keep=3)
    manager.save(checkpoint_number=4)
    assert (tmp_path / "ckpt-1.index").exists()  # three kept: 1, 2, 4
    manager.save(checkpoint_number=5)  # rotates the oldest, which the fallback kept listed
    assert sorted(p.name for p in tmp_path.glob("*.index")) == [
        "ckpt-2.index", "ckpt-4.index", "ckpt-5.index"]


def test_a_killed_saves_temporary_folder_is_removed(tmp_path, caplog):
    _save_checkpoints(tmp_path, {2: 1.0})
    (tmp_path / "ckpt-4_temp").mkdir()
    (tmp_path / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        assert storage.remove_partial_saves(str(tmp_path)) == [str(tmp_path / "ckpt-4_temp")]
    assert not (tmp_path / "ckpt-4_temp").exists() and "ckpt-4_temp" in caplog.text
    assert storage.usable_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-2")


def test_checkpoint_record_reads_the_text_saved_inside_a_checkpoint(tmp_path):
    record = storage.ConfigRecord("DENSITY = 0.3\n")
    path = tf.train.Checkpoint(**{workdir.RECORD_ROOT: record}).write(str(tmp_path / "a"))
    assert storage.checkpoint_record(path) == "DENSITY = 0.3\n"
    restored = storage.ConfigRecord("")
    tf.train.Checkpoint(**{workdir.RECORD_ROOT: restored}).read(path).assert_consumed()
    assert restored.text == "DENSITY = 0.3\n"
    _save_checkpoints(tmp_path / "legacy", {2: 1.0})
    assert storage.checkpoint_record(str(tmp_path / "legacy" / "ckpt-2")) is None


def test_export_and_evaluate_skip_a_bad_newest_checkpoint_and_leave_it_in_place(tmp_path,
                                                                                caplog):
    directory = tmp_path / "checkpoints"
    _save_checkpoints(directory, {2: 1.0, 4: 2.0})
    data = directory / "ckpt-4.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:5])  # truncated
    with caplog.at_level(logging.WARNING):
        assert storage.find_checkpoint(str(tmp_path), "last") == str(directory / "ckpt-2")
        assert storage.find_checkpoint(str(tmp_path)) == str(directory / "ckpt-2")
        assert storage.find_checkpoint(str(tmp_path), str(directory)) == str(directory / "ckpt-2")
    assert "ckpt-4" in caplog.text and "unusable" in caplog.text
    assert (directory / "ckpt-4.index").exists() and not (directory / "rejected").exists()
    _save_checkpoints(tmp_path / "bad", {2: np.nan})
    with pytest.raises(workdir.WorkdirError, match=r"ckpt-2 are unreadable or non-finite\. "):
        storage.usable_checkpoint(str(tmp_path / "bad"), reject=False)
