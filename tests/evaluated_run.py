"""A tiny run scored by the evaluation callback train_lib builds, without training.

Shared by tests/test_evaluate.py (FID) and tests/test_toy_metric.py (toy metric). Not collected
by pytest (the name does not start with test_).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import gin

from adapt_tf.runs import configurables, train_lib
from adapt_tf.evaluation import scorers
from adapt_tf.sparse.layers import masked_layers

TINY = str(Path(__file__).resolve().parent.parent / "gin_configs" / "test" / "tiny.gin")
SCALES = {1: 1.0, 2: 0.2, 3: 1.0, 4: 3.0, 5: 1.5}  # EMA kernel scale at each iteration


def build(workdir: str, bindings, *, metric: str, num_samples: int,
          inception_path: str | None = None):
    """(run, callback): tiny.gin with `bindings`, its config recorded in `workdir`, and
    the `metric` callback scoring `num_samples` EMA samples every 2 of 5 iterations."""
    config = configurables.parse_run_config([TINY], bindings)
    os.makedirs(workdir)
    with open(os.path.join(workdir, "operative_config.gin"), "w") as f:
        f.write(gin.config_str())
    run = train_lib.build_run(config.run_spec(workdir=workdir))
    scoring = scorers.scorer(metric, dataset="toy_shapes", inception_path=inception_path)
    callback = train_lib._evaluation_callback(run, scoring=scoring, workdir=workdir, every=2,
                                              num_samples=num_samples, total_steps=5)
    return run, callback


def score_iterations(run, callback) -> dict[int, dict]:
    """Steps through iterations 1..5, rescaling the EMA kernels by `SCALES` (which changes the
    samples as training would), lets the callback evaluate, saves a checkpoint at the end;
    returns the entries the callback added to each iteration's Keras logs."""
    callback.set_model(run.gan)
    logged = {}
    for step, scale in SCALES.items():
        run.gan.step.assign(step)
        for layer in masked_layers(run.gan.ema_generator):
            layer.kernel.assign(layer.kernel * scale)
        logged[step] = {}
        callback.on_train_batch_end(step - 1, logged[step])
    run.checkpointer.save()
    return logged


def final_test(workdir) -> tuple[dict[int, float], dict]:
    """({iteration: FID} of the rows of `workdir`'s metrics.csv that hold one, the "test"
    entry of its eval.json) of a run trained with `train.test_eval`."""
    with open(Path(workdir) / "metrics.csv") as f:
        fids = {int(row["step"]): float(row["fid"]) for row in csv.DictReader(f) if row["fid"]}
    with open(Path(workdir) / "eval.json") as f:
        return fids, json.load(f)["test"]
