"""`python -m adapt_tf.train --gin_file=F [--gin_file=F2] [--gin_bindings=B] --workdir=W`.

Trains (or resumes, if W holds checkpoints) the run the gin files describe, writing
W/operative_config.gin, W/metrics.csv, W/tensorboard/, W/samples/, W/checkpoints/ and, at the
end, W/training.png (BR with its band, densities and FID or the toy metric over iterations)
and, with `train.test_eval = True`, the test-set scores of the best checkpoint in W/eval.json.
A resumed run must have the recorded configuration (`configurables.RESUMABLE_CHANGES` may
differ).
Errors end as one line and exit 1 (`--debug` or ADAPT_TF_DEBUG=1: with the traceback);
SIGTERM / SIGINT save and exit 143 / 130. See docs/RELIABILITY.md.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time

from absl import app, flags, logging

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

FLAGS = flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), applied in order.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'DENSITY = 0.2'.")
WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; resumed if it exists).")
DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of errors (or ADAPT_TF_DEBUG=1).")
flags.mark_flag_as_required("workdir")

# What a user's configuration, data or workdir can cause; anything else keeps its traceback.
USER_ERRORS = (ValueError, TypeError, KeyError, SyntaxError, OSError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.value:
        raise app.UsageError("Give at least one --gin_file (e.g. gin_configs/quickstart.gin).")
    from adapt_tf.metrics import InceptionUnavailableError
    from adapt_tf.preemption import TrainingInterrupted
    from adapt_tf.train_lib import TrainingDiverged

    try:
        _train(FLAGS.value, BINDINGS.value, WORKDIR.value)
    except TrainingInterrupted as stop:
        print(stop.message, file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except (*USER_ERRORS, TrainingDiverged, InceptionUnavailableError) as error:
        if DEBUG.value or os.environ.get("ADAPT_TF_DEBUG", "") not in ("", "0"):
            raise
        sys.exit(f"adapt_tf.train: error: {_one_line(error)} (--debug shows the traceback)")


def _one_line(error: BaseException) -> str:
    """The error's message on one line, without the suffix gin appends to errors raised inside
    a configurable ("In call to configurable 'method' (<function ... at 0x...>)"), which names
    an address, not a value."""
    text = " ".join(str(error).split())
    return re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", "", text)


def _train(gin_files, gin_bindings, workdir: str) -> None:
    """Checks the workdir and the config, records the config, trains, records what ran."""
    import gin

    from adapt_tf import configurables, distribution, workdir as workdir_lib

    workdir_lib.check_writable(workdir)
    # Workers of a multi-worker run share the workdir: the chief owns it and its config.
    chief = distribution.is_chief_process()
    config_path = workdir_lib.Workdir(workdir).config
    with workdir_lib.lock(workdir) if chief else contextlib.nullcontext():
        resuming = _parse_and_check(gin_files, gin_bindings, workdir)
        if chief and not resuming:
            workdir_lib.write_atomic(config_path, gin.config_str())
        logging.get_absl_handler().use_absl_log_file("train", workdir)
        logging.set_verbosity(logging.INFO)
        logging.set_stderrthreshold(logging.INFO)
        start = time.time()
        configurables.train(workdir=workdir)
        if chief:
            workdir_lib.write_atomic(config_path, gin.operative_config_str())
            _finish(workdir, wall_seconds=time.time() - start)
    logging.info("Done: %s", workdir)


def _finish(workdir: str, *, wall_seconds: float) -> None:
    """Draws W/training.png (BR with its band, d_D and d_G, and FID or the toy metric over the
    iterations, as `python -m adapt_tf.report W` draws one run), then prints the run's summary
    and the files to open (`report.summary`)."""
    from adapt_tf import report, workdir as workdir_lib

    record = report.load_run(workdir)
    path = report.plot_runs([record], workdir_lib.Workdir(workdir).training_plot,
                            title=f"{record.label} on {record.setting}")
    logging.info("Wrote %s", path)
    print(report.summary(record, wall_seconds=wall_seconds), flush=True)


def _parse_and_check(gin_files, gin_bindings, workdir: str) -> bool:
    """Parses the config into gin, refuses it if it differs from the one `workdir`'s
    checkpoints were trained with (`configurables.check_resume`) or fails `train`'s argument
    checks; returns whether there is a recorded config to keep (a resume)."""
    from adapt_tf import configurables, train_lib

    recorded = configurables.recorded_bindings(workdir)
    try:
        configurables.parse_config(gin_files, gin_bindings)
    except USER_ERRORS as error:
        raise ValueError(f"Bad gin configuration ({', '.join(gin_files)}; bindings "
                         f"{list(gin_bindings)}): {error}") from error
    configurables.check_resume(workdir, recorded, configurables.config_bindings())
    train_lib.check_arguments(configurables.current_run_config().run_spec(workdir=workdir))
    return recorded is not None


if __name__ == "__main__":
    from adapt_tf import cli

    cli.quiet_tensorflow()
    cli.run(main)
