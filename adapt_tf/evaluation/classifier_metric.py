"""An offline quality number for any labelled dataset: a small classifier of its classes.

Inception weights cannot be fetched on an offline machine, and Inception knows nothing of a
user's classes. For a labelled dataset (a `data` name, 'folder:PATH' with class folders,
'tfds:NAME') a small CNN is trained once on its train split and scores N generated images
(`scores`):

* **confident share**: the fraction whose top class has softmax probability >= 0.9
  (`CONFIDENCE`): images the classifier recognises as one of the classes;
* **class coverage**: how many of the K classes k have count_k >= N / 100 (`MIN_SHARE`),
  count_k being the images confidently classified as k; mode collapse lowers it;
* **class precision** (conditional samples, labels asked for known): for each class k the
  classifier sees (top class k), the share of those images that were asked for k; their mean
  over the classes seen, `class_precision`, and `class_agreement`, the share of all images
  seen as the class asked for (1/K for a generator that ignores its labels);
* **classifier FID**: the Fréchet distance (`metrics.frechet_distance`) between Gaussian fits
  of the classifier's penultimate features of the N images and of the held-out real images.
  Its **floor** is the same distance between the held-out images and the training images
  (real vs real): what real data scores, finite-sample bias included.

Held-out images: the dataset's test split if it has one (`data.DatasetSpec.test_split`), else
the last `Recipe.held_out` images of a seeded permutation of the train split, which the
classifier then does not train on. Every score comes with the classifier's held-out accuracy;
below `min_accuracy(K)` = (1 + 1/K) / 2, halfway between chance and perfect, scoring is
refused (`ClassifierTooWeakError`): a classifier wrong that often measures itself, not the
generator (0.75 for 2 classes, 0.54 for 12, 0.5025 for 200).

The network (`build_network`) sees images resized to min(image size, 64) px: 3×3
convolutions of 32 and 64 channels (and 128 at 64 px) with 2×2 max pooling after each, a 3×3
convolution to F channels (64, or 128 beyond 64 classes), global average pooling (the
features), ReLU and a linear layer to K logits. At 32 px and 12 classes this is the toy_shapes
classifier (`toy_metric`, the same network, training loop and outlier exposure): toy_shapes
is scored with that classifier, its documented numbers unchanged.

These numbers are NOT comparable with Inception FID, nor across datasets or recipes; they
compare runs scored by the same cached classifier. The classifier is trained on at most
`Recipe.max_train_examples` images (seeded choice), deterministically, at first use, and
cached as one .npz keyed by the dataset's fingerprint (`data.fingerprint`: a folder's file
list, sizes and mtimes; a tfds dataset's version) and the recipe, under a file lock, so
concurrent processes train once and changed data trains a new classifier.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from typing import Any, Callable

import filelock
import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf import data
from adapt_tf.evaluation import metrics
from adapt_tf.checks import positive_int

__all__ = ["CONFIDENCE", "MIN_SHARE", "MAX_WORK_SIZE", "Recipe", "ClassifierReference",
           "Classifier", "ClassifierTooWeakError", "min_accuracy", "build_network",
           "train_network", "class_scores", "conditional_scores", "scores", "cache_path",
           "load_classifier", "save_classifier", "work_size"]

CONFIDENCE = 0.9   # top-class probability of a confident image
MIN_SHARE = 0.01   # share of the N images a class needs (confidently) to count as covered
MAX_WORK_SIZE = 64  # the classifier's input side: larger images are resized down to it
RECIPE_VERSION = 1  # bump when build_network or train_network change what they produce


class ClassifierTooWeakError(ValueError):
    """The classifier's held-out accuracy is below `min_accuracy`: its scores would mean
    nothing; the message gives the accuracy, the threshold and what to do."""


def min_accuracy(num_classes: int) -> float:
    """Held-out accuracy a classifier of `num_classes` needs: halfway from chance to 1."""
    return (1.0 + 1.0 / positive_int("num_classes", num_classes)) / 2.0


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the classifier is trained; every field is part of its cache key.

    Attributes:
      epochs, batch_size, learning_rate: Adam on softmax cross-entropy.
      outlier_weight: weight of the noise images' term of the loss (see `train_network`).
      max_train_examples: at most this many train images (a seeded choice), bounding memory
        (uint8 at the work size: 20,000 × 64² × 3 = 246 MB) and time.
      held_out: images held out of the train split when the dataset has no test split; at
        most 20 % of it.
      seed: initialisers, minibatch order, noise images and the choice of images.
    """

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 2e-3
    outlier_weight: float = 0.25
    max_train_examples: int = 20_000
    held_out: int = 2_000
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "max_train_examples", "held_out"):
            positive_int(f"Recipe.{name}", getattr(self, name))
        if not self.learning_rate > 0:
            raise ValueError(f"Recipe.learning_rate must be > 0, got {self.learning_rate!r}.")
        if not self.outlier_weight >= 0:
            raise ValueError(f"Recipe.outlier_weight must be >= 0, got "
                             f"{self.outlier_weight!r}.")


@dataclasses.dataclass(frozen=True)
class ClassifierReference:
    """What the real data scores with one classifier.

    Attributes:
      mu, sigma: mean [F] and covariance [F, F] of the held-out images' features.
      floor: classifier FID of the held-out images against the training images.
      accuracy: top-1 accuracy on the held-out images; held_out: which ("test split NAME" or
        "last n of the train split").
      num_classes, image_size: the classifier's K and input side (the work size).
      train_seconds: wall time of the training; path: the cache file.
    """

    mu: np.ndarray
    sigma: np.ndarray
    floor: float
    accuracy: float
    held_out: str
    num_classes: int
    image_size: int
    train_seconds: float
    path: str

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for logs and eval.json."""
        return {"classifier": self.path, "classifier_fid_floor": self.floor,
                "classifier_accuracy": self.accuracy, "held_out": self.held_out,
                "num_classes": self.num_classes, "train_seconds": self.train_seconds}

    def check(self) -> None:
        """Raises `ClassifierTooWeakError` when the accuracy is below `min_accuracy`."""
        needed = min_accuracy(self.num_classes)
        if self.accuracy < needed:
            raise ClassifierTooWeakError(
                f"The classifier metric refuses to score: its held-out accuracy "
                f"{self.accuracy:.3f} ({self.held_out}) is below {needed:.3f}, halfway between "
                f"chance and perfect for {self.num_classes} classes, so its classes and "
                "features would describe the classifier more than the images. Add images per "
                "class or merge look-alike classes, or use eval_metric 'fid' with Inception.")


class Classifier(metrics.FeatureModel):
    """A `metrics.FeatureModel` from a Keras classifier: images [B, S, S, 3] in [-1, 1] (any S:
    resized to the network's input side) -> (features of its layer named "features" [B, F],
    logits [B, K]).

    `network` is `build_network()`'s model (trained), or any Keras model with a layer named
    "features" and logits as its output (tests use hand-made ones).
    """

    def __init__(self, network: keras.Model, *, source: str = ""):
        try:
            features = network.get_layer("features").output
        except ValueError as error:
            raise ValueError(f"{network.name!r} has no layer named 'features' (the "
                             "penultimate features the classifier FID uses).") from error
        self._model = keras.Model(network.inputs, [features, network.output])
        self.image_size = tuple(int(d) for d in network.input_shape[1:3])
        self.feature_dim = int(features.shape[-1])
        self.num_classes = int(network.output_shape[-1])
        self.source = source

    @tf.function(reduce_retracing=True)
    def _forward(self, images: tf.Tensor, quantize: bool) -> tuple[tf.Tensor, tf.Tensor]:
        if quantize:
            images = metrics.quantize_images(images)
        images = _resized(images, self.image_size[0])
        features, logits = self._model(images, training=False)
        return tf.cast(features, tf.float32), tf.cast(logits, tf.float32)


def _resized(images: tf.Tensor, size: int) -> tf.Tensor:
    """[B, H, W, 3] -> [B, size, size, 3], bilinear with antialiasing (identity at size)."""
    if tuple(images.shape[1:3]) == (size, size):
        return images
    return tf.image.resize(images, [size, size], method="bilinear", antialias=True)


def work_size(image_size: int) -> int:
    """The classifier's input side for images of `image_size`: min(image_size, 64)."""
    return min(positive_int("image_size", image_size), MAX_WORK_SIZE)


def build_network(*, image_size: int = 32, num_classes: int = 12, seed: int = 0) -> keras.Model:
    """The classifier for `image_size` images (its input side is `work_size(image_size)`) of
    `num_classes` classes: see the module docstring. Initialisers seeded.

    The features are taken before the last ReLU: after it, channels that are 0 on every image
    would make the covariances singular."""
    size = work_size(image_size)
    num_classes = positive_int("num_classes", num_classes)
    feature_dim = 64 if num_classes <= 64 else 128

    def init(offset: int) -> dict[str, Any]:
        return dict(kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 16 + offset))

    layers = [keras.Input([size, size, 3])]
    for offset, channels in enumerate([32, 64] + ([128] if size >= 64 else [])):
        layers += [keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                       **init(offset)), keras.layers.MaxPooling2D(2)]
    last = len(layers) // 2
    layers += [keras.layers.Conv2D(feature_dim, 3, padding="same", **init(last)),
               keras.layers.GlobalAveragePooling2D(name="features"), keras.layers.ReLU(),
               keras.layers.Dense(num_classes, **init(last + 1))]
    return keras.Sequential(layers, name="toy_classifier" if (size, num_classes) == (32, 12)
                            else "classifier")


def train_network(images: np.ndarray, labels: np.ndarray, *, num_classes: int,
                  recipe: Recipe = Recipe()) -> keras.Model:
    """A `build_network` classifier trained with Adam on images float32 [n, S, S, 3] in
    [-1, 1] (S the work size) and labels int [n], minibatches in a seeded order.

    Loss: softmax cross-entropy on the real images, plus `recipe.outlier_weight` times the
    cross-entropy to the uniform distribution on half as many noise images
    (`_noise_images`), so that blobs and textures get no confident class (outlier exposure,
    Hendrycks et al., ICLR 2019). Without it, the samples of an untrained generator were all
    "confident" on toy_shapes (share 0.998, all one class); with it, none.
    """
    network = build_network(image_size=images.shape[1], num_classes=num_classes,
                            seed=recipe.seed)
    optimizer = keras.optimizers.Adam(recipe.learning_rate)
    size = int(images.shape[1])

    @tf.function
    def step(x, y, seed):
        outliers = _noise_images(tf.shape(x)[0] // 2, seed, size=size)
        with tf.GradientTape() as tape:
            logits = network(tf.concat([x, outliers], axis=0), training=True)
            real, other = logits[:tf.shape(x)[0]], logits[tf.shape(x)[0]:]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, real))
            uniform = -tf.reduce_mean(tf.nn.log_softmax(other), axis=1)
            loss += recipe.outlier_weight * tf.reduce_mean(uniform)
        grads = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(grads, network.trainable_variables))
        return loss

    order = np.random.default_rng([recipe.seed, 0x70E]).permuted(
        np.tile(np.arange(len(images)), (recipe.epochs, 1)), axis=1).reshape(-1)
    for number, start in enumerate(range(0, len(order), recipe.batch_size)):
        index = order[start:start + recipe.batch_size]
        loss = step(tf.constant(images[index]), tf.constant(labels[index]),
                    tf.constant([recipe.seed, number], tf.int64))
    logging.info("Classifier trained: %d steps, last loss %.4f.", number + 1, float(loss))
    return network


def _noise_images(count: int, seed: tf.Tensor, *, size: int = 32) -> tf.Tensor:
    """Outliers [count, size, size, 3] in [-1, 1], drawn statelessly from seed [2]: uniform
    noise at size/8, size/4 or size/2 squared, resized bilinearly (coloured blobs and textures,
    as an untrained or failing generator draws)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    low = tf.gather(tf.constant([size // 8, size // 4, size // 2]),
                    tf.random.stateless_uniform([], seeds[0], maxval=3, dtype=tf.int32))
    noise = tf.random.stateless_uniform(tf.stack([count, low, low, 3]), seeds[1], minval=-1.0,
                                        maxval=1.0)
    return tf.image.resize(noise, [size, size], method="bilinear")


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be [N >= 1, K], got shape {logits.shape}")
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def class_scores(logits: np.ndarray) -> dict[str, Any]:
    """Confident share and class coverage of N images from their logits [N, K].

    Returns:
      {"confident_share": float in [0, 1], "class_coverage": int in [0, K],
       "class_counts": [K] ints, the confident images of each class}. A class is covered
      when count_k * 100 >= N (integer arithmetic: exactly 1 % counts).
    """
    p = _softmax(logits)
    confident = p.max(axis=1) >= CONFIDENCE
    counts = np.bincount(p.argmax(axis=1)[confident], minlength=p.shape[1])
    covered = counts * round(1 / MIN_SHARE) >= p.shape[0]
    return {"confident_share": float(confident.mean()), "class_coverage": int(covered.sum()),
            "class_counts": counts.tolist()}


def conditional_scores(logits: np.ndarray, asked: np.ndarray) -> dict[str, Any]:
    """The class asked for vs the class seen (top-1) of N conditional samples.

    Args:
      logits: [N, K]; asked: int [N] in [0, K), the labels the generator was given.
    Returns:
      {"class_precision_per_class": [K] floats or None (of the images seen as k, the share
       asked for k; None when none is seen as k), "class_precision": their mean over the
       classes seen, "class_agreement": the share seen as the class asked for}.
    """
    seen = _softmax(logits).argmax(axis=1)
    asked = np.asarray(asked).reshape(-1)
    if asked.shape != seen.shape or asked.min() < 0 or asked.max() >= logits.shape[1]:
        raise ValueError(f"asked must be [N] labels in [0, {logits.shape[1]}) for logits "
                         f"{np.shape(logits)}, got shape {asked.shape}")
    hits = seen == asked
    per_class = [float(hits[seen == k].mean()) if np.any(seen == k) else None
                 for k in range(logits.shape[1])]
    present = [value for value in per_class if value is not None]
    return {"class_precision_per_class": per_class,
            "class_precision": float(np.mean(present)),
            "class_agreement": float(hits.mean())}


def scores(sample: Callable[[int], Any], *, classifier: metrics.FeatureModel,
           reference: ClassifierReference, num_samples: int,
           batch_size: int = 100) -> dict[str, Any]:
    """The classifier metric of `num_samples` images, with the classifier's accuracy.

    Args:
      sample: n -> images [n, H, W, 3] in [-1, 1] (quantised to uint8 levels first), or, for
        conditional samples, n -> (images, the labels int [n] asked for), which adds
        `conditional_scores`.
      classifier, reference: from `load_classifier`.
    Returns:
      {"classifier_fid", "classifier_fid_floor", "classifier_accuracy", "confident_share",
       "class_coverage", "class_counts"} (+ "class_precision", "class_agreement",
       "class_precision_per_class").
    """
    asked = []

    def images(n: int):
        drawn = sample(n)
        if isinstance(drawn, tuple):
            asked.append(np.asarray(drawn[1]))
            return drawn[0]
        return drawn

    features, logits = classifier.activations(images, num_samples=num_samples,
                                              batch_size=batch_size)
    mu, sigma = metrics.statistics(features)
    result = {"classifier_fid": metrics.frechet_distance(mu, sigma, reference.mu,
                                                         reference.sigma),
              "classifier_fid_floor": reference.floor,
              "classifier_accuracy": reference.accuracy, **class_scores(logits)}
    if asked:
        result.update(conditional_scores(logits, np.concatenate(asked)[:len(logits)]))
    return result


# ------------------------------------------------------------------------------------ data


def _read(dataset: data.Source, *, split: str | None, count: int, size: int, seed: int,
          data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images (uint8 [count, size, size, 3]) and labels of epoch 0 of the
    split's seeded permutation (`data.make_dataset`: every image once, no flips)."""
    batch = min(count, 500)
    stream = data.make_dataset(dataset, batch_size=batch, split=split, image_size=size,
                               conditional=True, flip=False, seed=seed, data_dir=data_dir)
    images, labels = [], []
    with data.naming_damaged_images(dataset, outcome=lambda: " No classifier was trained."):
        for batch_images, batch_labels in stream.take(-(-count // batch)):
            images.append(np.round((batch_images.numpy() + 1.0) * 127.5).astype(np.uint8))
            labels.append(batch_labels.numpy())
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def _split_size(dataset: data.Source, spec: data.DatasetSpec, split: str,
                data_dir: str | None) -> int:
    if split == spec.split:
        return spec.num_examples
    import tensorflow_datasets as tfds

    return int(tfds.builder(spec.tfds_name, data_dir=data_dir).info.splits[split].num_examples)


def _real_images(dataset: data.Source, spec: data.DatasetSpec, recipe: Recipe, size: int,
                 data_dir: str | None):
    """((train images, labels), (held-out images, labels), description of the held-out)."""
    read = dict(size=size, seed=recipe.seed, data_dir=data_dir)
    if spec.test_split and spec.test_split != spec.split:
        train = _read(dataset, split=None, count=min(spec.num_examples,
                                                     recipe.max_train_examples), **read)
        count = min(_split_size(dataset, spec, spec.test_split, data_dir), recipe.held_out * 5)
        return train, _read(dataset, split=spec.test_split, count=count, **read), \
            f"test split {spec.test_split!r}, {count} images"
    held = min(recipe.held_out, spec.num_examples // 5)
    if held < 1:
        raise ValueError(f"dataset {data.dataset_name(dataset)!r} has {spec.num_examples} "
                         "images and no test split: too few to hold any out for the "
                         "classifier metric (5 or more needed).")
    images, labels = _read(dataset, split=None, count=min(
        spec.num_examples, recipe.max_train_examples + held), **read)
    return (images[:-held], labels[:-held]), (images[-held:], labels[-held:]), \
        f"last {held} of a seeded permutation of the train split"


# ------------------------------------------------------------------------------------ cache


def cache_path(dataset: data.Source, *, fingerprint: str, image_size: int,
               recipe: Recipe = Recipe(), cache_dir: str | None = None) -> str:
    """Where the classifier is cached: `<cache_dir>/<dataset name>-<sha1 of (fingerprint,
    work size, recipe, RECIPE_VERSION), 16 hex digits>.npz`; cache_dir defaults to
    $ADAPT_TF_CACHE_DIR/classifier, else ~/.cache/adapt_tf/classifier."""
    if cache_dir is None:
        root = os.environ.get("ADAPT_TF_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "adapt_tf")
        cache_dir = os.path.join(root, "classifier")
    key = json.dumps({"fingerprint": fingerprint, "size": work_size(image_size),
                      "recipe": dataclasses.asdict(recipe), "version": RECIPE_VERSION},
                     sort_keys=True)
    name = "".join(c if c.isalnum() else "_" for c in data.dataset_name(dataset))[-40:]
    return os.path.join(cache_dir, f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz")


def load_classifier(dataset: data.Source, *, image_size: int, recipe: Recipe = Recipe(),
                    data_dir: str | None = None, cache_dir: str | None = None,
                    fingerprint: Callable[..., str] = data.fingerprint
                    ) -> tuple[Classifier, ClassifierReference]:
    """The classifier of a labelled `dataset` (images scored at `image_size`) and the real
    data's scores, from the cache or trained now (holding a file lock beside the cache file,
    written by an atomic rename). The cache key holds `fingerprint(dataset, data_dir=...)`.

    Raises:
      ValueError: the dataset has no labels (the message says what is offered instead), or
        too few images to hold any out.
    """
    spec = data.dataset_info(dataset, data_dir=data_dir)
    if spec.num_classes is None:
        raise ValueError(
            f"dataset {data.dataset_name(dataset)!r} has no labels, so there is no classifier "
            "metric for it: the offline number needs classes (for a folder, one sub-folder per "
            "class). Unlabelled data is scored by Inception FID (eval_metric 'fid', with "
            "inception_path or a cached TF-Hub model), or not at all (eval_every = None).")
    path = cache_path(dataset, fingerprint=fingerprint(dataset, data_dir=data_dir),
                      image_size=image_size, recipe=recipe, cache_dir=cache_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with filelock.FileLock(f"{path}.lock"):
        if not os.path.isfile(path):
            logging.info("Training the classifier of %s into %s.", data.dataset_name(dataset),
                         path)
            save_classifier(path, *_make(dataset, spec, recipe, work_size(image_size), data_dir))
    return _load(path, recipe)


def _make(dataset, spec: data.DatasetSpec, recipe: Recipe, size: int,
          data_dir: str | None) -> tuple[keras.Model, dict[str, Any]]:
    (train_x, train_y), (held_x, held_y), held_out = _real_images(dataset, spec, recipe, size,
                                                                  data_dir)
    start = time.perf_counter()
    network = train_network(train_x.astype(np.float32) / 127.5 - 1.0, train_y,
                            num_classes=spec.num_classes, recipe=recipe)
    train_seconds = time.perf_counter() - start
    classifier = Classifier(network)
    held_features, held_logits = classifier.activations(held_x.astype(np.float32) / 127.5 - 1)
    train_features, _ = classifier.activations(train_x.astype(np.float32) / 127.5 - 1)
    mu, sigma = metrics.statistics(held_features)
    record = dict(mu=mu, sigma=sigma, train_seconds=train_seconds, held_out=held_out,
                  floor=metrics.frechet_distance(*metrics.statistics(train_features), mu, sigma),
                  accuracy=float(np.mean(held_logits.argmax(axis=1) == held_y)),
                  num_classes=spec.num_classes, image_size=size)
    logging.info("Classifier of %s: %d train images, trained in %.1f s; held-out (%s) "
                 "accuracy %.4f; classifier FID floor %.4f.", data.dataset_name(dataset),
                 len(train_x), train_seconds, held_out, record["accuracy"], record["floor"])
    return network, record


def save_classifier(path: str, network: keras.Model, record: dict[str, Any]) -> None:
    """Writes the network's weights ("weight_<i>") and `record` to the .npz `path` through a
    temporary file renamed into place: readers never see half a file."""
    weights = {f"weight_{i}": w for i, w in enumerate(network.get_weights())}
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **record, **weights)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _load(path: str, recipe: Recipe) -> tuple[Classifier, ClassifierReference]:
    with np.load(path) as saved:
        network = build_network(image_size=int(saved["image_size"]),
                                num_classes=int(saved["num_classes"]), seed=recipe.seed)
        count = len([key for key in saved.files if key.startswith("weight_")])
        network.set_weights([saved[f"weight_{i}"] for i in range(count)])
        reference = ClassifierReference(
            mu=saved["mu"], sigma=saved["sigma"], floor=float(saved["floor"]),
            accuracy=float(saved["accuracy"]), held_out=str(saved["held_out"]),
            num_classes=int(saved["num_classes"]), image_size=int(saved["image_size"]),
            train_seconds=float(saved["train_seconds"]), path=path)
    return Classifier(network, source=path), reference
