"""A tiny run scored by the evaluation callback train_lib builds, without training.

Shared by tests/test_evaluate.py (FID) and tests/test_toy_metric.py (toy metric). Not collected
by pytest (the name does not start with test_).
"""
from __future__ import annotations

import os
from pathlib import Path

import gin

from adapt_tf import callbacks as cb, configurables, train_lib
from adapt_tf.layers import masked_layers

TINY = str(Path(__file__).resolve().parent.parent / "gin_configs" / "test" / "tiny.gin")
SCALES = {1: 1.0, 2: 0.2, 3: 1.0, 4: 3.0, 5: 1.5}  # EMA kernel scale at each iteration


def build(workdir: str, bindings, *, metric: str, num_samples: int,
          inception_path: str | None = None):
    """(run, callback, logger): tiny.gin with `bindings`, its config recorded in `workdir`, and
    the `metric` callback scoring `num_samples` EMA samples every 2 of 5 iterations."""
    config = configurables.parse_run_config([TINY], bindings)
    os.makedirs(workdir)
    with open(os.path.join(workdir, "operative_config.gin"), "w") as f:
        f.write(gin.config_str())
    run = train_lib.build_run(config.run_spec(workdir=workdir))
    logger = cb.MetricsLogger(workdir, every=2, extra_fields=cb.EVALUATIONS[metric].FIELDS,
                              tensorboard=False)
    callback = train_lib._evaluation_callback(
        run, metric=metric, workdir=workdir, dataset="toy_shapes", every=2,
        num_samples=num_samples, total_steps=5, inception_path=inception_path,
        reference_stats=None, data_dir=None, logger=logger)
    return run, callback, logger


def score_iterations(run, callback, logger) -> dict[int, dict]:
    """Steps through iterations 1..5, rescaling the EMA kernels by `SCALES` (which changes the
    samples as training would), lets the callback evaluate, saves a checkpoint at the end;
    returns what the logger got at each iteration."""
    callback.set_model(run.gan)
    logged = {}
    for step, scale in SCALES.items():
        run.gan.step.assign(step)
        for layer in masked_layers(run.gan.ema_generator):
            layer.kernel.assign(layer.kernel * scale)
        callback.on_train_batch_end(step - 1)
        logged[step], logger.extra = logger.extra, {}
    run.checkpointer.save()
    return logged
