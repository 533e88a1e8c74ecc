"""Tests of scripts/inception_change.py on the stand-in Inception: its "new" scores are what
`adapt_tf.evaluation.metrics` computes, its "old" ones the pre-version-2 convention, transcribed
here."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from script_module import load_script

from adapt_tf.evaluation import metrics
from inception_stub import SIZE, TinyInception, save_tiny_inception

_PATH = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "inception_change.py"


@pytest.fixture(scope="module")
def script():
    return load_script("inception_change")


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    return save_tiny_inception(tmp_path_factory.mktemp("inception") / "tiny")


def _levels(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


def test_old_and_new_scores_side_by_side(script, stub):
    model = metrics.load_inception(stub)
    samples = script.as_unit_range(_levels(40, 0))
    reference = script.as_unit_range(_levels(60, 1))
    scores = script.compare(model, samples, reference, splits=4, batch_size=16)
    new = metrics.compute_fid_and_is(samples, metrics.statistics(
        model.activations(reference)[0]), model=model, splits=4)
    assert scores["new"] == pytest.approx(new, rel=1e-9)
    # The old input at 8 px (no resize): level / 127.5 - 1; IS from pool_3 · v + b.
    inner = TinyInception()

    def old(images):
        flat = (_as_levels(images) / 127.5 - 1.0).reshape(len(images), -1)
        pool = np.tanh(flat @ inner.w.numpy().astype(np.float64))
        return pool, pool @ inner.v.numpy() + inner.b.numpy()

    pool, logits = old(samples)
    assert scores["old"]["is_mean"] == pytest.approx(
        metrics.inception_score(logits, from_logits=True, splits=4)[0], rel=1e-4)
    fid = metrics.frechet_distance(*metrics.statistics(pool),
                                   *metrics.statistics(old(reference)[0]))
    # float32 pool_3 (tanh of 192-term sums) against float64: FID agrees to 1e-4 relative.
    assert scores["old"]["fid"] == pytest.approx(fid, rel=1e-4)
    assert scores["change"]["is_mean"] == pytest.approx(
        scores["new"]["is_mean"] - scores["old"]["is_mean"])
    assert abs(scores["change"]["is_mean"]) > 1e-3  # the stand-in's bias moves it


def _as_levels(images):
    return np.round((images.astype(np.float64) + 1.0) * 127.5)


def test_the_command_line_prints_both_against_fixed_statistics(stub, tmp_path):
    np.save(tmp_path / "s.npy", _levels(30, 2))
    mu, sigma = metrics.statistics(np.random.default_rng(3).normal(size=(50, 8)))
    metrics.save_statistics(tmp_path / "r.npz", mu, sigma)
    out = subprocess.run([sys.executable, str(_PATH), f"--inception_path={stub}",
                          f"--samples={tmp_path / 's.npy'}", f"--reference={tmp_path / 'r.npz'}",
                          "--splits=3"], check=True, capture_output=True, text=True).stdout
    printed = json.loads(out[out.index("{"):])
    assert printed["num_samples"] == 30 and printed["is_logits (new)"] == metrics.IS_FROM_WEIGHT
    assert set(printed["old"]) == set(printed["new"]) == {"fid", "is_mean", "is_std"}
