"""Tests of adapt_tf.evaluation.metrics with a tiny stand-in Inception SavedModel built here (same
output keys as TF-GAN's Inception: pool_3 and logits, small sizes). No network."""
from __future__ import annotations

import hashlib
import math
import os
import sys
import types

import numpy as np
import pytest
from scipy import linalg

from adapt_tf.evaluation import metrics

import tensorflow as tf
import tf_keras as keras
from inception_stub import CLASSES, FEATURES, SIZE, TinyInception as _TinyInception, bias, \
    save_tiny_inception


@pytest.fixture(scope="module")
def inception_dir(tmp_path_factory):
    return save_tiny_inception(tmp_path_factory.mktemp("inception") / "tiny")


@pytest.fixture(scope="module")
def model(inception_dir):
    return metrics.load_inception(inception_dir)


def _images(n, seed, size=12):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def _random_statistics(rng, dim=16):
    a = rng.normal(size=(dim, 3 * dim))
    return rng.normal(size=dim), a @ a.T / (3 * dim)


def _sym_sqrt(m):
    w, v = linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_loader_reads_sizes_from_the_model(model):
    assert (model.image_size, model.feature_dim, model.num_classes) == ((8, 8), 8, 5)
    pool, logits = model(_images(3, 0))  # 12x12 images are resized to 8x8
    assert pool.shape == (3, FEATURES) and logits.shape == (3, CLASSES)


def test_signature_only_model_and_image_size_override(tmp_path):
    class SignatureOnly(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = _TinyInception()

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def serve(self, images):
            return self.inner(tf.image.resize(images, [SIZE, SIZE]))

    module = SignatureOnly()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    default = metrics.load_inception(tmp_path)
    assert default.image_size == (299, 299)  # no static size: TF-GAN's default
    small = metrics.load_inception(tmp_path, image_size=8)
    assert small.image_size == (8, 8) and small.feature_dim == FEATURES


def test_fid_of_a_set_against_itself_is_zero(model):
    images = _images(64, 1)
    pool, _ = model.activations(images, batch_size=10)
    assert pool.shape == (64, FEATURES) and pool.dtype == np.float64
    mu, sigma = metrics.statistics(pool)
    assert metrics.compute_fid(images, (mu, sigma), model=model, batch_size=7) == pytest.approx(
        0.0, abs=1e-6)
    other = metrics.compute_fid(_images(64, 2) * 0.5, (mu, sigma), model=model)
    assert other > 1e-2


def test_frechet_distance_matches_independent_float64_computation():
    rng = np.random.default_rng(3)
    for _ in range(3):
        (mu1, s1), (mu2, s2) = _random_statistics(rng), _random_statistics(rng)
        root = _sym_sqrt(s1)
        # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix.
        trace_root = np.sqrt(np.clip(linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_root
        assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_handles_singular_covariances():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(5, 16))  # rank 4 covariance of a 16-dim feature
    mu, sigma = metrics.statistics(features)
    value = metrics.frechet_distance(mu, sigma, mu + 1.0, sigma)
    assert np.isfinite(value) and value == pytest.approx(16.0, abs=1e-2)
    with pytest.raises(ValueError, match="differ in size"):
        metrics.frechet_distance(mu, sigma, mu[:3], sigma[:3, :3])


def test_inception_score_uniform_and_one_hot():
    uniform = np.full((30, 7), 1 / 7)
    assert metrics.inception_score(uniform, from_logits=False) == pytest.approx((1.0, 0.0))
    assert metrics.inception_score(np.zeros((30, 7)), from_logits=True)[0] == pytest.approx(1.0)
    # 4 classes used equally within each of the 10 splits: IS = 4.
    one_hot = np.eye(4)[np.tile(np.arange(4), 10)]
    mean, std = metrics.inception_score(one_hot, from_logits=False, splits=10)
    assert mean == pytest.approx(4.0) and std == pytest.approx(0.0)
    with pytest.raises(ValueError, match="from_logits=True"):
        metrics.inception_score(np.ones((20, 3)), from_logits=False)


def test_statistics_round_trip_through_npz(tmp_path):
    mu, sigma = _random_statistics(np.random.default_rng(5))
    path = tmp_path / "sub" / "stats.npz"
    metrics.save_statistics(path, mu, sigma)
    loaded_mu, loaded_sigma = metrics.load_statistics(path)
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(ValueError, match="'mu', 'sigma'"):
        metrics.load_statistics(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="no statistics file"):
        metrics.load_statistics(tmp_path / "missing.npz")


def test_reference_statistics_from_a_dataset_are_cached(model, tmp_path):
    images = _images(30, 6)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(30, np.int32)))
    cache = tmp_path / "ref.npz"
    mu, sigma = metrics.reference_statistics(dataset, model=model, cache_path=cache,
                                             batch_size=8)
    expected = metrics.statistics(model.activations(images, batch_size=8)[0])
    np.testing.assert_allclose(mu, expected[0], rtol=1e-12)
    np.testing.assert_allclose(sigma, expected[1], rtol=1e-12)
    cached = metrics.reference_statistics("never_read", model=None, cache_path=cache)
    np.testing.assert_array_equal(cached[1], sigma)


def test_reference_statistics_from_a_tfds_name_reads_make_dataset(model, monkeypatch):
    calls = []

    def make_dataset(name, **kwargs):
        calls.append((name, kwargs))
        return tf.data.Dataset.from_tensor_slices(_images(40, 7)).batch(kwargs["batch_size"])

    fake = types.ModuleType("adapt_tf.data")
    fake.make_dataset = make_dataset
    fake.dataset_info = lambda name: types.SimpleNamespace(split="train", num_examples=25)
    monkeypatch.setitem(sys.modules, "adapt_tf.data", fake)
    monkeypatch.setattr(sys.modules["adapt_tf"], "data", fake, raising=False)
    mu, _ = metrics.reference_statistics("cifar10", model=model, batch_size=10)
    # One epoch of the default split (25 examples per dataset_info), no flips.
    assert calls == [("cifar10", {"split": None, "batch_size": 10, "flip": False,
                                  "data_dir": None})]
    np.testing.assert_allclose(mu, model.activations(_images(40, 7)[:25], batch_size=10)[0].mean(0),
                               rtol=1e-12)


def test_fid_and_is_of_a_generator_under_a_strategy(model):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        generator = keras.Sequential([keras.layers.Dense(SIZE * SIZE * 3, activation="tanh"),
                                      keras.layers.Reshape((SIZE, SIZE, 3))])
        generator.build((None, 4))
        sample = lambda n: generator(tf.random.normal([n, 4], seed=1))  # noqa: E731
        mu, sigma = metrics.statistics(model.activations(_images(50, 8))[0])
        result = metrics.compute_fid_and_is(sample, (mu, sigma), model=model, num_samples=45,
                                            batch_size=20, splits=5)
    assert set(result) == {"fid", "is_mean", "is_std"}
    assert result["fid"] > 0 and 1.0 <= result["is_mean"] <= CLASSES
    with pytest.raises(ValueError, match="num_samples is required"):
        model.activations(sample)
    with pytest.raises(ValueError, match="fewer than num_samples"):
        model.activations(_images(5, 0), num_samples=6)


def test_the_test_reference_scores_the_same_features(model):
    # The official final test: one Inception pass, FID against the training reference and
    # against the test split's, IS from the same logits.
    images = _images(40, 3)
    train_stats = metrics.statistics(model.activations(_images(60, 4))[0])
    test_stats = metrics.statistics(model.activations(_images(50, 5) * 0.5)[0])
    both = metrics.compute_fid_and_is(images, train_stats, model=model, num_samples=40,
                                      batch_size=16, splits=4, test_reference=test_stats)
    alone = metrics.compute_fid_and_is(images, train_stats, model=model, num_samples=40,
                                       batch_size=16, splits=4)
    assert set(both) == {"fid", "fid_test", "is_mean", "is_std"} and "fid_test" not in alone
    assert {key: both[key] for key in alone} == alone
    mu, sigma = metrics.statistics(model.activations(images, batch_size=16)[0])
    assert both["fid_test"] == pytest.approx(metrics.frechet_distance(mu, sigma, *test_stats),
                                             rel=1e-12)
    assert abs(both["fid_test"] - both["fid"]) > 1e-3 * both["fid"]  # another reference
    same = metrics.compute_fid_and_is(images, train_stats, model=model, num_samples=40,
                                      batch_size=16, splits=4, test_reference=train_stats)
    assert same["fid_test"] == same["fid"]


def test_images_outside_the_range_are_rejected(model):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model(_images(2, 0) * 127.5 + 127.5)


def test_missing_local_model_says_how_to_provide_it(tmp_path):
    with pytest.raises(metrics.InceptionUnavailableError, match="inception_path") as info:
        metrics.load_inception(tmp_path / "nowhere")
    assert "TFHUB_CACHE_DIR" in str(info.value)


def test_unreachable_handle_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(metrics.InceptionUnavailableError, match="not in the TF-Hub cache") as info:
        metrics.load_inception(handle="http://127.0.0.1:9/inception/1", timeout=5.0)
    assert "inception_path" in str(info.value) and str(tmp_path) in str(info.value)


def test_handle_loads_from_the_hub_cache_offline(inception_dir, tmp_path, monkeypatch):
    handle = "http://127.0.0.1:9/inception/1"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    cached = tmp_path / hashlib.sha1(handle.encode("utf8")).hexdigest()
    os.symlink(inception_dir, cached)
    assert metrics.load_inception(handle=handle).feature_dim == FEATURES


class _Identity(tf.Module):
    """An 'Inception' whose pool_3 is its input image, flattened: exposes what it is fed."""

    def __init__(self, size=3):
        super().__init__()
        self.size = size
        self.__call__ = tf.function(self._call, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.float32)])

    def _call(self, images):
        return {"pool_3": tf.reshape(images, [-1, 1, 1, self.size * self.size * 3]),
                "logits": images[:, 0, 0, :]}


def _identity_model(path, size=3):
    module = _Identity(size)
    tf.saved_model.save(module, str(path), signatures={"default": module.__call__})
    return metrics.load_inception(path)


def test_images_are_quantised_to_uint8_levels_by_truncation_before_inception(tmp_path):
    identity = _identity_model(tmp_path)
    # x -> floor(x * 127.5 + 127.5) (the PNG round trip truncates, as `.to(torch.uint8)`);
    # a value that is exactly a level k / 127.5 - 1 stays at level k despite float32 rounding.
    values_and_levels = [(-1.0, 0), (-0.99, 1), (0.0, 127), (0.5, 191), (0.999, 254),
                         (1.0, 255), (3 / 127.5 - 1, 3), (100 / 127.5 - 1, 100),
                         (200 / 127.5 - 1, 200), (0.01, 128), (-0.5, 63)]
    values = np.zeros(27, np.float32)
    levels = np.zeros(27)
    for i, (value, level) in enumerate(values_and_levels):
        values[i], levels[i] = value, level
        assert math.floor(value * 127.5 + 127.5 + 1e-9) == level  # the hand levels
    levels[len(values_and_levels):] = 127  # zeros
    images = values.reshape(1, 3, 3, 3)
    # The 2015 graph's (and TF-GAN's) normalisation of a level: (level - 128) / 128.
    fed, _ = identity(images)
    np.testing.assert_allclose(fed.numpy().ravel(), (levels - 128) / 128, rtol=0, atol=1e-6)
    raw, _ = identity(images, quantize=False)
    np.testing.assert_allclose(raw.numpy().ravel(), (values * 127.5 + 127.5 - 128) / 128,
                               rtol=0, atol=1e-6)
    # Every uint8 image mapped with x / 127.5 - 1 comes back at its own levels.
    all_levels = np.resize(np.arange(256, dtype=np.float32), 10 * 27)
    uint8_images = (all_levels / np.float32(127.5) - np.float32(1.0)).reshape(10, 3, 3, 3)
    fed, _ = identity(uint8_images)
    np.testing.assert_array_equal(fed.numpy().ravel() * 128 + 128, all_levels)


def _tfgan_preprocess(levels, size):
    """NumPy transcription of TF-GAN's `preprocess_image` on float levels [B, H, W, C] in
    [0, 255]: `tf.compat.v1.image.resize` BILINEAR (source coordinate = output index * in / out,
    no half-pixel centres, clamped at the last row/column), then (x - 128) / 128; float64."""
    def axis(n_in, n_out):
        source = np.arange(n_out) * (n_in / n_out)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, n_in - 1), source - low

    (y0, y1, dy), (x0, x1, dx) = axis(levels.shape[1], size[0]), axis(levels.shape[2], size[1])
    dy, dx = dy[None, :, None, None], dx[None, None, :, None]
    top = levels[:, y0][:, :, x0] * (1 - dx) + levels[:, y0][:, :, x1] * dx
    bottom = levels[:, y1][:, :, x0] * (1 - dx) + levels[:, y1][:, :, x1] * dx
    return (top * (1 - dy) + bottom * dy - 128.0) / 128.0


@pytest.mark.parametrize("shape", [(4, 5), (11, 9), (7, 7)])
def test_inception_input_is_tfgan_preprocessing_of_the_uint8_levels(tmp_path, shape):
    identity = _identity_model(tmp_path, size=7)
    levels = np.random.default_rng(sum(shape)).integers(0, 256, (3, *shape, 3)).astype(np.float64)
    images = (levels / 127.5 - 1.0).astype(np.float32)
    fed, _ = identity(images)
    expected = _tfgan_preprocess(levels, (7, 7)).reshape(3, -1)
    # Each output is a convex combination of <= 4 levels <= 255, rounded to float32 <= 8
    # times (relative 2^-24 each): <= 1.3e-4 of a level, 1e-6 after the / 128.
    np.testing.assert_allclose(fed.numpy(), expected, rtol=0, atol=2e-6)
    # The pre-version-2 input, x / 127.5 - 1, is off by up to 0.0078: far outside that bound.
    assert np.abs(_tfgan_preprocess(levels * (128 / 127.5), (7, 7))
                  .reshape(3, -1) - expected).max() > 1e-3


def test_inception_score_uses_pool_3_times_w_without_the_bias(model):
    stub = _TinyInception()  # the same seeded weights as the saved model
    assert model.is_logits == metrics.IS_FROM_WEIGHT
    assert model.module_bias == pytest.approx(np.abs(bias()).max(), rel=1e-5)
    images = _images(40, 9, size=SIZE)
    pool, logits = model.activations(images, batch_size=16)
    # pool_3 values are tanh outputs (|.| <= 1) times N(0,1) weights over 8 features: the
    # float32 matmul is within 1e-5 of the float64 one.
    np.testing.assert_allclose(logits, pool @ stub.v.numpy().astype(np.float64), atol=1e-5)
    module_pool, module_logits = model.module_outputs(metrics.inception_input(
        images, size=(SIZE, SIZE)))
    np.testing.assert_allclose(module_logits.numpy() - logits, np.tile(bias(), (40, 1)),
                               atol=1e-5)
    scores = metrics.compute_fid_and_is(images, metrics.statistics(pool), model=model,
                                        splits=4)
    expected = metrics.inception_score(pool @ stub.v.numpy(), from_logits=True, splits=4)
    with_bias = metrics.inception_score(module_logits.numpy(), from_logits=True, splits=4)
    assert scores["is_mean"] == pytest.approx(expected[0], rel=1e-5)
    assert abs(with_bias[0] - expected[0]) > 1e-2 * expected[0]  # the bias matters here


class _ConstantLogits(tf.Module):
    """A frozen-graph-like module: its logits weight is a constant inside the function, next to
    a decoy variable of the same shape that the logits do not use."""

    def __init__(self, weight):
        super().__init__()
        self.decoy = tf.Variable(np.ones_like(weight))
        self.__call__ = tf.function(lambda images: self._call(images, tf.constant(weight)),
                                    input_signature=[tf.TensorSpec([None, 2, 2, 3], tf.float32)])

    def _call(self, images, weight):
        pool = tf.reshape(images, [-1, 12]) + 0.0 * self.decoy[0, 0]
        return {"pool_3": pool, "logits": pool @ weight - 0.5}


def test_the_softmax_weight_is_found_among_constants_and_checked_against_the_logits(tmp_path):
    weight = np.random.default_rng(10).normal(size=(12, 4)).astype(np.float32)
    module = _ConstantLogits(weight)
    tf.saved_model.save(module, str(tmp_path / "c"), signatures={"default": module.__call__})
    model = metrics.load_inception(tmp_path / "c")
    assert model.is_logits == metrics.IS_FROM_WEIGHT
    assert model.module_bias == pytest.approx(0.5, abs=1e-5)
    found, _ = metrics.softmax_weight(model._module, model.module_outputs, image_size=(2, 2))
    np.testing.assert_array_equal(found, weight)


def test_a_model_without_a_softmax_weight_scores_is_from_its_logits_and_says_so(tmp_path):
    identity = _identity_model(tmp_path)  # logits are a slice of the input: no [27, 3] weight
    assert identity.is_logits == metrics.IS_FROM_MODULE and math.isnan(identity.module_bias)
    images = _images(2, 11, size=3)
    pool, logits = identity(images)
    np.testing.assert_array_equal(logits.numpy(), pool.numpy()[:, :3])
