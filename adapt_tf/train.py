"""`python -m adapt_tf.train --gin_file=F [--gin_file=F2] [--gin_bindings=B] --workdir=W`.

Trains (or resumes, if W holds checkpoints) the run the gin files describe, writing
W/operative_config.gin, W/metrics.csv, W/tensorboard/, W/samples/ and W/checkpoints/.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

FLAGS = flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), applied in order.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'DENSITY = 0.2'.")
WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; resumed if it exists).")
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import gin

    from adapt_tf import configurables

    if not FLAGS.value:
        raise app.UsageError("Give at least one --gin_file (e.g. gin_configs/quickstart.gin).")
    try:
        configurables.parse_config(FLAGS.value, BINDINGS.value)
    except (ValueError, KeyError, TypeError, SyntaxError) as error:
        sys.exit(f"Bad gin configuration ({', '.join(FLAGS.value)}; bindings "
                 f"{BINDINGS.value}): {error}")
    workdir = WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, "operative_config.gin")
    with open(config_path, "w") as f:
        f.write(gin.config_str())
    logging.get_absl_handler().use_absl_log_file("train", workdir)
    logging.set_verbosity(logging.INFO)
    logging.set_stderrthreshold(logging.INFO)
    configurables.train(workdir=workdir)
    with open(config_path, "w") as f:
        f.write(gin.operative_config_str())
    logging.info("Done: %s", workdir)


if __name__ == "__main__":
    app.run(main)
