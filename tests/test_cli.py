"""Every CLI's `--help` lists its own flags, and TensorFlow's C++ log lines stay out of its
output unless `--verbose` (or a TF_CPP_MIN_LOG_LEVEL the user set)."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from adapt_tf import cli

# A C++ log line of TensorFlow / absl: "I0000 00:00:1796504265.005481  5156 port.cc:153] ...",
# not a Python absl line ("I1205 21:41:09.897963 1397... train.py:84] ...").
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+\.(?:cc|h):\d+\]", re.M)

CLI_FLAGS = {
    "adapt_tf.train": ["--gin_file", "--gin_bindings", "--workdir", "--[no]debug"],
    "adapt_tf.evaluate": ["--workdir", "--num_samples", "--metric", "--[no]test"],
    "adapt_tf.export": ["--workdir", "--checkpoint", "--output_dir", "--[no]discriminator",
                        "--[no]tflite"],
    "adapt_tf.flops": ["--gin_file", "--convention", "--densities"],
    "adapt_tf.report": ["--output_dir"],
}


@pytest.mark.parametrize("argv, expected", [
    ([], False), (["--verbose"], True), (["-verbose"], True), (["--verbose=true"], True),
    (["--verbose=1"], True), (["--verbose=False"], False), (["--verbose", "--noverbose"], False),
    (["--noverbose", "--verbose"], True), (["--verbose_thing"], False), (["verbose"], False)])
def test_verbose_reads_absl_spellings_and_the_last_one_wins(argv, expected):
    assert cli.verbose(["prog", *argv]) is expected


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != cli.LOG_LEVEL_VARIABLE}
    return {**env, "CUDA_VISIBLE_DEVICES": "", **extra}


def _help_outputs(argv_tail: list[str], env: dict[str, str]) -> dict[str, str]:
    """{module: stdout + stderr of `python -m module --help ...`}, run side by side."""
    processes = {module: subprocess.Popen([sys.executable, "-m", module, "--help", *argv_tail],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, env=env) for module in CLI_FLAGS}
    return {module: process.communicate(timeout=300)[0] for module, process in processes.items()}


def test_every_cli_help_lists_its_own_flags_and_no_cpp_log_lines():
    for module, text in _help_outputs([], _environment()).items():
        listed = set(re.findall(r"^\s+(--[\[\]\w]+)", text, re.M))
        missing = [flag for flag in [*CLI_FLAGS[module], "--[no]verbose"] if flag not in listed]
        assert not missing, f"{module} --help does not list {missing}:\n{text}"
        assert not CPP_LOG_LINE.search(text), f"{module} printed C++ log lines:\n{text}"


def test_verbose_or_a_user_level_shows_tensorflows_start_up_lines():
    # export.py imports TensorFlow at the top, so even --help shows its start-up lines.
    for argv, env in ((["--verbose"], _environment()),
                      ([], _environment(**{cli.LOG_LEVEL_VARIABLE: "0"}))):
        text = subprocess.run([sys.executable, "-m", "adapt_tf.export", "--help", *argv],
                              capture_output=True, text=True, env=env, timeout=300)
        assert CPP_LOG_LINE.search(text.stderr), text.stderr


def test_hide_info_from_drops_only_info_records_of_files_under_its_directory(tmp_path):
    hide = cli.HideInfoFrom(str(tmp_path / "gin"))

    def record(level: int, path) -> logging.LogRecord:
        return logging.LogRecord("absl", level, str(path), 1, "message", None, None)

    assert not hide.filter(record(logging.INFO, tmp_path / "gin" / "config.py"))
    assert not hide.filter(record(logging.DEBUG, tmp_path / "gin" / "sub" / "reader.py"))
    assert hide.filter(record(logging.WARNING, tmp_path / "gin" / "config.py"))
    assert hide.filter(record(logging.INFO, tmp_path / "adapt_tf" / "train.py"))
    assert hide.filter(record(logging.INFO, tmp_path / "gin_other" / "config.py"))


def test_gins_info_lines_show_only_with_verbose(tmp_path):
    # A bad binding fails after gin has read the config files (one INFO line per file).
    argv = [sys.executable, "-m", "adapt_tf.train", "--gin_file=gin_configs/quickstart.gin",
            "--gin_bindings=train.no_such_parameter = 1", f"--workdir={tmp_path / 'run'}"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    outputs = [subprocess.run(argv + extra, capture_output=True, text=True, timeout=300,
                              cwd=root, env=_environment()) for extra in ([], ["--verbose"])]
    quiet, verbose = (result.stdout + result.stderr for result in outputs)
    assert all(result.returncode != 0 for result in outputs)
    assert "no_such_parameter" in quiet and "no_such_parameter" in verbose
    assert "system_path_file_exists" not in quiet
    assert "system_path_file_exists:base.gin" in verbose
