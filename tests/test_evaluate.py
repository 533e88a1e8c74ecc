"""Tests of FID evaluation during and after training: the EvaluateFID callback through
`train_lib.train` (metrics.csv columns, best checkpoint, cached reference statistics) and
`adapt_tf.evaluate` on the finished run, with the tiny stand-in Inception of
tests/inception_stub.py and a 4-iteration static run of the tiny gin config. No network."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import gin
import pytest
from inception_stub import save_tiny_inception

from adapt_tf import callbacks as cb, configurables, evaluate, methods, metrics, train_lib

import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "gin_configs" / "test" / "tiny.gin")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 4-iteration run with FID at iterations 2 and 4 on 10 samples each."""
    root = tmp_path_factory.mktemp("evaluate")
    inception = save_tiny_inception(root / "inception")
    workdir = str(root / "run")
    bindings = ["method.name = 'static_balance'", "train.g_width = 8", "train.d_width = 8",
                "train.total_steps = 4", "train.log_every = 2", "train.checkpoint_every = 2",
                "train.sample_every = 4", "train.eval_every = 2",
                "train.eval_num_samples = 10", f"train.inception_path = '{inception}'"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(root / "cache"))
        gin.clear_config()
        configurables.parse_config([TINY], bindings)
        configurables.train(workdir=workdir)
        with open(os.path.join(workdir, "operative_config.gin"), "w") as f:
            f.write(gin.operative_config_str())
    with open(os.path.join(workdir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    return workdir, inception, root / "cache", rows


def test_fid_is_logged_and_the_best_checkpoint_kept(trained):
    workdir, _, _, rows = trained
    assert [int(r["step"]) for r in rows] == [2, 4]
    fids = [float(r["fid"]) for r in rows]
    assert all(math.isfinite(f) and f > 0 for f in fids)
    assert all(float(r["inception_score"]) >= 1.0 for r in rows)
    assert float(rows[0]["best_fid"]) == fids[0]
    assert float(rows[1]["best_fid"]) == min(fids)
    best_step = 2 + 2 * fids.index(min(fids))
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints_best")).endswith(
        f"ckpt-{best_step}")
    assert sorted(n for n in os.listdir(os.path.join(workdir, "checkpoints_best"))
                  if n.endswith(".index")) == [f"ckpt-{best_step}.index"]


def test_reference_statistics_are_computed_once_into_the_cache(trained):
    _, inception, cache, _ = trained
    model = metrics.load_inception(inception)
    path = cb.reference_cache_path("toy_shapes", inception, cache_dir=str(cache / "fid_stats"))
    assert os.path.isfile(path) and os.path.basename(path).startswith("toy_shapes_train_32px_")
    (mu, sigma), source = cb.fid_reference("toy_shapes", inception=model,
                                           cache_dir=str(cache / "fid_stats"))
    assert source == path and mu.shape == (8,) and sigma.shape == (8, 8)
    (mu2, _), source2 = cb.fid_reference("ignored", inception=None, reference_stats=path)
    assert source2 == path and (mu2 == mu).all()


def test_evaluate_rescores_best_and_last_checkpoints(trained):
    workdir, _, cache, rows = trained
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(cache))
        record = evaluate.evaluate_run(workdir, num_samples=10)
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f) == record
    fids = {int(r["step"]): float(r["fid"]) for r in rows}
    best_step = min(fids, key=fids.get)
    best, last = record["checkpoints"]["best"], record["checkpoints"]["last"]
    assert (best["step"], last["step"]) == (best_step, 4)
    # Same weights, samples (seed 0) and count as the callback: the same FID.
    assert best["fid"] == pytest.approx(fids[best_step], rel=1e-5)
    assert last["fid"] == pytest.approx(fids[4], rel=1e-5)
    assert record["training_best"] == {"fid": pytest.approx(min(fids.values())),
                                       "step": best_step, "num_samples": 10}
    assert record["reference"].startswith(str(cache)) and record["num_samples"] == 10


def test_evaluate_errors_name_the_problem(trained, tmp_path):
    workdir, _, _, _ = trained
    with pytest.raises(ValueError, match="no operative_config.gin"):
        evaluate.evaluate_run(str(tmp_path), num_samples=10)
    with pytest.raises(metrics.InceptionUnavailableError, match="no SavedModel"):
        evaluate.evaluate_run(workdir, num_samples=10, inception_path=str(tmp_path))


def test_evaluation_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="multiple of log_every"):
        train_lib.train(workdir=str(tmp_path), total_steps=4, method=methods.method("dense"),
                        log_every=2, eval_every=3)
    with pytest.raises(ValueError, match="both checkpoint and best_directory"):
        cb.EvaluateFID(None, (None, None), every=2, checkpoint=tf.train.Checkpoint())
    with pytest.raises(ValueError, match="at least 10"):
        cb.generator_scores(None, inception=None, reference=None, num_samples=5)
