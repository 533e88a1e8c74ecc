"""`python -m adapt_tf.export --workdir=W [--checkpoint=best|last|PATH] [--output_dir=D]
[--discriminator] [--notflite]`: exports a trained run (this package's command).

Writes `W/export/generator/` (SavedModel), `W/export/generator.tflite` and
`W/export/export_info.json` (checkpoint, densities, TFLite sizes), and with `--discriminator`
`W/export/discriminator/` (`adapt_tf.export` says what each holds).

This is the composition-root half of the export: it rebuilds the run from its recorded
configuration (`configurables.read_run_config`: the record inside its newest checkpoint, else
`W/operative_config.gin`; then `train_lib.build_run`) and
restores a checkpoint (`storage.find_checkpoint`: `best` is the latest in
`W/checkpoints_best/`, kept by the evaluation callback, `last` the latest in `W/checkpoints/`;
the default is `best` if the run kept one, else `last`). `adapt_tf.export` is the gin-free
library that writes the files.
"""
from __future__ import annotations

import sys
from typing import Any

from absl import app, flags, logging

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__all__ = ["load_run", "export_run", "define_flags", "main", "run"]


def load_run(workdir: str, *, checkpoint: str | None = None):
    """The `SparseGAN` of a run, rebuilt from its recorded configuration and restored.

    `checkpoint` as `storage.find_checkpoint`. Rebuilding parses the run's config with gin
    (clearing the process's gin config); the global mixed-precision policy is left as it was.
    """
    import tensorflow as tf
    import tf_keras as keras

    from adapt_tf.runs import configurables, train_lib, storage, workdir as workdir_lib

    path = storage.find_checkpoint(workdir, checkpoint)
    config = configurables.read_run_config(workdir)
    policy = keras.mixed_precision.global_policy()
    try:
        run = train_lib.build_run(config.run_spec())
        try:
            run.checkpointer.restore(path)
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise ValueError(f"Checkpoint {path!r} does not fit the run that "
                             f"{workdir_lib.Workdir(workdir).config} describes: "
                             f"{error}") from error
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return run.gan


def export_run(workdir: str, *, checkpoint: str | None = None, output_dir: str | None = None,
               discriminator: bool = False, tflite: bool = True) -> dict[str, Any]:
    """Exports a run's generator (and discriminator, TFLite) with `export.export_gan`; returns
    what `export_info.json` records. output_dir defaults to `W/export`."""
    from adapt_tf import export
    from adapt_tf.runs import storage, workdir as workdir_lib

    gan = load_run(workdir, checkpoint=checkpoint)
    return export.export_gan(gan, output_dir or workdir_lib.Workdir(workdir).export,
                             checkpoint=storage.find_checkpoint(workdir, checkpoint),
                             discriminator=discriminator, tflite=tflite)


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a program; see `adapt_tf.evaluate`)."""
    flags.DEFINE_string("workdir", None, "Run directory written by python -m adapt_tf.train.")
    flags.DEFINE_string("checkpoint", "", "best | last | a checkpoint prefix or directory; "
                        "default: best if the run kept one, else last.")
    flags.DEFINE_string("output_dir", None, "Where to write (default WORKDIR/export).")
    flags.DEFINE_bool("discriminator", False, "Also export the discriminator.")
    flags.DEFINE_bool("tflite", True, "Also write generator.tflite (sparse) and report sizes.")
    flags.mark_flag_as_required("workdir")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    try:
        info = export_run(values.workdir, checkpoint=values.checkpoint or None,
                          output_dir=values.output_dir, discriminator=values.discriminator,
                          tflite=values.tflite)
    except (ValueError, OSError) as error:  # one line, not the module docstring as usage
        sys.exit(f"adapt_tf.export: error: {' '.join(str(error).split())}")
    logging.info("Exported %s (iteration %d, d_G=%.4f) to %s", info["checkpoint"],
                 info["step"], info["g_density"], info["generator"])
    if "tflite" in info:
        sizes = info["tflite"]
        logging.info("TFLite %s: %d bytes sparse vs %d bytes dense (%.1f %%).", sizes["path"],
                     sizes["sparse_bytes"], sizes["dense_bytes"],
                     100.0 * sizes["sparse_bytes"] / sizes["dense_bytes"])


def run() -> None:
    """Entry point of `python -m adapt_tf.export` and `python -m adapt_tf.export`."""
    from adapt_tf import cli

    cli.quiet_tensorflow()
    define_flags()
    cli.run(main, flags_of=[sys.modules[__name__]])


if __name__ == "__main__":
    run()
