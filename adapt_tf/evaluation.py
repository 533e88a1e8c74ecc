"""FID / IS (or the toy metric) of a `SparseGAN` during and after training.

* `generator_scores` / `toy_generator_scores`: the scores of a model's EMA samples
  (docs/ALGORITHM.md §9); `fid_reference` the reference statistics they compare with.
* `scorer` / `score_checkpoints`: a run's metric as one function, applied to checkpoints
  restored in turn (`adapt_tf.evaluate`, and the test-set evaluation at the end of a run).
* `EvaluateFID`: periodic FID / IS of the EMA generator during `fit`; keeps the best
  checkpoint. `EvaluateToyMetric`: the same with the offline toy_shapes metric
  (`adapt_tf.toy_metric`). Their scores go into the Keras `logs` of the evaluated iteration.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from adapt_tf import _compat, data, distribution, metrics, toy_metric
from adapt_tf.checks import positive_int

__all__ = ["FIDState", "EvaluateFID", "EvaluateToyMetric", "EVALUATIONS", "evaluation_metric",
           "generator_scores", "toy_generator_scores", "fid_reference", "reference_cache_path",
           "Scorer", "scorer", "score_checkpoints", "final_test_record"]


class FIDState(tf.Module):
    """Checkpointable best score so far and its iteration (inf and -1 before any evaluation):
    the FID, or the toy FID when the run is scored with the toy metric."""

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
    positive_int("num_samples", num_samples)
    if num_samples < 2:
        raise ValueError(f"num_samples={num_samples} is too few for a covariance; use at least "
                         "2 (1000 or more for a stable toy FID).")
    return toy_metric.toy_scores(_generated_images(gan, seed=seed, batch_size=batch_size),
                                 classifier=classifier, reference=reference,
                                 num_samples=num_samples, batch_size=batch_size)


def reference_cache_path(dataset: str, inception_source: str, *,
                         cache_dir: str | None = None, split: str | None = None) -> str:
    """Where `fid_reference` caches a dataset's statistics: `<cache_dir>/<dataset>_<split>_
    <image size>px_<sha1 of the Inception source, 10 hex digits>.npz`, split defaulting to the
    training split and cache_dir to $ADAPT_TF_CACHE_DIR/fid_stats, else
    ~/.cache/adapt_tf/fid_stats."""
    spec = data.dataset_info(dataset)
    if cache_dir is None:
        root = os.environ.get("ADAPT_TF_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "adapt_tf")
        cache_dir = os.path.join(root, "fid_stats")
    source = inception_source if "://" in inception_source else os.path.abspath(
        inception_source)
    digest = hashlib.sha1(source.encode("utf8")).hexdigest()[:10]
    return os.path.join(cache_dir,
                        f"{dataset}_{split or spec.split}_{spec.image_size}px_{digest}.npz")


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


class EvaluateFID(_compat.Callback):
    """Every `every` iterations and at the last one: FID and IS of the EMA generator; keeps the
    best checkpoint.

    Args:
      inception: from `metrics.load_inception`.
      reference: reference statistics, (mu, sigma) or an .npz path (see `fid_reference`).
      every: iterations between evaluations (official `--val-freq` 5000).
      num_samples: images per evaluation (official default 10000; the paper's tables 50000).
      total_steps: the run's last iteration, always evaluated; None for none.
      checkpoint: the run's `tf.train.Checkpoint` (`Checkpointer.checkpoint`); a new best FID
        saves it to `best_directory`, which keeps that one checkpoint only.
      best_directory: e.g. workdir/checkpoints_best; required with `checkpoint`.
      state: the `FIDState` holding best_fid / best_step; put it in the Checkpointer's extra so
        that a resumed run keeps its best. Default a new one.
      batch_size, seed: of sampling and Inception calls (see `generator_scores`).

    The evaluated iteration's Keras `logs` get `row(scores)`: `fid`, `inception_score` and
    `best_fid`, which a `run_io.MetricsLogger` placed after this callback writes (evaluate at
    multiples of its `every` to land on a row). `history` lists {"step", "fid", "is_mean",
    "is_std"} of the evaluations of this `fit`.
    Subclasses score with another metric by overriding `KEY` (the score minimised), `FIELDS`,
    `score` and `row` (`EvaluateToyMetric`).
    """

    KEY = "fid"
    FIELDS = ("fid", "inception_score", "best_fid")

    def __init__(self, inception: metrics.FeatureModel, reference: metrics.Reference, *,
                 every: int, num_samples: int = 10000, total_steps: int | None = None,
                 checkpoint: tf.train.Checkpoint | None = None,
                 best_directory: str | None = None, state: FIDState | None = None,
                 batch_size: int = 100, seed: int = 0):
        super().__init__()
        self.every = positive_int("every", every)
        positive_int("num_samples", num_samples)
        if (checkpoint is None) != (best_directory is None):
            raise ValueError("Pass both checkpoint and best_directory to keep the best "
                             f"checkpoint, or neither; got best_directory={best_directory!r}.")
        self.feature_model = inception  # the Inception model, or the toy classifier
        self.reference = reference
        self.num_samples = num_samples
        self.total_steps = total_steps
        self.best_directory = best_directory
        self.state = state if state is not None else FIDState()
        self.batch_size = batch_size
        self.seed = seed
        self.history: list[dict[str, float]] = []
        self._manager = None if checkpoint is None else tf.train.CheckpointManager(
            checkpoint, distribution.writer_directory(best_directory), max_to_keep=1)

    @property
    def best_fid(self) -> float:
        """The best (lowest) `KEY` score so far: FID here, toy FID in `EvaluateToyMetric`."""
        return float(self.state.best_fid.numpy())

    @property
    def best_step(self) -> int:
        return int(self.state.best_step.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0 or step == self.total_steps:
            record = self.evaluate(step)
            if logs is not None:
                logs.update(self.row(record))

    def score(self) -> dict[str, Any]:
        """The current EMA generator's scores: {"fid", "is_mean", "is_std"}."""
        return generator_scores(self.model, inception=self.feature_model,
                                reference=self.reference, num_samples=self.num_samples,
                                batch_size=self.batch_size, seed=self.seed)

    def row(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        """The metrics.csv / TensorBoard values of `scores` (after the best is updated)."""
        return {"fid": scores["fid"], "inception_score": scores["is_mean"],
                "best_fid": self.best_fid}

    def evaluate(self, step: int) -> dict[str, Any]:
        """Scores the current EMA generator; records a new best (and saves it)."""
        scores = self.score()
        if scores[self.KEY] < self.best_fid:
            self.state.best_fid.assign(scores[self.KEY])
            self.state.best_step.assign(step)
            if self._manager is not None:
                self._manager.save(checkpoint_number=step)
                distribution.remove_writer_directory(self._manager.directory,
                                                     self.best_directory)
        record = {"step": step, **scores}
        self.history.append(record)
        row = self.row(scores)
        logging.info("Evaluation at iteration %d: %s (best %s %.4f at %d)", step,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items()), self.KEY,
                     self.best_fid, self.best_step)
        return record


class EvaluateToyMetric(EvaluateFID):
    """`EvaluateFID` with the offline toy_shapes metric instead of Inception: every `every`
    iterations and at the last one, toy FID, class coverage and confident share of the EMA
    generator (`toy_generator_scores`); the best checkpoint is the lowest toy FID.

    Args:
      classifier, reference: from `toy_metric.load_classifier()`.
      Others: as `EvaluateFID`.

    The evaluated iteration's logs get `toy_fid`, `toy_fid_floor` (the real test vs train
    value, constant: the best a generator can be expected to reach), `class_coverage` (of 12),
    `confident_share` and `best_toy_fid`.
    """

    KEY = "toy_fid"
    FIELDS = ("toy_fid", "toy_fid_floor", "class_coverage", "confident_share", "best_toy_fid")

    def __init__(self, classifier: metrics.FeatureModel, reference: toy_metric.ToyReference,
                 **kwargs):
        super().__init__(classifier, reference, **kwargs)

    def score(self) -> dict[str, Any]:
        """{"toy_fid", "confident_share", "class_coverage", "class_counts"}."""
        return toy_generator_scores(self.model, classifier=self.feature_model,
                                    reference=(self.reference.mu, self.reference.sigma),
                                    num_samples=self.num_samples, batch_size=self.batch_size,
                                    seed=self.seed)

    def row(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        return {"toy_fid": scores["toy_fid"], "toy_fid_floor": self.reference.floor,
                "class_coverage": scores["class_coverage"],
                "confident_share": scores["confident_share"], "best_toy_fid": self.best_fid}


EVALUATIONS = {"fid": EvaluateFID, "toy": EvaluateToyMetric}


def evaluation_metric(metric: str | None, dataset: str) -> str:
    """The metric a run is scored with: `metric` ("fid": Inception FID and IS; "toy": the
    toy_shapes classifier), or by default "toy" for toy_shapes (offline, no Inception) and
    "fid" for every other dataset."""
    if metric is None:
        return "toy" if dataset == "toy_shapes" else "fid"
    if metric not in EVALUATIONS:
        raise ValueError(f"Unknown evaluation metric {metric!r}; choose one of "
                         f"{sorted(EVALUATIONS)} or None (toy for toy_shapes, else fid).")
    if metric == "toy" and dataset != "toy_shapes":
        raise ValueError(f"The toy metric scores toy_shapes samples only, not {dataset!r}; use "
                         "metric 'fid' (or None).")
    return metric


# ---------------------------------------------------------------- scoring finished checkpoints


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A run's metric as one function.

    Attributes:
      metric: "fid" or "toy".
      score: `score(gan, num_samples=..., batch_size=..., seed=...)` -> the scores of the EMA
        samples: {"fid", "is_mean", "is_std"} (and "fid_test" with a test reference), or
        {"toy_fid", "toy_fid_floor", "confident_share", "class_coverage", "class_counts"}.
      header: what eval.json records of the models and references: "inception", "reference"
        (and "test_split", "test_reference" with a test reference), or "classifier",
        "real_data" (and "test_split": the toy metric's reference is always the test split).
      model, reference: the Inception model and the training reference (mu, sigma), or the toy
        classifier and its `toy_metric.ToyReference`: what `EVALUATIONS[metric]` takes.
    """

    metric: str
    score: Callable[..., dict[str, Any]]
    header: dict[str, Any]
    model: metrics.FeatureModel
    reference: Any


def scorer(metric: str, *, dataset: str, inception_path: str | None = None,
           reference_stats: str | None = None, test: bool = False,
           test_reference_stats: str | None = None, data_dir: str | None = None) -> Scorer:
    """The `Scorer` of `metric` (from `evaluation_metric`) for samples of `dataset`.

    "fid": Inception from `inception_path` (`metrics.load_inception`), the reference from
    `reference_stats` or the training split (`fid_reference`); with `test`, also "fid_test"
    against `test_reference_stats` or the dataset's test split (CIFAR-10 test, Tiny-ImageNet
    validation), from the same Inception pass. "toy": the toy_shapes classifier, whose
    reference is the test split already; it takes no Inception or statistics files.

    Raises:
      ValueError: a file argument the metric does not use.
      metrics.InceptionUnavailableError: "fid" and no Inception model can be loaded.
    """
    if metric == "toy":
        unused = {"inception_path": inception_path, "reference_stats": reference_stats,
                  "test_reference_stats": test_reference_stats}
        for name, value in unused.items():
            if value is not None:
                raise ValueError(f"{name}={value!r} is for the FID metric, but this run is "
                                 "scored with the toy metric; use metric 'fid' (--metric=fid) "
                                 "for Inception.")
        return _toy_scorer(test=test)
    if test_reference_stats is not None and not test:
        raise ValueError(f"test_reference_stats={test_reference_stats!r} is used by the "
                         "test-set evaluation only; turn it on (test_eval) or drop the file.")
    return _fid_scorer(dataset, inception_path=inception_path, reference_stats=reference_stats,
                       test=test, test_reference_stats=test_reference_stats, data_dir=data_dir)


def _fid_scorer(dataset: str, *, inception_path: str | None, reference_stats: str | None,
                test: bool, test_reference_stats: str | None, data_dir: str | None) -> Scorer:
    inception = metrics.load_inception(inception_path)
    reference, reference_path = fid_reference(dataset, inception=inception,
                                              reference_stats=reference_stats, data_dir=data_dir)
    header = {"inception": inception.source, "reference": reference_path}
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
    (None: skipped) restored in turn into `gan` by `checkpointer` (`run_io.Checkpointer`);
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
