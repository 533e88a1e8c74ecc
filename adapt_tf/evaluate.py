"""`python -m adapt_tf.evaluate --workdir=W [--num_samples=50000] [--metric=fid|toy]
[--inception_path=P] [--reference_stats=S]`: scores of a run's best and last checkpoints, into
W/eval.json.

The run is rebuilt from W/operative_config.gin (`configurables.read_run_config`, then
`train_lib.build_run`, on the default strategy), and each checkpoint is restored in turn:
the best one (W/checkpoints_best/, kept by the training-time evaluation callback, if it ran)
and the last one (W/checkpoints/). Each is scored on `num_samples` images of the EMA generator
in train mode, uniformly random labels if conditional (docs/ALGORITHM.md §9), with one of two
metrics (`evaluation.evaluation_metric`: --metric, else the run's `train.eval_metric`, else
"toy" for toy_shapes and "fid" for the other datasets):

* "fid", as the paper: FID against the reference statistics and the Inception Score (10
  splits) from one Inception pass (`evaluation.generator_scores`). Inception: --inception_path,
  else the run's `train.inception_path`, else TF-Hub (offline, `metrics.load_inception` says
  how to provide it). Reference statistics: --reference_stats, else the run's
  `train.reference_stats`, else computed from the run's dataset and cached at
  `evaluation.reference_cache_path(...)` ($ADAPT_TF_CACHE_DIR/fid_stats or
  ~/.cache/adapt_tf/fid_stats).
* "toy", offline: the toy_shapes classifier's toy FID (with its real-vs-real floor), class
  coverage and confident share (`adapt_tf.toy_metric`; the classifier is trained at first use
  and cached in $ADAPT_TF_CACHE_DIR/toy_classifier or ~/.cache/adapt_tf/toy_classifier).

W/eval.json:
    {"workdir", "metric", "num_samples", "seed",
     "inception", "reference",                      # fid
     "classifier", "real_data": {"toy_fid_floor", "test_accuracy", "test_confident_share",
                                 "test_coverage", "train_seconds"},   # toy
     "checkpoints": {"best": {"checkpoint", "step", **scores}, "last": {...}},
     "training_best": {"fid" or "toy_fid", "step", "num_samples"}  # the callback's, if any
    }
with scores {"fid", "is_mean", "is_std"} (fid) or {"toy_fid", "toy_fid_floor",
"confident_share", "class_coverage", "class_counts"} (toy).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags, logging

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__all__ = ["evaluate_run", "define_flags", "main"]


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a program: importing this module for
    `evaluate_run` defines none, so it can share a process with other CLIs)."""
    flags.DEFINE_string("workdir", None, "Run directory written by adapt_tf.train.")
    flags.DEFINE_integer("num_samples", 50000,
                         "Generated images per checkpoint (the paper: 50000).")
    flags.DEFINE_enum("metric", None, ["fid", "toy"], "fid: Inception FID and IS; toy: the "
                      "offline toy_shapes classifier (default: the run's train.eval_metric, "
                      "else toy for toy_shapes and fid otherwise).")
    flags.DEFINE_string("inception_path", None, "Local Inception SavedModel directory "
                        "(default: the run's train.inception_path, else TF-Hub).")
    flags.DEFINE_string("reference_stats", None, ".npz with mu and sigma (default: the run's "
                        "train.reference_stats, else computed and cached).")
    flags.DEFINE_integer("batch_size", 100, "Images per generator / Inception call.")
    flags.DEFINE_integer("seed", 0, "Seed of the generated images.")


def evaluate_run(workdir: str, *, num_samples: int = 50000, metric: str | None = None,
                 inception_path: str | None = None, reference_stats: str | None = None,
                 batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """Scores the best and last checkpoints of the run in `workdir`; writes and returns the
    eval.json record (see the module docstring).

    `metric` is "fid" or "toy" (`evaluation.evaluation_metric`); default the run's
    `train.eval_metric`, which defaults to "toy" for toy_shapes and "fid" otherwise.

    Raises:
      ValueError: `workdir` holds no operative_config.gin or no checkpoint.
      metrics.InceptionUnavailableError: the metric is FID and no Inception model can be
        loaded.
    """
    from adapt_tf import configurables, evaluation, train_lib, workdir as workdir_lib

    config = configurables.read_run_config(workdir)
    arguments = config.arguments
    paths = _checkpoints(workdir)
    metric = evaluation.evaluation_metric(metric or arguments["eval_metric"], arguments["dataset"])
    scorer, header = (_toy_scorer if metric == "toy" else _fid_scorer)(
        arguments, inception_path=inception_path, reference_stats=reference_stats)
    run = train_lib.build_run(config.run_spec())
    scored: dict[int, dict[str, Any]] = {}
    checkpoints = {}
    for label, path in paths.items():
        if path is None:
            continue
        step = run.checkpointer.restore(path)
        if step not in scored:
            scored[step] = scorer(run.gan, num_samples=num_samples, batch_size=batch_size,
                                  seed=seed)
            logging.info("%s checkpoint %s (iteration %d): %s", label, path, step,
                         scored[step])
        checkpoints[label] = {"checkpoint": path, "step": step, **scored[step]}
    record = {"workdir": workdir, "metric": metric, "num_samples": num_samples, "seed": seed,
              **header, "checkpoints": checkpoints}
    if int(run.fid_state.best_step.numpy()) >= 0:
        record["training_best"] = {evaluation.EVALUATIONS[metric].KEY:
                                   float(run.fid_state.best_fid.numpy()),
                                   "step": int(run.fid_state.best_step.numpy()),
                                   "num_samples": arguments["eval_num_samples"]}
    _write_json(workdir_lib.Workdir(workdir).eval, record)
    return record


def _checkpoints(workdir: str) -> dict[str, str | None]:
    """{"best": path or None, "last": ...}: the newest checkpoint of each directory that reads
    back whole and finite; a bad newer one is skipped with a warning and left in place
    (evaluation does not change the run). ValueError if there is none."""
    from adapt_tf import workdir as workdir_lib

    directories = {kind: workdir_lib.Workdir(workdir).checkpoint_directory(kind)
                   for kind in workdir_lib.CHECKPOINT_KINDS}
    paths = {kind: workdir_lib.usable_checkpoint(directory, reject=False)
             for kind, directory in directories.items()}
    if not any(paths.values()):
        raise ValueError(f"{workdir!r} holds no checkpoint in "
                         f"{' or '.join(directories.values())}; train the run first.")
    return paths


def _fid_scorer(arguments: dict[str, Any], *, inception_path: str | None,
                reference_stats: str | None):
    """(gan -> {"fid", "is_mean", "is_std"}, the record's "inception" and "reference")."""
    from adapt_tf import evaluation, metrics

    inception = metrics.load_inception(inception_path or arguments["inception_path"])
    reference, reference_path = evaluation.fid_reference(
        arguments["dataset"], inception=inception,
        reference_stats=reference_stats or arguments["reference_stats"],
        data_dir=arguments["data_dir"])

    def score(gan, **kwargs) -> dict[str, Any]:
        return evaluation.generator_scores(gan, inception=inception, reference=reference, **kwargs)

    return score, {"inception": inception.source, "reference": reference_path}


def _toy_scorer(arguments: dict[str, Any], *, inception_path: str | None,
                reference_stats: str | None):
    """(gan -> {"toy_fid", "toy_fid_floor", "confident_share", "class_coverage",
    "class_counts"}, the record's "classifier" and "real_data")."""
    from adapt_tf import evaluation, toy_metric

    for name, value in {"inception_path": inception_path,
                        "reference_stats": reference_stats}.items():
        if value is not None:
            raise ValueError(f"--{name}={value!r} is for the FID metric, but this run is scored "
                             "with the toy metric; pass --metric=fid to use Inception.")
    classifier, reference = toy_metric.load_classifier()

    def score(gan, **kwargs) -> dict[str, Any]:
        scores = evaluation.toy_generator_scores(
            gan, classifier=classifier, reference=(reference.mu, reference.sigma), **kwargs)
        return {"toy_fid": scores.pop("toy_fid"), "toy_fid_floor": reference.floor, **scores}

    real = {key: value for key, value in reference.summary().items() if key != "classifier"}
    return score, {"classifier": reference.path, "real_data": real}


def _write_json(path: str, record: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    if not values.workdir:
        raise app.UsageError("Give --workdir (a run directory written by adapt_tf.train).")
    from adapt_tf import data, metrics

    try:
        record = evaluate_run(values.workdir, num_samples=values.num_samples,
                              metric=values.metric, inception_path=values.inception_path,
                              reference_stats=values.reference_stats,
                              batch_size=values.batch_size, seed=values.seed)
    except (metrics.InceptionUnavailableError, data.DatasetNotPreparedError) as error:
        sys.exit(f"Cannot evaluate {values.workdir}: {error}")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
