"""An offline quality metric for `toy_shapes`: a small classifier of its 12 classes.

This is `classifier_metric` on toy_shapes (its network, training and scores), kept as a named
case: the train images come from `toy_shapes.draw_examples` in drawing order and the
reference is the 1,200-image test split, as when the quickstart's numbers were measured, and
the cache key is the dataset version (not a data fingerprint).

Inception weights cannot be fetched on an offline machine, so FID/IS are out of reach there.
`toy_shapes` (3 shapes x 4 colours, drawn locally) gets a metric of its own instead: a small
CNN trained once on the 12,000 train images, whose logits and penultimate features give three
numbers for N images (`toy_scores`):

* **confident share**: the fraction of the N images whose top class has softmax probability
  >= 0.9 (`CONFIDENCE`): images the classifier recognises as one clean shape-and-colour;
* **class coverage**: how many of the 12 classes k have count_k >= N / 100 (`MIN_SHARE`),
  count_k being the images confidently classified as k (top class k, probability >= 0.9).
  12/12 means every class shows up, recognisably, in at least 1 % of the images (a generator
  that draws the classes uniformly gives each about 8.3 %); mode collapse lowers it;
* **toy FID**: the Fréchet distance (`metrics.frechet_distance`) between Gaussian fits of the
  classifier's penultimate features (`FEATURE_DIM`-d, after global average pooling) of the N
  images and of the 1,200 test images. Its **floor** is the same distance between the test
  and the train split (real vs real): what real data scores, finite-sample bias included.

The toy FID is NOT comparable with Inception FID (other features, dimension and scale) nor
across classifier recipes; it compares runs scored by the same cached classifier.

The classifier is deterministic: the train images come from `toy_shapes.draw_examples` (the
same pixels as the tfds split), weights start from seeded initialisers, minibatch order is a
seeded permutation, the noise images of its loss are drawn statelessly from (seed, step), and
the CPU kernels it uses gave identical weights run after run (tests check it). TensorFlow's
process-wide op determinism is not switched on: it would also constrain the GAN training that
shares the process. It is
trained at first use and cached as one .npz (weights and reference statistics) at
`classifier_path(...)`: `$ADAPT_TF_CACHE_DIR/toy_classifier`, default
`~/.cache/adapt_tf/toy_classifier`, under a name holding the dataset version, so a new version
of `toy_shapes` trains a new classifier. Concurrent processes train it once: a file lock
serialises them and the file appears by an atomic rename.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Iterator

import filelock
import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf.evaluation import classifier_metric, metrics
from adapt_tf.checks import positive_int
from adapt_tf.data.datasets import toy_shapes

__all__ = ["CONFIDENCE", "MIN_SHARE", "FEATURE_DIM", "Recipe", "ToyReference", "ToyClassifier",
           "build_network", "train_network", "class_scores", "toy_scores", "classifier_path",
           "load_classifier"]

# The classifier metric's thresholds: toy_shapes is that metric's named special case.
CONFIDENCE = classifier_metric.CONFIDENCE
MIN_SHARE = classifier_metric.MIN_SHARE
FEATURE_DIM = 64   # penultimate features: global average pool of the last convolution
NUM_CLASSES = len(toy_shapes.CLASS_NAMES)
RECIPE_VERSION = 2  # bump when build_network or train_network change what they produce
_TRAIN_SPLIT, _TEST_SPLIT = 0, 1  # split indices of toy_shapes.draw_examples


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the classifier is trained; every field is part of its cache key.

    Attributes:
      epochs: passes over the train images.
      batch_size: images per Adam step.
      learning_rate: Adam's.
      outlier_weight: weight of the noise images' term of the loss (see `train_network`).
      num_train_examples: the first n train images (all 12,000 by default; tests use fewer).
      seed: initialisers, minibatch order and noise images.
    """

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 2e-3
    outlier_weight: float = 0.25
    num_train_examples: int = toy_shapes.SPLIT_SIZES["train"]
    seed: int = 0

    def __post_init__(self):
        positive_int("Recipe.num_train_examples", self.num_train_examples)
        if not 0 < self.num_train_examples <= toy_shapes.SPLIT_SIZES["train"]:
            raise ValueError(f"Recipe.num_train_examples={self.num_train_examples} must be at "
                             f"most the train split's {toy_shapes.SPLIT_SIZES['train']}.")
        self.training()  # checks the other fields

    def training(self) -> classifier_metric.Recipe:
        """The `classifier_metric.Recipe` that trains with these settings."""
        return classifier_metric.Recipe(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            outlier_weight=self.outlier_weight, seed=self.seed)


@dataclasses.dataclass(frozen=True)
class ToyReference:
    """What the real data scores with one classifier.

    Attributes:
      mu, sigma: mean [F] and covariance [F, F] of the test split's features (the toy FID's
        reference).
      floor: toy FID of the test split (1,200 images) against the train split (12,000).
      test_accuracy: top-1 accuracy on the test split.
      test_confident_share, test_coverage: `class_scores` of the test split.
      train_seconds: wall time the training took when the classifier was made.
      path: the cache file.
    """

    mu: np.ndarray
    sigma: np.ndarray
    floor: float
    test_accuracy: float
    test_confident_share: float
    test_coverage: int
    train_seconds: float
    path: str

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for logs and eval.json."""
        return {"classifier": self.path, "toy_fid_floor": self.floor,
                "test_accuracy": self.test_accuracy,
                "test_confident_share": self.test_confident_share,
                "test_coverage": self.test_coverage, "train_seconds": self.train_seconds}


class ToyClassifier(classifier_metric.Classifier):
    """A `classifier_metric.Classifier` that takes toy_shapes-sized images only: images
    [B, 32, 32, 3] in [-1, 1] -> (features of its layer named "features" [B, F], logits
    [B, 12]); other sizes are refused rather than resized (a run at another size is not
    scored against toy_shapes' 32 px classes).

    `network` is `build_network()`'s model (trained), or any Keras model with a layer named
    "features" and logits as its output (tests use a hand-made one).
    """

    @tf.function(reduce_retracing=True)
    def _forward(self, images: tf.Tensor, quantize: bool) -> tuple[tf.Tensor, tf.Tensor]:
        if tuple(images.shape[1:3]) != self.image_size:
            raise ValueError(f"the toy classifier takes {self.image_size} images, got "
                             f"{tuple(images.shape[1:3])}: score toy_shapes-sized samples")
        return super()._forward(images, quantize)


def build_network(*, seed: int = 0) -> keras.Model:
    """The classifier: `classifier_metric.build_network` at 32 px and 12 classes: 3x3
    convolutions of 32 and 64 channels (ReLU, 2x2 max pool after each) and of FEATURE_DIM
    channels, global average pooling (the layer "features", [B, FEATURE_DIM]), ReLU and a
    linear layer to 12 logits. Input [B, 32, 32, 3] in [-1, 1]; initialisers seeded."""
    return classifier_metric.build_network(image_size=toy_shapes.IMAGE_SIZE,
                                           num_classes=NUM_CLASSES, seed=seed)


def _split(split_index: int, num_examples: int, *,
           batch_size: int = 500) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images float32 [k, 32, 32, 3] in [-1, 1], labels int64 [k]) of a toy_shapes split."""
    for images, labels in toy_shapes.draw_examples(split_index, num_examples, chunk=batch_size):
        yield images.astype(np.float32) / 127.5 - 1.0, labels


def train_network(recipe: Recipe = Recipe()) -> keras.Model:
    """A `build_network` classifier trained on the first `recipe.num_train_examples` train
    images by `classifier_metric.train_network` (Adam, seeded minibatch order, outlier
    exposure on noise images; its docstring says why)."""
    images, labels = map(np.concatenate, zip(*_split(_TRAIN_SPLIT, recipe.num_train_examples)))
    return classifier_metric.train_network(images, labels, num_classes=NUM_CLASSES,
                                           recipe=recipe.training())


# The confident share and class coverage of logits [N, 12] (classifier_metric's).
class_scores = classifier_metric.class_scores


def toy_scores(source: metrics.Source, *, classifier: metrics.FeatureModel,
               reference: metrics.Reference, num_samples: int | None = None,
               batch_size: int = 100) -> dict[str, Any]:
    """Toy FID, confident share and class coverage of images, from one classifier pass.

    Args:
      source: images [N, 32, 32, 3] in [-1, 1], or any source `metrics.FeatureModel.activations`
        takes (e.g. a function n -> generated images); quantised to uint8 levels first.
      classifier: a `ToyClassifier` (from `load_classifier`).
      reference: (mu, sigma) of the test split's features (`ToyReference.mu/.sigma`) or a .npz.
      num_samples, batch_size: as `metrics.FeatureModel.activations`.

    Returns:
      {"toy_fid", "confident_share", "class_coverage", "class_counts"} (see `class_scores`).
    """
    features, logits = classifier.activations(source, num_samples=num_samples,
                                              batch_size=batch_size)
    mu, sigma = metrics.statistics(features)
    reference_mu, reference_sigma = (reference if isinstance(reference, tuple)
                                     else metrics.load_statistics(reference))
    return {"toy_fid": metrics.frechet_distance(mu, sigma, reference_mu, reference_sigma),
            **class_scores(logits)}


# ------------------------------------------------------------------------------------ cache


def _dataset_version() -> str:
    return str(toy_shapes.ToyShapes.VERSION)


def classifier_path(*, recipe: Recipe = Recipe(), cache_dir: str | None = None) -> str:
    """Where the classifier of `recipe` is cached: `<cache_dir>/toy_shapes-<dataset version>-
    r<RECIPE_VERSION>-<sha1 of the recipe, 10 hex digits>.npz`; cache_dir defaults to
    $ADAPT_TF_CACHE_DIR/toy_classifier, else ~/.cache/adapt_tf/toy_classifier."""
    if cache_dir is None:
        root = os.environ.get("ADAPT_TF_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "adapt_tf")
        cache_dir = os.path.join(root, "toy_classifier")
    fields = json.dumps(dataclasses.asdict(recipe), sort_keys=True)
    digest = hashlib.sha1(fields.encode("utf8")).hexdigest()[:10]
    return os.path.join(cache_dir, f"toy_shapes-{_dataset_version()}-r{RECIPE_VERSION}-"
                                   f"{digest}.npz")


def load_classifier(*, recipe: Recipe = Recipe(),
                    cache_dir: str | None = None) -> tuple[ToyClassifier, ToyReference]:
    """The toy classifier and the real data's scores, from the cache or trained now.

    If `classifier_path(recipe=..., cache_dir=...)` exists it is loaded. Otherwise, holding a
    file lock beside it (so that concurrent processes train once and the others wait, then
    load), the classifier is trained (`train_network`), the test and train splits are scored
    (`ToyReference`), and everything is written to a temporary file renamed into place.
    """
    path = classifier_path(recipe=recipe, cache_dir=cache_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with filelock.FileLock(f"{path}.lock"):
        if not os.path.isfile(path):
            logging.info("Training the toy_shapes classifier (%d epochs over %d images; once, "
                         "then cached in %s).", recipe.epochs, recipe.num_train_examples, path)
            network, record = _make(recipe)
            _save(path, network, record)
            logging.info("Trained the toy classifier in %.0f s (test accuracy %.3f, floor "
                         "%.2f).", record["train_seconds"], record["test_accuracy"],
                         record["floor"])
    return _load(path, recipe)


def _make(recipe: Recipe) -> tuple[keras.Model, dict[str, Any]]:
    start = time.perf_counter()
    network = train_network(recipe)
    train_seconds = time.perf_counter() - start
    classifier = ToyClassifier(network)
    test_features, test_logits = classifier.activations(
        _split(_TEST_SPLIT, toy_shapes.SPLIT_SIZES["test"]))
    train_features, _ = classifier.activations(
        _split(_TRAIN_SPLIT, toy_shapes.SPLIT_SIZES["train"]))
    mu, sigma = metrics.statistics(test_features)
    floor = metrics.frechet_distance(*metrics.statistics(train_features), mu, sigma)
    test_labels = np.arange(len(test_logits)) % NUM_CLASSES  # draw_examples: label = i % 12
    scores = class_scores(test_logits)
    record = dict(mu=mu, sigma=sigma, floor=floor, train_seconds=train_seconds,
                  test_accuracy=float(np.mean(test_logits.argmax(axis=1) == test_labels)),
                  test_confident_share=scores["confident_share"],
                  test_coverage=scores["class_coverage"])
    logging.info("Toy classifier: trained in %.1f s, test accuracy %.4f, confident share "
                 "%.4f, coverage %d/12, toy FID floor (test vs train) %.4f.", train_seconds,
                 record["test_accuracy"], record["test_confident_share"],
                 record["test_coverage"], floor)
    return network, record


def _save(path: str, network: keras.Model, record: dict[str, Any]) -> None:
    classifier_metric.save_classifier(path, network,
                                      {"dataset_version": _dataset_version(), **record})


def _load(path: str, recipe: Recipe) -> tuple[ToyClassifier, ToyReference]:
    network = build_network(seed=recipe.seed)
    with np.load(path) as data:
        count = len([key for key in data.files if key.startswith("weight_")])
        network.set_weights([data[f"weight_{i}"] for i in range(count)])
        reference = ToyReference(
            mu=data["mu"], sigma=data["sigma"], floor=float(data["floor"]),
            test_accuracy=float(data["test_accuracy"]),
            test_confident_share=float(data["test_confident_share"]),
            test_coverage=int(data["test_coverage"]),
            train_seconds=float(data["train_seconds"]), path=path)
    return ToyClassifier(network, source=path), reference
