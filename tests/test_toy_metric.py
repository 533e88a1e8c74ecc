"""Tests of adapt_tf.evaluation.toy_metric (the offline toy_shapes metric) and its wiring into
training and `adapt_tf.evaluate`.

The metric maths runs on a hand-made stand-in classifier whose logits are pixels of the image
(so every probability is set by hand) and whose features are the per-channel image means.
The cache tests train the real network on 240 images for one epoch. The training and evaluate
tests use the tiny gin config's models at 8 channels, that small classifier recipe, tfds mock
data, and temporary ADAPT_TF_CACHE_DIR / TFDS_DATA_DIR. No network, no Inception.
"""
from __future__ import annotations

import csv
import functools
import glob
import json
import logging
import math
import os
import threading
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tf_keras as keras

import evaluated_run
from adapt_tf.evaluation import classifier_metric, scorers, metrics, toy_metric
from adapt_tf.runs import configurables
from adapt_tf import evaluate
from adapt_tf.data.datasets import toy_shapes

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "gin_configs" / "test" / "tiny.gin")
SMALL = toy_metric.Recipe(epochs=1, batch_size=48, num_train_examples=240)
LOGIT_SCALE = 20.0


# ------------------------------------------------------------------------- stand-in classifier


def _stand_in() -> toy_metric.ToyClassifier:
    """logits[k] = 20 * red value of pixel (0, k); features = mean of each channel."""
    images = keras.Input([32, 32, 3])
    features = keras.layers.GlobalAveragePooling2D(name="features")(images)
    # 0 * features: keeps the "features" layer in the model without changing the logits.
    logits = keras.layers.Lambda(
        lambda x: LOGIT_SCALE * x[0][:, 0, :12, 0] + 0.0 * x[1][:, :1])([images, features])
    return toy_metric.ToyClassifier(keras.Model(images, logits))


def _level(k: int) -> float:
    """uint8 level k in [-1, 1]: unchanged by the metric's quantisation."""
    return k / 127.5 - 1.0


def _image(top: int, *, gap: int, second: int | None = None) -> np.ndarray:
    """An image whose logit `top` (and `second`, if given) is 20 * _level(128 + gap) and the
    others 20 * _level(128): p(top) = 1 / (1 + 11 exp(-20 gap / 127.5)) without `second`."""
    image = np.full([32, 32, 3], _level(128), np.float32)
    image[0, top, 0] = _level(128 + gap)
    if second is not None:
        image[0, second, 0] = _level(128 + gap)
    return image


def test_confident_share_and_coverage_match_a_hand_count():
    # gap 127: p = 1 / (1 + 11 e^-19.9) ~ 1; gap 33: p = 0.943 (confident); gap 26: p = 0.843
    # (not); two equal top logits: p = 0.5 (not).
    groups = [(100, dict(top=0, gap=127)), (2, dict(top=1, gap=33)), (1, dict(top=2, gap=127)),
              (10, dict(top=3, gap=26)), (3, dict(top=4, gap=33)),
              (84, dict(top=5, second=6, gap=127))]
    images = np.stack([_image(**kw) for count, kw in groups for _ in range(count)])
    assert len(images) == 200
    scores = toy_metric.toy_scores(images, classifier=_stand_in(),
                                   reference=(np.zeros(3), np.eye(3)), batch_size=64)
    # Confident: 100 + 2 + 1 + 3 = 106 of 200. Covered (count * 100 >= 200, i.e. >= 2 images):
    # classes 0, 1 (exactly 1 %) and 4; class 2 has 1 image, class 3 none confident.
    assert scores["confident_share"] == 106 / 200
    assert scores["class_counts"] == [100, 2, 1, 0, 3] + [0] * 7
    assert scores["class_coverage"] == 3
    probabilities = {gap: 1 / (1 + 11 * math.exp(-LOGIT_SCALE * gap / 127.5))
                     for gap in (33, 26)}
    assert probabilities[33] > toy_metric.CONFIDENCE > probabilities[26] + 0.05


def test_class_scores_threshold_is_one_percent_of_n():
    logits = np.full([300, 12], -10.0)
    counts = [280, 3, 2, 15]  # 1 % of 300 is 3: classes 0, 1, 3 covered
    logits[np.arange(300), np.repeat(np.arange(4), counts)] = 10.0
    scores = toy_metric.class_scores(logits)
    assert scores["class_coverage"] == 3 and scores["confident_share"] == 1.0
    assert toy_metric.class_scores(logits[:299])["class_coverage"] == 3  # 2.99 needed: still 3
    with pytest.raises(ValueError, match=r"\[N >= 1, K\]"):
        toy_metric.class_scores(np.zeros(12))


def test_toy_fid_is_zero_against_itself_and_the_closed_form_against_a_shift():
    rng = np.random.default_rng(0)
    levels = rng.integers(64, 192, size=(300, 3))  # one flat colour per image
    images = np.broadcast_to(_level(levels)[:, None, None, :].astype(np.float32),
                             (300, 32, 32, 3)).copy()
    classifier = _stand_in()
    features, _ = classifier.activations(images)
    # Float32 average pooling of 1024 equal values in [-1, 1]: error <= 1024 * 2^-24 < 1e-4.
    np.testing.assert_allclose(features, _level(levels), atol=1e-4)
    reference = metrics.statistics(features)
    assert toy_metric.toy_scores(images, classifier=classifier,
                                 reference=reference)["toy_fid"] == pytest.approx(0, abs=1e-9)
    shift = np.array([25, -10, 0])
    shifted = np.broadcast_to(_level(levels + shift)[:, None, None, :].astype(np.float32),
                              images.shape)
    # Same covariance, means apart by d = shift / 127.5: the distance is |d|^2 = 0.0446. With
    # feature errors e <= 1e-4 per value (above) it is off by at most 2 |d| |e| + |e|^2 (the
    # covariance term is second order in e): < 1e-4.
    expected = float(np.sum((shift / 127.5) ** 2))
    assert toy_metric.toy_scores(shifted, classifier=classifier,
                                 reference=reference)["toy_fid"] == pytest.approx(
        expected, abs=1e-4)


def test_classifier_rejects_other_image_sizes_and_models_without_features():
    with pytest.raises(ValueError, match=r"\(32, 32\)"):
        _stand_in()(np.zeros([2, 16, 16, 3], np.float32))
    with pytest.raises(ValueError, match="no layer named 'features'"):
        toy_metric.ToyClassifier(keras.Sequential([keras.Input([32, 32, 3]),
                                                   keras.layers.Flatten()]))
    with pytest.raises(ValueError, match="num_train_examples"):
        toy_metric.Recipe(num_train_examples=20000)


# ------------------------------------------------------------------------------------ cache


def test_noise_outliers_are_seeded_images_in_range():
    first = classifier_metric._noise_images(6, tf.constant([0, 3], tf.int64)).numpy()
    again = classifier_metric._noise_images(6, tf.constant([0, 3], tf.int64)).numpy()
    other = classifier_metric._noise_images(6, tf.constant([0, 4], tf.int64)).numpy()
    assert first.shape == (6, 32, 32, 3) and -1 <= first.min() and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # Upsampled from at most 16x16: neighbouring pixels differ by at most half the range.
    assert np.abs(np.diff(first, axis=1)).max() <= 1.0 + 1e-6


@pytest.fixture
def training_count(monkeypatch):
    """Counts calls of toy_metric.train_network."""
    calls = []
    train = toy_metric.train_network

    def counted(recipe):
        calls.append(recipe)
        return train(recipe)

    monkeypatch.setattr(toy_metric, "train_network", counted)
    return calls


def test_training_is_deterministic():
    first, second = toy_metric.train_network(SMALL), toy_metric.train_network(SMALL)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = toy_metric.train_network(toy_metric.Recipe(**{**SMALL.__dict__, "seed": 1}))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


def test_cache_loads_the_second_time_and_retrains_for_a_new_dataset_version(
        tmp_path, monkeypatch, training_count, caplog):
    monkeypatch.setenv("ADAPT_TF_CACHE_DIR", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="absl"):
        classifier, reference = toy_metric.load_classifier(recipe=SMALL)
    said = [record.getMessage() for record in caplog.records]  # what runs, how long it took
    assert any(m.startswith("Training the toy_shapes classifier (1 epochs over 240 images")
               for m in said), said
    assert f"Trained the toy classifier in {reference.train_seconds:.0f} s (test accuracy " \
           f"{reference.test_accuracy:.3f}, floor {reference.floor:.2f})." in said
    path = toy_metric.classifier_path(recipe=SMALL)
    assert path.startswith(str(tmp_path / "toy_classifier" / "toy_shapes-1.0.0-"))
    assert reference.path == path == classifier.source and len(training_count) == 1
    again, reference2 = toy_metric.load_classifier(recipe=SMALL)
    assert len(training_count) == 1
    for a, b in zip(classifier._model.get_weights(), again._model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert reference2.floor == reference.floor
    np.testing.assert_array_equal(reference2.sigma, reference.sigma)

    monkeypatch.setattr(toy_shapes.ToyShapes, "VERSION", tfds.core.Version("1.0.1"))
    _, reference3 = toy_metric.load_classifier(recipe=SMALL)
    assert len(training_count) == 2
    assert os.path.basename(reference3.path).startswith("toy_shapes-1.0.1-")
    assert os.path.isfile(path)  # the old version's classifier is left alone


def test_reference_holds_the_real_splits_scores(tmp_path):
    classifier, reference = toy_metric.load_classifier(recipe=SMALL, cache_dir=str(tmp_path))
    test_images, labels = next(toy_shapes.draw_examples(1, 1200, chunk=1200))
    test_images = test_images.astype(np.float32) / 127.5 - 1.0
    test = toy_metric.toy_scores(test_images, classifier=classifier,
                                 reference=(reference.mu, reference.sigma))
    assert test["toy_fid"] == pytest.approx(0.0, abs=1e-6)
    assert test["confident_share"] == reference.test_confident_share
    assert test["class_coverage"] == reference.test_coverage
    _, logits = classifier.activations(test_images)
    assert reference.test_accuracy == np.mean(logits.argmax(axis=1) == labels)
    train_split = (images.astype(np.float32) / 127.5 - 1.0
                   for images, _ in toy_shapes.draw_examples(0, 12000, chunk=500))
    floor = toy_metric.toy_scores(train_split, classifier=classifier,
                                  reference=(reference.mu, reference.sigma))["toy_fid"]
    assert reference.floor == pytest.approx(floor, rel=1e-6) and floor > 0


def test_concurrent_loads_train_once(tmp_path, training_count):
    results, errors = [], []

    def load():
        try:
            results.append(toy_metric.load_classifier(recipe=SMALL, cache_dir=str(tmp_path)))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2 and len(training_count) == 1
    assert results[0][1].floor == results[1][1].floor
    assert [name for name in os.listdir(tmp_path) if not name.endswith(".lock")] == [
        os.path.basename(results[0][1].path)]


# ----------------------------------------------------------------- training and evaluate.py


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """ADAPT_TF_CACHE_DIR, TFDS_DATA_DIR in a temporary folder; load_classifier() uses SMALL."""
    root = tmp_path_factory.mktemp("toy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPT_TF_CACHE_DIR", str(root / "cache"))
        patch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
        patch.setattr(toy_metric, "load_classifier",
                      functools.partial(toy_metric.load_classifier, recipe=SMALL))
        yield root, toy_metric.load_classifier()


def _tensorboard_tags(workdir) -> set[str]:
    tags = set()
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_training_with_eval_every_writes_the_toy_columns(small_classifier):
    root, (_, reference) = small_classifier
    workdir = root / "trained"
    gin.clear_config()
    configurables.parse_config([TINY], ["train.g_width = 8", "train.d_width = 8",
                                        "train.eval_every = 4", "train.eval_num_samples = 30",
                                        "train.test_eval = True"])
    with tfds.testing.mock_data(num_examples=16):
        configurables.train(workdir=str(workdir))
    with open(workdir / "metrics.csv") as f:
        rows = {int(row["step"]): row for row in csv.DictReader(f)}
    assert sorted(rows) == [2, 4, 6, 8]
    assert set(scorers.COLUMNS["toy"].fields) <= set(rows[2]) and "fid" not in rows[2]
    assert all(rows[step]["toy_fid"] == "" for step in (2, 6))
    toy_fids = {step: float(rows[step]["toy_fid"]) for step in (4, 8)}
    assert all(math.isfinite(value) and value > 0 for value in toy_fids.values())
    for step in (4, 8):
        assert float(rows[step]["toy_fid_floor"]) == pytest.approx(reference.floor)
        assert 0 <= int(rows[step]["class_coverage"]) <= 12
        assert 0.0 <= float(rows[step]["confident_share"]) <= 1.0
    assert float(rows[4]["best_toy_fid"]) == pytest.approx(toy_fids[4])
    assert float(rows[8]["best_toy_fid"]) == pytest.approx(min(toy_fids.values()))
    best_step = min(toy_fids, key=toy_fids.get)
    assert tf.train.latest_checkpoint(workdir / "checkpoints_best").endswith(f"ckpt-{best_step}")
    assert {"toy_fid", "toy_fid_floor", "class_coverage", "confident_share",
            "best_toy_fid"} <= _tensorboard_tags(workdir)
    # train.test_eval: the toy metric's reference is the test split already, so the final
    # test rescores the best checkpoint on the same samples the training evaluation drew.
    with open(workdir / "eval.json") as f:
        entry = json.load(f)["test"]
    assert (entry["metric"], entry["checkpoint_kind"], entry["step"], entry["trained_steps"],
            entry["test_split"]) == ("toy", "best", best_step, 8, "test")
    # metrics.csv holds 6 significant digits: a relative rounding error of at most 5e-6.
    assert entry["toy_fid"] == pytest.approx(toy_fids[best_step], rel=5e-6)
    assert entry["class_coverage"] == int(rows[best_step]["class_coverage"])
    assert entry["classifier"] == reference.path and "fid_test" not in entry


@pytest.fixture(scope="module")
def evaluated(small_classifier):
    """A workdir whose EMA generator was scored with the toy metric at iterations 2, 4 and 5
    (the last), on 40 samples, by the callback train_lib builds (no training: the EMA kernels
    are rescaled between "iterations", which changes the samples as training would)."""
    root, _ = small_classifier
    workdir = str(root / "evaluated")
    run, callback = evaluated_run.build(
        workdir, ["train.g_width = 8", "train.d_width = 8", "train.total_steps = 5",
                  "train.eval_every = 2", "train.eval_num_samples = 40"],
        metric=scorers.evaluation_metric(None, "toy_shapes"), num_samples=40)
    evaluated_run.score_iterations(run, callback)
    return workdir, callback


def test_evaluate_reports_the_toy_metric_offline(evaluated, small_classifier):
    workdir, callback = evaluated
    _, (_, reference) = small_classifier
    assert callback.scoring.metric == "toy"
    assert [record["step"] for record in callback.history] == [2, 4, 5]
    toy_fids = {record["step"]: record["toy_fid"] for record in callback.history}
    assert len(set(toy_fids.values())) == 3
    record = evaluate.evaluate_run(workdir, num_samples=40)
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f) == record
    assert record["metric"] == "toy" and "inception" not in record
    assert "test_split" not in record and "test" not in record  # no --test
    assert record["classifier"] == reference.path and "classifier" not in record["real_data"]
    assert record["real_data"]["toy_fid_floor"] == reference.floor
    assert record["real_data"]["test_coverage"] == reference.test_coverage
    best, last = record["checkpoints"]["best"], record["checkpoints"]["last"]
    assert best["step"] == min(toy_fids, key=toy_fids.get) == callback.best_step
    assert last["step"] == 5
    # Same weights, same samples (seed 0) and count as the callback: the same scores.
    assert best["toy_fid"] == pytest.approx(toy_fids[best["step"]], rel=1e-6)
    assert last["toy_fid"] == pytest.approx(toy_fids[5], rel=1e-6)
    assert last["class_counts"] == callback.history[-1]["class_counts"]
    assert last["toy_fid_floor"] == reference.floor
    assert record["training_best"] == {"toy_fid": pytest.approx(callback.best_score),
                                       "step": callback.best_step, "num_samples": 40}


def test_metric_choice_and_its_errors(evaluated):
    assert scorers.evaluation_metric(None, "toy_shapes") == "toy"
    # Other labelled data: the offline classifier metric unless Inception is configured.
    assert scorers.evaluation_metric(None, "cifar10") == "classifier"
    assert scorers.evaluation_metric(None, "cifar10", inception_path="/i") == "fid"
    assert scorers.evaluation_metric(None, "stl10", labelled=False) == "fid"
    assert scorers.evaluation_metric("fid", "toy_shapes") == "fid"
    with pytest.raises(ValueError, match="'stl10' has no labels, so there is no classifier "
                                         "metric for it; unlabelled data is scored by Incept"):
        scorers.evaluation_metric("classifier", "stl10", labelled=False)
    with pytest.raises(ValueError, match="toy_shapes samples only, not 'cifar10'"):
        scorers.evaluation_metric("toy", "cifar10")
    with pytest.raises(ValueError, match="Unknown evaluation metric 'inception'"):
        scorers.evaluation_metric("inception", "toy_shapes")
    with pytest.raises(ValueError, match="--metric=fid"):
        evaluate.evaluate_run(evaluated[0], num_samples=40, inception_path="/somewhere")
    with pytest.raises(ValueError, match="at least 2"):
        scorers.toy_generator_scores(None, classifier=None, reference=None, num_samples=1)
