"""Tests of FID evaluation during and after training: the EvaluateFID callback as train_lib
wires it (cadence, metrics row values, best checkpoint, cached reference statistics) and
`adapt_tf.evaluate` on the resulting workdir, with the tiny stand-in Inception of
tests/inception_stub.py and the tiny gin config's models at 8 channels. To stay fast nothing
is trained: between "iterations" the EMA generator's kernels are rescaled, which changes the
samples (and so the FID) the way training would. No network."""
from __future__ import annotations

import json
import math
import os

import pytest
import evaluated_run
from inception_stub import save_tiny_inception

from adapt_tf import evaluate, evaluation, methods, metrics, train_lib

import tensorflow as tf


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A workdir with FID evaluated at iterations 2, 4 and 5 (the last) on 20 samples."""
    root = tmp_path_factory.mktemp("evaluate")
    inception = save_tiny_inception(root / "inception")
    workdir = str(root / "run")
    bindings = ["train.g_width = 8", "train.d_width = 8", "train.total_steps = 5",
                "train.eval_every = 2", "train.eval_num_samples = 20",
                "train.eval_metric = 'fid'",  # toy_shapes defaults to the toy metric
                f"train.inception_path = '{inception}'"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(root / "cache"))
        run, callback = evaluated_run.build(workdir, bindings, metric="fid", num_samples=20,
                                            inception_path=inception)
    logged = evaluated_run.score_iterations(run, callback)
    return workdir, inception, root / "cache", callback, logged


def test_fid_is_evaluated_logged_and_the_best_checkpoint_kept(evaluated):
    workdir, _, _, callback, logged = evaluated
    assert [record["step"] for record in callback.history] == [2, 4, 5]
    fids = {record["step"]: record["fid"] for record in callback.history}
    assert len(set(fids.values())) == 3 and all(f > 0 for f in fids.values())
    best_step = min(fids, key=fids.get)
    assert (callback.best_fid, callback.best_step) == (fids[best_step], best_step)
    assert {step for step, extra in logged.items() if extra} == {2, 4, 5}
    running_best = math.inf
    for step in (2, 4, 5):
        running_best = min(running_best, fids[step])
        assert logged[step]["fid"] == fids[step]
        assert logged[step]["best_fid"] == running_best
        assert logged[step]["inception_score"] >= 1.0
    best_dir = os.path.join(workdir, "checkpoints_best")
    assert tf.train.latest_checkpoint(best_dir).endswith(f"ckpt-{best_step}")
    assert [n for n in os.listdir(best_dir) if n.endswith(".index")] == [
        f"ckpt-{best_step}.index"]


def test_reference_statistics_are_computed_once_into_the_cache(evaluated):
    _, inception, cache, _, _ = evaluated
    model = metrics.load_inception(inception)
    path = evaluation.reference_cache_path("toy_shapes", inception,
                                           cache_dir=str(cache / "fid_stats"))
    assert os.path.isfile(path) and os.path.basename(path).startswith("toy_shapes_train_32px_")
    (mu, sigma), source = evaluation.fid_reference("toy_shapes", inception=model,
                                                   cache_dir=str(cache / "fid_stats"))
    assert source == path and mu.shape == (8,) and sigma.shape == (8, 8)
    (mu2, _), source2 = evaluation.fid_reference("ignored", inception=None,
                                                 reference_stats=path)
    assert source2 == path and (mu2 == mu).all()


def test_evaluate_rescores_best_and_last_checkpoints(evaluated):
    workdir, _, cache, callback, _ = evaluated
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(cache))
        record = evaluate.evaluate_run(workdir, num_samples=20)
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f) == record
    fids = {r["step"]: r["fid"] for r in callback.history}
    best, last = record["checkpoints"]["best"], record["checkpoints"]["last"]
    assert (best["step"], last["step"]) == (callback.best_step, 5)
    # The rebuilt run restores the same EMA weights; same samples (seed 0) and count as the
    # callback: the same FIDs.
    assert best["fid"] == pytest.approx(fids[callback.best_step], rel=1e-6)
    assert last["fid"] == pytest.approx(fids[5], rel=1e-6)
    assert record["training_best"] == {"fid": pytest.approx(callback.best_fid),
                                       "step": callback.best_step, "num_samples": 20}
    assert record["reference"].startswith(str(cache)) and record["num_samples"] == 20
    assert record["metric"] == "fid"


def test_evaluate_errors_name_the_problem(evaluated, tmp_path):
    workdir = evaluated[0]
    with pytest.raises(ValueError, match="no operative_config.gin"):
        evaluate.evaluate_run(str(tmp_path), num_samples=10)
    with pytest.raises(metrics.InceptionUnavailableError, match="no SavedModel"):
        evaluate.evaluate_run(workdir, num_samples=10, inception_path=str(tmp_path))


def test_evaluation_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="multiple of log_every"):
        train_lib.train(workdir=str(tmp_path), total_steps=4, method=methods.method("dense"),
                        log_every=2, eval_every=3)
    with pytest.raises(ValueError, match="both checkpoint and best_directory"):
        evaluation.EvaluateFID(None, (None, None), every=2, checkpoint=tf.train.Checkpoint())
    with pytest.raises(ValueError, match="at least 10"):
        evaluation.generator_scores(None, inception=None, reference=None, num_samples=5)
