"""SIGTERM and SIGINT, sent for real to a training CLI: finish the iteration, save, say so, exit
128 + signal."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapt_tf.runs import storage

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "gin_configs" / "test" / "tiny.gin")


def _wait_for_rows(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    """Until metrics.csv has a row (training is under way), or fail if the run ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        if path.exists() and len(path.read_text().splitlines()) > 1:
            return
        time.sleep(0.5)
    process.kill()
    pytest.fail("training did not log a metrics row in time")


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_the_current_iteration_and_exits_conventionally(tmp_path, signum,
                                                                     exit_code):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         "--gin_bindings=train.total_steps = 100000",
         "--gin_bindings=train.checkpoint_every = 100000", f"--workdir={tmp_path}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    _wait_for_rows(tmp_path / "metrics.csv", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == exit_code, stderr[-3000:]
    assert "Traceback" not in stderr
    match = re.fullmatch(r"saved ckpt-(\d+) at iteration (\d+); rerun to resume",
                         stderr.strip().splitlines()[-1])
    assert match, stderr[-2000:]
    saved, iteration = int(match.group(1)), int(match.group(2))
    assert saved == iteration >= 2  # Without the handler nothing would be saved before 100000.
    checkpoint = storage.usable_checkpoint(str(tmp_path / "checkpoints"))
    assert checkpoint == str(tmp_path / "checkpoints" / f"ckpt-{saved}")
    with open(tmp_path / "metrics.csv") as f:
        assert all(int(r["step"]) <= iteration for r in csv.DictReader(f))
