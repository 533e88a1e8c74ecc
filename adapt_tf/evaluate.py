"""`python -m adapt_tf.evaluate --workdir=W [--num_samples=50000] [--inception_path=P]
[--reference_stats=S]`: FID and IS of a run's best and last checkpoints, into W/eval.json.

The run is rebuilt from W/operative_config.gin (`runs.read_run_config`, then
`train_lib.build_run`, on the default strategy), and each checkpoint is restored in turn:
the best one (W/checkpoints_best/, kept by the training-time FID callback, if it ran) and the
last one (W/checkpoints/). Each is scored as the paper does (docs/ALGORITHM.md §9):
`num_samples` images of the EMA generator in train mode, uniformly random labels if
conditional, FID against the reference statistics and the Inception Score (10 splits) from
one Inception pass (`callbacks.generator_scores`).

Inception: --inception_path, else the run's `train.inception_path`, else TF-Hub (offline,
`metrics.load_inception` says how to provide it). Reference statistics: --reference_stats,
else the run's `train.reference_stats`, else computed from the run's dataset and cached at
`callbacks.reference_cache_path(...)` ($ADAPT_TF_CACHE_DIR/fid_stats or
~/.cache/adapt_tf/fid_stats).

W/eval.json:
    {"workdir", "num_samples", "seed", "inception", "reference",
     "checkpoints": {"best": {"checkpoint", "step", "fid", "is_mean", "is_std"},
                     "last": {...}},
     "training_best": {"fid", "step", "num_samples"}   # what the FID callback recorded, if any
    }
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags, logging

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__all__ = ["evaluate_run", "define_flags", "main"]

_CHECKPOINT_DIRECTORIES = (("best", "checkpoints_best"), ("last", "checkpoints"))


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a program: importing this module for
    `evaluate_run` defines none, so it can share a process with other CLIs)."""
    flags.DEFINE_string("workdir", None, "Run directory written by adapt_tf.train.")
    flags.DEFINE_integer("num_samples", 50000,
                         "Generated images per checkpoint (the paper: 50000).")
    flags.DEFINE_string("inception_path", None, "Local Inception SavedModel directory "
                        "(default: the run's train.inception_path, else TF-Hub).")
    flags.DEFINE_string("reference_stats", None, ".npz with mu and sigma (default: the run's "
                        "train.reference_stats, else computed and cached).")
    flags.DEFINE_integer("batch_size", 100, "Images per generator / Inception call.")
    flags.DEFINE_integer("seed", 0, "Seed of the generated images.")


def evaluate_run(workdir: str, *, num_samples: int = 50000, inception_path: str | None = None,
                 reference_stats: str | None = None, batch_size: int = 100,
                 seed: int = 0) -> dict[str, Any]:
    """Scores the best and last checkpoints of the run in `workdir`; writes and returns the
    eval.json record (see the module docstring).

    Raises:
      ValueError: `workdir` holds no operative_config.gin or no checkpoint.
      metrics.InceptionUnavailableError: no Inception model can be loaded.
    """
    import tensorflow as tf

    from adapt_tf import callbacks as cb, metrics, runs, train_lib

    config = runs.read_run_config(workdir)
    arguments = config.arguments
    paths = {label: tf.train.latest_checkpoint(os.path.join(workdir, directory))
             for label, directory in _CHECKPOINT_DIRECTORIES}
    if not any(paths.values()):
        raise ValueError(f"{workdir!r} holds no checkpoint in checkpoints/ or "
                         "checkpoints_best/; train the run first.")
    inception = metrics.load_inception(inception_path or arguments["inception_path"])
    reference, reference_path = cb.fid_reference(
        arguments["dataset"], inception=inception,
        reference_stats=reference_stats or arguments["reference_stats"],
        data_dir=arguments["data_dir"])
    run = train_lib.build_run(**config.build_run_arguments())
    scored: dict[int, dict[str, float]] = {}
    checkpoints = {}
    for label, path in paths.items():
        if path is None:
            continue
        step = run.checkpointer.restore(path)
        if step not in scored:
            scored[step] = cb.generator_scores(run.gan, inception=inception,
                                               reference=reference, num_samples=num_samples,
                                               batch_size=batch_size, seed=seed)
            logging.info("%s checkpoint %s (iteration %d): %s", label, path, step,
                         scored[step])
        checkpoints[label] = {"checkpoint": path, "step": step, **scored[step]}
    record = {"workdir": workdir, "num_samples": num_samples, "seed": seed,
              "inception": inception.source, "reference": reference_path,
              "checkpoints": checkpoints}
    if int(run.fid_state.best_step.numpy()) >= 0:
        record["training_best"] = {"fid": float(run.fid_state.best_fid.numpy()),
                                   "step": int(run.fid_state.best_step.numpy()),
                                   "num_samples": arguments["eval_num_samples"]}
    _write_json(os.path.join(workdir, runs.EVAL_NAME), record)
    return record


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
                              inception_path=values.inception_path,
                              reference_stats=values.reference_stats,
                              batch_size=values.batch_size, seed=values.seed)
    except (metrics.InceptionUnavailableError, data.DatasetNotPreparedError) as error:
        sys.exit(f"Cannot evaluate {values.workdir}: {error}")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
