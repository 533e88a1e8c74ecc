"""`python -m adapt_tf.evaluate --workdir=W [--num_samples=50000] [--metric=fid|toy|classifier]
[--inception_path=P] [--reference_stats=S] [--test [--test_reference_stats=T]]`: scores of a
run's best and last checkpoints, into W/eval.json.

The run is rebuilt from its recorded configuration (`configurables.read_run_config`: the
record inside its newest checkpoint, else W/operative_config.gin; then `train_lib.build_run`,
on the default strategy), and each checkpoint is restored in turn:
the best one (W/checkpoints_best/, kept by the training-time evaluation callback, if it ran)
and the last one (W/checkpoints/). Each is scored on `num_samples` images of the EMA generator
in train mode, uniformly random labels if conditional (docs/ALGORITHM.md §9), with one of three
metrics (`scorers.evaluation_metric`: --metric, else the run's `train.eval_metric`, else
"toy" for toy_shapes, "classifier" for other labelled data without an Inception path, "fid"
otherwise), all through one `scorers.Scorer`:

* "fid", as the paper: FID against the reference statistics and the Inception Score (10
  splits) from one Inception pass (`scorers.generator_scores`). Inception: --inception_path,
  else the run's `train.inception_path`, else TF-Hub (offline, `metrics.load_inception` says
  how to provide it). Reference statistics: --reference_stats, else the run's
  `train.reference_stats`, else computed from the run's dataset and cached at
  `scorers.reference_cache_path(...)` ($ADAPT_TF_CACHE_DIR/fid_stats or
  ~/.cache/adapt_tf/fid_stats).
* "toy", offline: the toy_shapes classifier's toy FID (with its real-vs-real floor), class
  coverage and confident share (`adapt_tf.evaluation.toy_metric`; the classifier is trained at
  first use and cached in $ADAPT_TF_CACHE_DIR/toy_classifier or ~/.cache/adapt_tf/toy_classifier).
* "classifier", offline, any labelled dataset: a classifier of the dataset's classes trained
  at first use (cached by the data's fingerprint in $ADAPT_TF_CACHE_DIR/classifier or
  ~/.cache/adapt_tf/classifier): classifier FID with its real-vs-real floor, confident share,
  class coverage, class precision and agreement of conditional samples, and the classifier's
  held-out accuracy (`adapt_tf.evaluation.classifier_metric`). Refused, with the reason, when that
  accuracy is too low to mean anything.

With --test, FID is also computed against the dataset's test split (`data.DatasetSpec.
test_split`: CIFAR-10 test, Tiny-ImageNet validation; --test_reference_stats, else the run's
`train.test_reference_stats`, else computed and cached like the reference) from the same
Inception pass, and the record gets the "test" entry that `train.test_eval` writes at the end
of a run (`scorers.final_test_record`: the best checkpoint, else the last). Without --test,
a "test" entry already in eval.json is kept.

W/eval.json:
    {"workdir", "metric", "num_samples", "seed",
     "inception", "reference", "test_split", "test_reference",   # fid ("test_*": --test)
     "classifier", "real_data": {"toy_fid_floor", "test_accuracy", "test_confident_share",
                                 "test_coverage", "train_seconds"},   # toy
     "classifier", "real_data": {"classifier_fid_floor", "classifier_accuracy", "held_out",
                                 "num_classes", "train_seconds"},     # classifier
     "checkpoints": {"best": {"checkpoint", "step", **scores}, "last": {...}},
     # the callback's, if any:
     "training_best": {"fid", "toy_fid" or "classifier_fid", "step", "num_samples"},
     "test": {"metric", "checkpoint_kind": "best" or "last", "checkpoint", "step",
              "trained_steps", "num_samples", "seed", <the header above>, **scores}
    }
with scores {"fid", "is_mean", "is_std"} and, with --test, "fid_test" (fid), or {"toy_fid",
"toy_fid_floor", "confident_share", "class_coverage", "class_counts"} (toy, whose reference is
the test split already), or `classifier_metric.scores`' (classifier).
"""
from __future__ import annotations

import json
import sys
from typing import Any

from absl import app, flags

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__all__ = ["evaluate_run", "define_flags", "main"]


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a program: importing this module for
    `evaluate_run` defines none, so it can share a process with other CLIs)."""
    flags.DEFINE_string("workdir", None, "Run directory written by adapt_tf.train.")
    flags.DEFINE_integer("num_samples", 50000,
                         "Generated images per checkpoint (the paper: 50000).")
    flags.DEFINE_enum("metric", None, ["fid", "toy", "classifier"], "fid: Inception FID and "
                      "IS; toy: the offline toy_shapes classifier; classifier: a classifier of "
                      "the run's labelled dataset (default: the run's train.eval_metric, else "
                      "toy for toy_shapes, classifier for labelled data without an Inception "
                      "path, fid otherwise).")
    flags.DEFINE_string("inception_path", None, "Local Inception SavedModel directory "
                        "(default: the run's train.inception_path, else TF-Hub).")
    flags.DEFINE_string("reference_stats", None, ".npz with mu and sigma (default: the run's "
                        "train.reference_stats, else computed and cached).")
    flags.DEFINE_bool("test", False, "Also score against the dataset's test split (CIFAR-10 "
                      "test, Tiny-ImageNet val): fid_test in every checkpoint's scores and the "
                      "\"test\" entry of the best checkpoint, as train.test_eval writes it.")
    flags.DEFINE_string("test_reference_stats", None, ".npz of the test split's statistics, "
                        "with --test (default: the run's train.test_reference_stats, else "
                        "computed and cached).")
    flags.DEFINE_integer("batch_size", 100, "Images per generator / Inception call.")
    flags.DEFINE_integer("seed", 0, "Seed of the generated images.")


def evaluate_run(workdir: str, *, num_samples: int = 50000, metric: str | None = None,
                 inception_path: str | None = None, reference_stats: str | None = None,
                 test: bool = False, test_reference_stats: str | None = None,
                 batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """Scores the best and last checkpoints of the run in `workdir`; writes and returns the
    eval.json record (see the module docstring).

    `metric` is "fid", "toy" or "classifier" (`scorers.evaluation_metric`); default the
    run's `train.eval_metric`, which defaults to "toy" for toy_shapes, "classifier" for other
    labelled data without an Inception path, and "fid" otherwise. With `test`, the scores also
    hold "fid_test" against the dataset's test split (or `test_reference_stats`, default the
    run's `train.test_reference_stats`) and the record a "test" entry
    (`scorers.final_test_record`); without it, a "test" entry already in eval.json (the
    end-of-run evaluation, `train.test_eval`) is kept.

    Raises:
      ValueError: `workdir` holds no operative_config.gin or no checkpoint.
      metrics.InceptionUnavailableError: the metric is FID and no Inception model loads.
    """
    from adapt_tf.runs import configurables, train_lib, storage, workdir as workdir_lib
    from adapt_tf.evaluation import scorers

    config = configurables.read_run_config(workdir)
    arguments = config.arguments
    paths = _checkpoints(workdir)
    metric = _metric(arguments, metric)
    files = {"inception_path": inception_path, "reference_stats": reference_stats,
             "test_reference_stats": test_reference_stats}
    if metric == "fid":  # the run's own files where the call gives none
        for name in ["inception_path", "reference_stats"] + ["test_reference_stats"] * test:
            files[name] = files[name] or arguments[name]
    run = train_lib.build_run(config.run_spec())
    scoring = scorers.scorer(metric, dataset=arguments["dataset"], test=test,
                             data_dir=arguments["data_dir"],
                             image_size=run.architecture.image_size, **files)
    checkpoints = scorers.score_checkpoints(run.gan, run.checkpointer, paths, scoring.score,
                                            num_samples=num_samples, batch_size=batch_size,
                                            seed=seed)
    record = {"workdir": workdir, "metric": metric, "num_samples": num_samples, "seed": seed,
              **scoring.header, "checkpoints": checkpoints, **_training_best(run, arguments)}
    if test:
        record["test"] = scorers.final_test_record(
            checkpoints, scoring, num_samples=num_samples, seed=seed,
            trained_steps=max(entry["step"] for entry in checkpoints.values()))

    def keep_test(previous: dict[str, Any]) -> dict[str, Any]:
        kept = {"test": previous["test"]} if "test" in previous and not test else {}
        return {**record, **kept}

    return storage.update_json(workdir_lib.Workdir(workdir).eval, keep_test)


def _training_best(run, arguments: dict[str, Any]) -> dict[str, Any]:
    """{"training_best": the best score the training-time evaluation recorded, its iteration
    and sample count} as the restored run's `FIDState` holds it; {} if it never ran."""
    from adapt_tf.evaluation import scorers

    state = run.fid_state
    if int(state.best_step.numpy()) < 0:
        return {}
    metric = _metric(arguments, None)
    return {"training_best": {scorers.COLUMNS[metric].key: float(state.best_fid.numpy()),
                              "step": int(state.best_step.numpy()),
                              "num_samples": arguments["eval_num_samples"]}}


def _metric(arguments: dict[str, Any], metric: str | None) -> str:
    """`metric`, else the run's `train.eval_metric`, else its dataset's default
    (`scorers.evaluation_metric`)."""
    from adapt_tf import data
    from adapt_tf.evaluation import scorers

    labelled = data.dataset_info(arguments["dataset"],
                                 data_dir=arguments["data_dir"]).num_classes is not None
    return scorers.evaluation_metric(metric or arguments["eval_metric"], arguments["dataset"],
                                     labelled=labelled,
                                     inception_path=arguments["inception_path"])


def _checkpoints(workdir: str) -> dict[str, str | None]:
    """{"best": path or None, "last": ...}: the newest checkpoint of each directory that reads
    back whole and finite; a bad newer one is skipped with a warning and left in place
    (evaluation does not change the run). ValueError if there is none."""
    from adapt_tf.runs import storage, workdir as workdir_lib

    directories = {kind: workdir_lib.Workdir(workdir).checkpoint_directory(kind)
                   for kind in workdir_lib.CHECKPOINT_KINDS}
    paths = {kind: storage.usable_checkpoint(directory, reject=False)
             for kind, directory in directories.items()}
    if not any(paths.values()):
        raise ValueError(f"{workdir!r} holds no checkpoint in "
                         f"{' or '.join(directories.values())}; train the run first.")
    return paths


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    if not values.workdir:
        raise app.UsageError("Give --workdir (a run directory written by adapt_tf.train).")
    from adapt_tf.evaluation import classifier_metric, metrics
    from adapt_tf import data

    try:
        record = evaluate_run(values.workdir, num_samples=values.num_samples,
                              metric=values.metric, inception_path=values.inception_path,
                              reference_stats=values.reference_stats, test=values.test,
                              test_reference_stats=values.test_reference_stats,
                              batch_size=values.batch_size, seed=values.seed)
    except (metrics.InceptionUnavailableError, data.DatasetNotPreparedError,
            classifier_metric.ClassifierTooWeakError, ValueError,
            OSError) as error:  # a missing workdir, config or checkpoint, a torn eval.json
        sys.exit(f"Cannot evaluate {values.workdir}: {' '.join(str(error).split())}")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    from adapt_tf import cli

    cli.quiet_tensorflow()
    define_flags()
    cli.run(main)
