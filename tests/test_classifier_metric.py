"""Tests of adapt_tf.evaluation.classifier_metric: each score against a hand computation on
crafted logits
and features, the accuracy threshold and the refusal, the network at every size, the cache
keyed by the dataset's fingerprint, and `python -m adapt_tf.evaluate --metric=classifier` on a
run trained on a folder of generated PNGs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tf_keras as keras

from adapt_tf.evaluation import classifier_metric as C, scorers, toy_metric
from adapt_tf import data
from image_data import class_folder

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "gin_configs" / "test" / "tiny.gin")
FAST = C.Recipe(epochs=3, batch_size=16, held_out=12)


# --------------------------------------------------------------------------- scores by hand


def test_class_scores_on_crafted_logits():
    # Softmax of [ln 9.5, 0, 0] is [0.826..., ...]: not confident; [ln 20, 0, 0] gives
    # 20 / 22 = 0.909 >= 0.9: confident.
    confident = [np.log(20.0), 0.0, 0.0]
    doubtful = [np.log(9.5), 0.0, 0.0]
    logits = np.array([confident, confident, np.roll(confident, 1), doubtful] + [doubtful] * 96)
    scores = C.class_scores(logits)
    assert scores["confident_share"] == 3 / 100
    assert scores["class_counts"] == [2, 1, 0]
    assert scores["class_coverage"] == 2  # 1 of 100 images is exactly 1 %: covered
    assert C.class_scores(logits[:4])["class_coverage"] == 2
    assert C.class_scores(np.concatenate([logits, logits[3:4]]))["class_coverage"] == 1


def test_conditional_scores_compare_the_class_asked_for_with_the_class_seen():
    eye = np.eye(3) * 5.0
    seen = [0, 0, 0, 0, 1, 2]
    asked = [0, 0, 0, 1, 1, 1]
    scores = C.conditional_scores(eye[seen], np.array(asked))
    # Precision, per class seen: seen 0 were asked 0, 0, 0, 1 -> 3/4; seen 1 asked 1 -> 1;
    # seen 2 asked 1 -> 0. (Per class asked it would be 1, 1/3 and undefined.)
    assert scores["class_precision_per_class"] == pytest.approx([3 / 4, 1.0, 0.0])
    assert scores["class_precision"] == pytest.approx(7 / 12)
    assert scores["class_agreement"] == pytest.approx(4 / 6)
    unseen = C.conditional_scores(eye[[0, 0]], np.array([0, 1]))
    assert unseen["class_precision_per_class"] == [0.5, None, None]
    assert unseen["class_precision"] == 0.5
    with pytest.raises(ValueError, match=r"asked must be \[N\] labels in \[0, 3\)"):
        C.conditional_scores(eye[seen], np.array([0, 0, 0, 1, 1, 3]))


def test_min_accuracy_is_halfway_between_chance_and_perfect():
    assert [C.min_accuracy(k) for k in (2, 12, 200)] == [0.75, 0.5 + 0.5 / 12, 0.5025]
    with pytest.raises(ValueError, match="num_classes"):
        C.min_accuracy(0)


def _identity_network(classes: int = 2) -> keras.Model:
    """Features = the mean of channel 0 (1-d), logits = [f, -f][:classes] * 10."""
    images = keras.Input([4, 4, 3])
    feature = keras.layers.Lambda(lambda x: tf.reduce_mean(x[..., :1], axis=[1, 2]),
                                  name="features")(images)
    logits = keras.layers.Lambda(lambda f: tf.concat([f, -f], axis=1) * 10.0)(feature)
    return keras.Model(images, logits)


def _reference(mu: float, var: float, *, accuracy: float = 1.0, classes: int = 2):
    return C.ClassifierReference(mu=np.array([mu]), sigma=np.array([[var]]), floor=0.25,
                                 accuracy=accuracy, held_out="test split 'test'",
                                 num_classes=classes, image_size=4, train_seconds=1.0, path="p")


def test_scores_give_the_frechet_distance_of_the_features_by_hand():
    # Features of the 4 images: -0.5, -0.5, 0.5, 0.5 (each image constant, 0 or 1 levels off):
    # mean 0, covariance 1/3 (unbiased, n - 1 = 3). Against N(1, 4/3): (0 - 1)^2 + 1/3 + 4/3
    # - 2 sqrt(4/9) = 1 + 5/3 - 4/3 = 4/3.
    values = np.array([-0.5, -0.5, 0.5, 0.5], np.float32)
    images = np.broadcast_to(values[:, None, None, None], (4, 4, 4, 3)).copy()
    asked = np.array([1, 0, 0, 0])
    result = C.scores(lambda n: (images[:n], asked[:n]), classifier=C.Classifier(
        _identity_network()), reference=_reference(1.0, 4 / 3), num_samples=4, batch_size=4)
    levels = np.floor(values * 127.5 + 127.5 + 1e-3) / 127.5 - 1.0  # the uint8 quantisation
    mean, var = levels.mean(), levels.var(ddof=1)
    expected = (mean - 1.0) ** 2 + var + 4 / 3 - 2 * np.sqrt(var * 4 / 3)
    assert result["classifier_fid"] == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(4 / 3, abs=0.01)
    assert (result["classifier_fid_floor"], result["classifier_accuracy"]) == (0.25, 1.0)
    # Seen: images 0, 1 as class 1 (f < 0 -> logits [f, -f]), images 2, 3 as class 0.
    assert result["class_agreement"] == pytest.approx(3 / 4)
    assert result["class_precision_per_class"] == pytest.approx([1.0, 0.5])
    unconditional = C.scores(lambda n: images[:n], classifier=C.Classifier(_identity_network()),
                             reference=_reference(1.0, 4 / 3), num_samples=4, batch_size=4)
    assert "class_agreement" not in unconditional
    assert unconditional["classifier_fid"] == result["classifier_fid"]


def test_a_weak_classifier_refuses_to_score_with_one_clear_reason(monkeypatch):
    _reference(0.0, 1.0, accuracy=0.75).check()  # exactly the threshold for 2 classes: kept
    with pytest.raises(C.ClassifierTooWeakError,
                       match=r"refuses to score: its held-out accuracy 0\.740 \(test split "
                             r"'test'\) is below 0\.750, halfway between chance and perfect for "
                             r"2 classes"):
        _reference(0.0, 1.0, accuracy=0.74).check()
    monkeypatch.setattr(C, "load_classifier", lambda *a, **k: (
        C.Classifier(_identity_network()), _reference(0.0, 1.0, accuracy=0.1)))
    with pytest.raises(C.ClassifierTooWeakError, match="0.100"):
        scorers.scorer("classifier", dataset="folder:x", image_size=4)


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("size, classes, work, features", [
    (32, 12, 32, 64), (48, 3, 48, 64), (64, 200, 64, 128), (256, 10, 64, 64)])
def test_network_scales_with_image_size_and_class_count(size, classes, work, features):
    network = C.build_network(image_size=size, num_classes=classes)
    assert network.input_shape == (None, work, work, 3)
    assert network.output_shape == (None, classes)
    assert network.get_layer("features").output_shape == (None, features)
    classifier = C.Classifier(network)
    feats, logits = classifier(tf.zeros([2, size, size, 3]))  # resized to the work size
    assert feats.shape == (2, features) and logits.shape == (2, classes)


def test_the_toy_classifier_is_the_classifier_metric_at_32_px_and_12_classes():
    toy, general = toy_metric.build_network(seed=3), C.build_network(seed=3)
    assert toy.name == "toy_classifier" and len(toy.layers) == len(general.layers)
    for a, b in zip(toy.get_weights(), general.get_weights()):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- cache


def test_cache_is_reused_for_the_same_fingerprint_and_retrained_for_a_new_one(tmp_path,
                                                                              monkeypatch):
    folder = f"folder:{class_folder(tmp_path, per_class=20, size=16)}"
    cache = str(tmp_path / "cache")
    trained = []
    real_train = C.train_network
    monkeypatch.setattr(C, "train_network", lambda *a, **k: trained.append(1) or real_train(
        *a, **k))
    load = dict(image_size=16, recipe=FAST, cache_dir=cache)
    first, reference = C.load_classifier(folder, fingerprint=lambda d, **_: "A", **load)
    assert len(trained) == 1 and os.path.isfile(reference.path)
    assert reference.held_out == "last 12 of a seeded permutation of the train split"
    assert reference.num_classes == 3 and reference.accuracy == 1.0  # one colour per class
    again, same = C.load_classifier(folder, fingerprint=lambda d, **_: "A", **load)
    assert len(trained) == 1 and same.path == reference.path
    images = tf.random.stateless_uniform([3, 16, 16, 3], seed=[1, 2], minval=-1, maxval=1)
    np.testing.assert_array_equal(first(images)[1].numpy(), again(images)[1].numpy())
    _, changed = C.load_classifier(folder, fingerprint=lambda d, **_: "B", **load)
    assert len(trained) == 2 and changed.path != reference.path
    # The real fingerprint: touching the data changes it, so a new classifier is trained.
    _, real = C.load_classifier(folder, **load)
    assert len(trained) == 3
    C.load_classifier(folder, **load)
    assert len(trained) == 3


def test_unlabelled_data_gets_a_message_saying_what_is_offered(tmp_path):
    flat = tmp_path / "flat"
    class_folder(tmp_path / "x", per_class=3)
    for path in (tmp_path / "x" / "images").glob("*/*.png"):
        flat.mkdir(exist_ok=True)
        path.rename(flat / f"{path.parent.name}_{path.name}")
    with pytest.raises(ValueError, match="has no labels, so there is no classifier metric for "
                                         "it.*Inception FID"):
        C.load_classifier(f"folder:{flat}", image_size=8, cache_dir=str(tmp_path / "c"))


# --------------------------------------------------------------------------- CLI evaluate


def test_cli_evaluate_scores_a_folder_run_with_the_classifier_metric(tmp_path):
    folder = class_folder(tmp_path, per_class=40, size=32)
    workdir = tmp_path / "run"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ADAPT_TF_DEBUG": ""}
    bindings = [f"train.dataset = 'folder:{folder}'", "train.architecture = 'biggan32'",
                "train.g_width = 2", "train.d_width = 2", "train.total_steps = 2",
                "train.checkpoint_every = 2", "train.eval_every = 2",
                "train.eval_num_samples = 30"]
    trained = subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         *[f"--gin_bindings={b}" for b in bindings], f"--workdir={workdir}"],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, "-m", "adapt_tf.evaluate", f"--workdir={workdir}",
         "--num_samples=30"],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((workdir / "eval.json").read_text())
    assert record["metric"] == "classifier"  # labelled, no inception_path: the default
    assert record["real_data"]["classifier_accuracy"] == 1.0
    assert record["real_data"]["num_classes"] == 3
    last = record["checkpoints"]["last"]
    assert last["step"] == 2 and last["classifier_accuracy"] == 1.0
    assert sum(value is not None for value in last["class_precision_per_class"]) >= 1
    assert 0.0 <= last["class_agreement"] <= 1.0 and last["classifier_fid"] > 0
    assert last["classifier_fid_floor"] == record["real_data"]["classifier_fid_floor"]
    # The training evaluation scored the same samples (seed 0, 30 images) with the same
    # cached classifier: its metrics.csv row and best equal the re-scored checkpoint.
    with open(workdir / "metrics.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["step"] == "2" and float(row["classifier_accuracy"]) == 1.0
    assert float(row["classifier_fid"]) == pytest.approx(last["classifier_fid"], rel=1e-6)
    assert float(row["class_agreement"]) == pytest.approx(last["class_agreement"])
    assert record["training_best"]["classifier_fid"] == pytest.approx(last["classifier_fid"],
                                                                      rel=1e-6)


def test_cli_train_refuses_to_score_with_a_classifier_that_cannot_tell_the_classes(tmp_path):
    # Two classes of pure noise: the held-out accuracy is near chance (1/2), below 0.75.
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "noise" / name).mkdir(parents=True)
        for k in range(60):
            PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(
                tmp_path / "noise" / name / f"{k}.png")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ADAPT_TF_DEBUG": ""}
    bindings = [f"train.dataset = 'folder:{tmp_path / 'noise'}'", "train.eval_every = 2",
                "train.eval_num_samples = 10", "train.total_steps = 2"]
    result = subprocess.run(
        [sys.executable, "-m", "adapt_tf.train", f"--gin_file={TINY}",
         *[f"--gin_bindings={b}" for b in bindings], f"--workdir={tmp_path / 'run'}"],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "The classifier metric refuses to score: its held-out accuracy 0." in line
    assert "is below 0.750, halfway between chance and perfect for 2 classes" in line
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_tfds_dataset_with_a_test_split_holds_that_split_out(tmp_path):
    from image_data import store_tfds

    store_tfds(tmp_path, "tiny_pictures")  # 9 train and 3 test grey images, 3 classes
    _, reference = C.load_classifier("tfds:tiny_pictures/grey", image_size=12, recipe=FAST,
                                     data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"),
                                     fingerprint=lambda d, **_: "fixed")
    assert reference.held_out == "test split 'test', 3 images"
    assert (reference.num_classes, reference.image_size) == (3, 12)
    assert reference.accuracy in (0.0, 1 / 3, 2 / 3, 1.0)


def test_a_damaged_image_is_named_before_any_classifier_is_trained(tmp_path):
    folder = class_folder(tmp_path, per_class=4, size=16)
    damaged = folder / "c_cls" / "003.png"
    damaged.write_bytes(damaged.read_bytes()[:33])  # PNG signature and IHDR chunk only
    with pytest.raises(data.DamagedImageError) as error:
        C.load_classifier(f"folder:{folder}", image_size=16, cache_dir=str(tmp_path / "cache"))
    assert f": {str(damaged)!r} (Invalid PNG" in str(error.value)
    assert str(error.value).endswith("never skipped). No classifier was trained.")
    assert not [name for name in os.listdir(tmp_path / "cache")
                if name.endswith(".npz")]
