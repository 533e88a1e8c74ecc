"""FID / IS, the toy metric or the classifier metric of a `SparseGAN` during and after training.

* `generator_scores` / `toy_generator_scores`: the scores of a model's EMA samples
  (docs/ALGORITHM.md §9); `fid_reference` the reference statistics they compare with.
* `Scorer` (from `scorer(metric, ...)`): one metric with its model and reference, the one
  abstraction every caller scores through: `PeriodicEvaluation` during `fit` (keeps the best
  checkpoint; its scores go into the Keras `logs` of the evaluated iteration, as
  `COLUMNS[metric]` names them), `score_checkpoints` for checkpoints restored in turn
  (`adapt_tf.evaluate`) and the test-set evaluation at the end of a run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
import time
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from adapt_tf import _compat, data
from adapt_tf.evaluation import classifier_metric, metrics, toy_metric
from adapt_tf.runs import distribution
from adapt_tf.checks import positive_int

__all__ = ["FIDState", "PeriodicEvaluation", "MetricColumns", "COLUMNS", "METRICS",
           "evaluation_metric",
           "generator_scores", "toy_generator_scores", "fid_reference", "reference_cache_path",
           "Scorer", "scorer", "score_checkpoints", "final_test_record"]


class FIDState(tf.Module):
    """Checkpointable best score so far and its iteration (inf and -1 before any evaluation),
    of the run's metric (`COLUMNS[metric].key`: FID, toy FID or classifier FID). Its class and
    variable names are those of the checkpoints written when FID was the only metric, so that
    those checkpoints still restore their best."""

    def __init__(self):
        super().__init__(name="fid_state")
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.best_fid = tf.Variable(math.inf, dtype=tf.float64, name="best_fid", **kw)
        self.best_step = tf.Variable(-1, dtype=tf.int64, name="best_step", **kw)


def _generated_images(gan, *, seed: int, batch_size: int):
    """n -> images of the EMA generator (the generator if EMA is off) in train mode, with
    uniformly random labels if conditional; call number i uses `gan.sample(n, seed=seed + i)`,
    so a given seed gives the same images for the same weights."""
    batch_index = itertools.count(seed)

    def sample(n: int) -> tf.Tensor:
        return gan.sample(n, seed=next(batch_index), training=True, batch_size=batch_size)

    return sample


def generator_scores(gan, *, inception: metrics.InceptionModel, reference: metrics.Reference,
                     num_samples: int, batch_size: int = 100, seed: int = 0,
                     test_reference: metrics.Reference | None = None) -> dict[str, float]:
    """FID and Inception Score of `num_samples` images of a `SparseGAN`, as the paper evaluates.

    Images come from the EMA generator (the generator if EMA is off) in train mode (BatchNorm
    on batch statistics), with uniformly random labels if conditional (docs/ALGORITHM.md §9);
    batch i is `gan.sample(n, seed=seed + i)`, so a given seed gives the same images for the
    same weights. They go through `metrics.compute_fid_and_is` (uint8 quantisation, one
    Inception pass for both scores).

    Returns:
      {"fid", "is_mean", "is_std"}, and "fid_test", against `test_reference`, if given.
    """
    positive_int("num_samples", num_samples)
    if num_samples < 10:
        raise ValueError(f"num_samples={num_samples} is too few: the Inception Score uses 10 "
                         "splits; use at least 10 (the paper uses 50000).")
    return metrics.compute_fid_and_is(_generated_images(gan, seed=seed, batch_size=batch_size),
                                      reference, model=inception, num_samples=num_samples,
                                      batch_size=batch_size, test_reference=test_reference)


def toy_generator_scores(gan, *, classifier: metrics.FeatureModel,
                         reference: metrics.Reference, num_samples: int,
                         batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """Toy FID, confident share and class coverage (`toy_metric.toy_scores`) of `num_samples`
    images of a `SparseGAN` trained on toy_shapes, sampled as `generator_scores` does.

    Args:
      classifier: from `toy_metric.load_classifier`.
      reference: the test split's (mu, sigma) (`ToyReference.mu`, `.sigma`).

    Returns:
      {"toy_fid", "confident_share", "class_coverage", "class_counts"}.
    """
    _check_covariance_samples(num_samples)
    return toy_metric.toy_scores(_generated_images(gan, seed=seed, batch_size=batch_size),
                                 classifier=classifier, reference=reference,
                                 num_samples=num_samples, batch_size=batch_size)


def _check_covariance_samples(num_samples: int) -> None:
    positive_int("num_samples", num_samples)
    if num_samples < 2:
        raise ValueError(f"num_samples={num_samples} is too few for a covariance; use at least "
                         "2 (1000 or more for a stable classifier FID).")


def reference_cache_path(dataset: str, inception_source: str, *,
                         cache_dir: str | None = None, split: str | None = None) -> str:
    """Where `fid_reference` caches a dataset's statistics: `<cache_dir>/<dataset>_<split>_
    <image size>px_<sha1 of the Inception source, 10 hex digits>_p<metrics.PIPELINE_VERSION>.npz`
    (a URI's <dataset> is `data_<its fingerprint, 16 hex digits>`), split defaulting to the
    training split and cache_dir to $ADAPT_TF_CACHE_DIR/fid_stats, else ~/.cache/adapt_tf/
    fid_stats. The pipeline version keeps statistics of an older Inception input convention from
    ever being read."""
    spec = data.dataset_info(dataset)
    if cache_dir is None:
        root = os.environ.get("ADAPT_TF_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "adapt_tf")
        cache_dir = os.path.join(root, "fid_stats")
    source = inception_source if "://" in inception_source else os.path.abspath(
        inception_source)
    digest = hashlib.sha1(source.encode("utf8")).hexdigest()[:10]
    # A URI names a path (folder:/...): its file name is the data's fingerprint instead.
    name = dataset if dataset in data.DATASETS else f"data_{data.fingerprint(dataset)[:16]}"
    return os.path.join(cache_dir,
                        f"{name}_{split or spec.split}_{spec.image_size}px_{digest}"
                        f"_p{metrics.PIPELINE_VERSION}.npz")


def fid_reference(dataset: str, *, inception: metrics.InceptionModel | None,
                  reference_stats: str | None = None, cache_dir: str | None = None,
                  data_dir: str | None = None, split: str | None = None
                  ) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """Reference statistics for FID against `dataset`, and the .npz they came from.

    `reference_stats` (e.g. the official fid_stats_cifar10_train.npz) wins. Otherwise the
    statistics of `split` (default the dataset's training split, the paper's reference; the
    test-set FID uses `data.dataset_info(dataset).test_split`) are computed once with
    `metrics.reference_statistics` and cached at `reference_cache_path(dataset,
    inception.source, cache_dir=cache_dir, split=split)`.

    Returns:
      ((mu [F], sigma [F, F]) float64, path of the .npz).
    """
    if reference_stats is not None:
        return metrics.load_statistics(reference_stats), os.fspath(reference_stats)
    if inception is None:
        raise ValueError("Without reference_stats the statistics are computed from the "
                         f"dataset {dataset!r}, which needs inception=load_inception(...).")
    path = reference_cache_path(dataset, inception.source, cache_dir=cache_dir, split=split)
    if not os.path.isfile(path):
        logging.info("Computing FID reference statistics of %s into %s.", dataset, path)
    stats = metrics.reference_statistics(dataset, model=inception, split=split, cache_path=path,
                                         data_dir=data_dir)
    return stats, path


@dataclasses.dataclass(frozen=True)
class MetricColumns:
    """What one metric writes to metrics.csv and which score picks the best checkpoint.

    Attributes:
      key: the score minimised (the best checkpoint's).
      fields: the metrics.csv / TensorBoard columns, the best-so-far last.
      values: (scores, best so far) -> {field: value}.
    """

    key: str
    fields: tuple[str, ...]
    values: Callable[[Mapping[str, Any], float], dict[str, Any]]


def _picked(*names: str, best: str):
    return lambda scores, best_value: {**{name: scores[name] for name in names},
                                       best: best_value}


COLUMNS: dict[str, MetricColumns] = {
    "fid": MetricColumns("fid", ("fid", "inception_score", "best_fid"), lambda scores, best: {
        "fid": scores["fid"], "inception_score": scores["is_mean"], "best_fid": best}),
    "toy": MetricColumns(
        "toy_fid", ("toy_fid", "toy_fid_floor", "class_coverage", "confident_share",
                    "best_toy_fid"),
        _picked("toy_fid", "toy_fid_floor", "class_coverage", "confident_share",
                best="best_toy_fid")),
    "classifier": MetricColumns(
        "classifier_fid", ("classifier_fid", "classifier_fid_floor", "classifier_accuracy",
                           "class_coverage", "confident_share", "class_agreement",
                           "best_classifier_fid"),
        lambda scores, best: {**_picked(
            "classifier_fid", "classifier_fid_floor", "classifier_accuracy", "class_coverage",
            "confident_share", best="best_classifier_fid")(scores, best),
            # An unconditional generator asks for no class: no agreement to report.
            "class_agreement": scores.get("class_agreement", "")}),
}
METRICS = tuple(COLUMNS)


class PeriodicEvaluation(_compat.Callback):
    """Every `every` iterations and at the last one: the `scoring` metric of the EMA generator
    (FID and IS, the toy metric or the classifier metric); keeps the best checkpoint.

    Args:
      scoring: a `Scorer` (`scorer(...)`): its model, reference and score function.
      every: iterations between evaluations (official `--val-freq` 5000).
      num_samples: images per evaluation (official default 10000; the paper's tables 50000).
      total_steps: the run's last iteration, always evaluated; None for none.
      checkpoint: the run's `tf.train.Checkpoint` (`Checkpointer.checkpoint`); a new best
        score saves it to `best_directory`, which keeps that one checkpoint only.
      best_directory: e.g. workdir/checkpoints_best; required with `checkpoint`.
      state: the `FIDState` holding the best score and its step (of whichever metric; the
        names are those of the checkpoints written before other metrics existed); put it in
        the Checkpointer's extra so that a resumed run keeps its best. Default a new one.
      batch_size, seed: of sampling and model calls (see `generator_scores`).

    The evaluated iteration's Keras `logs` get `scoring.columns.values(...)` (for FID: `fid`,
    `inception_score`, `best_fid`), which a `writers.MetricsLogger` placed after this callback
    writes (evaluate at multiples of its `every` to land on a row). `history` lists the scores
    of the evaluations of this `fit`, with their "step".
    """

    def __init__(self, scoring: Scorer, *, every: int, num_samples: int = 10000,
                 total_steps: int | None = None, checkpoint: tf.train.Checkpoint | None = None,
                 best_directory: str | None = None, state: FIDState | None = None,
                 batch_size: int = 100, seed: int = 0):
        super().__init__()
        self.every = positive_int("every", every)
        positive_int("num_samples", num_samples)
        if (checkpoint is None) != (best_directory is None):
            raise ValueError("Pass both checkpoint and best_directory to keep the best "
                             f"checkpoint, or neither; got best_directory={best_directory!r}.")
        self.scoring = scoring
        self.num_samples = num_samples
        self.total_steps = total_steps
        self.best_directory = best_directory
        self.state = state if state is not None else FIDState()
        self.batch_size = batch_size
        self.seed = seed
        self.history: list[dict[str, Any]] = []
        self._manager = None if checkpoint is None else tf.train.CheckpointManager(
            checkpoint, distribution.writer_directory(best_directory), max_to_keep=1)

    @property
    def best_score(self) -> float:
        """The best (lowest) `scoring.columns.key` score so far."""
        return float(self.state.best_fid.numpy())

    @property
    def best_step(self) -> int:
        return int(self.state.best_step.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            record = self.evaluate(step)
            if logs is not None:
                logs.update(self.scoring.columns.values(record, self.best_score))

    def evaluate(self, step: int) -> dict[str, Any]:
        """Scores the current EMA generator; records a new best (and saves it)."""
        key = self.scoring.columns.key
        logging.info("Evaluating %s on %d EMA samples at iteration %d.", key,
                     self.num_samples, step)
        start = time.perf_counter()
        scores = self.scoring.score(self.model, num_samples=self.num_samples,
                                    batch_size=self.batch_size, seed=self.seed)
        if scores[key] < self.best_score:
            self.state.best_fid.assign(scores[key])
            self.state.best_step.assign(step)
            if self._manager is not None:
                self._manager.save(checkpoint_number=step)
                distribution.remove_writer_directory(self._manager.directory,
                                                     self.best_directory)
        record = {"step": step, **scores}
        self.history.append(record)
        row = self.scoring.columns.values(scores, self.best_score)
        logging.info("Evaluation at iteration %d: %s (best %s %.4f at %d; took %.0f s)", step,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if v != ""), key,
                     self.best_score, self.best_step, time.perf_counter() - start)
        return record


def evaluation_metric(metric: str | None, dataset: str, *, labelled: bool = True,
                      inception_path: str | None = None) -> str:
    """The metric a run is scored with: `metric` ("fid": Inception FID and IS; "toy": the
    toy_shapes classifier; "classifier": a classifier of the dataset's own classes,
    `adapt_tf.evaluation.classifier_metric`), or by default "toy" for toy_shapes, "fid" when
    `inception_path` is given or the dataset has no labels, else "classifier" (offline).

    Raises:
      ValueError: an unknown metric, "toy" on another dataset, "classifier" without labels.
    """
    if metric is None:
        if dataset == "toy_shapes":
            return "toy"
        return "classifier" if labelled and inception_path is None else "fid"
    if metric not in COLUMNS:
        raise ValueError(f"Unknown evaluation metric {metric!r}; choose one of "
                         f"{sorted(COLUMNS)} or None (toy for toy_shapes, classifier for other "
                         "labelled data without inception_path, else fid).")
    if metric == "toy" and dataset != "toy_shapes":
        raise ValueError(f"The toy metric scores toy_shapes samples only, not {dataset!r}; use "
                         "metric 'classifier' (labelled data) or 'fid'.")
    if metric == "classifier" and not labelled:
        raise ValueError(f"Dataset {dataset!r} has no labels, so there is no classifier metric "
                         "for it; unlabelled data is scored by Inception FID (metric 'fid', "
                         "needs the Inception model) or not at all (eval_every = None).")
    return metric


# ---------------------------------------------------------------- scoring finished checkpoints


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A run's metric as one object: the training evaluation (`PeriodicEvaluation`),
    `adapt_tf.evaluate` and the final test all score through it.

    Attributes:
      metric: "fid", "toy" or "classifier".
      score: `score(gan, num_samples=..., batch_size=..., seed=...)` -> the scores of the EMA
        samples: {"fid", "is_mean", "is_std"} (and "fid_test" with a test reference);
        {"toy_fid", "toy_fid_floor", "confident_share", "class_coverage", "class_counts"};
        or `classifier_metric.scores`' dict.
      header: what eval.json records of the models and references: "inception", "reference"
        (and "test_split", "test_reference" with a test reference), or "classifier",
        "real_data" (and "test_split" for the toy metric, whose reference is the test split).
      model, reference: the Inception model and the training reference (mu, sigma), or the
        classifier and its reference (`toy_metric.ToyReference`,
        `classifier_metric.ClassifierReference`).
    """

    metric: str
    score: Callable[..., dict[str, Any]]
    header: dict[str, Any]
    model: metrics.FeatureModel
    reference: Any

    @property
    def columns(self) -> MetricColumns:
        return COLUMNS[self.metric]


def scorer(metric: str, *, dataset: str, inception_path: str | None = None,
           reference_stats: str | None = None, test: bool = False,
           test_reference_stats: str | None = None, data_dir: str | None = None,
           image_size: int | None = None) -> Scorer:
    """The `Scorer` of `metric` (from `evaluation_metric`) for samples of `dataset`.

    "fid": Inception from `inception_path` (`metrics.load_inception`), the reference from
    `reference_stats` or the training split (`fid_reference`); with `test`, also "fid_test"
    against `test_reference_stats` or the dataset's test split (CIFAR-10 test, Tiny-ImageNet
    validation), from the same Inception pass. "toy": the toy_shapes classifier, whose
    reference is the test split already. "classifier": the dataset's classifier for samples of
    `image_size` px (`classifier_metric.load_classifier`; trained at first use), its
    reference the held-out images already. The classifiers take no Inception or statistics
    files.

    Raises:
      ValueError: a file argument the metric does not use.
      classifier_metric.ClassifierTooWeakError: the classifier's held-out accuracy is too low.
      metrics.InceptionUnavailableError: "fid" and no Inception model can be loaded.
    """
    if metric in ("toy", "classifier"):
        unused = {"inception_path": inception_path, "reference_stats": reference_stats,
                  "test_reference_stats": test_reference_stats}
        for name, value in unused.items():
            if value is not None:
                raise ValueError(f"{name}={value!r} is for the FID metric, but this run is "
                                 f"scored with the {metric} metric; use metric 'fid' "
                                 "(--metric=fid) for Inception.")
        if metric == "toy":
            return _toy_scorer(test=test)
        return _classifier_scorer(dataset, data_dir=data_dir, image_size=image_size)
    if test_reference_stats is not None and not test:
        raise ValueError(f"test_reference_stats={test_reference_stats!r} is used by the "
                         "test-set evaluation only; turn it on (test_eval) or drop the file.")
    return _fid_scorer(dataset, inception_path=inception_path, reference_stats=reference_stats,
                       test=test, test_reference_stats=test_reference_stats, data_dir=data_dir)


def _classifier_scorer(dataset: str, *, data_dir: str | None,
                       image_size: int | None) -> Scorer:
    if image_size is None:
        raise ValueError("the classifier metric needs the image_size of the samples it scores")
    classifier, reference = classifier_metric.load_classifier(dataset, image_size=image_size,
                                                              data_dir=data_dir)
    reference.check()

    def score(gan, *, num_samples: int, batch_size: int = 100, seed: int = 0):
        _check_covariance_samples(num_samples)
        return classifier_metric.scores(_labelled_images(gan, seed=seed, batch_size=batch_size),
                                        classifier=classifier, reference=reference,
                                        num_samples=num_samples, batch_size=batch_size)

    real = {key: value for key, value in reference.summary().items() if key != "classifier"}
    return Scorer("classifier", score, {"classifier": reference.path, "real_data": real},
                  classifier, reference)


def _labelled_images(gan, *, seed: int, batch_size: int):
    """As `_generated_images`, but n -> (images, the labels asked for) for a conditional
    model: the labels `gan.sample` would draw itself, so the images are the same."""
    if gan.num_classes is None:
        return _generated_images(gan, seed=seed, batch_size=batch_size)
    batch_index = itertools.count(seed)

    def sample(n: int):
        index = next(batch_index)
        labels = tf.random.stateless_uniform([n], seed=[index, 104729], minval=0,
                                             maxval=gan.num_classes, dtype=tf.int32)
        return (gan.sample(n, seed=index, labels=labels, training=True, batch_size=batch_size),
                labels.numpy())

    return sample


def _fid_scorer(dataset: str, *, inception_path: str | None, reference_stats: str | None,
                test: bool, test_reference_stats: str | None, data_dir: str | None) -> Scorer:
    try:
        inception = metrics.load_inception(inception_path)
    except metrics.InceptionUnavailableError as error:
        raise metrics.InceptionUnavailableError(
            f"{error} Without Inception, labelled data is scored offline by eval_metric "
            "'classifier'; unlabelled data then has no metric (set eval_every = None).") from error
    reference, reference_path = fid_reference(dataset, inception=inception,
                                              reference_stats=reference_stats, data_dir=data_dir)
    header = {"inception": inception.source, "reference": reference_path,
              "is_logits": inception.is_logits}
    test_reference = None
    if test:
        split = data.dataset_info(dataset).test_split
        test_reference, test_path = fid_reference(
            dataset, inception=inception, reference_stats=test_reference_stats,
            data_dir=data_dir, split=split)
        header.update(test_split=split, test_reference=test_path)

    def score(gan, **kwargs) -> dict[str, Any]:
        return generator_scores(gan, inception=inception, reference=reference,
                                test_reference=test_reference, **kwargs)

    return Scorer("fid", score, header, inception, reference)


def _toy_scorer(*, test: bool) -> Scorer:
    classifier, reference = toy_metric.load_classifier()

    def score(gan, **kwargs) -> dict[str, Any]:
        scores = toy_generator_scores(gan, classifier=classifier,
                                      reference=(reference.mu, reference.sigma), **kwargs)
        return {"toy_fid": scores.pop("toy_fid"), "toy_fid_floor": reference.floor, **scores}

    real = {key: value for key, value in reference.summary().items() if key != "classifier"}
    header = {"classifier": reference.path, "real_data": real}
    return Scorer("toy", score, {**header, "test_split": "test"} if test else header,
                  classifier, reference)


def score_checkpoints(gan, checkpointer, paths: Mapping[str, str | None], score: Callable, *,
                      num_samples: int, batch_size: int = 100, seed: int = 0
                      ) -> dict[str, dict[str, Any]]:
    """{label: {"checkpoint": path, "step": its iteration, **score(gan, ...)}} of each path
    (None: skipped) restored in turn into `gan` by `checkpointer` (`writers.Checkpointer`);
    a checkpoint of an iteration scored already is not scored again. `gan` is left holding
    the last restored checkpoint."""
    scored: dict[int, dict[str, Any]] = {}
    checkpoints = {}
    for label, path in paths.items():
        if path is None:
            continue
        step = checkpointer.restore(path)
        if step not in scored:
            scored[step] = score(gan, num_samples=num_samples, batch_size=batch_size, seed=seed)
            logging.info("%s checkpoint %s (iteration %d): %s", label, path, step, scored[step])
        checkpoints[label] = {"checkpoint": path, "step": step, **scored[step]}
    return checkpoints


def final_test_record(checkpoints: Mapping[str, Mapping[str, Any]], scoring: Scorer, *,
                      trained_steps: int, num_samples: int, seed: int) -> dict[str, Any]:
    """eval.json's "test" entry, as the official code's final test: the scores (with a test
    reference) of the best checkpoint, else of the last when no best was kept (no evaluation
    during training), with the iteration the run was trained to and the metric's header."""
    kind = "best" if "best" in checkpoints else "last"
    return {"metric": scoring.metric, "checkpoint_kind": kind, **checkpoints[kind],
            "trained_steps": trained_steps, "num_samples": num_samples, "seed": seed,
            **scoring.header}
