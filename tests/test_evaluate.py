"""Tests of FID evaluation during and after training: the PeriodicEvaluation callback as train_lib
wires it (cadence, metrics row values, best checkpoint, cached reference statistics) and
`adapt_tf.evaluate` on the resulting workdir, with the tiny stand-in Inception of
tests/inception_stub.py and the tiny gin config's models at 8 channels. To stay fast nothing
is trained: between "iterations" the EMA generator's kernels are rescaled, which changes the
samples (and so the FID) the way training would. No network."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import evaluated_run
from inception_stub import save_tiny_inception

from adapt_tf.runs import configurables, methods, train_lib
from adapt_tf import evaluate
from adapt_tf.evaluation import scorers, metrics

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
    assert (callback.best_score, callback.best_step) == (fids[best_step], best_step)
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
    path = scorers.reference_cache_path("toy_shapes", inception,
                                        cache_dir=str(cache / "fid_stats"))
    assert os.path.isfile(path) and os.path.basename(path).startswith("toy_shapes_train_32px_")
    (mu, sigma), source = scorers.fid_reference("toy_shapes", inception=model,
                                                cache_dir=str(cache / "fid_stats"))
    assert source == path and mu.shape == (8,) and sigma.shape == (8, 8)
    (mu2, _), source2 = scorers.fid_reference("ignored", inception=None,
                                              reference_stats=path)
    assert source2 == path and (mu2 == mu).all()


def test_the_reference_cache_defaults_to_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("ADAPT_TF_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = scorers.reference_cache_path("cifar10", "https://tfhub.dev/inception/1")
    assert os.path.dirname(path) == str(tmp_path / ".cache" / "adapt_tf" / "fid_stats")
    assert os.path.basename(path).startswith("cifar10_train_32px_")
    # Statistics of another Inception input convention are never read: version 2 is TF-GAN's
    # (level - 128) / 128 with pool_3 · W logits (docs/ALGORITHM.md §9).
    assert path.endswith("_p2.npz") and metrics.PIPELINE_VERSION == 2
    monkeypatch.setenv("ADAPT_TF_CACHE_DIR", "")  # empty: the default too
    assert scorers.reference_cache_path("cifar10", "https://tfhub.dev/inception/1") == path


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
    assert record["training_best"] == {"fid": pytest.approx(callback.best_score),
                                       "step": callback.best_step, "num_samples": 20}
    assert record["reference"].startswith(str(cache)) and record["num_samples"] == 20
    assert record["metric"] == "fid" and record["is_logits"] == metrics.IS_FROM_WEIGHT


def test_evaluate_errors_name_the_problem(evaluated, tmp_path):
    workdir = evaluated[0]
    with pytest.raises(ValueError, match="no operative_config.gin"):
        evaluate.evaluate_run(str(tmp_path), num_samples=10)
    with pytest.raises(metrics.InceptionUnavailableError, match="no SavedModel"):
        evaluate.evaluate_run(workdir, num_samples=10, inception_path=str(tmp_path))


def test_evaluation_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="multiple of log_every"):
        train_lib.train(train_lib.RunSpec(workdir=str(tmp_path), total_steps=4,
                                          method=methods.method("dense"), log_every=2,
                                          eval_every=3))
    with pytest.raises(ValueError, match="both checkpoint and best_directory"):
        scorers.PeriodicEvaluation(None, every=2, checkpoint=tf.train.Checkpoint())
    with pytest.raises(ValueError, match="at least 10"):
        scorers.generator_scores(None, inception=None, reference=None, num_samples=5)


# ------------------------------------------------------------------- the test-set evaluation


def _test_split_statistics(model):
    """(mu, sigma) of the stand-in Inception's features of the whole toy_shapes test split,
    computed here without `metrics.reference_statistics` or its cache."""
    from adapt_tf import data

    images = next(iter(data.make_dataset("toy_shapes", split="test", batch_size=1200,
                                         flip=False)))
    return metrics.statistics(model.activations(images.numpy(), batch_size=100)[0])


def _hand_fid_test(spec, checkpoint, model, test_stats, num_samples):
    """FID against the test split of the EMA samples (seed 0) of `checkpoint` of the run of
    `spec` (a `train_lib.RunSpec`), by hand."""
    run = train_lib.build_run(spec)
    run.checkpointer.restore(checkpoint)
    images = run.gan.sample(num_samples, seed=0, training=True, batch_size=100)
    mu, sigma = metrics.statistics(model.activations(images, batch_size=100)[0])
    return metrics.frechet_distance(mu, sigma, *test_stats)


def test_the_test_reference_is_the_test_split_cached_apart(evaluated):
    _, inception, cache, _, _ = evaluated
    model = metrics.load_inception(inception)
    cache_dir = str(cache / "fid_stats")
    (mu, sigma), path = scorers.fid_reference("toy_shapes", inception=model,
                                              cache_dir=cache_dir, split="test")
    assert os.path.basename(path).startswith("toy_shapes_test_32px_")
    assert path == scorers.reference_cache_path("toy_shapes", inception, cache_dir=cache_dir,
                                                split="test")
    hand_mu, hand_sigma = _test_split_statistics(model)
    np.testing.assert_allclose(mu, hand_mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sigma, hand_sigma, rtol=1e-9, atol=1e-12)
    (train_mu, _), _ = scorers.fid_reference("toy_shapes", inception=model,
                                             cache_dir=cache_dir)
    assert np.abs(train_mu - mu).max() > 1e-4  # not the training split's


def test_evaluate_with_test_adds_the_official_final_test(evaluated):
    workdir, inception, cache, callback, _ = evaluated
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(cache))
        record = evaluate.evaluate_run(workdir, num_samples=20, test=True)
        model = metrics.load_inception(inception)
        test_stats = _test_split_statistics(model)
        best = record["checkpoints"]["best"]
        hand = _hand_fid_test(configurables.read_run_config(workdir).run_spec(),
                              best["checkpoint"], model, test_stats, 20)
        again = evaluate.evaluate_run(workdir, num_samples=20)  # without test: kept
    entry = record["test"]
    assert entry["checkpoint_kind"] == "best" and entry["step"] == callback.best_step
    assert {key: entry[key] for key in best} == best
    assert entry["fid"] == pytest.approx(callback.best_score, rel=1e-6)
    assert entry["fid_test"] == pytest.approx(hand, rel=1e-6)
    assert abs(entry["fid_test"] - entry["fid"]) > 1e-3 * entry["fid"]
    assert (entry["trained_steps"], entry["num_samples"], entry["metric"], entry["seed"]) == (
        5, 20, "fid", 0)
    assert entry["test_split"] == record["test_split"] == "test"
    assert os.path.basename(entry["test_reference"]).startswith("toy_shapes_test_32px_")
    assert all("fid_test" in scores for scores in record["checkpoints"].values())
    assert again["test"] == entry and "fid_test" not in again["checkpoints"]["last"]
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f) == again


def test_evaluate_reads_the_given_test_statistics(evaluated, tmp_path):
    workdir, inception, cache, callback, _ = evaluated
    model = metrics.load_inception(inception)
    mu, sigma = _test_split_statistics(model)
    stats = str(tmp_path / "test_stats.npz")
    metrics.save_statistics(stats, mu + 0.5, sigma)  # not the cached test split's
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(cache))
        record = evaluate.evaluate_run(workdir, num_samples=20, test=True,
                                       test_reference_stats=stats)
        best = record["checkpoints"]["best"]
        hand = _hand_fid_test(configurables.read_run_config(workdir).run_spec(),
                              best["checkpoint"], model, (mu + 0.5, sigma), 20)
    assert record["test"]["test_reference"] == record["test_reference"] == stats
    assert record["test"]["fid_test"] == pytest.approx(hand, rel=1e-6)


def _train_tiny(workdir, inception, *bindings):
    import gin

    gin.clear_config()
    configurables.parse_config([evaluated_run.TINY], [
        "train.g_width = 8", "train.d_width = 8", "train.eval_num_samples = 20",
        "train.eval_metric = 'fid'", f"train.inception_path = '{inception}'", *bindings])
    return configurables.train(workdir=str(workdir))


def test_test_eval_scores_the_best_checkpoint_at_the_end_of_training(evaluated, tmp_path,
                                                                     monkeypatch):
    _, inception, cache, _, _ = evaluated
    monkeypatch.setenv("ADAPT_TF_CACHE_DIR", str(cache))
    gan = _train_tiny(tmp_path, inception, "train.eval_every = 2", "train.test_eval = True")
    fids, entry = evaluated_run.final_test(tmp_path)
    best_step = min(fids, key=fids.get)
    assert (entry["checkpoint_kind"], entry["step"], entry["trained_steps"]) == (
        "best", best_step, 8)
    assert entry["checkpoint"].endswith(os.path.join("checkpoints_best", f"ckpt-{best_step}"))
    # The best checkpoint's samples are those the training-time evaluation scored.
    # metrics.csv holds 6 significant digits: a relative error up to 5e-6 on top.
    assert entry["fid"] == pytest.approx(fids[best_step], rel=6e-6)
    model = metrics.load_inception(inception)
    hand = _hand_fid_test(configurables.current_run_config().run_spec(workdir=str(tmp_path)),
                          entry["checkpoint"], model, _test_split_statistics(model), 20)
    assert entry["fid_test"] == pytest.approx(hand, rel=1e-6)
    # The model handed back is the trained one (the last checkpoint restored again).
    assert gan.iteration == 8
    last = scorers.generator_scores(gan, inception=model, reference=entry["reference"],
                                    num_samples=20)
    assert last["fid"] == pytest.approx(fids[8], rel=1e-6)
    # Rerun finished: the entry of this training is there, nothing is scored again.
    monkeypatch.setattr(train_lib, "score_checkpoints", None)
    _train_tiny(tmp_path, inception, "train.eval_every = 2", "train.test_eval = True")
    with open(tmp_path / "eval.json") as f:
        assert json.load(f)["test"] == entry


def test_a_finished_run_rerun_with_test_eval_gets_its_entry_only(evaluated, tmp_path,
                                                                 monkeypatch):
    _, inception, cache, _, _ = evaluated
    monkeypatch.setenv("ADAPT_TF_CACHE_DIR", str(cache))
    _train_tiny(tmp_path, inception, "train.total_steps = 2")
    metrics_csv = (tmp_path / "metrics.csv").read_bytes()
    assert not (tmp_path / "eval.json").exists()
    gan = _train_tiny(tmp_path, inception, "train.total_steps = 2", "train.test_eval = True")
    assert (tmp_path / "metrics.csv").read_bytes() == metrics_csv  # nothing trained
    with open(tmp_path / "eval.json") as f:
        entry = json.load(f)["test"]
    # No evaluation during training, so no best checkpoint: the last one is tested.
    assert (entry["checkpoint_kind"], entry["step"], entry["trained_steps"]) == ("last", 2, 2)
    model = metrics.load_inception(inception)
    scores = scorers.generator_scores(gan, inception=model, reference=entry["reference"],
                                      num_samples=20)
    assert entry["fid"] == pytest.approx(scores["fid"], rel=1e-6)


def test_test_eval_arguments_are_checked_before_training(tmp_path):
    dense = methods.method("dense")

    def train(**fields):
        train_lib.train(train_lib.RunSpec(total_steps=2, method=dense, **fields))

    with pytest.raises(ValueError, match="test_reference_stats='t.npz' is read only by"):
        train(workdir=str(tmp_path), test_reference_stats="t.npz")
    with pytest.raises(ValueError, match="metric now 'toy'"):
        train(workdir=str(tmp_path), test_eval=True, test_reference_stats="t.npz")
    with pytest.raises(ValueError, match="test_eval='yes' must be True or False"):
        train(workdir=str(tmp_path), test_eval="yes")
    with pytest.raises(metrics.InceptionUnavailableError):
        train(workdir=str(tmp_path / "run"), test_eval=True, eval_metric="fid",
              inception_path=str(tmp_path))
    assert not os.path.exists(tmp_path / "run" / "checkpoints") or not os.listdir(
        tmp_path / "run" / "checkpoints")  # it failed before training
    with pytest.raises(ValueError, match=r"--metric=fid"):
        scorers.scorer("toy", dataset="toy_shapes", test=True, test_reference_stats="t.npz")
    with pytest.raises(ValueError, match="test-set evaluation only"):
        scorers.scorer("fid", dataset="toy_shapes", test_reference_stats="t.npz")


def test_cli_on_a_missing_workdir_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "adapt_tf.evaluate", f"--workdir={tmp_path / 'missing'}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Cannot evaluate {tmp_path / 'missing'}: ")
    assert "operative_config.gin" in last
