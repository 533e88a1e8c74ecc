"""`python -m adapt_tf.train --gin_file=F [--gin_file=F2] [--gin_bindings=B] --workdir=W`.

Trains (or resumes, if W holds checkpoints) the run the gin files describe, writing its
configuration inside every checkpoint and in W/operative_config.gin, W/metrics.csv,
W/tensorboard/, W/samples/, W/checkpoints/ and, at the end, W/training.png (BR with its
band, densities and FID or the toy metric over iterations) and, with `train.test_eval = True`,
the test-set scores of the best checkpoint in W/eval.json.
A resumed run must have the configuration its checkpoint records
(`configurables.RESUMABLE_CHANGES` may differ); a run starting from iteration 1 moves a previous
run's files to W/orphaned/n/.
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
    from adapt_tf.evaluation.metrics import InceptionUnavailableError
    from adapt_tf.runs.preemption import TrainingInterrupted
    from adapt_tf.runs.train_lib import TrainingDiverged

    fresh = not os.path.lexists(WORKDIR.value)
    try:
        _train(FLAGS.value, BINDINGS.value, WORKDIR.value)
    except TrainingInterrupted as stop:
        print(stop.message, file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except (*USER_ERRORS, TrainingDiverged, InceptionUnavailableError) as error:
        if fresh:
            _remove_unstarted(WORKDIR.value)
        if DEBUG.value or os.environ.get("ADAPT_TF_DEBUG", "") not in ("", "0"):
            raise
        sys.exit(f"adapt_tf.train: error: {_one_line(error)} (--debug shows the traceback)")


def _remove_unstarted(workdir: str) -> None:
    """Removes a workdir this invocation created if it holds only what is made before the
    configuration is accepted (the lock and an empty checkpoints/): a refused run leaves
    nothing behind."""
    from adapt_tf.runs import workdir as workdir_lib

    made = {workdir_lib.LOCK_NAME, workdir_lib.LOCK_NAME + ".pid", workdir_lib.CHECKPOINT_DIR}
    checkpoints = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
    with contextlib.suppress(OSError):
        if set(os.listdir(workdir)) <= made and not os.listdir(checkpoints):
            for name in os.listdir(workdir):
                path = os.path.join(workdir, name)
                (os.rmdir if os.path.isdir(path) else os.remove)(path)
            os.rmdir(workdir)


def _one_line(error: BaseException) -> str:
    """The error's message on one line, without the suffix gin appends to errors raised inside
    a configurable ("In call to configurable 'method' (<function ... at 0x...>)"), which names
    an address, not a value."""
    text = " ".join(str(error).split())
    return re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", "", text)


def _train(gin_files, gin_bindings, workdir: str) -> None:
    """Checks the workdir and the config, trains with the config recorded in every checkpoint
    and (once training starts) in W/operative_config.gin, records what ran."""
    import gin

    from adapt_tf.runs import configurables, distribution, storage, workdir as workdir_lib

    storage.check_writable(workdir)
    # Workers of a multi-worker run share the workdir: the chief owns it and its config.
    chief = distribution.is_chief_process()
    config_path = workdir_lib.Workdir(workdir).config
    with storage.lock(workdir) if chief else contextlib.nullcontext():
        resuming = _parse_and_check(gin_files, gin_bindings, workdir, chief=chief)
        record = configurables.record_text()
        logging.get_absl_handler().use_absl_log_file("train", workdir)
        logging.set_verbosity(logging.INFO)
        logging.set_stderrthreshold(logging.INFO)
        start = time.time()
        configurables.train(workdir=workdir, record=record, extra_callbacks=[
            _record_config(config_path, record)] if chief and not resuming else [])
        if chief:
            storage.write_atomic(config_path, gin.operative_config_str())
            _finish(workdir, wall_seconds=time.time() - start)
    logging.info("Done: %s", workdir)


def _record_config(path: str, text: str):
    """A callback writing `text` to `path` when training begins: after the run is built, its
    data and scorer loaded and a previous run's files set aside, so that a run that fails
    before that leaves no config behind."""
    from adapt_tf.runs import storage
    import tf_keras as keras

    return keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: storage.write_atomic(path, text))


def _finish(workdir: str, *, wall_seconds: float) -> None:
    """Draws W/training.png (BR with its band, d_D and d_G, and FID or the toy metric over the
    iterations, as `python -m adapt_tf.report W` draws one run), then prints the run's summary
    and the files to open (`report.summary`)."""
    from adapt_tf import report
    from adapt_tf.runs import workdir as workdir_lib

    record = report.load_run(workdir)
    path = report.plot_runs([record], workdir_lib.Workdir(workdir).training_plot,
                            title=f"{record.label} on {record.setting}")
    logging.info("Wrote %s", path)
    print(report.summary(record, wall_seconds=wall_seconds), flush=True)


def _parse_and_check(gin_files, gin_bindings, workdir: str, *, chief: bool) -> bool:
    """Parses the config into gin, refuses it if it differs from the one recorded in
    `workdir`'s newest usable checkpoint (`configurables.check_resume`) or fails `train`'s
    argument checks; the chief first restores a missing or edited W/operative_config.gin from
    that record. Returns whether there is a recorded config to keep (a resume)."""
    from adapt_tf.runs import configurables, train_lib

    recorded = configurables.recorded_config(workdir)
    try:
        configurables.parse_config(gin_files, gin_bindings)
    except USER_ERRORS as error:
        raise ValueError(f"Bad gin configuration ({', '.join(gin_files)}; bindings "
                         f"{list(gin_bindings)}): {error}") from error
    configurables.bind_dataset_fingerprint(recorded and recorded.bindings)
    if chief:
        configurables.restore_config_file(workdir, recorded)
    configurables.check_resume(workdir, recorded and recorded.bindings,
                               configurables.config_bindings(),
                               source=recorded and recorded.source)
    train_lib.check_arguments(configurables.current_run_config().run_spec(workdir=workdir))
    return recorded is not None


if __name__ == "__main__":
    from adapt_tf import cli

    cli.quiet_tensorflow()
    cli.run(main)
